//! Keeping data between calls: the `storage` import, a key-value store per
//! app with a part private to each user.
//!
//! Nothing a program holds in memory survives its call; what it stores here
//! does. The program picks a [`Scope`], the host decides whose data that is:
//! [`Scope::User`] reaches the signed-in caller's data in this app,
//! [`Scope::App`] the data every user of the app shares. Data belongs to the
//! app, not to a version, so a new version sees what the old one stored.
//!
//! Keys are strings of 1 to 256 bytes, listed in byte order; values are
//! bytes, up to 1 MiB each by default. Every key carries a version: 1 on its first
//! write, one more on every later write (a deleted key starts over at 1).
//!
//! # Consistency
//!
//! Every write is durable when the function returns, and every later read,
//! in the same call or another, sees it (read-your-writes). [`set`]
//! overwrites whatever is there, so of two calls that read, change and set
//! one key, one loses its change: for values that several calls update at
//! once, use [`compare_and_swap`] (retrying on [`Error::Conflict`]) or
//! [`increment`]. [`batch`] applies several writes as one.
//!
//! # Errors
//!
//! Every function may answer:
//!
//! - [`Error::Denied`] when the version's manifest does not declare the
//!   `storage` capability, or when the scope is [`Scope::User`] and the call
//!   has no signed-in user (an anonymous request, a platform event);
//! - [`Error::Invalid`] when a key is empty or over 256 bytes;
//! - [`Error::Unavailable`] when the platform's database failed; retrying
//!   later may work. A write that answers this may or may not have happened.
//!
//! Functions that write answer [`Error::QuotaExceeded`], and write nothing,
//! when a value is over 1 MiB or the write would take the scope past its
//! quota: 10 MiB for each user's data in an app, 100 MiB for the app scope,
//! counting keys and values. These are the defaults: a version's manifest
//! may ask for other quotas within the platform's maxima, and [`usage`]
//! tells where a scope stands and its quota in effect.
//!
//! Off WebAssembly (in a program's unit tests, say) there is no host, and
//! every function answers [`Error::Unavailable`].
//!
//! # Example
//!
//! ```
//! use miniapp_sdk::storage::{self, Scope};
//! use miniapp_sdk::{Error, Response, json};
//!
//! /// Counts the visits of the app, whoever makes them.
//! fn visit() -> Response {
//!     match storage::increment(Scope::App, "visits", 1) {
//!         Ok(visits) => Response::json_raw(200, json::Object::new().number("visits", visits).finish()),
//!         Err(Error::Unavailable(_)) => Response::text(503, "try again later"),
//!         Err(error) => Response::text(500, error.to_string()),
//!     }
//! }
//!
//! // Off WebAssembly there is no host to ask.
//! assert_eq!(visit().status, 503);
//! ```

use crate::Error;
use crate::bindings::miniapp::host::storage as wit;

/// The most keys [`list_keys`] answers in one page: 1000.
pub const MAX_PAGE_KEYS: u32 = 1000;

/// The most writes one [`batch`] may hold: 100.
pub const MAX_BATCH_WRITES: usize = 100;

/// Whose data a call reaches. The program picks the scope; the host decides
/// whose data it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Private to the calling user within this app. Needs a signed-in user:
    /// without one every function answers [`Error::Denied`].
    User,
    /// Shared by every user of this app.
    App,
}

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The value, as last written.
    pub value: Vec<u8>,
    /// 1 on the key's first write, one more on every later write of the key;
    /// what [`compare_and_swap`] expects.
    pub version: u64,
}

impl Entry {
    /// The value as UTF-8 text.
    ///
    /// ```
    /// use miniapp_sdk::storage::Entry;
    ///
    /// let entry = Entry { value: b"hello".to_vec(), version: 1 };
    /// assert_eq!(entry.text(), Ok("hello"));
    /// ```
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.value)
    }
}

/// One page of keys, in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Page {
    /// The keys of this page.
    pub keys: Vec<String>,
    /// Pass it to [`list_keys`] for the next page; `None` on the last page,
    /// when no matching key follows this page's keys.
    pub cursor: Option<String>,
}

/// One write of a [`batch`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Write {
    /// Sets the key (the first field) to the value (the second).
    Set(String, Vec<u8>),
    /// Deletes the key; deleting a key that does not exist is no error.
    Delete(String),
}

impl Write {
    /// A write that sets `key` to `value`.
    pub fn set(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Write::Set(key.into(), value.into())
    }

