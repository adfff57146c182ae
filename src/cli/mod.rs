//! The `miniapp` command-line client: developers and reviewers drive a
//! server's HTTP API (sessions, apps, uploads, review, release) from a shell.
//! The clap types live here; `main.rs` parses them and calls [`run`].

mod client;
mod config;
mod render;
mod upload;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::domain::AppId;
use client::{Client, RequestError};
use config::Config;

/// The server a command talks to when neither `--server` nor the config names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Options of every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The config file keeping the server and session token [default:
    /// $XDG_CONFIG_HOME/miniapp/config.json, else $HOME/.config/miniapp/config.json].
    #[arg(long, global = true, env = "MINIAPP_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The server's base URL, overriding the one `login` saved
    /// [default: http://127.0.0.1:8080].
    #[arg(long, global = true, env = "MINIAPP_SERVER", value_name = "URL", value_parser = parse_server)]
    pub server: Option<String>,

    /// Print the server's raw JSON answer instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Sign in and save the session token in the config file.
    Login(LoginArgs),
    /// End the session and forget its token.
    Logout,
    /// Register and manage apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Upload a new version of an app: a manifest and a component.
    Upload(UploadArgs),
    /// Submit a version for review.
    Submit(SubmitArgs),
    /// Take a submitted version back to development.
    Withdraw(VersionArgs),
    /// Make a version the trial version, for the app's testers.
    Trial(VersionArgs),
    /// Show an app: its release, trial and versions.
    Status(AppArgs),
    /// Review submitted versions (reviewer role).
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Release an approved version to users.
    Release(ReleaseArgs),
    /// Go back to the previously released version.
    Rollback(AppArgs),
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The account to sign in as.
    #[arg(long)]
    pub username: String,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Register an app; prints its appid and its secret (shown only once).
    Create(CreateAppArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateAppArgs {
    /// The app's display name.
    #[arg(long)]
    pub name: String,
    /// The appid to claim [default: one the server picks].
    #[arg(long)]
    pub appid: Option<AppId>,
    /// What the app is for.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AppArgs {
    /// The app's appid.
    #[arg(long)]
    pub app: AppId,
}

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// The app's appid.
    #[arg(long)]
    pub app: AppId,
    /// The version's number, as `upload` printed it.
    #[arg(long)]
    pub version: u64,
}

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The app's appid.
    #[arg(long)]
    pub app: AppId,
    /// The manifest, a JSON file: `{name, version, capabilities?, scopes?, limits?}`.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// The component, a .wasm file.
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub version: VersionArgs,
    /// Notes for the reviewer.
    #[arg(long, value_name = "TEXT")]
    pub notes: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub version: VersionArgs,
    /// The share of users who get this version, 1 to 100.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub percent: u8,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReviewCommand {
    /// List the versions waiting for review, oldest first.
    Queue,
    /// Show a submitted version: manifest, imports, capabilities, notes.
    Show { appid: AppId, version: u64 },
    /// Approve a version, so its developer may release it.
    Approve {
        appid: AppId,
        version: u64,
        /// A word for the developer.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a version, saying why.
    Reject {
        appid: AppId,
        version: u64,
        /// What the developer must fix (required).
        #[arg(long)]
        reason: String,
    },
}

/// Runs one client command to completion. Failures are printed on stderr
/// (`error: <message> (<code>, HTTP <status>)` for the server's errors) and
/// end in exit code 1.
pub fn run(options: Options, command: Command) -> ExitCode {
    let signs_in = matches!(command, Command::Login(_));
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(execute(options, command)));
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    eprintln!("error: {err:#}");
    if let Some(RequestError::Api { status: 401, .. }) = err.downcast_ref()
        && !signs_in
    {
        // The token in the config was refused: expired or revoked.
        eprintln!("hint: the session may have ended: run `miniapp login`");
    }
    ExitCode::FAILURE
}

