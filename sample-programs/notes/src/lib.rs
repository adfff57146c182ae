//! The storage sample for one user's data: each signed-in user's own notes,
//! kept in the user scope, so no user ever sees another's.
//!
//! | route | answer |
//! |---|---|
//! | `GET /notes` | `{"notes":[{"id":"...","text":"..."}]}`, every note of the caller, in id byte order |
//! | `PUT /notes/:id` | the body, UTF-8 text, becomes the note's text: `{"id":"...","version":N}` |
//! | `GET /notes/:id` | `{"id":"...","text":"...","version":N}`; 404 when there is no such note |
//! | `DELETE /notes/:id` | 204; 404 when there was no such note |
//!
//! A note `id` is stored under the key `note/<id>` (the id percent-decoded,
//! at most 251 bytes so that the key fits in 256). Errors answer
//! `{"error":<kind>,"detail":"..."}`: 401 `denied` when there is no
//! signed-in user, 413 `quota-exceeded` when the note or the user's notes
//! grow too big, 400 `invalid` for an id too long or a body that is not
//! UTF-8, 404 `not-found`, and 500 with its kind for any other error. It logs
//! one `info` line per request and imports `miniapp:host/storage` and
//! `miniapp:host/log`; its manifest declares the `storage` capability.

use miniapp_sdk::storage::{self, Entry, Scope};
use miniapp_sdk::{Error, MiniProgram, Params, Request, Response, Router, info, json};

/// The program's type, exported below.
pub struct Notes;

impl MiniProgram for Notes {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .get("/notes", |_, _| list_response(all_notes()))
            .get("/notes/:id", read)
            .put("/notes/:id", write)
            .delete("/notes/:id", remove)
            .handle(&request)
    }
}

miniapp_sdk::export!(Notes);

/// The prefix of every note's key.
const PREFIX: &str = "note/";

/// A note as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Note {
    id: String,
    text: String,
}

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// Every note of the caller: the keys under [`PREFIX`], page after page,
/// then each one's text.
fn all_notes() -> Result<Vec<Note>, Error> {
    let mut notes = Vec::new();
    for key in storage::keys(Scope::User, PREFIX) {
        let key = key?;
        // A note deleted since its key was listed is left out.
        if let Some(entry) = storage::get(Scope::User, &key)? {
            let id = key.strip_prefix(PREFIX).unwrap_or(&key).to_owned();
            notes.push(Note {
                id,
                text: text_of(&entry),
            });
        }
    }
    Ok(notes)
}

fn read(_: &Request, params: &Params) -> Response {
    let id = params.get("id").unwrap_or_default();
    read_response(id, storage::get(Scope::User, &key(id)))
}

fn write(request: &Request, params: &Params) -> Response {
    let id = params.get("id").unwrap_or_default();
    let Ok(text) = request.body_text() else {
        return error_response(&Error::Invalid("a note is UTF-8 text".into()));
    };
    write_response(id, storage::set(Scope::User, &key(id), text))
}

fn remove(_: &Request, params: &Params) -> Response {
    let id = params.get("id").unwrap_or_default();
    remove_response(id, storage::delete(Scope::User, &key(id)))
}

fn list_response(notes: Result<Vec<Note>, Error>) -> Response {
    match notes {
        Ok(notes) => {
            let notes: Vec<String> = notes
                .iter()
                .map(|note| {
                    json::Object::new()
                        .string("id", &note.id)
                        .string("text", &note.text)
                        .finish()
                })
                .collect();
            let body = json::Object::new()
                .raw("notes", &format!("[{}]", notes.join(",")))
                .finish();
            Response::json_raw(200, body)
        }
        Err(error) => error_response(&error),
    }
}

fn read_response(id: &str, entry: Result<Option<Entry>, Error>) -> Response {
    match entry {
        Ok(Some(entry)) => {
            let body = json::Object::new()
                .string("id", id)
                .string("text", &text_of(&entry))
                .number("version", entry.version)
                .finish();
            Response::json_raw(200, body)
        }
        Ok(None) => no_such_note(id),
        Err(error) => error_response(&error),
    }
}

fn write_response(id: &str, version: Result<u64, Error>) -> Response {
    match version {
        Ok(version) => {
            let body = json::Object::new()
                .string("id", id)
                .number("version", version)
                .finish();
            Response::json_raw(200, body)
        }
        Err(error) => error_response(&error),
    }
}

fn remove_response(id: &str, existed: Result<bool, Error>) -> Response {
    match existed {
        Ok(true) => Response::new(204),
        Ok(false) => no_such_note(id),
        Err(error) => error_response(&error),
    }
}

