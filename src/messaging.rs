//! The messaging capability's logic, after WeChat's subscribe messages and
//! customer-service messages: a program sends a user a notification only
//! under that user's subscription to its template, and replies to a user
//! only within 48 hours of their last message, five times at most.
//! Messages land in the user's inbox, numbered per user in commit order,
//! so a live stream resumes from the last number it delivered and loses
//! nothing, repeats nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

use crate::accounts::AccountId;
use crate::db::{Db, now_ms};
use crate::domain::AppId;

/// How long after a user's last message the app may reply: 48 hours.
pub const REPLY_WINDOW: Duration = Duration::from_secs(48 * 3600);

/// Replies an app may send after each message of the user.
pub const MAX_REPLIES: i64 = 5;

/// Default cap on notifications from one app to one user per UTC day.
pub const DEFAULT_DAILY_NOTIFICATIONS: i64 = 20;

/// The most templates a manifest declares, and fields a template has.
const MAX_TEMPLATES: usize = 50;
const MAX_FIELDS: usize = 10;

/// What live streams are told when the server shuts down: end.
pub const CLOSING: AccountId = -1;

/// The longest text of a chat message, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// The messaging section of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    /// The notification templates the program may send.
    #[serde(default)]
    pub templates: Vec<Template>,
}

/// A notification template: what a message of it says is fixed here, the
/// program fills the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: String,
    pub title: String,
    pub fields: Vec<TemplateField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateField {
    pub key: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub label: String,
}