    /// A write that deletes `key`.
    pub fn delete(key: impl Into<String>) -> Self {
        Write::Delete(key.into())
    }
}

/// What a scope holds and may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Usage {
    /// How many keys the scope holds.
    pub keys: u64,
    /// How many bytes the scope holds, counting keys and values.
    pub bytes: u64,
    /// How many bytes the scope may hold: by default 10 MiB for a user's
    /// data in an app, 100 MiB for the app scope.
    pub limit_bytes: u64,
}

/// The value of `key` and its version; `None` when the key does not exist.
///
/// # Errors
///
/// [`Error::Denied`], [`Error::Invalid`] and [`Error::Unavailable`], as for
/// every function of this module.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
/// use miniapp_sdk::warn;
///
/// let theme = match storage::get(Scope::User, "settings/theme") {
///     Ok(Some(entry)) => entry.text().unwrap_or("light").to_owned(),
///     Ok(None) => "light".to_owned(),
///     Err(error) => {
///         warn!("no theme: {error}");
///         "light".to_owned()
///     }
/// };
/// assert_eq!(theme, "light");
/// ```
pub fn get(scope: Scope, key: &str) -> Result<Option<Entry>, Error> {
    host::get(scope.into(), key)
        .map(|entry| entry.map(Entry::from))
        .map_err(Error::from)
}

/// Sets `key` to `value`, whatever it held; returns the key's new version.
///
/// `value` is anything that is bytes: a `&str`, a `String`, a `Vec<u8>`, a
/// byte string.
///
/// # Errors
///
/// [`Error::QuotaExceeded`] when `value` is over the value quota (1 MiB by
/// default) or the scope's quota would be exceeded (nothing is written);
/// [`Error::Denied`], [`Error::Invalid`] and [`Error::Unavailable`] as for
/// every function.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
///
/// match storage::set(Scope::User, "settings/theme", "dark") {
///     Ok(version) => println!("theme saved, version {version}"),
///     Err(error) => eprintln!("theme not saved: {error}"),
/// }
/// ```
pub fn set(scope: Scope, key: &str, value: impl AsRef<[u8]>) -> Result<u64, Error> {
    host::set(scope.into(), key, value.as_ref()).map_err(Error::from)
}

/// Deletes `key`; returns whether it existed.
///
/// # Errors
///
/// [`Error::Denied`], [`Error::Invalid`] and [`Error::Unavailable`], as for
/// every function of this module.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
///
/// let existed = storage::delete(Scope::User, "draft").unwrap_or(false);
/// # let _ = existed;
/// ```
pub fn delete(scope: Scope, key: &str) -> Result<bool, Error> {
    host::delete(scope.into(), key).map_err(Error::from)
}

