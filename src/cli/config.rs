//! The CLI's config file: the server a session was opened on and its token.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// What `miniapp login` saves: `{"server": URL, "token": TOKEN}`, both
/// optional (a logged-out config keeps its server and has no token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Config {
    /// Reads the config at `path`; a file that does not exist is an empty config.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a miniapp config file", path.display()))
    }

    /// Writes the config to `path`, readable by its owner only (mode 0600),
    /// creating the directory (mode 0700) if needed. The file is replaced
    /// whole through a temporary file, so a reader never sees half of it.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        // A named temporary file is created with mode 0600 on Unix.
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        file.write_all(&json)?;
        file.as_file().sync_all()?;
        file.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The session token, if it was issued by `server`: a token is never
    /// sent to a server other than the one that issued it.
    pub fn token_for(&self, server: &str) -> Option<&str> {
        match (&self.server, &self.token) {
            (Some(saved), Some(token)) if saved.trim_end_matches('/') == server => Some(token),
            _ => None,
        }
    }
}

/// The default config path: `$XDG_CONFIG_HOME/miniapp/config.json`, else
/// `$HOME/.config/miniapp/config.json`; `None` when neither variable is set.
pub fn default_path() -> Option<PathBuf> {
    default_path_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn default_path_from(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    // The XDG spec says a relative XDG_CONFIG_HOME is invalid and to be ignored.
    let config_home = xdg_config_home
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            home.filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })?;
    Some(config_home.join("miniapp").join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_an_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&dir.path().join("absent.json")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn a_saved_config_reads_back_and_only_its_owner_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("dir").join("config.json");
        let config = Config {
            server: Some("http://127.0.0.1:8080".into()),
            token: Some("t0ken".into()),
        };
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"server": "http://127.0.0.1:8080", "token": "t0ken"})
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn saving_over_a_config_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let logged_in = Config {
            server: Some("http://a".into()),
            token: Some("t".into()),
        };
        logged_in.save(&path).unwrap();
        let logged_out = Config {
            token: None,
            ..logged_in
        };
        logged_out.save(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            r#"{
  "server": "http://a"
}"#
        );
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "not json").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(format!("{err:#}").contains("config.json"), "{err:#}");
    }

    #[test]
    fn a_token_is_only_for_the_server_that_issued_it() {
        let config = Config {
            server: Some("http://a".into()),
            token: Some("t".into()),
        };
        assert_eq!(config.token_for("http://a"), Some("t"));
        assert_eq!(config.token_for("http://b"), None);
        let saved_with_slash = Config {
            server: Some("http://a/".into()),
            token: Some("t".into()),
        };
        assert_eq!(saved_with_slash.token_for("http://a"), Some("t"));
        assert_eq!(Config::default().token_for("http://a"), None);
    }

    #[test]
    fn the_default_path_follows_xdg_then_home() {
        assert_eq!(
            default_path_from(Some("/xdg".into()), Some("/home/u".into())),
            Some(PathBuf::from("/xdg/miniapp/config.json"))
        );
        assert_eq!(
            default_path_from(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.config/miniapp/config.json"))
        );
        assert_eq!(
            default_path_from(Some("relative".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.config/miniapp/config.json"))
        );
        assert_eq!(default_path_from(Some("".into()), None), None);
        assert_eq!(default_path_from(None, None), None);
    }
}
