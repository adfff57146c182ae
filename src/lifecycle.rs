//! The app lifecycle's rules, free of I/O: version states and the
//! transitions between them, the manifest a version is uploaded with, the
//! declared-versus-imported capability check, and who a phased release reaches.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::accounts::AccountId;
use crate::domain::AppId;
use crate::messaging::MessagingSettings;
use crate::payment::PaymentSettings;
use crate::runtime::Limits;
use crate::storage::RequestedQuotas;

/// How many versions of an app are kept. Older ones that nothing refers to
/// (release, fallback, rollback target, trial, review) are deleted on upload.
pub const KEPT_VERSIONS: i64 = 5;

/// Where a version is on its way from its developer to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Uploaded; only its developer sees it.
    Development,
    /// The app's trial version: open to its developer and listed testers.
    Trial,
    /// Waiting in the review queue.
    Submitted,
    /// A reviewer approved it; the developer may release it.
    Approved,
    /// A reviewer rejected it, with a reason. Final: fix and upload anew.
    Rejected,
    /// Served to users (to all, or to a phase of them).
    Released,
    /// Was released and has been replaced or rolled back. Final.
    Retired,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Development => "development",
            VersionState::Trial => "trial",
            VersionState::Submitted => "submitted",
            VersionState::Approved => "approved",
            VersionState::Rejected => "rejected",
            VersionState::Released => "released",
            VersionState::Retired => "retired",
        }
    }
}

impl FromStr for VersionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown version state {s:?}"))
    }
}

impl fmt::Display for VersionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition a developer or reviewer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trial,
    Submit,
    Withdraw,
    Approve,
    Reject,
    Release,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trial => "trial",
            Action::Submit => "submit",
            Action::Withdraw => "withdraw",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Release => "release",
        }
    }

    /// The states this action may start from.
    pub fn allowed_from(self) -> &'static [VersionState] {
        use VersionState::*;
        match self {
            Action::Trial => &[Development],
            Action::Submit => &[Development, Trial],
            Action::Withdraw => &[Submitted],
            Action::Approve | Action::Reject => &[Submitted],
            Action::Release => &[Approved],
        }
    }

    /// The state the version is in after the action.
    pub fn target(self) -> VersionState {
        match self {
            Action::Trial => VersionState::Trial,
            Action::Submit => VersionState::Submitted,
            Action::Withdraw => VersionState::Development,
            Action::Approve => VersionState::Approved,
            Action::Reject => VersionState::Rejected,
            Action::Release => VersionState::Released,
        }
    }
}

/// A transition refused because of the version's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot {action} version {version}: it is {current}, and {action} needs {needed}",
    action = action.as_str(),
    needed = needed(*action)
)]
pub struct InvalidTransition {
    pub action: Action,
    pub version: i64,
    pub current: VersionState,
}

fn needed(action: Action) -> String {
    let names: Vec<&str> = action
        .allowed_from()
        .iter()
        .map(|state| state.as_str())
        .collect();
    names.join(" or ")
}

/// Checks `action` may start from `current`.
pub fn check_transition(
    action: Action,
    version: i64,
    current: VersionState,
) -> Result<(), InvalidTransition> {
    if action.allowed_from().contains(&current) {
        Ok(())
    } else {
        Err(InvalidTransition {
            action,
            version,
            current,
        })
    }
}

/// A host capability a version may ask for. Deny by default: a program can
/// import only what its manifest declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Who the caller is (openid, unionid), their profile behind a scope,
    /// login codes for the app's own server.
    Identity,
    /// Key-value data of the app and of each of its users, with quotas.
    Storage,
    /// Orders, refunds and payouts.
    Payment,
    /// Notifications and customer-service replies.
    Messaging,
}

impl Capability {
    pub const ALL: &[Capability] = &[
        Capability::Identity,
        Capability::Storage,
        Capability::Payment,
        Capability::Messaging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Identity => "identity",
            Capability::Storage => "storage",
            Capability::Payment => "payment",
            Capability::Messaging => "messaging",
        }
    }

    /// The capability a `miniapp:host` interface belongs to; `None` for the
    /// interfaces every program may import (`types`, `log`).
    pub fn of_interface(interface: &str) -> Option<Capability> {
        Capability::ALL
            .iter()
            .copied()
            .find(|capability| capability.as_str() == interface)
    }
}

/// User data behind a user's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Nickname and avatar.
    Profile,
}

impl Scope {
    pub const ALL: &[Scope] = &[Scope::Profile];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Profile => "profile",
        }
    }

    /// The capability whose functions read this scope's data.
    pub fn capability(self) -> Capability {
        match self {
            Scope::Profile => Capability::Identity,
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}: the scopes are profile"))
    }
}

/// The limits a version asks for; what it leaves out stays at the
/// platform default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