/// The note's text. Only this program writes notes, always as UTF-8; should
/// anything else be there, it is shown with U+FFFD, not refused.
fn text_of(entry: &Entry) -> String {
    String::from_utf8_lossy(&entry.value).into_owned()
}

fn no_such_note(id: &str) -> Response {
    error_response(&Error::NotFound(format!("no note {id:?}")))
}

/// `{"error":<kind>,"detail":<detail>}` with this program's status for the
/// kind: 401 for `denied`, as only a missing sign-in denies a note, and 500
/// for what the user cannot fix.
fn error_response(error: &Error) -> Response {
    let status = match error {
        Error::Denied(_) => 401,
        Error::QuotaExceeded(_) => 413,
        Error::Invalid(_) => 400,
        Error::NotFound(_) => 404,
        _ => 500,
    };
    Response::error(status, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(response: Response) -> (u16, String) {
        let body = response.body_text().unwrap().to_owned();
        (response.status, body)
    }

    #[test]
    fn the_list_shows_every_note_with_its_id_and_text() {
        let notes = vec![
            Note {
                id: "1".into(),
                text: "milk".into(),
            },
            Note {
                id: "2".into(),
                text: "say \"hi\"".into(),
            },
        ];
        assert_eq!(
            answer(list_response(Ok(notes))),
            (
                200,
                r#"{"notes":[{"id":"1","text":"milk"},{"id":"2","text":"say \"hi\""}]}"#.to_owned()
            )
        );
        assert_eq!(
            answer(list_response(Ok(Vec::new()))),
            (200, r#"{"notes":[]}"#.to_owned())
        );
    }

    #[test]
    fn a_note_is_answered_with_its_version() {
        let entry = Entry {
            value: b"milk".to_vec(),
            version: 3,
        };
        assert_eq!(
            answer(read_response("1", Ok(Some(entry)))),
            (200, r#"{"id":"1","text":"milk","version":3}"#.to_owned())
        );
        assert_eq!(
            answer(write_response("1", Ok(4))),
            (200, r#"{"id":"1","version":4}"#.to_owned())
        );
    }

    #[test]
    fn a_missing_note_is_404() {
        assert_eq!(
            answer(read_response("7", Ok(None))),
            (
                404,
                r#"{"error":"not-found","detail":"no note \"7\""}"#.to_owned()
            )
        );
        assert_eq!(remove_response("7", Ok(false)).status, 404);
        assert_eq!(remove_response("7", Ok(true)).status, 204);
    }

    #[test]
    fn no_signed_in_user_is_401() {
        let denied = Error::Denied("no signed-in user".into());
        assert_eq!(
            answer(list_response(Err(denied.clone()))),
            (
                401,
                r#"{"error":"denied","detail":"no signed-in user"}"#.to_owned()
            )
        );
        assert_eq!(read_response("1", Err(denied.clone())).status, 401);
        assert_eq!(write_response("1", Err(denied.clone())).status, 401);
        assert_eq!(remove_response("1", Err(denied)).status, 401);
    }

    #[test]
    fn errors_get_the_status_of_their_kind() {
        let cases = [
            (Error::QuotaExceeded("10 MiB".into()), 413),
            (Error::Invalid("key too long".into()), 400),
            (Error::Unavailable("database".into()), 500),
            (Error::Conflict("stale".into()), 500),
        ];
        for (error, status) in cases {
            let response = write_response("1", Err(error.clone()));
            assert_eq!(response.status, status, "{error}");
            let expected = format!(r#""error":"{}""#, error.kind());
            assert!(response.body_text().unwrap().contains(&expected));
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_before_storage() {
        let request = Request::new("PUT", "/notes/1").with_body(vec![0xff, 0xfe]);
        let (status, body) = answer(Notes::handle(request));
        assert_eq!(status, 400);
        assert!(body.contains(r#""error":"invalid""#), "{body}");
    }

    #[test]
    fn off_wasm_the_routes_reach_no_host() {
        for (method, target) in [
            ("GET", "/notes"),
            ("GET", "/notes/1"),
            ("PUT", "/notes/1"),
            ("DELETE", "/notes/1"),
        ] {
            let (status, body) = answer(Notes::handle(Request::new(method, target)));
            assert_eq!(status, 500, "{method} {target}");
            assert!(body.contains(r#""error":"unavailable""#), "{body}");
        }
        assert_eq!(Notes::handle(Request::new("POST", "/notes")).status, 405);
        assert_eq!(Notes::handle(Request::new("GET", "/nowhere")).status, 404);
    }
}