async fn execute(options: Options, command: Command) -> anyhow::Result<()> {
    let config_path = match options.config {
        Some(path) => path,
        None => config::default_path()
            .context("no place for the config file: set --config or MINIAPP_CONFIG (or HOME)")?,
    };
    let config = Config::load(&config_path)?;
    let server = match options.server.or_else(|| config.server.clone()) {
        Some(server) => server.trim_end_matches('/').to_string(),
        None => DEFAULT_SERVER.to_string(),
    };
    let out = Output { json: options.json };
    let signed_in = || match config.token_for(&server) {
        Some(token) => Ok(Client::new(&server, Some(token))),
        None => Err(anyhow::anyhow!(
            "not logged in to {server}: run `miniapp login`"
        )),
    };
    match command {
        Command::Login(args) => {
            let password = if args.password_stdin {
                password_line(std::io::stdin().lock())?
            } else {
                rpassword::prompt_password(format!("Password for {} at {server}: ", args.username))
                    .context("reading the password from the terminal (without one, use --password-stdin)")?
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            let session = Client::new(&server, None)
                .post(
                    "/v1/sessions",
                    &json!({"username": args.username, "password": password}),
                )
                .await?;
            let token = session["token"]
                .as_str()
                .context("the server's answer has no session token")?;
            let saved = Config {
                server: Some(server.clone()),
                token: Some(token.to_string()),
            };
            saved.save(&config_path)?;
            out.show(&session, |session| render::session(&server, session));
        }
        Command::Logout => {
            if config.token_for(&server).is_none() {
                eprintln!("Not logged in to {server}: nothing to do.");
                return Ok(());
            }
            match signed_in()?.delete("/v1/sessions/current").await {
                // 401: the session had already ended; forget it all the same.
                Ok(_) | Err(RequestError::Api { status: 401, .. }) => {}
                Err(err) => return Err(err.into()),
            }
            let logged_out = Config {
                token: None,
                ..config.clone()
            };
            logged_out.save(&config_path)?;
            out.show(&Value::Null, |_| format!("Logged out of {server}.\n"));
        }
        Command::App(AppCommand::Create(args)) => {
            let mut body = json!({"name": args.name});
            if let Some(appid) = &args.appid {
                body["appid"] = json!(appid);
            }
            if let Some(description) = &args.description {
                body["description"] = json!(description);
            }
            let app = signed_in()?.post("/v1/apps", &body).await?;
            out.show(&app, render::app_created);
        }
        Command::Upload(args) => {
            let client = signed_in()?;
            let progress = upload::progress_bar();
            let form = upload::form(&args.manifest, &args.component, &progress)?;
            let answer = client
                .post_multipart(&format!("/v1/apps/{}/versions", args.app), form)
                .await;
            progress.finish_and_clear();
            out.show(&answer?, |detail| {
                render::uploaded(args.app.as_str(), detail)
            });
        }
        Command::Submit(SubmitArgs { version, notes }) => {
            let body = match notes {
                Some(notes) => json!({"notes": notes}),
                None => json!({}),
            };
            transition(&signed_in()?, &out, &version, "submit", &body).await?;
        }
        Command::Withdraw(version) => {
            transition(&signed_in()?, &out, &version, "withdraw", &json!({})).await?;
        }
        Command::Trial(version) => {
            transition(&signed_in()?, &out, &version, "trial", &json!({})).await?;
        }
        Command::Status(AppArgs { app }) => {
            let status = signed_in()?.get(&format!("/v1/apps/{app}")).await?;
            out.show(&status, render::app_status);
        }
        Command::Review(ReviewCommand::Queue) => {
            let queue = signed_in()?.get("/v1/review/queue").await?;
            out.show(&queue, render::review_queue);
        }
        Command::Review(ReviewCommand::Show { appid, version }) => {
            let detail = signed_in()?
                .get(&format!("/v1/review/{appid}/{version}"))
                .await?;
            out.show(&detail, render::version_detail);
        }
        Command::Review(ReviewCommand::Approve {
            appid,
            version,
            reason,
        }) => {
            let body = match reason {
                Some(reason) => json!({"reason": reason}),
                None => json!({}),
            };
            let summary = signed_in()?
                .post(&format!("/v1/review/{appid}/{version}/approve"), &body)
                .await?;
            out.show(&summary, |summary| {
                render::version_state(appid.as_str(), summary)
            });
        }
        Command::Review(ReviewCommand::Reject {
            appid,
            version,
            reason,
        }) => {
            let summary = signed_in()?
                .post(
                    &format!("/v1/review/{appid}/{version}/reject"),
                    &json!({"reason": reason}),
                )
                .await?;
            out.show(&summary, |summary| {
                render::version_state(appid.as_str(), summary)
            });
        }
        Command::Release(ReleaseArgs { version, percent }) => {
            let status = signed_in()?
                .post(
                    &format!("/v1/apps/{}/release", version.app),
                    &json!({"version": version.version, "percent": percent}),
                )
                .await?;
            out.show(&status, render::released);
        }
        Command::Rollback(AppArgs { app }) => {
            let status = signed_in()?
                .post(&format!("/v1/apps/{app}/rollback"), &json!({}))
                .await?;
            out.show(&status, render::released);
        }
    }
    Ok(())
}

/// A developer's move of one version: `trial`, `submit` or `withdraw`.
async fn transition(
    client: &Client,
    out: &Output,
    target: &VersionArgs,
    action: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let VersionArgs { app, version } = target;
    let summary = client
        .post(&format!("/v1/apps/{app}/versions/{version}/{action}"), body)
        .await?;
    out.show(&summary, |summary| {
        render::version_state(app.as_str(), summary)
    });
    Ok(())
}

/// Where answers go: stdout, as text for people or as the server's JSON.
struct Output {
    json: bool,
}

impl Output {
    /// Prints `answer` pretty-printed with `--json` (nothing for an empty
    /// answer), else its rendering for people.
    fn show(&self, answer: &Value, human: impl FnOnce(&Value) -> String) {
        if !self.json {
            print!("{}", human(answer));
        } else if !answer.is_null() {
            println!(
                "{}",
                serde_json::to_string_pretty(answer).expect("a JSON value serializes")
            );
        }
    }
}

/// The password given on stdin: its first line, without the line ending.
fn password_line(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_string())
}

/// A server URL given on the command line: http or https, kept without a
/// trailing `/` so paths append to it.
fn parse_server(raw: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(raw).map_err(|err| format!("{raw:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?} is not an http:// or https:// URL"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_of_stdin_as_typed() {
        let read = |input: &str| password_line(input.as_bytes()).unwrap();
        assert_eq!(read("hunter2\n"), "hunter2");
        assert_eq!(read("hunter2\r\nrest\n"), "hunter2");
        assert_eq!(read("  spaced out  \n"), "  spaced out  ");
        assert_eq!(read("no newline"), "no newline");
        assert_eq!(read(""), "");
    }

    #[test]
    fn servers_are_http_urls_kept_without_a_trailing_slash() {
        assert_eq!(
            parse_server("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            parse_server("https://miniapp.example").unwrap(),
            "https://miniapp.example"
        );
        assert!(parse_server("127.0.0.1:8080").is_err());
        assert!(parse_server("ftp://example.com").is_err());
    }
}