impl RequestedLimits {
    pub fn over(&self, defaults: Limits) -> Limits {
        Limits {
            fuel: self.fuel.unwrap_or(defaults.fuel),
            deadline_ms: self.deadline_ms.unwrap_or(defaults.deadline_ms),
            memory_bytes: self.memory_bytes.unwrap_or(defaults.memory_bytes),
            ..defaults
        }
    }
}

/// What a developer declares about a version when uploading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The app's display name, 1 to 64 characters.
    pub name: String,
    /// The developer's version string, e.g. `1.4.0`: 1 to 32 printable characters.
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The capabilities the version may import.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// The user data scopes it asks users for.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub limits: RequestedLimits,
    /// Storage quotas, for versions with the storage capability.
    #[serde(default)]
    pub storage: RequestedQuotas,
    /// Payouts and order lifetime, for versions with the payment capability.
    #[serde(default)]
    pub payment: PaymentSettings,
    /// Notification templates, for versions with the messaging capability.
    #[serde(default)]
    pub messaging: MessagingSettings,
}

/// A manifest refused, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest: {0}")]
pub struct InvalidManifest(pub String);

impl Manifest {
    /// Parses and checks a manifest; `max_limits` bounds what it may ask for.
    pub fn parse(json: &[u8], max_limits: &Limits) -> Result<Manifest, InvalidManifest> {
        let mut manifest: Manifest =
            serde_json::from_slice(json).map_err(|err| InvalidManifest(err.to_string()))?;
        let name_chars = manifest.name.trim().chars().count();
        if !(1..=64).contains(&name_chars) {
            return Err(InvalidManifest(
                "field `name` must have 1 to 64 characters".into(),
            ));
        }
        let label = &manifest.version;
        if label.is_empty() || label.len() > 32 || !label.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidManifest(
                "field `version` must be 1 to 32 printable ASCII characters without spaces".into(),
            ));
        }
        if manifest.description.chars().count() > 1000 {
            return Err(InvalidManifest(
                "field `description` must have at most 1000 characters".into(),
            ));
        }
        manifest.capabilities.sort();
        manifest.capabilities.dedup();
        manifest.scopes.sort();
        manifest.scopes.dedup();
        for scope in &manifest.scopes {
            if !manifest.capabilities.contains(&scope.capability()) {
                return Err(InvalidManifest(format!(
                    "field `scopes`: scope {} needs the {} capability in `capabilities`",
                    scope.as_str(),
                    scope.capability().as_str()
                )));
            }
        }
        let limits = manifest.limits.over(*max_limits);
        limits
            .check_within(max_limits)
            .map_err(|problem| InvalidManifest(format!("field `limits`: {problem}")))?;
        manifest
            .storage
            .resolve()
            .map_err(|problem| InvalidManifest(format!("field `storage`: {problem}")))?;
        manifest
            .payment
            .order_ttl()
            .map_err(|problem| InvalidManifest(format!("field `payment`: {problem}")))?;
        manifest
            .messaging
            .check()
            .map_err(|problem| InvalidManifest(format!("field `messaging`: {problem}")))?;
        if !manifest.messaging.templates.is_empty() && !manifest.declares(Capability::Messaging) {
            return Err(InvalidManifest(
                "field `messaging` needs the messaging capability in `capabilities`".into(),
            ));
        }
        if manifest.payment != PaymentSettings::default() && !manifest.declares(Capability::Payment)
        {
            return Err(InvalidManifest(
                "field `payment` needs the payment capability in `capabilities`".into(),
            ));
        }
        Ok(manifest)
    }

    pub fn declares(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// The manifest's capabilities beside the component's real imports, as a
/// reviewer sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityDiff {
    pub declared: Vec<Capability>,
    pub imported: Vec<Capability>,
    /// Declared but never imported: harmless to run, but a reviewer should
    /// ask why the version wants them.
    pub declared_not_imported: Vec<Capability>,
}

/// Compares a manifest with a component's imports. An import of a
/// capability the manifest does not declare is an error naming it.
pub fn capability_diff(
    manifest: &Manifest,
    imported_interfaces: &[String],
) -> Result<CapabilityDiff, InvalidManifest> {
    let mut imported: Vec<Capability> = imported_interfaces
        .iter()
        .filter_map(|name| crate::runtime::host_interface_name(name))
        .filter_map(Capability::of_interface)
        .collect();
    imported.sort();
    imported.dedup();
    if let Some(undeclared) = imported.iter().find(|c| !manifest.declares(**c)) {
        return Err(InvalidManifest(format!(
            "the component imports the {} capability, which field `capabilities` does not declare",
            undeclared.as_str()
        )));
    }
    let declared_not_imported = manifest
        .capabilities
        .iter()
        .copied()
        .filter(|c| !imported.contains(c))
        .collect();
    Ok(CapabilityDiff {
        declared: manifest.capabilities.clone(),
        imported,
        declared_not_imported,
    })
}

