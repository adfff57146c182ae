//! Human renderings of the API's JSON answers: plain text and tables. Each
//! function takes the answer as the server sent it and returns the text to
//! print; a field the server left out shows as `-`, never a panic.

use std::fmt::Write as _;

use serde_json::Value;

/// After `login`.
pub fn session(server: &str, session: &Value) -> String {
    let account = &session["account"];
    format!(
        "Logged in to {server} as {} ({}). The session expires {}.\n",
        text(&account["username"]),
        roles(&account["roles"]),
        time(&session["expires_at"]),
    )
}

/// After `app create`: the appid, and the secret the server shows only once.
pub fn app_created(app: &Value) -> String {
    format!(
        "Created app {appid} ({name}).\n\
         appid:  {appid}\n\
         secret: {secret}\n\
         The secret is shown only this once: store it now. It cannot be read back later, only rotated.\n",
        appid = text(&app["appid"]),
        name = text(&app["name"]),
        secret = text(&app["secret"]),
    )
}

/// After `upload`: the new version, its sha256 and its capability diff.
pub fn uploaded(appid: &str, detail: &Value) -> String {
    let mut out = format!(
        "Uploaded {appid} version {} ({}, {}), now in {}.\n\
         sha256: {}\n",
        text(&detail["version"]),
        text(&detail["label"]),
        size(&detail["size"]),
        text(&detail["state"]),
        text(&detail["sha256"]),
    );
    out.push_str(&capabilities(&detail["capabilities"]));
    out
}

/// The capability diff of a version: what its manifest declares, what its
/// component imports, and a warning for what is declared but never used.
pub fn capabilities(diff: &Value) -> String {
    let mut out = format!(
        "capabilities declared: {}\n\
         capabilities imported: {}\n",
        list(&diff["declared"]),
        list(&diff["imported"]),
    );
    if !is_empty_list(&diff["declared_not_imported"]) {
        let _ = writeln!(
            out,
            "warning: declared but not imported: {} (the component never uses them; \
             drop them from the manifest so users are not asked for them)",
            list(&diff["declared_not_imported"])
        );
    }
    out
}

/// After `submit`, `withdraw`, `trial`, `review approve`, `review reject`:
/// the version's new state.
pub fn version_state(appid: &str, summary: &Value) -> String {
    let mut out = format!(
        "{appid} version {} ({}) is now {}.\n",
        text(&summary["version"]),
        text(&summary["label"]),
        text(&summary["state"]),
    );
    if let Some(reason) = summary["review_reason"].as_str().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "reason: {reason}");
    }
    out
}

/// After `release` and `rollback`: what users now get.
pub fn released(status: &Value) -> String {
    format!(
        "{}: {}.\n",
        text(&status["appid"]),
        release(&status["release"])
    )
}

/// `status`: the app, its release and trial, and its versions as a table.
pub fn app_status(status: &Value) -> String {
    let mut out = format!("{} — {}\n", text(&status["appid"]), text(&status["name"]));
    if let Some(description) = status["description"].as_str().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "{description}");
    }
    let _ = writeln!(out, "owner:   {}", text(&status["owner"]));
    let _ = writeln!(out, "release: {}", release(&status["release"]));
    let trial = match &status["trial_version"] {
        Value::Null => "none".to_string(),
        version => format!("version {}", text(version)),
    };
    let _ = writeln!(out, "trial:   {trial}");
    let testers = match list(&status["testers"]).as_str() {
        "-" => "none".to_string(),
        testers => testers.to_string(),
    };
    let _ = writeln!(out, "testers: {testers}");
    out.push('\n');
    let versions = status["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if versions.is_empty() {
        out.push_str("No versions yet: upload one with `miniapp upload`.\n");
        return out;
    }
    let rows = versions
        .iter()
        .map(|v| {
            vec![
                text(&v["version"]),
                text(&v["label"]),
                text(&v["state"]),
                size(&v["size"]),
                short_sha(&v["sha256"]),
                time(&v["created_at"]),
                review(v),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "VERSION", "LABEL", "STATE", "SIZE", "SHA256", "CREATED", "REVIEW",
        ],
        rows,
    ));
    out
}

/// `review queue`: what waits for review, oldest first.
pub fn review_queue(queue: &Value) -> String {
    let entries = queue["queue"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if entries.is_empty() {
        return "The review queue is empty.\n".to_string();
    }
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                text(&e["appid"]),
                text(&e["version"]),
                text(&e["label"]),
                text(&e["name"]),
                text(&e["developer"]),
                time(&e["submitted_at"]),
            ]
        })
        .collect();
    table(
        &[
            "APPID",
            "VERSION",
            "LABEL",
            "NAME",
            "DEVELOPER",
            "SUBMITTED",
        ],
        rows,
    )
}

