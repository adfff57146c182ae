//! The storage sample for shared data: scores every user of the app shares,
//! kept in the app scope, updated concurrently without losing a point.
//!
//! | route | answer |
//! |---|---|
//! | `POST /score/:player?points=N` | adds N (a whole number, 0 or more) to the player's score: `{"player":"...","score":S}` |
//! | `GET /score/:player` | `{"player":"...","score":S}`, 0 for a player with no score yet |
//! | `GET /top` | `[{"player":"...","score":S}]`, the ten best players, best first (of equal scores, names in byte order); `[]` before the first score |
//!
//! A player's score lives at the key `score/<player>` and grows by
//! `increment`, which is atomic: concurrent points all count. The top ten
//! live at the key `top`, one `<player> <score>` line each, and are updated
//! by a compare-and-swap loop: read the list and its version, put the
//! player's score in, swap the new list in with the version read, and start
//! again on a conflict, 20 times at most. Scores only grow (points are never
//! negative), so the list keeps the higher of two scores it sees for one
//! player, whichever update lands last.
//!
//! A player's name is 1 to 64 bytes (percent-decoded) with no whitespace or
//! control characters; a bad name or `points` answers 400. Errors answer
//! `{"error":<kind>,"detail":"..."}`: 400 `invalid`, 413 `quota-exceeded`,
//! 503 `conflict` when the top list stayed contended through every attempt
//! (the points are counted; the list catches up at the player's next
//! score), and 500 with its kind for any other error. It logs one `info`
//! line per request and imports `miniapp:host/storage` and
//! `miniapp:host/log`; its manifest declares the `storage` capability.

use miniapp_sdk::storage::{self, Scope};
use miniapp_sdk::{Error, MiniProgram, Params, Request, Response, Router, info, json};

/// The program's type, exported below.
pub struct Leaderboard;

impl MiniProgram for Leaderboard {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .post("/score/:player", add_points)
            .get("/score/:player", read_score)
            .get("/top", |_, _| top_response(read_top().map(|(_, top)| top)))
            .handle(&request)
    }
}

miniapp_sdk::export!(Leaderboard);

/// The key of the top list.
const TOP_KEY: &str = "top";
/// How many players the top list holds.
const TOP_SIZE: usize = 10;
/// How many times a top-list update is tried before the request gives up.
const TOP_ATTEMPTS: u32 = 20;
/// The longest player name, in bytes.
const MAX_PLAYER_BYTES: usize = 64;

/// A player's name, checked: 1 to 64 bytes, no whitespace, no control
/// characters (so that it fits in a key and in a line of the top list).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Player(String);

impl Player {
    fn parse(name: &str) -> Result<Self, Error> {
        if name.is_empty() || name.len() > MAX_PLAYER_BYTES {
            return Err(Error::Invalid(format!(
                "a player's name is 1 to {MAX_PLAYER_BYTES} bytes"
            )));
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Invalid(
                "a player's name has no whitespace or control characters".into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    fn score_key(&self) -> String {
        format!("score/{}", self.0)
    }
}

/// One line of the top list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rank {
    player: String,
    score: i64,
}

fn add_points(request: &Request, params: &Params) -> Response {
    score_response(add(request, params))
}

fn add(request: &Request, params: &Params) -> Result<(Player, i64), Error> {
    let player = Player::parse(params.get("player").unwrap_or_default())?;
    let points = request
        .query_param("points")
        .and_then(|points| points.parse::<i64>().ok())
        .filter(|points| *points >= 0)
        .ok_or_else(|| Error::Invalid("points=N, a whole number, 0 or more".into()))?;
    let score = storage::increment(Scope::App, &player.score_key(), points)?;
    retry_on_conflict(TOP_ATTEMPTS, || update_top(&player, score)).map_err(
        |error| match error {
            Error::Conflict(detail) => Error::Conflict(format!(
                "{detail}; the score is {score}, the top list catches up at the player's next score"
            )),
            other => other,
        },
    )?;
    Ok((player, score))
}

fn read_score(_: &Request, params: &Params) -> Response {
    let score = Player::parse(params.get("player").unwrap_or_default()).and_then(|player| {
        let score = match storage::get(Scope::App, &player.score_key())? {
            Some(entry) => parse_score(&entry.value)?,
            None => 0,
        };
        Ok((player, score))
    });
    score_response(score)
}

/// A score as `increment` stores it: decimal ASCII.
fn parse_score(value: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Invalid("a stored score is not a number".into()))
}

/// The top list and its version (0 while there is none).
fn read_top() -> Result<(u64, Vec<Rank>), Error> {
    Ok(match storage::get(Scope::App, TOP_KEY)? {
        Some(entry) => (entry.version, decode_top(&entry.value)),
        None => (0, Vec::new()),
    })
}

/// One attempt at putting `score` into the top list: read it, rank the
/// player, and swap the new list in if it changed. [`Error::Conflict`] when
/// another call changed the list since it was read.
fn update_top(player: &Player, score: i64) -> Result<(), Error> {
    let (version, top) = read_top()?;
    let ranked = with_score(&top, &player.0, score);
    if ranked != top {
        storage::compare_and_swap(Scope::App, TOP_KEY, version, encode_top(&ranked))?;
    }
    Ok(())
}

/// Runs `attempt` until it answers anything but [`Error::Conflict`], at most
/// `attempts` times.
fn retry_on_conflict<T>(
    attempts: u32,
    mut attempt: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    for _ in 0..attempts {
        match attempt() {
            Err(Error::Conflict(_)) => continue,
            outcome => return outcome,
        }
    }
    Err(Error::Conflict(format!(
        "the top list stayed contended for {attempts} attempts"
    )))
}

/// `top` with `player` at `score`, or at the score the list already has for
/// them if that is higher (scores only grow, so the higher is the newer),
/// best first, at most [`TOP_SIZE`] players.
fn with_score(top: &[Rank], player: &str, score: i64) -> Vec<Rank> {
    let score = top
        .iter()
        .filter(|rank| rank.player == player)
        .map(|rank| rank.score)
        .fold(score, i64::max);
    let mut ranked: Vec<Rank> = top
        .iter()
        .filter(|rank| rank.player != player)
        .cloned()
        .collect();
    ranked.push(Rank {
        player: player.to_owned(),
        score,
    });
    ranked.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.player.cmp(&b.player)));
    ranked.truncate(TOP_SIZE);
    ranked
}