/// One page of the keys that start with `prefix` (every key when it is
/// empty), in byte order: those after `cursor`, at most `limit` of them.
///
/// Start with `cursor` `None`, then pass each page's [`Page::cursor`] back
/// until it is `None`; [`keys`] does that for you. Keys written or deleted
/// between pages may or may not be listed; a key that exists throughout is
/// listed exactly once.
///
/// # Errors
///
/// [`Error::Invalid`] when `limit` is not within 1 to [`MAX_PAGE_KEYS`],
/// `prefix` is over 256 bytes or `cursor` is not one a page gave;
/// [`Error::Denied`] and [`Error::Unavailable`] as for every function.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
///
/// fn first_drafts() -> Result<Vec<String>, miniapp_sdk::Error> {
///     let page = storage::list_keys(Scope::User, "draft/", None, 10)?;
///     Ok(page.keys)
/// }
/// # assert!(first_drafts().is_err());
/// ```
pub fn list_keys(
    scope: Scope,
    prefix: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page, Error> {
    host::list_keys(scope.into(), prefix, cursor, limit)
        .map(Page::from)
        .map_err(Error::from)
}

/// Every key that starts with `prefix`, in byte order, fetched a page of
/// [`MAX_PAGE_KEYS`] at a time through [`list_keys`] as the iterator
/// advances.
///
/// The iterator yields `Err` once, when fetching a page fails, and then
/// ends.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
///
/// fn draft_count() -> Result<usize, miniapp_sdk::Error> {
///     let mut count = 0;
///     for key in storage::keys(Scope::User, "draft/") {
///         let _key: String = key?;
///         count += 1;
///     }
///     Ok(count)
/// }
/// // Off WebAssembly, the first page already fails.
/// assert!(draft_count().is_err());
/// ```
pub fn keys(scope: Scope, prefix: &str) -> Keys {
    Keys::new(scope, prefix, list_keys)
}

/// The iterator of [`keys`].
#[derive(Debug)]
pub struct Keys {
    scope: Scope,
    prefix: String,
    fetch: ListKeys,
    page: std::vec::IntoIter<String>,
    next: NextPage,
}

/// What lists one page: [`list_keys`], or a stand-in in tests.
type ListKeys = fn(Scope, &str, Option<&str>, u32) -> Result<Page, Error>;

/// Where [`Keys`] goes when its page runs out.
#[derive(Debug)]
enum NextPage {
    First,
    After(String),
    None,
}

impl Keys {
    fn new(scope: Scope, prefix: &str, fetch: ListKeys) -> Self {
        Self {
            scope,
            prefix: prefix.to_owned(),
            fetch,
            page: Vec::new().into_iter(),
            next: NextPage::First,
        }
    }
}

impl Iterator for Keys {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.page.next() {
                return Some(Ok(key));
            }
            let cursor = match std::mem::replace(&mut self.next, NextPage::None) {
                NextPage::First => None,
                NextPage::After(cursor) => Some(cursor),
                NextPage::None => return None,
            };
            match (self.fetch)(self.scope, &self.prefix, cursor.as_deref(), MAX_PAGE_KEYS) {
                Ok(page) => {
                    self.page = page.keys.into_iter();
                    self.next = page.cursor.map_or(NextPage::None, NextPage::After);
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl std::iter::FusedIterator for Keys {}

/// Sets `key` to `value` only if the key's version is `expected_version`,
/// where 0 means that the key must not exist; returns the key's new version.
///
/// The way to update a value that other calls may update at the same time:
/// read it with [`get`], compute the new value, swap it in with the version
/// read, and start again from the read on [`Error::Conflict`]. Give up after
/// a few attempts: a call has a deadline.
///
/// # Errors
///
/// [`Error::Conflict`] when the key's version is not `expected_version`
/// (nothing is written); [`Error::QuotaExceeded`] as for [`set`];
/// [`Error::Denied`], [`Error::Invalid`] and [`Error::Unavailable`] as for
/// every function.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
/// use miniapp_sdk::Error;
///
/// /// Appends `name` to the comma-separated guest list.
/// fn sign_guest_book(name: &str) -> Result<(), Error> {
///     for _ in 0..10 {
///         let (version, mut list) = match storage::get(Scope::App, "guests")? {
///             Some(entry) => (entry.version, entry.value),
///             None => (0, Vec::new()),
///         };
///         if !list.is_empty() {
///             list.push(b',');
///         }
///         list.extend_from_slice(name.as_bytes());
///         match storage::compare_and_swap(Scope::App, "guests", version, list) {
///             Ok(_) => return Ok(()),
///             Err(Error::Conflict(_)) => continue,
///             Err(error) => return Err(error),
///         }
///     }
///     Err(Error::Conflict("the guest book is too busy".into()))
/// }
/// # assert!(sign_guest_book("Ada").is_err());
/// ```
pub fn compare_and_swap(
    scope: Scope,
    key: &str,
    expected_version: u64,
    value: impl AsRef<[u8]>,
) -> Result<u64, Error> {
    host::compare_and_swap(scope.into(), key, expected_version, value.as_ref()).map_err(Error::from)
}

/// Adds `delta` to the value of `key`, read as a signed 64-bit integer in
/// decimal ASCII (`42`, `-7`), a key that does not exist counting as 0;
/// stores the sum the same way and returns it.
///
/// Atomic: of concurrent increments of one key, every one counts. It is a
/// write of the key, so the key's version goes up by 1. Read the value back
/// with [`get`] and `str::parse::<i64>`.
///
/// # Errors
///
/// [`Error::Invalid`] when the value is not such an integer or the sum does
/// not fit in an `i64` (nothing is written); [`Error::QuotaExceeded`] when the
/// scope's quota would be exceeded; [`Error::Denied`], [`Error::Invalid`] and
/// [`Error::Unavailable`] as for every function.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
///
/// let likes = storage::increment(Scope::App, "likes/post-7", 1);
/// # assert!(likes.is_err());
/// ```
pub fn increment(scope: Scope, key: &str, delta: i64) -> Result<i64, Error> {
    host::increment(scope.into(), key, delta).map_err(Error::from)
}

/// Applies every write of `writes`, in order, or none of them: other calls
/// see either none of the batch or all of it. Of two writes of one key, the
/// later wins. An empty batch does nothing.
///
/// # Errors
///
/// Each leaves everything as it was: [`Error::Invalid`] when there are more
/// than [`MAX_BATCH_WRITES`] writes or any key is empty or over 256 bytes;
/// [`Error::QuotaExceeded`] when any value is over the value quota or the
/// batch would take the scope past its quota; [`Error::Denied`] and
/// [`Error::Unavailable`] as for every function.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope, Write};
///
/// // Moves a draft to the published notes, in one step.
/// let moved = storage::batch(
///     Scope::User,
///     &[Write::set("published/7", "the text"), Write::delete("draft/7")],
/// );
/// # assert!(moved.is_err());
/// ```
pub fn batch(scope: Scope, writes: &[Write]) -> Result<(), Error> {
    let writes: Vec<wit::Write> = writes.iter().map(wit::Write::from).collect();
    host::batch(scope.into(), &writes).map_err(Error::from)
}

/// What the scope holds and may hold.
///
/// # Errors
///
/// [`Error::Denied`] and [`Error::Unavailable`], as for every function of
/// this module.
///
/// ```
/// use miniapp_sdk::storage::{self, Scope};
///
/// if let Ok(usage) = storage::usage(Scope::User) {
///     println!("{} of {} bytes used", usage.bytes, usage.limit_bytes);
/// }
/// ```
pub fn usage(scope: Scope) -> Result<Usage, Error> {
    host::usage(scope.into())
        .map(Usage::from)
        .map_err(Error::from)
}

impl From<Scope> for wit::Scope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::User => wit::Scope::User,
            Scope::App => wit::Scope::App,
        }
    }
}

impl From<wit::Entry> for Entry {
    fn from(entry: wit::Entry) -> Self {
        Self {
            value: entry.value,
            version: entry.version,
        }
    }
}

impl From<wit::Page> for Page {
    fn from(page: wit::Page) -> Self {
        Self {
            keys: page.keys,
            cursor: page.cursor,
        }
    }
}

impl From<&Write> for wit::Write {
    fn from(write: &Write) -> Self {
        match write {
            Write::Set(key, value) => Self {
                key: key.clone(),
                value: Some(value.clone()),
            },
            Write::Delete(key) => Self {
                key: key.clone(),
                value: None,
            },
        }
    }
}

impl From<wit::UsageInfo> for Usage {
    fn from(usage: wit::UsageInfo) -> Self {
        Self {
            keys: usage.keys,
            bytes: usage.bytes,
            limit_bytes: usage.limit_bytes,
        }
    }
}

/// The host's functions: the imports on WebAssembly, stand-ins that answer
/// `unavailable` elsewhere.
#[cfg(target_arch = "wasm32")]
mod host {
    pub(super) use super::wit::{
        batch, compare_and_swap, delete, get, increment, list_keys, set, usage,
    };
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use super::wit;
    use crate::bindings::miniapp::host::types::Error;
    use crate::error::no_host;

    pub(super) fn get(_: wit::Scope, _: &str) -> Result<Option<wit::Entry>, Error> {
        Err(no_host("storage.get"))
    }

    pub(super) fn set(_: wit::Scope, _: &str, _: &[u8]) -> Result<u64, Error> {
        Err(no_host("storage.set"))
    }

    pub(super) fn delete(_: wit::Scope, _: &str) -> Result<bool, Error> {
        Err(no_host("storage.delete"))
    }

    pub(super) fn list_keys(
        _: wit::Scope,
        _: &str,
        _: Option<&str>,
        _: u32,
    ) -> Result<wit::Page, Error> {
        Err(no_host("storage.list-keys"))
    }

    pub(super) fn compare_and_swap(_: wit::Scope, _: &str, _: u64, _: &[u8]) -> Result<u64, Error> {
        Err(no_host("storage.compare-and-swap"))
    }

    pub(super) fn increment(_: wit::Scope, _: &str, _: i64) -> Result<i64, Error> {
        Err(no_host("storage.increment"))
    }

    pub(super) fn batch(_: wit::Scope, _: &[wit::Write]) -> Result<(), Error> {
        Err(no_host("storage.batch"))
    }

    pub(super) fn usage(_: wit::Scope) -> Result<wit::UsageInfo, Error> {
        Err(no_host("storage.usage"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_wasm_every_function_is_unavailable_and_names_itself() {
        let errors = [
            get(Scope::User, "k").unwrap_err(),
            set(Scope::User, "k", "v").unwrap_err(),
            delete(Scope::App, "k").unwrap_err(),
            list_keys(Scope::App, "", None, 10).unwrap_err(),
            compare_and_swap(Scope::User, "k", 0, b"v").unwrap_err(),
            increment(Scope::App, "k", 1).unwrap_err(),
            batch(Scope::User, &[Write::delete("k")]).unwrap_err(),
            usage(Scope::App).unwrap_err(),
        ];
        let functions = [
            "storage.get",
            "storage.set",
            "storage.delete",
            "storage.list-keys",
            "storage.compare-and-swap",
            "storage.increment",
            "storage.batch",
            "storage.usage",
        ];
        for (error, function) in errors.iter().zip(functions) {
            assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
            assert!(error.detail().starts_with(function), "{error}");
        }
    }

    #[test]
    fn scopes_convert_case_by_case() {
        assert_eq!(wit::Scope::from(Scope::User), wit::Scope::User);
        assert_eq!(wit::Scope::from(Scope::App), wit::Scope::App);
    }

    #[test]
    fn the_host_records_convert_field_by_field() {
        let entry = Entry::from(wit::Entry {
            value: b"v".to_vec(),
            version: 3,
        });
        assert_eq!(
            entry,
            Entry {
                value: b"v".to_vec(),
                version: 3
            }
        );
        let page = Page::from(wit::Page {
            keys: vec!["a".into(), "b".into()],
            cursor: Some("b".into()),
        });
        assert_eq!(page.keys, ["a", "b"]);
        assert_eq!(page.cursor.as_deref(), Some("b"));
        let usage = Usage::from(wit::UsageInfo {
            keys: 2,
            bytes: 40,
            limit_bytes: 10 << 20,
        });
        assert_eq!(
            usage,
            Usage {
                keys: 2,
                bytes: 40,
                limit_bytes: 10 << 20
            }
        );
    }

    #[test]
    fn a_set_carries_its_value_and_a_delete_none() {
        let set = wit::Write::from(&Write::set("k", "v"));
        assert_eq!(
            (set.key.as_str(), set.value.as_deref()),
            ("k", Some(&b"v"[..]))
        );
        let delete = wit::Write::from(&Write::delete("k"));
        assert_eq!((delete.key.as_str(), delete.value), ("k", None));
    }

    #[test]
    fn entry_text_rejects_invalid_utf8() {
        let entry = Entry {
            value: vec![0xff],
            version: 1,
        };
        assert!(entry.text().is_err());
    }

    /// Three keys under `p/`, two per page, with a cursor naming the last key
    /// of the page.
    fn two_per_page(
        scope: Scope,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, Error> {
        assert_eq!((scope, prefix, limit), (Scope::User, "p/", MAX_PAGE_KEYS));
        let all = ["p/a", "p/b", "p/c"];
        let start = match cursor {
            None => 0,
            Some(cursor) => all.iter().position(|key| *key == cursor).unwrap() + 1,
        };
        let keys: Vec<String> = all[start..].iter().take(2).map(|&key| key.into()).collect();
        let cursor = (start + 2 < all.len()).then(|| keys.last().unwrap().clone());
        Ok(Page { keys, cursor })
    }

    #[test]
    fn keys_follows_the_cursor_to_the_last_page() {
        let keys: Result<Vec<String>, Error> = Keys::new(Scope::User, "p/", two_per_page).collect();
        assert_eq!(keys.unwrap(), ["p/a", "p/b", "p/c"]);
    }

    #[test]
    fn keys_skips_empty_pages_that_still_have_a_cursor() {
        fn empty_then_one(_: Scope, _: &str, cursor: Option<&str>, _: u32) -> Result<Page, Error> {
            Ok(match cursor {
                None => Page {
                    keys: Vec::new(),
                    cursor: Some("c".into()),
                },
                Some(_) => Page {
                    keys: vec!["k".into()],
                    cursor: None,
                },
            })
        }
        let keys: Vec<_> = Keys::new(Scope::App, "", empty_then_one).collect();
        assert_eq!(keys, [Ok("k".to_owned())]);
    }

    #[test]
    fn keys_yields_a_failed_page_once_then_ends() {
        let mut keys = keys(Scope::App, "");
        assert!(matches!(keys.next(), Some(Err(Error::Unavailable(_)))));
        assert_eq!(keys.next(), None);
        assert_eq!(keys.next(), None);
    }
}