/// `review show`: everything a reviewer decides on.
pub fn version_detail(detail: &Value) -> String {
    let mut out = format!(
        "{} version {} ({}): {}\n",
        text(&detail["appid"]),
        text(&detail["version"]),
        text(&detail["label"]),
        text(&detail["state"]),
    );
    let fields = [
        ("developer", text(&detail["developer"])),
        ("submitted", time(&detail["submitted_at"])),
        ("size", size(&detail["size"])),
        ("sha256", text(&detail["sha256"])),
        ("imports", list(&detail["imports"])),
        ("exports", list(&detail["exports"])),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "{name:<10} {value}");
    }
    out.push_str(&capabilities(&detail["capabilities"]));
    let notes = detail["notes"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("-");
    let _ = writeln!(out, "notes: {notes}");
    let manifest = serde_json::to_string_pretty(&detail["manifest"]).unwrap_or_default();
    let _ = writeln!(out, "manifest:\n{manifest}");
    out
}

/// A table: a header row, then rows, columns padded to their widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A release as users see it: which version, to what share of them.
fn release(release: &Value) -> String {
    if release.is_null() {
        return "not released".to_string();
    }
    let mut out = format!(
        "version {} released to {}% of users",
        text(&release["version"]),
        text(&release["percent"])
    );
    match &release["fallback_version"] {
        Value::Null if release["percent"] == 100 => {}
        Value::Null => out.push_str(", none to the rest"),
        fallback => {
            let _ = write!(out, ", version {} to the rest", text(fallback));
        }
    }
    out
}

/// A version's review: who decided, and why.
fn review(version: &Value) -> String {
    match (
        version["reviewer"].as_str(),
        version["review_reason"].as_str().filter(|r| !r.is_empty()),
    ) {
        (Some(reviewer), Some(reason)) => format!("{reviewer}: {reason}"),
        (Some(reviewer), None) => reviewer.to_string(),
        (None, _) => "-".to_string(),
    }
}

fn roles(roles: &Value) -> String {
    match list(roles).as_str() {
        "-" => "no extra roles".to_string(),
        roles => format!("roles: {roles}"),
    }
}

/// A scalar as plain text: strings unquoted, `-` for absent.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A list as `a, b, c`; `-` when empty or absent.
fn list(value: &Value) -> String {
    match value.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(text).collect::<Vec<_>>().join(", "),
        _ => "-".to_string(),
    }
}

fn is_empty_list(value: &Value) -> bool {
    value.as_array().is_none_or(Vec::is_empty)
}

fn short_sha(value: &Value) -> String {
    match value.as_str() {
        Some(sha) => sha.chars().take(12).collect(),
        None => "-".to_string(),
    }
}

/// A byte count in B, KiB or MiB.
fn size(value: &Value) -> String {
    let Some(bytes) = value.as_u64() else {
        return text(value);
    };
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1048576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1048576.0),
    }
}

