//! Apps and their lifecycle: register, upload, trial, submit, review,
//! release in phases, roll back; the directory and launches.

use serde::{Deserialize, Serialize};

use super::{Channel, Platform, PlatformError};
use crate::accounts::{self, Account, AccountId, Role, Roles, Username};
use crate::db::{
    AppRecord, AuditEntry, Change, DirectoryEntry, QueueEntry, Registration, VersionRecord,
};
use crate::domain::{AppId, Sha256Digest};
use crate::lifecycle::{self, Action, CapabilityDiff, Manifest, Scene, VersionState};

/// A registration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// Chosen by the developer, or generated when absent.
    #[serde(default)]
    pub appid: Option<AppId>,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// An app as its developer sees it.
#[derive(Debug, Serialize)]
pub struct AppStatus {
    pub appid: AppId,
    pub name: String,
    pub description: String,
    pub owner: Option<String>,
    pub created_at: i64,
    pub release: Option<ReleaseStatus>,
    pub trial_version: Option<i64>,
    pub testers: Vec<String>,
    /// How many times users launched the app, by scene.
    pub launches: std::collections::BTreeMap<String, i64>,
    pub versions: Vec<VersionSummary>,
}

#[derive(Debug, Serialize)]
pub struct ReleaseStatus {
    pub version: i64,
    pub percent: u8,
    pub fallback_version: Option<i64>,
    pub previous_version: Option<i64>,
}

/// A version in lists.
#[derive(Debug, Serialize)]
pub struct VersionSummary {
    pub version: i64,
    pub label: String,
    pub state: VersionState,
    pub sha256: Sha256Digest,
    pub size: i64,
    pub created_at: i64,
    pub submitted_at: Option<i64>,
    pub reviewed_at: Option<i64>,
    pub reviewer: Option<String>,
    pub review_reason: Option<String>,
}

/// Everything about a version, as its developer and its reviewer see it.
#[derive(Debug, Serialize)]
pub struct VersionDetail {
    pub appid: AppId,
    pub developer: Option<String>,
    #[serde(flatten)]
    pub summary: VersionSummary,
    pub manifest: Manifest,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub capabilities: CapabilityDiff,
    pub notes: String,
}

/// A recorded launch: the version the user reaches and where to open it.
#[derive(Debug, Serialize)]
pub struct Launch {
    pub launch_id: i64,
    pub appid: AppId,
    pub version: i64,
    pub channel: &'static str,
    pub url: String,
}

fn summary(record: &VersionRecord) -> VersionSummary {
    VersionSummary {
        version: record.version,
        label: record.label.clone(),
        state: record.state,
        sha256: record.sha256,
        size: record.size,
        created_at: record.created_at,
        submitted_at: record.submitted_at,
        reviewed_at: record.reviewed_at,
        reviewer: record.reviewer.clone(),
        review_reason: record.review_reason.clone(),
    }
}

fn detail(app: &AppRecord, record: VersionRecord) -> VersionDetail {
    // Stored versions passed the check at upload; recomputing keeps one rule.
    let capabilities = lifecycle::capability_diff(&record.manifest, &record.imports)
        .unwrap_or_else(|_| CapabilityDiff {
            declared: record.manifest.capabilities.clone(),
            imported: Vec::new(),
            declared_not_imported: Vec::new(),
        });
    VersionDetail {
        appid: record.appid.clone(),
        developer: app.owner.clone(),
        summary: summary(&record),
        capabilities,
        imports: record.imports,
        exports: record.exports,
        notes: record.notes,
        manifest: record.manifest,
    }
}

fn check_app_text(name: &str, description: &str) -> Result<(), PlatformError> {
    if !(1..=64).contains(&name.trim().chars().count()) {
        return Err(PlatformError::Invalid(
            "name must have 1 to 64 characters".into(),
        ));
    }
    if description.chars().count() > 1000 {
        return Err(PlatformError::Invalid(
            "description must have at most 1000 characters".into(),
        ));
    }
    Ok(())
}