/// The stored form of the top list: `<player> <score>\n` per player.
fn encode_top(top: &[Rank]) -> String {
    top.iter()
        .map(|rank| format!("{} {}\n", rank.player, rank.score))
        .collect()
}

/// Reads the stored form back, skipping any line that is not
/// `<player> <score>`.
fn decode_top(stored: &[u8]) -> Vec<Rank> {
    String::from_utf8_lossy(stored)
        .lines()
        .filter_map(|line| {
            let (player, score) = line.rsplit_once(' ')?;
            let player = Player::parse(player).ok()?;
            Some(Rank {
                player: player.0,
                score: score.parse().ok()?,
            })
        })
        .collect()
}

fn score_json(player: &str, score: i64) -> String {
    json::Object::new()
        .string("player", player)
        .number("score", score)
        .finish()
}

fn score_response(score: Result<(Player, i64), Error>) -> Response {
    match score {
        Ok((player, score)) => Response::json_raw(200, score_json(&player.0, score)),
        Err(error) => error_response(&error),
    }
}

fn top_response(top: Result<Vec<Rank>, Error>) -> Response {
    match top {
        Ok(top) => {
            let ranks: Vec<String> = top
                .iter()
                .map(|rank| score_json(&rank.player, rank.score))
                .collect();
            Response::json_raw(200, format!("[{}]", ranks.join(",")))
        }
        Err(error) => error_response(&error),
    }
}