/// Whether a user is in the phase of a release at `percent`: a stable
/// function of (app, version, user), so a user reached at 10 % is still
/// reached at 20 % and never flips back and forth.
pub fn in_phase(appid: &AppId, version: i64, account: AccountId, percent: u8) -> bool {
    if percent >= 100 {
        return true;
    }
    let digest = Sha256::new()
        .chain_update(b"miniapp-phase\0")
        .chain_update(appid.as_str().as_bytes())
        .chain_update(version.to_be_bytes())
        .chain_update(account.to_be_bytes())
        .finalize();
    let bucket = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 10_000;
    bucket < u32::from(percent) * 100
}

/// Where a user opened an app from, after WeChat's scene values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scene {
    Link,
    QrCode,
    Share,
    Search,
    Directory,
    Recent,
}

impl Scene {
    pub fn as_str(self) -> &'static str {
        match self {
            Scene::Link => "link",
            Scene::QrCode => "qr-code",
            Scene::Share => "share",
            Scene::Search => "search",
            Scene::Directory => "directory",
            Scene::Recent => "recent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max() -> Limits {
        Limits::platform_maximum()
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use VersionState::*;
        assert!(check_transition(Action::Submit, 1, Development).is_ok());
        assert!(check_transition(Action::Submit, 1, Trial).is_ok());
        assert!(check_transition(Action::Approve, 1, Submitted).is_ok());
        assert!(check_transition(Action::Release, 1, Approved).is_ok());
        let refused = check_transition(Action::Release, 3, Rejected).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "cannot release version 3: it is rejected, and release needs approved"
        );
        let refused = check_transition(Action::Submit, 2, Released).unwrap_err();
        assert!(refused.to_string().contains("needs development or trial"));
        for state in [Approved, Rejected, Released, Retired, Development] {
            assert!(check_transition(Action::Approve, 1, state).is_err());
        }
    }

    #[test]
    fn a_minimal_manifest_parses() {
        let manifest = Manifest::parse(br#"{"name":"Hello","version":"1.0.0"}"#, &max()).unwrap();
        assert_eq!(manifest.name, "Hello");
        assert!(manifest.capabilities.is_empty());
        assert_eq!(manifest.limits, RequestedLimits::default());
    }

    #[test]
    fn manifest_errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"version":"1"}"#, "missing field `name`"),
            (r#"{"name":"","version":"1"}"#, "field `name`"),
            (r#"{"name":"a","version":"one two"}"#, "field `version`"),
            (
                r#"{"name":"a","version":"1","capabilities":["bank"]}"#,
                "unknown variant `bank`",
            ),
            (
                r#"{"name":"a","version":"1","scopes":["profile"]}"#,
                "field `scopes`",
            ),
            (
                r#"{"name":"a","version":"1","limits":{"fuel":0}}"#,
                "field `limits`: fuel",
            ),
            (
                r#"{"name":"a","version":"1","limits":{"memory_bytes":99999999999}}"#,
                "field `limits`",
            ),
            (
                r#"{"name":"a","version":"1","limits":{"cpu":1}}"#,
                "unknown field `cpu`",
            ),
            (
                r#"{"name":"a","version":"1","color":"red"}"#,
                "unknown field `color`",
            ),
            ("not json", "expected"),
        ];
        for (json, expected) in cases {
            let err = Manifest::parse(json.as_bytes(), &max()).unwrap_err();
            assert!(err.to_string().contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn undeclared_imports_are_refused_and_unused_declarations_flagged() {
        let plain = Manifest::parse(br#"{"name":"a","version":"1"}"#, &max()).unwrap();
        let imports = vec![
            "miniapp:host/log@0.1.1".to_string(),
            "miniapp:host/identity@0.1.1".to_string(),
        ];
        let err = capability_diff(&plain, &imports).unwrap_err();
        assert!(err.to_string().contains("identity"), "{err}");

        let declared = Manifest::parse(
            br#"{"name":"a","version":"1","capabilities":["identity"]}"#,
            &max(),
        )
        .unwrap();
        let diff = capability_diff(&declared, &imports).unwrap();
        assert_eq!(diff.imported, vec![Capability::Identity]);
        assert!(diff.declared_not_imported.is_empty());
        let diff = capability_diff(&declared, &imports[..1]).unwrap();
        assert_eq!(diff.declared_not_imported, vec![Capability::Identity]);
    }

    #[test]
    fn phases_reach_about_their_share_and_only_grow() {
        let appid: AppId = "phased".parse().unwrap();
        let users = 0..1000;
        let reached = |percent| {
            users
                .clone()
                .filter(|user| in_phase(&appid, 2, *user, percent))
                .collect::<Vec<_>>()
        };
        let (ten, fifty) = (reached(10), reached(50));
        assert!(
            (60..=140).contains(&ten.len()),
            "10 % reached {}",
            ten.len()
        );
        assert!(
            (440..=560).contains(&fifty.len()),
            "50 % reached {}",
            fifty.len()
        );
        assert!(
            ten.iter().all(|user| fifty.contains(user)),
            "growing keeps users"
        );
        assert_eq!(reached(100).len(), 1000);
    }
}