/// What a template field's value may be, after WeChat's field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Any text, at most 20 characters.
    Thing,
    /// An optional `-`, digits with at most one `.`; at most 32 characters.
    Number,
    /// ASCII letters, at most 32.
    Letter,
    /// ASCII punctuation, at most 5.
    Symbol,
    /// ASCII letters, digits and punctuation, at most 32.
    CharacterString,
    /// A decimal with at most 2 decimals and 12 digits, optionally `¥…` or `…元`.
    Amount,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM`.
    Time,
    /// Digits, `+`, `-` and spaces, at most 17.
    PhoneNumber,
    /// Any text, at most 10 characters.
    Name,
    /// Any text, at most 5 characters.
    Phrase,
}

impl FieldType {
    /// Checks a value against the type; says what is wrong.
    pub fn check(self, value: &str) -> Result<(), String> {
        let chars = value.chars().count();
        if value.is_empty() {
            return Err("is empty".into());
        }
        if value.chars().any(char::is_control) {
            return Err("contains control characters".into());
        }
        let most = |limit: usize| {
            if chars <= limit {
                Ok(())
            } else {
                Err(format!("has {chars} characters; at most {limit}"))
            }
        };
        let all = |ok: fn(char) -> bool, what: &str| {
            if value.chars().all(ok) {
                Ok(())
            } else {
                Err(format!("may hold only {what}"))
            }
        };
        match self {
            FieldType::Thing => most(20),
            FieldType::Name => most(10),
            FieldType::Phrase => most(5),
            FieldType::Letter => {
                most(32)?;
                all(|c| c.is_ascii_alphabetic(), "ASCII letters")
            }
            FieldType::Symbol => {
                most(5)?;
                all(|c| c.is_ascii_punctuation(), "ASCII punctuation")
            }
            FieldType::CharacterString => {
                most(32)?;
                all(
                    |c| c.is_ascii_graphic(),
                    "ASCII letters, digits and punctuation",
                )
            }
            FieldType::PhoneNumber => {
                most(17)?;
                all(
                    |c| c.is_ascii_digit() || "+- ".contains(c),
                    "digits, +, - and spaces",
                )
            }
            FieldType::Number => {
                most(32)?;
                let digits = value.strip_prefix('-').unwrap_or(value);
                decimal(digits, usize::MAX).ok_or_else(|| "is not a number".to_string())
            }
            FieldType::Amount => {
                let bare = value
                    .strip_prefix('¥')
                    .or_else(|| value.strip_suffix('元'))
                    .unwrap_or(value);
                decimal(bare, 2)
                    .filter(|()| bare.chars().filter(char::is_ascii_digit).count() <= 12)
                    .ok_or_else(|| "is not an amount like 24.00".to_string())
            }
            FieldType::Date => date(value).ok_or_else(|| "is not a date YYYY-MM-DD".to_string()),
            FieldType::Time => value
                .split_once(' ')
                .and_then(|(day, clock)| date(day).and(hour_minute(clock)))
                .ok_or_else(|| "is not a time YYYY-MM-DD HH:MM".to_string()),
        }
    }
}

/// Digits with at most one `.` and at most `decimals` digits after it.
fn decimal(value: &str, decimals: usize) -> Option<()> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let fraction_ok = fraction.is_none_or(|f| digits(f) && f.len() <= decimals);
    (digits(whole) && fraction_ok).then_some(())
}

fn date(value: &str) -> Option<()> {
    crate::domain::parse_day(value).ok().map(|_| ())
}

fn hour_minute(value: &str) -> Option<()> {
    let (hour, minute) = value.split_once(':')?;
    let two = |part: &str, most: u32| {
        (part.len() == 2)
            .then(|| part.parse::<u32>().ok())
            .flatten()
            .filter(|n| *n <= most)
    };
    two(hour, 23).and(two(minute, 59)).map(|_| ())
}

fn identifier(value: &str, most: usize, ok: fn(u8) -> bool) -> bool {
    (1..=most).contains(&value.len()) && value.bytes().all(ok)
}

impl MessagingSettings {
    /// Checks the templates a manifest declares; says which is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.templates.len() > MAX_TEMPLATES {
            return Err(format!("at most {MAX_TEMPLATES} templates"));
        }
        let mut ids = HashSet::new();
        for template in &self.templates {
            let id = &template.id;
            if !identifier(id, 32, |b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
            }) {
                return Err(format!(
                    "template id {id:?} must be 1 to 32 of A-Z a-z 0-9 _ -"
                ));
            }
            if !ids.insert(id) {
                return Err(format!("template {id:?} is declared twice"));
            }
            if !(1..=64).contains(&template.title.chars().count()) {
                return Err(format!(
                    "template {id:?}: title must have 1 to 64 characters"
                ));
            }
            if template.fields.is_empty() || template.fields.len() > MAX_FIELDS {
                return Err(format!(
                    "template {id:?} must have 1 to {MAX_FIELDS} fields"
                ));
            }
            let mut keys = HashSet::new();
            for field in &template.fields {
                let key = &field.key;
                if !identifier(key, 32, |b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
                }) {
                    return Err(format!(
                        "template {id:?}: field key {key:?} must be 1 to 32 of a-z 0-9 _"
                    ));
                }
                if !keys.insert(key) {
                    return Err(format!("template {id:?}: field {key:?} is declared twice"));
                }
                if !(1..=20).contains(&field.label.chars().count()) {
                    return Err(format!(
                        "template {id:?}: field {key:?} needs a label of 1 to 20 characters"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn template(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|template| template.id == id)
    }
}

impl Template {
    /// Checks the values a program sends against the template: every field
    /// once, no other, each of its type. Returns them in template order.
    pub fn fill(
        &self,
        values: &[(String, String)],
    ) -> Result<Vec<(String, String)>, MessagingError> {
        let invalid =
            |detail: String| MessagingError::Invalid(format!("template {:?}: {detail}", self.id));
        let mut seen = HashSet::new();
        for (key, _) in values {
            if !self.fields.iter().any(|field| &field.key == key) {
                return Err(invalid(format!("it has no field {key:?}")));
            }
            if !seen.insert(key) {
                return Err(invalid(format!("field {key:?} is given twice")));
            }
        }
        self.fields
            .iter()
            .map(|field| {
                let value = values
                    .iter()
                    .find(|(key, _)| key == &field.key)
                    .map(|(_, value)| value)
                    .ok_or_else(|| invalid(format!("field {:?} is missing", field.key)))?;
                field.kind.check(value).map_err(|problem| {
                    invalid(format!(
                        "field {:?} ({:?}) {problem}",
                        field.key, field.kind
                    ))
                })?;
                Ok((field.key.clone(), value.clone()))
            })
            .collect()
    }
}

/// Why a messaging operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

impl From<sqlx::Error> for MessagingError {
    fn from(err: sqlx::Error) -> Self {
        MessagingError::Unavailable(err.into())
    }
}

/// How a user subscribes to a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubscriptionKind {
    /// Allows one message; grants add up.
    OneTime,
    /// Allows messages until revoked.
    LongTerm,
}

/// A user's subscription to one template of one app.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub appid: String,
    pub template_id: String,
    /// One-time grants left.
    pub one_time: i64,
    pub long_term: bool,
}

/// A message in a user's inbox.
#[derive(Debug, Clone, Serialize)]
pub struct InboxMessage {
    /// The message's number in this user's inbox: 1, 2, 3, … in the order
    /// they were committed. A stream's event id.
    pub seq: i64,
    pub appid: String,
    /// `notification` or `reply`.
    pub kind: String,
    pub template_id: Option<String>,
    /// The template's title, or empty for a reply.
    pub title: String,
    /// For a notification, `{"fields": [{"key", "label", "value"}]}`; for a
    /// reply, `{"text"}`.
    pub content: serde_json::Value,
    pub page: Option<String>,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// What time it is, for the 48-hour window: the system clock, or a clock
/// a test moves by hand.
#[derive(Clone)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock at `start` (unix ms) that moves only by [`Clock::advance`].
    pub fn manual(start: i64) -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(start))))
    }

    pub fn advance(&self, by: Duration) {
        if let Some(now) = &self.0 {
            now.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(now) => now.load(Ordering::SeqCst),
            None => now_ms(),
        }
    }
}

/// A notification a program sends, checked against its template.
pub struct Notification<'a> {
    pub appid: &'a AppId,
    pub template: &'a Template,
    pub openid: &'a str,
    pub fields: Vec<(String, String)>,
    pub page: Option<String>,
}

/// The messaging service, shared by the host functions and the HTTP
/// endpoints.
pub struct Messaging {
    db: Db,
    clock: Clock,
    daily_limit: i64,
    /// Rung after an event is queued for a program.
    events_queued: Arc<Notify>,
    /// Which user has new messages, for this node's live streams; 0 means
    /// "everyone look again" (after a lost connection to the database's
    /// notifications).
    inbox: broadcast::Sender<AccountId>,
    closing: AtomicBool,
}

impl Messaging {
    pub fn new(db: Db, clock: Clock, daily_limit: i64, events_queued: Arc<Notify>) -> Messaging {
        Messaging {
            db,
            clock,
            daily_limit,
            events_queued,
            inbox: broadcast::channel(4096).0,
            closing: AtomicBool::new(false),
        }
    }

    /// Wakes this node's streams of `account`'s inbox (0: of every inbox).
    pub fn wake(&self, account: AccountId) {
        let _ = self.inbox.send(account);
    }

    /// Tells of new messages on this node, from the first call on; of
    /// [`CLOSING`] (at once, if already closing) when the node shuts down.
    pub fn watch(&self) -> broadcast::Receiver<AccountId> {
        let watch = self.inbox.subscribe();
        if self.closing.load(Ordering::SeqCst) {
            let _ = self.inbox.send(CLOSING);
        }
        watch
    }

    /// Ends every live stream: the server is shutting down, and waits for
    /// its connections to finish.
    pub fn close_streams(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.inbox.send(CLOSING);
    }

    /// Sends a notification under the user's subscription.
    pub async fn notify(&self, notification: Notification<'_>) -> Result<(), MessagingError> {
        if let Some(page) = &notification.page
            && (page.len() > 256 || !page.starts_with('/') || page.chars().any(char::is_control))
        {
            return Err(MessagingError::Invalid(
                "page must be a path of this app, starting with /, at most 256 bytes".into(),
            ));
        }
        let now = self.clock.now_ms();
        let account = self
            .db
            .send_notification(&notification, self.daily_limit, now)
            .await?;
        self.after_delivery(account);
        Ok(())
    }

    /// Replies to a user who wrote to the app lately.
    pub async fn reply(
        &self,
        appid: &AppId,
        openid: &str,
        text: &str,
    ) -> Result<(), MessagingError> {
        check_text(text)?;
        let now = self.clock.now_ms();
        let since = now - REPLY_WINDOW.as_millis() as i64;
        let account = self.db.send_reply(appid, openid, text, since, now).await?;
        self.after_delivery(account);
        Ok(())
    }

    /// A user writes to an app; the app receives `message.received`.
    /// Returns the message's id.
    pub async fn user_writes(
        &self,
        appid: &AppId,
        account: AccountId,
        openid: &str,
        text: &str,
    ) -> Result<String, MessagingError> {
        check_text(text)?;
        let id = self
            .db
            .receive_message(appid, account, openid, text, self.clock.now_ms())
            .await?;
        self.events_queued.notify_one();
        Ok(id)
    }

    pub async fn subscribe(
        &self,
        account: AccountId,
        appid: &AppId,
        openid: &str,
        template_id: &str,
        kind: SubscriptionKind,
    ) -> Result<Subscription, MessagingError> {
        self.db
            .subscribe(
                account,
                appid,
                openid,
                template_id,
                kind,
                self.clock.now_ms(),
            )
            .await
    }

    pub async fn unsubscribe(
        &self,
        account: AccountId,
        appid: &AppId,
        template_id: &str,
    ) -> Result<bool, MessagingError> {
        Ok(self.db.unsubscribe(account, appid, template_id).await?)
    }

    pub async fn subscriptions(
        &self,
        account: AccountId,
    ) -> Result<Vec<Subscription>, MessagingError> {
        Ok(self.db.subscriptions(account).await?)
    }

    /// Messages of the user's inbox after `after`, oldest first.
    pub async fn inbox(
        &self,
        account: AccountId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<InboxMessage>, MessagingError> {
        Ok(self.db.inbox(account, after, limit).await?)
    }

    pub async fn unread(&self, account: AccountId) -> Result<i64, MessagingError> {
        Ok(self.db.unread(account).await?)
    }

    /// The newest message number of the user's inbox, 0 when empty.
    pub async fn last_seq(&self, account: AccountId) -> Result<i64, MessagingError> {
        Ok(self.db.last_seq(account).await?)
    }

    /// Marks the messages up to `up_to` read; returns how many changed.
    pub async fn mark_read(&self, account: AccountId, up_to: i64) -> Result<u64, MessagingError> {
        Ok(self
            .db
            .mark_read(account, up_to, self.clock.now_ms())
            .await?)
    }

    fn after_delivery(&self, account: AccountId) {
        // PostgreSQL carries the news to every node, this one included
        // (NOTIFY in the sending transaction); SQLite has one node.
        if self.db.engine() == crate::db::Engine::Sqlite {
            self.wake(account);
        }
    }
}

fn check_text(text: &str) -> Result<(), MessagingError> {
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_TEXT_CHARS {
        return Err(MessagingError::Invalid(format!(
            "a message has 1 to {MAX_TEXT_CHARS} characters, not {chars}"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(MessagingError::Invalid(
            "a message may not contain control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template {
            id: "order_shipped".into(),
            title: "Your order has shipped".into(),
            fields: vec![
                TemplateField {
                    key: "thing1".into(),
                    kind: FieldType::Thing,
                    label: "Item".into(),
                },
                TemplateField {
                    key: "amount2".into(),
                    kind: FieldType::Amount,
                    label: "Paid".into(),
                },
            ],
        }
    }

    fn values(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn field_types_hold_their_limits() {
        use FieldType::*;
        let cases: &[(FieldType, &str, bool)] = &[
            (Thing, &"字".repeat(20), true),
            (Thing, &"字".repeat(21), false),
            (Thing, "a\u{7}", false),
            (Number, "-12.5", true),
            (Number, &"9".repeat(32), true),
            (Number, &"9".repeat(33), false),
            (Number, "1.2.3", false),
            (Number, "12a", false),
            (Letter, "abcXYZ", true),
            (Letter, "abc1", false),
            (Symbol, "!?-", true),
            (Symbol, "!!!!!!", false),
            (CharacterString, "shop-00000001", true),
            (CharacterString, "has space", false),
            (Amount, "24.00", true),
            (Amount, "¥24.5", true),
            (Amount, "24元", true),
            (Amount, "24.001", false),
            (Amount, "1234567890123", false),
            (Date, "2026-11-22", true),
            (Date, "2026-02-30", false),
            (Time, "2026-11-22 09:30", true),
            (Time, "2026-11-22 24:00", false),
            (PhoneNumber, "+86 138-0000-0000", true),
            (PhoneNumber, "call me", false),
            (Name, "李小龙", true),
            (Name, "A very long name", false),
            (Phrase, "已发货", true),
            (Phrase, "shipped", false),
            (Thing, "", false),
        ];
        for (kind, value, ok) in cases {
            assert_eq!(kind.check(value).is_ok(), *ok, "{kind:?} {value:?}");
        }
    }

    #[test]
    fn values_must_fill_the_template_exactly() {
        let template = template();
        let filled = template
            .fill(&values(&[("amount2", "24.00"), ("thing1", "Jasmine tea")]))
            .unwrap();
        assert_eq!(filled[0].0, "thing1", "in template order");
        for bad in [
            values(&[("thing1", "Jasmine tea")]),
            values(&[("thing1", "tea"), ("amount2", "1"), ("extra", "x")]),
            values(&[("thing1", "tea"), ("thing1", "tea"), ("amount2", "1")]),
            values(&[("thing1", "A tea with a very long name"), ("amount2", "1")]),
        ] {
            assert!(
                matches!(template.fill(&bad), Err(MessagingError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn manifests_declare_well_formed_templates() {
        let ok = MessagingSettings {
            templates: vec![template()],
        };
        assert!(ok.check().is_ok());
        let mut twice = ok.clone();
        twice.templates.push(template());
        assert!(twice.check().is_err());
        let mut bad_key = ok.clone();
        bad_key.templates[0].fields[0].key = "Thing1".into();
        assert!(bad_key.check().is_err());
        let mut no_fields = ok.clone();
        no_fields.templates[0].fields.clear();
        assert!(no_fields.check().is_err());
        let mut bad_id = ok;
        bad_id.templates[0].id = "order shipped".into();
        assert!(bad_id.check().is_err());
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ms(), 2_000);
    }
}
