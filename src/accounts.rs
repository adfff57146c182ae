//! Platform accounts: who may do what. Usernames, roles, password hashing
//! (argon2) and bearer tokens (random, stored only as their sha256).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How long a session token stays valid by default: 7 days.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every token starts with this, so a leaked one is easy to recognise (and
/// to scan for in logs and repositories).
const TOKEN_PREFIX: &str = "mat_";

/// An account's database id. Never shown to a mini-program: programs see
/// openids (see `identity`).
pub type AccountId = i64;

/// A login name: 3 to 32 characters of lowercase letters, digits, `_`, `-`
/// and `.`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Username {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let valid = (3..=32).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if valid {
            Ok(Username(s.to_string()))
        } else {
            Err(format!(
                "invalid username {s:?}: use 3 to 32 lowercase letters, digits, '_', '-' or '.', \
                 starting with a letter"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an account may do beyond using mini-programs, which every account may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages accounts and sees every app.
    Admin,
    /// Registers apps and takes their versions through review to users.
    Developer,
    /// Approves or rejects submitted versions of other developers' apps.
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Reviewer => "reviewer",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "developer" => Ok(Role::Developer),
            "reviewer" => Ok(Role::Reviewer),
            _ => Err(format!(
                "unknown role {s:?}: the roles are admin, developer and reviewer"
            )),
        }
    }
}

/// A set of roles, kept sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Roles(Vec<Role>);

impl Roles {
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Roles {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        roles.sort();
        roles.dedup();
        Roles(roles)
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// The stored form: space-separated names.
    pub fn to_column(&self) -> String {
        self.0
            .iter()
            .map(|role| role.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn from_column(column: &str) -> Result<Roles, String> {
        column
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<Role>, String>>()
            .map(Roles::new)
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Role>::deserialize(deserializer).map(Roles::new)
    }
}

/// A platform account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub username: Username,
    pub nickname: String,
    pub avatar_url: String,
    pub roles: Roles,
    pub created_at: i64,
}

impl Account {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(role)
    }
}

/// A password as typed: 8 to 256 characters.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Password, String> {
        let chars = raw.chars().count();
        if !(8..=256).contains(&chars) {
            return Err(format!("the password has {chars} characters; use 8 to 256"));
        }
        Ok(Password(raw))
    }

    /// The argon2id hash in PHC form, with a fresh random salt. Slow on
    /// purpose (tens of milliseconds): call from a blocking thread.
    pub fn hash(&self) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let hash = Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))?;
        Ok(hash.to_string())
    }

    /// Whether this password matches a stored hash. An empty or unreadable
    /// hash matches nothing. Slow on purpose: call from a blocking thread.
    pub fn verify(&self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(self.0.as_bytes(), &parsed)
            .is_ok()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A new random bearer token: 32 random bytes behind [`TOKEN_PREFIX`].
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// A new random app secret: 32 random bytes.
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What is stored for a token or secret: its sha256. Tokens and secrets are
/// 256 random bits, so a fast hash suffices (argon2 is for passwords, which
/// people choose).
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_at_the_edge() {
        assert!("ada".parse::<Username>().is_ok());
        assert!("dev.team-1_a".parse::<Username>().is_ok());
        for bad in ["", "ab", "Ada", "1ada", "a da", "ada!", &"a".repeat(33)] {
            assert!(bad.parse::<Username>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_round_trip_through_their_column() {
        let roles = Roles::new([Role::Reviewer, Role::Developer, Role::Reviewer]);
        assert_eq!(roles.to_column(), "developer reviewer");
        assert_eq!(Roles::from_column("developer reviewer"), Ok(roles));
        assert_eq!(Roles::from_column(""), Ok(Roles::default()));
        assert!(Roles::from_column("root").is_err());
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let password = Password::parse("correct horse".into()).unwrap();
        let hash = password.hash().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password.verify(&hash));
        assert!(!Password::parse("wrong horse".into()).unwrap().verify(&hash));
        assert!(!password.verify(""), "an empty hash matches nothing");
        assert_ne!(hash, password.hash().unwrap(), "salted");
    }

    #[test]
    fn password_length_is_bounded() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(257)).is_err());
        assert!(Password::parse("ok-password".into()).is_ok());
    }

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("mat_") && a.len() == 4 + 64);
        assert_eq!(secret_digest(&a).len(), 64);
        assert_ne!(secret_digest(&a), secret_digest(&b));
    }
}