/// A time the API gives as milliseconds since the Unix epoch, in UTC to the minute.
fn time(value: &Value) -> String {
    let Some(ms) = value.as_i64() else {
        return text(value);
    };
    let secs = ms.div_euclid(1000);
    let (days, secs_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn summary(version: i64, state: &str) -> Value {
        json!({
            "version": version, "label": "1.0.0", "state": state,
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "size": 2048, "created_at": 1_700_000_000_000_i64, "submitted_at": null,
            "reviewed_at": null, "reviewer": null, "review_reason": null,
        })
    }

    #[test]
    fn a_created_app_shows_its_secret_and_that_it_is_shown_once() {
        let out = app_created(&json!({
            "appid": "shop", "name": "Shop", "description": "", "owner": "dana",
            "created_at": 0, "secret": "s3cr3t",
        }));
        assert!(out.contains("appid:  shop\n"), "{out}");
        assert!(out.contains("secret: s3cr3t\n"), "{out}");
        assert!(out.contains("shown only this once"), "{out}");
    }

    #[test]
    fn an_upload_shows_version_sha_and_warns_of_unused_capabilities() {
        let mut detail = summary(3, "development");
        detail["capabilities"] = json!({
            "declared": ["identity", "payments"],
            "imported": ["identity"],
            "declared_not_imported": ["payments"],
        });
        let out = uploaded("shop", &detail);
        assert!(
            out.starts_with("Uploaded shop version 3 (1.0.0, 2.0 KiB), now in development.\n"),
            "{out}"
        );
        assert!(out.contains("sha256: ba7816bf8f01cfea"), "{out}");
        assert!(
            out.contains("capabilities declared: identity, payments\n"),
            "{out}"
        );
        assert!(out.contains("capabilities imported: identity\n"), "{out}");
        assert!(
            out.contains("warning: declared but not imported: payments"),
            "{out}"
        );
    }

    #[test]
    fn an_upload_using_all_it_declares_has_no_warning() {
        let out = capabilities(&json!({
            "declared": [], "imported": [], "declared_not_imported": [],
        }));
        assert_eq!(out, "capabilities declared: -\ncapabilities imported: -\n");
    }

    #[test]
    fn the_status_table_lines_up_versions_under_their_headers() {
        let mut rejected = summary(1, "rejected");
        rejected["reviewer"] = json!("remy");
        rejected["review_reason"] = json!("crashes on start");
        let status = json!({
            "appid": "shop", "name": "Shop", "description": "", "owner": "dana",
            "created_at": 0,
            "release": {"version": 2, "percent": 10, "fallback_version": 1},
            "trial_version": null, "testers": ["tess"],
            "versions": [summary(2, "released"), rejected],
        });
        let out = app_status(&status);
        let expected = "\
shop — Shop
owner:   dana
release: version 2 released to 10% of users, version 1 to the rest
trial:   none
testers: tess

VERSION  LABEL  STATE     SIZE     SHA256        CREATED               REVIEW
2        1.0.0  released  2.0 KiB  ba7816bf8f01  2023-11-14 22:13 UTC  -
1        1.0.0  rejected  2.0 KiB  ba7816bf8f01  2023-11-14 22:13 UTC  remy: crashes on start
";
        assert_eq!(out, expected);
    }

    #[test]
    fn an_app_without_versions_says_how_to_add_one() {
        let out = app_status(&json!({
            "appid": "shop", "name": "Shop", "release": null, "trial_version": null,
            "testers": [], "versions": [],
        }));
        assert!(out.contains("release: not released\n"), "{out}");
        let phased = json!({"appid": "shop", "release": {"version": 1, "percent": 5, "fallback_version": null}});
        assert_eq!(
            released(&phased),
            "shop: version 1 released to 5% of users, none to the rest.\n"
        );
        assert!(out.contains("miniapp upload"), "{out}");
    }

    #[test]
    fn the_review_queue_is_a_table_or_says_it_is_empty() {
        assert_eq!(
            review_queue(&json!({"queue": []})),
            "The review queue is empty.\n"
        );
        let out = review_queue(&json!({"queue": [{
            "appid": "shop", "version": 2, "label": "1.1.0", "name": "Shop",
            "developer": "dana", "submitted_at": 0,
        }]}));
        assert_eq!(
            out,
            "APPID  VERSION  LABEL  NAME  DEVELOPER  SUBMITTED\n\
             shop   2        1.1.0  Shop  dana       1970-01-01 00:00 UTC\n"
        );
    }

    #[test]
    fn a_decision_shows_the_new_state_and_its_reason() {
        let mut rejected = summary(4, "rejected");
        rejected["review_reason"] = json!("asks for payments it never uses");
        assert_eq!(
            version_state("shop", &rejected),
            "shop version 4 (1.0.0) is now rejected.\nreason: asks for payments it never uses\n"
        );
    }

    #[test]
    fn fields_the_server_left_out_show_as_dashes() {
        let out = version_detail(&json!({}));
        assert!(out.starts_with("- version - (-): -\n"), "{out}");
        assert_eq!(
            released(&json!({"appid": "shop", "release": null})),
            "shop: not released.\n"
        );
    }

    #[test]
    fn times_are_utc_dates_from_epoch_milliseconds() {
        assert_eq!(time(&json!(0)), "1970-01-01 00:00 UTC");
        assert_eq!(time(&json!(951_782_400_000_i64)), "2000-02-29 00:00 UTC");
        assert_eq!(time(&json!(1_700_000_000_000_i64)), "2023-11-14 22:13 UTC");
        assert_eq!(time(&json!(-60_000)), "1969-12-31 23:59 UTC");
        assert_eq!(time(&json!("2024-01-01T00:00:00Z")), "2024-01-01T00:00:00Z");
        assert_eq!(time(&Value::Null), "-");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(&json!(512)), "512 B");
        assert_eq!(size(&json!(1536)), "1.5 KiB");
        assert_eq!(size(&json!(3 << 20)), "3.0 MiB");
    }
}