/// `{"error":<kind>,"detail":<detail>}` with this program's status for the
/// kind: 503 for `conflict`, a top list contended through every attempt,
/// which a later try may get through; 500 for what the user cannot fix.
fn error_response(error: &Error) -> Response {
    let status = match error {
        Error::Invalid(_) => 400,
        Error::QuotaExceeded(_) => 413,
        Error::Conflict(_) => 503,
        _ => 500,
    };
    Response::error(status, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(player: &str, score: i64) -> Rank {
        Rank {
            player: player.into(),
            score,
        }
    }

    fn answer(response: Response) -> (u16, String) {
        let body = response.body_text().unwrap().to_owned();
        (response.status, body)
    }

    #[test]
    fn a_new_player_takes_their_place_best_first() {
        let top = [rank("ada", 30), rank("bob", 10)];
        assert_eq!(
            with_score(&top, "cy", 20),
            [rank("ada", 30), rank("cy", 20), rank("bob", 10)]
        );
    }

    #[test]
    fn a_player_appears_once_with_their_higher_score() {
        let top = [rank("ada", 30), rank("bob", 10)];
        assert_eq!(
            with_score(&top, "bob", 40),
            [rank("bob", 40), rank("ada", 30)]
        );
        // An update that read its score before another's landed loses.
        assert_eq!(with_score(&top, "ada", 25), top);
    }

    #[test]
    fn equal_scores_rank_by_name_and_the_list_keeps_ten() {
        let top: Vec<Rank> = (0..10).map(|n| rank(&format!("p{n}"), 5)).collect();
        let ranked = with_score(&top, "a", 5);
        assert_eq!(ranked.len(), TOP_SIZE);
        assert_eq!(ranked[0], rank("a", 5));
        assert_eq!(ranked[9], rank("p8", 5));
        // A score below the tenth leaves the list as it was: no write.
        assert_eq!(with_score(&top, "z", 4), top);
    }

    #[test]
    fn the_stored_form_reads_back_and_skips_bad_lines() {
        let top = [rank("ada", 30), rank("Jörg", -2)];
        let stored = encode_top(&top);
        assert_eq!(stored, "ada 30\nJörg -2\n");
        assert_eq!(decode_top(stored.as_bytes()), top);
        assert_eq!(
            decode_top(b"ada 30\nnoscore\nbob x\n\ncy 7"),
            [rank("ada", 30), rank("cy", 7)]
        );
    }

    #[test]
    fn player_names_are_checked() {
        assert!(Player::parse("ada").is_ok());
        assert!(Player::parse("Jörg").is_ok());
        for bad in ["", "a b", "a\nb", &"x".repeat(65)] {
            assert!(
                matches!(Player::parse(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(Player::parse("ada").unwrap().score_key(), "score/ada");
    }

    #[test]
    fn conflicts_are_retried_until_an_attempt_succeeds() {
        let mut calls = 0;
        let outcome = retry_on_conflict(20, || {
            calls += 1;
            if calls < 5 {
                Err(Error::Conflict("stale".into()))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(outcome, Ok(5));
    }

    #[test]
    fn conflicts_give_up_after_the_last_attempt() {
        let mut calls = 0;
        let outcome: Result<(), Error> = retry_on_conflict(20, || {
            calls += 1;
            Err(Error::Conflict("stale".into()))
        });
        assert_eq!(calls, 20);
        let error = outcome.unwrap_err();
        assert_eq!(error_response(&error).status, 503);
        assert!(error.detail().contains("20 attempts"), "{error}");
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let outcome: Result<(), Error> = retry_on_conflict(20, || {
            calls += 1;
            Err(Error::Unavailable("database".into()))
        });
        assert_eq!(calls, 1);
        assert!(matches!(outcome, Err(Error::Unavailable(_))));
    }

    #[test]
    fn scores_and_the_top_list_answer_json() {
        let player = Player::parse("ada").unwrap();
        assert_eq!(
            answer(score_response(Ok((player, 42)))),
            (200, r#"{"player":"ada","score":42}"#.to_owned())
        );
        assert_eq!(
            answer(top_response(Ok(vec![rank("ada", 42), rank("bob", 7)]))),
            (
                200,
                r#"[{"player":"ada","score":42},{"player":"bob","score":7}]"#.to_owned()
            )
        );
        assert_eq!(answer(top_response(Ok(Vec::new()))), (200, "[]".to_owned()));
    }

    #[test]
    fn stored_scores_parse_as_increment_writes_them() {
        assert_eq!(parse_score(b"42"), Ok(42));
        assert_eq!(parse_score(b"-7"), Ok(-7));
        assert!(parse_score(b"4 2").is_err());
    }

    #[test]
    fn bad_points_and_names_are_400_before_storage() {
        for target in [
            "/score/ada",
            "/score/ada?points=",
            "/score/ada?points=-1",
            "/score/ada?points=1.5",
            "/score/a%20b?points=1",
        ] {
            let (status, body) = answer(Leaderboard::handle(Request::new("POST", target)));
            assert_eq!(status, 400, "{target}");
            assert!(body.contains(r#""error":"invalid""#), "{body}");
        }
    }

    #[test]
    fn off_wasm_the_routes_reach_no_host() {
        for (method, target) in [
            ("POST", "/score/ada?points=3"),
            ("GET", "/score/ada"),
            ("GET", "/top"),
        ] {
            let (status, body) = answer(Leaderboard::handle(Request::new(method, target)));
            assert_eq!(status, 500, "{method} {target}");
            assert!(body.contains(r#""error":"unavailable""#), "{body}");
        }
        assert_eq!(
            Leaderboard::handle(Request::new("GET", "/nowhere")).status,
            404
        );
    }
}
