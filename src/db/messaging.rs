//! Subscriptions, conversations and inboxes of the messaging capability.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Db, Engine};
use crate::accounts::AccountId;
use crate::domain::{AppId, day_of};
use crate::messaging::{
    InboxMessage, MAX_REPLIES, MessagingError, Notification, Subscription, SubscriptionKind,
};

/// The PostgreSQL channel that tells every node a user has new messages;
/// the payload is the account id.
pub const INBOX_CHANNEL: &str = "miniapp_inbox";

/// What lands in an inbox.
struct Delivery<'a> {
    appid: &'a AppId,
    kind: &'a str,
    template_id: Option<&'a str>,
    title: &'a str,
    content: serde_json::Value,
    page: Option<&'a str>,
    now: i64,
}

impl Db {
    /// Puts a message in `account`'s inbox under its next number, and on
    /// PostgreSQL tells every node when the transaction commits.
    async fn deliver(
        &self,
        tx: &mut Transaction<'static, Any>,
        account: AccountId,
        delivery: Delivery<'_>,
    ) -> Result<(), sqlx::Error> {
        let seq: i64 = sqlx::query(
            "INSERT INTO msg_inbox_seq (account_id, last_seq) VALUES ($1, 1) \
             ON CONFLICT (account_id) DO UPDATE SET last_seq = msg_inbox_seq.last_seq + 1 \
             RETURNING last_seq",
        )
        .bind(account)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO messages (account_id, seq, appid, kind, template_id, title, content, \
             page, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(account)
        .bind(seq)
        .bind(delivery.appid.as_str())
        .bind(delivery.kind)
        .bind(delivery.template_id)
        .bind(delivery.title)
        .bind(delivery.content.to_string())
        .bind(delivery.page)
        .bind(delivery.now)
        .execute(&mut **tx)
        .await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(INBOX_CHANNEL)
                .bind(account.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Sends a notification under the user's subscription, using up a
    /// one-time grant unless a long-term one holds; returns the user.
    pub async fn send_notification(
        &self,
        notification: &Notification<'_>,
        daily_limit: i64,
        now: i64,
    ) -> Result<AccountId, MessagingError> {
        let template = notification.template;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE msg_subscriptions SET updated_at = $4, \
             one_time = CASE WHEN long_term = 1 THEN one_time ELSE one_time - 1 END \
             WHERE appid = $1 AND openid = $2 AND template_id = $3 \
             AND (long_term = 1 OR one_time > 0) RETURNING account_id",
        )
        .bind(notification.appid.as_str())
        .bind(notification.openid)
        .bind(&template.id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(MessagingError::Denied(format!(
                "the user holds no subscription to template {:?}",
                template.id
            )));
        };
        let account: AccountId = row.try_get(0)?;
        let sent: i64 = sqlx::query(
            "INSERT INTO msg_daily (appid, account_id, day, sent) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (appid, account_id, day) DO UPDATE SET sent = msg_daily.sent + 1 \
             RETURNING sent",
        )
        .bind(notification.appid.as_str())
        .bind(account)
        .bind(day_of(now))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if sent > daily_limit {
            return Err(MessagingError::QuotaExceeded(format!(
                "this app sent this user {daily_limit} notifications today, the most it may"
            )));
        }
        let fields: Vec<serde_json::Value> = notification
            .fields
            .iter()
            .map(|(key, value)| {
                let label = template
                    .fields
                    .iter()
                    .find(|field| &field.key == key)
                    .map_or("", |field| field.label.as_str());
                serde_json::json!({"key": key, "label": label, "value": value})
            })
            .collect();
        let delivery = Delivery {
            appid: notification.appid,
            kind: "notification",
            template_id: Some(&template.id),
            title: &template.title,
            content: serde_json::json!({ "fields": fields }),
            page: notification.page.as_deref(),
            now,
        };
        self.deliver(&mut tx, account, delivery).await?;
        tx.commit().await?;
        Ok(account)
    }

    /// Sends a customer-service reply if the user wrote after `since` and
    /// fewer than [`MAX_REPLIES`] replies followed; returns the user.
    pub async fn send_reply(
        &self,
        appid: &AppId,
        openid: &str,
        text: &str,
        since: i64,
        now: i64,
    ) -> Result<AccountId, MessagingError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE msg_conversations SET replies_since = replies_since + 1 \
             WHERE appid = $1 AND openid = $2 AND last_user_message_at > $3 \
             AND replies_since < $4 RETURNING account_id",
        )
        .bind(appid.as_str())
        .bind(openid)
        .bind(since)
        .bind(MAX_REPLIES)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let found = sqlx::query(
                "SELECT last_user_message_at FROM msg_conversations \
                 WHERE appid = $1 AND openid = $2",
            )
            .bind(appid.as_str())
            .bind(openid)
            .fetch_optional(&mut *tx)
            .await?;
            let last: Option<i64> = found.map(|row| row.try_get(0)).transpose()?;
            return Err(MessagingError::Denied(match last {
                None => "the user never wrote to this app".into(),
                Some(last) if last <= since => {
                    "the user's last message is more than 48 hours old".into()
                }
                Some(_) => {
                    format!("the app sent {MAX_REPLIES} replies since the user's last message")
                }
            }));
        };
        let account: AccountId = row.try_get(0)?;
        let delivery = Delivery {
            appid,
            kind: "reply",
            template_id: None,
            title: "",
            content: serde_json::json!({ "text": text }),
            page: None,
            now,
        };
        self.deliver(&mut tx, account, delivery).await?;
        tx.commit().await?;
        Ok(account)
    }

    /// A user's message to an app: opens the reply window and queues
    /// `message.received` for the app's release. Returns the message id.
    pub async fn receive_message(
        &self,
        appid: &AppId,
        account: AccountId,
        openid: &str,
        text: &str,
        now: i64,
    ) -> Result<String, MessagingError> {
        let mut tx = self.begin_for_app(appid.as_str()).await?;
        let opened = sqlx::query(
            "INSERT INTO msg_conversations (appid, account_id, openid, last_user_message_at, \
             replies_since) SELECT $1, $2, $3, $4, 0 \
             WHERE EXISTS (SELECT 1 FROM apps WHERE appid = $1) \
             ON CONFLICT (appid, account_id) DO UPDATE \
             SET openid = excluded.openid, last_user_message_at = excluded.last_user_message_at, \
             replies_since = 0",
        )
        .bind(appid.as_str())
        .bind(account)
        .bind(openid)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if opened.rows_affected() == 0 {
            return Err(app_gone(appid));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO msg_received (appid, account_id, text, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(appid.as_str())
        .bind(account)
        .bind(text)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let message_id = format!("msg_{id}");
        let payload = serde_json::json!({
            "message_id": message_id,
            "from": openid,
            "text": text,
            "sent_at": now,
        });
        self.enqueue(
            &mut tx,
            appid,
            "release",
            "message.received",
            &payload.to_string(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(message_id)
    }

    pub async fn subscribe(
        &self,
        account: AccountId,
        appid: &AppId,
        openid: &str,
        template_id: &str,
        kind: SubscriptionKind,
        now: i64,
    ) -> Result<Subscription, MessagingError> {
        let (one_time, long_term) = match kind {
            SubscriptionKind::OneTime => (1, 0),
            SubscriptionKind::LongTerm => (0, 1),
        };
        let subscribe = sqlx::query(
            "INSERT INTO msg_subscriptions (account_id, appid, template_id, openid, one_time, \
             long_term, updated_at) SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE EXISTS (SELECT 1 FROM apps WHERE appid = $2) \
             ON CONFLICT (account_id, appid, template_id) DO UPDATE SET \
             one_time = msg_subscriptions.one_time + excluded.one_time, \
             long_term = CASE WHEN excluded.long_term = 1 THEN 1 ELSE msg_subscriptions.long_term END, \
             openid = excluded.openid, updated_at = excluded.updated_at \
             RETURNING appid, template_id, one_time, long_term",
        )
        .bind(account)
        .bind(appid.as_str())
        .bind(template_id)
        .bind(openid)
        .bind(one_time)
        .bind(long_term)
        .bind(now);
        let row = self
            .write_for_app(appid.as_str(), subscribe)
            .await?
            .ok_or_else(|| app_gone(appid))?;
        Ok(subscription(&row)?)
    }

    /// Revokes every grant of a user to one template; whether there was one.
    pub async fn unsubscribe(
        &self,
        account: AccountId,
        appid: &AppId,
        template_id: &str,
    ) -> anyhow::Result<bool> {
        let removed = sqlx::query(
            "DELETE FROM msg_subscriptions WHERE account_id = $1 AND appid = $2 AND template_id = $3",
        )
        .bind(account)
        .bind(appid.as_str())
        .bind(template_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(removed > 0)
    }

    pub async fn subscriptions(&self, account: AccountId) -> anyhow::Result<Vec<Subscription>> {
        let rows = sqlx::query(
            "SELECT appid, template_id, one_time, long_term FROM msg_subscriptions \
             WHERE account_id = $1 AND (one_time > 0 OR long_term = 1) \
             ORDER BY appid, template_id",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription).collect()
    }

    pub async fn inbox(
        &self,
        account: AccountId,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<InboxMessage>> {
        let rows = sqlx::query(
            "SELECT seq, appid, kind, template_id, title, content, page, created_at, read_at \
             FROM messages WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(account)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let content: String = row.try_get(5)?;
                Ok(InboxMessage {
                    seq: row.try_get(0)?,
                    appid: row.try_get(1)?,
                    kind: row.try_get(2)?,
                    template_id: row.try_get(3)?,
                    title: row.try_get(4)?,
                    content: serde_json::from_str(&content)?,
                    page: row.try_get(6)?,
                    created_at: row.try_get(7)?,
                    read_at: row.try_get(8)?,
                })
            })
            .collect()
    }

    pub async fn unread(&self, account: AccountId) -> anyhow::Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM messages WHERE account_id = $1 AND read_at IS NULL")
                .bind(account)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    pub async fn last_seq(&self, account: AccountId) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT last_seq FROM msg_inbox_seq WHERE account_id = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.unwrap_or(0))
    }

    pub async fn mark_read(&self, account: AccountId, up_to: i64, now: i64) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET read_at = $1 WHERE account_id = $2 AND seq <= $3 AND read_at IS NULL",
        )
        .bind(now)
        .bind(account)
        .bind(up_to)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

fn subscription(row: &AnyRow) -> anyhow::Result<Subscription> {
    let long_term: i64 = row.try_get(3)?;
    Ok(Subscription {
        appid: row.try_get(0)?,
        template_id: row.try_get(1)?,
        one_time: row.try_get(2)?,
        long_term: long_term == 1,
    })
}

/// What a user's write to an app that is not there answers: the API
/// checks that it exists first, so it was deleted meanwhile.
fn app_gone(appid: &AppId) -> MessagingError {
    MessagingError::NotFound(super::app_deleted(appid.as_str()))
}
