//! The `miniapp` CLI, run as a process against the real server: the
//! commands developers and reviewers use, end to end.

use std::path::Path;

use miniapp::domain::Sha256Digest;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{HELLO, TestServer, config, create_account, on_each_engine};

/// What one run of the binary printed.
struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", self.stdout))
    }
}

/// Runs `miniapp ARGS` against `server` with the config file `config`,
/// feeding it `stdin`; asserts it succeeded.
async fn miniapp(server: &TestServer, config: &Path, args: &[&str], stdin: &str) -> Run {
    use tokio::io::AsyncWriteExt as _;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_miniapp"))
        .arg("--config")
        .arg(config)
        .args(["--server", &server.base])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the miniapp binary starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    let run = Run {
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    };
    assert!(
        output.status.success(),
        "miniapp {args:?} failed ({}):\n{}{}",
        output.status,
        run.stdout,
        run.stderr
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_and_a_reviewer_take_an_app_to_users_through_the_cli() {
    on_each_engine(|_, db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&db, &dir.path().join("data"))).await;
        create_account(&server, "dana", "dana-password", &["developer"]).await;
        create_account(&server, "remy", "remy-password", &["reviewer"]).await;
        // Each person has a config of their own, in a directory the CLI creates.
        let dana = dir.path().join("dana").join("config.json");
        let remy = dir.path().join("remy").join("config.json");

        let login = miniapp(
            &server,
            &dana,
            &["login", "--username", "dana", "--password-stdin"],
            "dana-password\n",
        )
        .await;
        assert!(login.stdout.contains("as dana"), "{}", login.stdout);
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&dana).unwrap()).unwrap();
        assert_eq!(saved["server"], server.base.as_str());
        assert!(
            saved["token"].as_str().is_some_and(|t| !t.is_empty()),
            "{saved}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dana).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "the token is for its owner's eyes only"
            );
        }

        let created = miniapp(
            &server,
            &dana,
            &["app", "create", "--name", "Hello", "--appid", "hello-cli"],
            "",
        )
        .await;
        assert!(
            created.stdout.contains("appid:  hello-cli\n"),
            "{}",
            created.stdout
        );
        assert!(created.stdout.contains("secret: "), "{}", created.stdout);
        assert!(
            created.stdout.contains("shown only this once"),
            "{}",
            created.stdout
        );

        let manifest = dir.path().join("manifest.json");
        std::fs::write(&manifest, r#"{"name":"Hello","version":"1.0.0"}"#).unwrap();
        let component = dir.path().join("hello.wasm");
        std::fs::write(&component, HELLO).unwrap();
        let uploaded = miniapp(
            &server,
            &dana,
            &[
                "--json",
                "upload",
                "--app",
                "hello-cli",
                "--manifest",
                manifest.to_str().unwrap(),
                component.to_str().unwrap(),
            ],
            "",
        )
        .await
        .json();
        assert_eq!(uploaded["sha256"], Sha256Digest::of(HELLO).to_string());
        assert_eq!(uploaded["state"], "development");
        let version = uploaded["version"].as_i64().expect("a version number");
        let version_arg = version.to_string();
        let version_arg = version_arg.as_str();

        let submitted = miniapp(
            &server,
            &dana,
            &[
                "--json",
                "submit",
                "--app",
                "hello-cli",
                "--version",
                version_arg,
                "--notes",
                "says hello",
            ],
            "",
        )
        .await
        .json();
        assert_eq!(submitted["state"], "submitted");

        miniapp(
            &server,
            &remy,
            &["login", "--username", "remy", "--password-stdin"],
            "remy-password\n",
        )
        .await;
        let queue = miniapp(&server, &remy, &["review", "queue"], "").await;
        let row = queue
            .stdout
            .lines()
            .find(|line| line.starts_with("hello-cli "))
            .unwrap_or_else(|| panic!("the queue lists hello-cli:\n{}", queue.stdout));
        assert!(row.contains("dana"), "{row}");
        let listed = miniapp(&server, &remy, &["--json", "review", "queue"], "")
            .await
            .json();
        assert!(
            listed["queue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|entry| { entry["appid"] == "hello-cli" && entry["version"] == version }),
            "{listed}"
        );

        let detail = miniapp(
            &server,
            &remy,
            &["--json", "review", "show", "hello-cli", version_arg],
            "",
        )
        .await
        .json();
        assert_eq!(detail["developer"], "dana");
        assert_eq!(detail["notes"], "says hello");
        let shown = miniapp(
            &server,
            &remy,
            &["review", "show", "hello-cli", version_arg],
            "",
        )
        .await;
        assert!(shown.stdout.contains("says hello"), "{}", shown.stdout);

        let approved = miniapp(
            &server,
            &remy,
            &[
                "--json",
                "review",
                "approve",
                "hello-cli",
                version_arg,
                "--reason",
                "fine",
            ],
            "",
        )
        .await
        .json();
        assert_eq!(approved["state"], "approved");

        let released = miniapp(
            &server,
            &dana,
            &[
                "--json",
                "release",
                "--app",
                "hello-cli",
                "--version",
                version_arg,
                "--percent",
                "100",
            ],
            "",
        )
        .await
        .json();
        assert_eq!(released["release"]["version"], version);
        assert_eq!(released["release"]["percent"], 100);

        let status = miniapp(&server, &dana, &["status", "--app", "hello-cli"], "").await;
        assert!(
            status.stdout.contains(&format!(
                "release: version {version} released to 100% of users"
            )),
            "{}",
            status.stdout
        );
        let row = status
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("{version} ")))
            .unwrap_or_else(|| panic!("the status lists version {version}:\n{}", status.stdout));
        assert!(row.contains("released"), "{row}");

        let response = server.get("/apps/hello-cli/").await;
        assert_eq!(response.status(), StatusCode::OK);

        server.stop().await;
        db
    })
    .await;
}