impl Platform {
    /// The app, if `account` may manage it: its developer, or an admin.
    pub(super) async fn owned_app(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<AppRecord, PlatformError> {
        if !account.has(Role::Developer) && !account.has(Role::Admin) {
            return Err(PlatformError::Forbidden(
                "this needs the developer role".into(),
            ));
        }
        let app = self
            .db
            .app(appid)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("app {appid} not found")))?;
        if app.owner_id != Some(account.id) && !account.has(Role::Admin) {
            return Err(PlatformError::Forbidden(format!(
                "app {appid} belongs to another developer"
            )));
        }
        Ok(app)
    }

    /// The app, if `account` may review it: a reviewer who does not develop it.
    async fn reviewable_app(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<AppRecord, PlatformError> {
        if !account.has(Role::Reviewer) {
            return Err(PlatformError::Forbidden(
                "this needs the reviewer role".into(),
            ));
        }
        let app = self
            .db
            .app(appid)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("app {appid} not found")))?;
        if app.owner_id == Some(account.id) {
            return Err(PlatformError::Forbidden(format!(
                "you develop {appid}: another reviewer must review it"
            )));
        }
        Ok(app)
    }

    async fn version_of(
        &self,
        appid: &AppId,
        version: i64,
    ) -> Result<VersionRecord, PlatformError> {
        self.db.version(appid, version).await?.ok_or_else(|| {
            PlatformError::NotFound(format!("version {version} of {appid} not found"))
        })
    }

    /// Registers an app for a developer. Returns it with its secret, which
    /// is shown this once.
    pub async fn create_app(
        &self,
        developer: &Account,
        new: NewApp,
    ) -> Result<(AppStatus, String), PlatformError> {
        if !developer.has(Role::Developer) {
            return Err(PlatformError::Forbidden(
                "this needs the developer role".into(),
            ));
        }
        check_app_text(&new.name, &new.description)?;
        let appid = match new.appid {
            Some(appid) => appid,
            None => format!("ma{}", hex::encode(rand::random::<[u8; 8]>()))
                .parse()
                .map_err(anyhow::Error::msg)?,
        };
        let secret = accounts::new_secret();
        let registration = self
            .db
            .create_app(
                &appid,
                developer.id,
                new.name.trim(),
                &new.description,
                &accounts::secret_digest(&secret),
            )
            .await?;
        match registration {
            Registration::Created => {}
            Registration::Taken => {
                return Err(PlatformError::Conflict(format!("appid {appid} is taken")));
            }
            Registration::Retired => {
                return Err(PlatformError::Conflict(format!(
                    "appid {appid} belonged to a deleted app, and appids are never reused: choose another"
                )));
            }
        }
        Ok((self.app_status(developer, &appid).await?, secret))
    }

    /// The apps `account` manages: their own, or every app for an admin.
    pub async fn apps(&self, account: &Account) -> Result<Vec<AppStatus>, PlatformError> {
        if !account.has(Role::Developer) && !account.has(Role::Admin) {
            return Err(PlatformError::Forbidden(
                "this needs the developer role".into(),
            ));
        }
        let owner = (!account.has(Role::Admin)).then_some(account.id);
        let mut statuses = Vec::new();
        for app in self.db.apps(owner).await? {
            statuses.push(self.status_of(app).await?);
        }
        Ok(statuses)
    }

    pub async fn app_status(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<AppStatus, PlatformError> {
        let app = self.owned_app(account, appid).await?;
        self.status_of(app).await
    }

    async fn status_of(&self, app: AppRecord) -> Result<AppStatus, PlatformError> {
        let versions = self.db.versions(&app.appid).await?;
        let testers = self.db.testers(&app.appid).await?;
        let launches = self
            .db
            .launch_counts(&app.appid)
            .await?
            .into_iter()
            .collect();
        let route = app.release;
        Ok(AppStatus {
            release: route.released_version.map(|version| ReleaseStatus {
                version,
                percent: route.release_percent,
                fallback_version: route.fallback_version,
                previous_version: route.previous_version,
            }),
            trial_version: route.trial_version,
            testers,
            launches,
            versions: versions.iter().map(summary).collect(),
            appid: app.appid,
            name: app.name,
            description: app.description,
            owner: app.owner,
            created_at: app.created_at,
        })
    }

    /// Replaces the app secret; the new one is shown this once.
    pub async fn rotate_secret(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<String, PlatformError> {
        self.owned_app(account, appid).await?;
        let secret = accounts::new_secret();
        self.db
            .set_app_secret(appid, &accounts::secret_digest(&secret))
            .await?;
        Ok(secret)
    }

    /// Replaces the app's testers, who may open its trial version.
    pub async fn set_testers(
        &self,
        account: &Account,
        appid: &AppId,
        testers: Vec<Username>,
    ) -> Result<Vec<String>, PlatformError> {
        self.owned_app(account, appid).await?;
        if testers.len() > 100 {
            return Err(PlatformError::Invalid(
                "an app has at most 100 testers".into(),
            ));
        }
        let unknown = self.db.set_testers(appid, &testers).await?;
        if !unknown.is_empty() {
            return Err(PlatformError::Invalid(format!(
                "no account is named {}",
                unknown.join(", ")
            )));
        }
        Ok(self.db.testers(appid).await?)
    }

    /// Validates, compiles and stores a component with its manifest as the
    /// app's next version, in development. Nothing is stored or compiled
    /// for an upload that fails a check.
    pub async fn upload(
        &self,
        account: &Account,
        appid: &AppId,
        manifest: &[u8],
        bytes: Vec<u8>,
    ) -> Result<VersionDetail, PlatformError> {
        let app = self.owned_app(account, appid).await?;
        let version = self
            .store_version(appid, manifest, bytes, Some(account.id))
            .await?;
        Ok(detail(&app, self.version_of(appid, version).await?))
    }

    async fn store_version(
        &self,
        appid: &AppId,
        manifest: &[u8],
        bytes: Vec<u8>,
        uploaded_by: Option<AccountId>,
    ) -> Result<i64, PlatformError> {
        let limit = self.settings.max_component_bytes;
        if bytes.len() > limit {
            return Err(PlatformError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let manifest = Manifest::parse(manifest, &self.runtime.config().max_limits)?;
        let info = self.runtime.inspect(&bytes)?;
        lifecycle::capability_diff(&manifest, &info.imports)?;
        let digest = Sha256Digest::of(&bytes);
        let runtime = self.runtime.clone();
        let (prepared, bytes) = tokio::task::spawn_blocking(move || {
            let prepared = runtime.prepare(&digest, &bytes);
            (prepared, bytes)
        })
        .await
        .map_err(anyhow::Error::from)?;
        prepared?;
        let version = self
            .db
            .add_version(appid, &digest, &bytes, &info, &manifest, uploaded_by)
            .await?;
        tracing::info!(%appid, version, %digest, size = bytes.len(), "version uploaded");
        Ok(version)
    }

    /// A version's detail, for its developer.
    pub async fn version_detail(
        &self,
        account: &Account,
        appid: &AppId,
        version: i64,
    ) -> Result<VersionDetail, PlatformError> {
        let app = self.owned_app(account, appid).await?;
        Ok(detail(&app, self.version_of(appid, version).await?))
    }

    /// The app's kept versions, newest first.
    pub async fn versions(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<Vec<VersionSummary>, PlatformError> {
        self.owned_app(account, appid).await?;
        Ok(self.db.versions(appid).await?.iter().map(summary).collect())
    }

    /// A developer's transition: trial, submit (with notes) or withdraw.
    pub async fn developer_transition(
        &self,
        account: &Account,
        appid: &AppId,
        version: i64,
        action: Action,
        notes: &str,
    ) -> Result<VersionSummary, PlatformError> {
        self.owned_app(account, appid).await?;
        let change = match action {
            Action::Trial => Change::Trial,
            Action::Submit => Change::Submit { notes },
            Action::Withdraw => Change::Withdraw,
            other => {
                return Err(PlatformError::Invalid(format!(
                    "{} is not a developer's transition",
                    other.as_str()
                )));
            }
        };
        if notes.chars().count() > 2000 {
            return Err(PlatformError::Invalid(
                "notes must have at most 2000 characters".into(),
            ));
        }
        self.db
            .transition(appid, version, action, change, Some(account.id))
            .await?;
        if action == Action::Trial || action == Action::Submit {
            self.forget_route(appid);
        }
        Ok(summary(&self.version_of(appid, version).await?))
    }

    /// The review queue, in submit order, without the reviewer's own apps.
    pub async fn review_queue(&self, account: &Account) -> Result<Vec<QueueEntry>, PlatformError> {
        if !account.has(Role::Reviewer) {
            return Err(PlatformError::Forbidden(
                "this needs the reviewer role".into(),
            ));
        }
        Ok(self.db.review_queue(account.id).await?)
    }

    /// A version's detail, for a reviewer.
    pub async fn review_detail(
        &self,
        account: &Account,
        appid: &AppId,
        version: i64,
    ) -> Result<VersionDetail, PlatformError> {
        let app = self.reviewable_app(account, appid).await?;
        Ok(detail(&app, self.version_of(appid, version).await?))
    }

    /// Approves or rejects a submitted version. Of two concurrent reviews
    /// of one version, one wins and the other gets a conflict.
    pub async fn review(
        &self,
        account: &Account,
        appid: &AppId,
        version: i64,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<VersionSummary, PlatformError> {
        self.reviewable_app(account, appid).await?;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if !approve && reason.is_none() {
            return Err(PlatformError::Invalid(
                "a rejection needs a reason for the developer".into(),
            ));
        }
        if reason.is_some_and(|r| r.chars().count() > 2000) {
            return Err(PlatformError::Invalid(
                "reason must have at most 2000 characters".into(),
            ));
        }
        let action = if approve {
            Action::Approve
        } else {
            Action::Reject
        };
        self.db
            .transition(
                appid,
                version,
                action,
                Change::Review { reason },
                Some(account.id),
            )
            .await?;
        Ok(summary(&self.version_of(appid, version).await?))
    }

    /// Releases an approved version to `percent` of users (1 to 100), or
    /// changes the percentage of the version being released.
    pub async fn release(
        &self,
        account: &Account,
        appid: &AppId,
        version: i64,
        percent: u8,
    ) -> Result<AppStatus, PlatformError> {
        self.owned_app(account, appid).await?;
        if !(1..=100).contains(&percent) {
            return Err(PlatformError::Invalid(
                "percent must be between 1 and 100".into(),
            ));
        }
        self.db
            .release(appid, version, percent, Some(account.id))
            .await?;
        self.forget_route(appid);
        self.app_status(account, appid).await
    }

    /// Restores the release before the current one.
    pub async fn rollback(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<AppStatus, PlatformError> {
        self.owned_app(account, appid).await?;
        self.db.rollback(appid, Some(account.id)).await?;
        self.forget_route(appid);
        self.app_status(account, appid).await
    }

    /// Removes an app and all its data, its users' data in it included.
    pub async fn delete_app(&self, account: &Account, appid: &AppId) -> Result<(), PlatformError> {
        self.owned_app(account, appid).await?;
        self.usage.flush().await;
        self.db.delete_app(appid).await?;
        self.forget_app(appid);
        tracing::info!(%appid, by = %account.username, "app deleted");
        Ok(())
    }

    /// Every lifecycle transition of the app, oldest first.
    pub async fn audit_log(
        &self,
        account: &Account,
        appid: &AppId,
    ) -> Result<Vec<AuditEntry>, PlatformError> {
        self.owned_app(account, appid).await?;
        Ok(self.db.audit_log(appid).await?)
    }

    /// Released apps matching `query`.
    pub async fn directory(
        &self,
        query: &str,
        limit: i64,
    ) -> Result<Vec<DirectoryEntry>, PlatformError> {
        if query.chars().count() > 100 {
            return Err(PlatformError::Invalid(
                "q must have at most 100 characters".into(),
            ));
        }
        Ok(self.db.directory(query, limit).await?)
    }

    /// A user opens an app: records the launch and says which version they
    /// reach and at which URL.
    pub async fn launch(
        &self,
        account: &Account,
        appid: &AppId,
        path: &str,
        query: &str,
        scene: Scene,
        channel: Channel,
    ) -> Result<Launch, PlatformError> {
        if !path.starts_with('/') || path.len() > 1024 || path.contains(['?', '#']) {
            return Err(PlatformError::Invalid(
                "path must start with '/', have at most 1024 bytes and no '?' or '#'".into(),
            ));
        }
        if query.len() > 2048 || query.contains('#') {
            return Err(PlatformError::Invalid(
                "query must have at most 2048 bytes and no '#'".into(),
            ));
        }
        let app = self.app_route(appid).await?;
        let version = self
            .reached_version(appid, &app, channel, Some(account))
            .await?;
        let launch_id = self
            .db
            .insert_launch(
                appid,
                account.id,
                version,
                channel.as_str(),
                path,
                query,
                scene,
            )
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("app {appid} not found")))?;
        let prefix = match channel {
            Channel::Release => "apps",
            Channel::Trial => "trial",
        };
        let mut url = format!("/{prefix}/{appid}{path}");
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        Ok(Launch {
            launch_id,
            appid: appid.clone(),
            version,
            channel: channel.as_str(),
            url,
        })
    }

    /// Installs a bundled sample as released by the platform itself, under
    /// the `samples` account (which cannot sign in), unless that exact
    /// component is already its release.
    pub async fn install_sample(
        &self,
        appid: &AppId,
        manifest: &[u8],
        bytes: &[u8],
    ) -> Result<(), PlatformError> {
        let owner: Username = "samples".parse().map_err(anyhow::Error::msg)?;
        let owner = match self.db.account_by_username(&owner).await? {
            Some(account) => account,
            None => self
                .db
                .create_account(
                    &owner,
                    "",
                    "Bundled samples",
                    "",
                    &Roles::new([Role::Developer]),
                )
                .await?
                .ok_or_else(|| anyhow::anyhow!("the samples account vanished"))?,
        };
        let app = match self.db.app(appid).await? {
            Some(app) => app,
            None => {
                let parsed = Manifest::parse(manifest, &self.runtime.config().max_limits)?;
                let secret = accounts::secret_digest(&accounts::new_secret());
                let registration = self
                    .db
                    .create_app(appid, owner.id, &parsed.name, &parsed.description, &secret)
                    .await?;
                if registration == Registration::Retired {
                    tracing::warn!(%appid, "not installing a sample whose app was deleted");
                    return Ok(());
                }
                self.db
                    .app(appid)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("app {appid} vanished"))?
            }
        };
        if let Some(released) = app.release.released_version
            && let Some((digest, _)) = self.db.runnable(appid, released).await?
            && digest == Sha256Digest::of(bytes)
        {
            return Ok(());
        }
        let version = self
            .store_version(appid, manifest, bytes.to_vec(), None)
            .await?;
        let why = Some("a bundled sample, installed by the platform (--samples)");
        self.db
            .transition(
                appid,
                version,
                Action::Submit,
                Change::Submit { notes: "" },
                None,
            )
            .await?;
        self.db
            .transition(
                appid,
                version,
                Action::Approve,
                Change::Review { reason: why },
                None,
            )
            .await?;
        self.db.release(appid, version, 100, None).await?;
        self.forget_route(appid);
        Ok(())
    }
}
