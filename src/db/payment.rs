//! The ledger, orders, refunds, payouts and payment PINs.
//!
//! Every function that moves money does it in one transaction whose first
//! statement writes (so SQLite takes its write lock at once, never
//! upgrading a read lock under contention). On PostgreSQL the two money
//! accounts are locked in one fixed order (`MoneyAccount::lock_order`:
//! wallets, then merchant accounts, then the funding account), so two
//! movements never wait on each other crosswise, and as the transaction's
//! last writes, so the busiest rows (an app's merchant account, the
//! funding account) are held only until the commit that follows.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::Db;
use crate::accounts::AccountId;
use crate::domain::{AppId, DAY_MS, day_name};
use crate::payment::{
    DayTotals, MAX_REFUNDS_PER_ORDER, MoneyAccount, NewOrder, Order, OrderState, PaymentError,
    PayoutRequest, Refund, RefundRequest, StatementEntry, no_order,
};

const ORDER_COLUMNS: &str = "prepay_id, appid, out_trade_no, channel, payer_id, payer_openid, \
     amount, description, attach, state, refunded, refunds, created_at, expires_at, paid_at";

fn order(row: &AnyRow) -> anyhow::Result<Order> {
    let appid: String = row.try_get(1)?;
    let state: String = row.try_get(9)?;
    let amount: i64 = row.try_get(6)?;
    let refunded: i64 = row.try_get(10)?;
    Ok(Order {
        prepay_id: row.try_get(0)?,
        appid: appid.parse().map_err(anyhow::Error::msg)?,
        out_trade_no: row.try_get(2)?,
        channel: row.try_get(3)?,
        payer_id: row.try_get(4)?,
        payer_openid: row.try_get(5)?,
        amount: amount as u64,
        description: row.try_get(7)?,
        attach: row.try_get(8)?,
        state: OrderState::parse(&state)?,
        refunded: refunded as u64,
        refunds: row.try_get(11)?,
        created_at: row.try_get(12)?,
        expires_at: row.try_get(13)?,
        paid_at: row.try_get(14)?,
    })
}

/// What one movement of money is, for both of its ledger entries.
struct Movement<'a> {
    kind: &'a str,
    appid: &'a str,
    reference: &'a str,
    now: i64,
}

/// Writes the two ledger entries of moving `amount` from one account to
/// another and changes the two balances. Fails with `InsufficientFunds`
/// when `from` holds too little (the funding account never does). Call it
/// last before the commit: it locks the accounts.
async fn transfer(
    tx: &mut Transaction<'static, Any>,
    from: &MoneyAccount,
    to: &MoneyAccount,
    amount: i64,
    movement: &Movement<'_>,
) -> Result<(), PaymentError> {
    let (from_id, to_id) = (from.id(), to.id());
    sqlx::query(
        "INSERT INTO ledger (account, amount, kind, appid, reference, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $3, $4, $5, $6)",
    )
    .bind(&from_id)
    .bind(-amount)
    .bind(movement.kind)
    .bind(movement.appid)
    .bind(movement.reference)
    .bind(movement.now)
    .bind(&to_id)
    .bind(amount)
    .execute(&mut **tx)
    .await?;
    let debit_first = from.lock_order() < to.lock_order();
    for debit in [debit_first, !debit_first] {
        if debit {
            let debited = sqlx::query(
                "UPDATE pay_accounts SET balance = balance - $1 \
                 WHERE id = $2 AND (balance >= $1 OR id = 'funding')",
            )
            .bind(amount)
            .bind(&from_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if debited == 0 {
                let held = sqlx::query("SELECT balance FROM pay_accounts WHERE id = $1")
                    .bind(&from_id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .map(|row| row.try_get::<i64, _>(0))
                    .transpose()?
                    .unwrap_or(0);
                let whose = match from {
                    MoneyAccount::Wallet(_) => "the wallet",
                    MoneyAccount::Merchant(_) => "the merchant account",
                    MoneyAccount::Funding => "the funding account",
                };
                return Err(PaymentError::InsufficientFunds(format!(
                    "{whose} holds {held} fen; this needs {amount}"
                )));
            }
        } else {
            sqlx::query(
                "INSERT INTO pay_accounts (id, balance) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET balance = pay_accounts.balance + excluded.balance",
            )
            .bind(&to_id)
            .bind(amount)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

impl Db {
    /// Creates an order, or returns the prepay id of the same order created
    /// before. Held against the app's deletion (see [`Db::begin_for_app`]),
    /// so every unpaid order of a deleted app was closed by the delete.
    pub async fn create_order(
        &self,
        new: &NewOrder,
        prepay_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<String, PaymentError> {
        let create = sqlx::query(
            "INSERT INTO pay_orders (prepay_id, appid, out_trade_no, channel, payer_id, \
             payer_openid, amount, description, attach, state, created_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'NOTPAY', $10, $11 \
             WHERE EXISTS (SELECT 1 FROM apps WHERE appid = $2) \
             ON CONFLICT (appid, out_trade_no) DO NOTHING RETURNING 1",
        )
        .bind(prepay_id)
        .bind(new.appid.as_str())
        .bind(&new.out_trade_no)
        .bind(&new.channel)
        .bind(new.payer_id)
        .bind(&new.payer_openid)
        .bind(new.amount as i64)
        .bind(&new.description)
        .bind(&new.attach)
        .bind(now)
        .bind(expires_at);
        if self
            .write_for_app(new.appid.as_str(), create)
            .await?
            .is_some()
        {
            return Ok(prepay_id.to_string());
        }
        // Neither inserted nor there before: the app is gone, deleted while
        // the call that asks ran.
        let existing = self
            .order_by_number(&new.appid, &new.out_trade_no)
            .await?
            .ok_or_else(|| PaymentError::Denied(super::app_deleted(new.appid.as_str())))?;
        let same = existing.payer_id == new.payer_id
            && existing.amount == new.amount
            && existing.description == new.description
            && existing.attach == new.attach;
        if !same {
            return Err(PaymentError::Conflict(format!(
                "order {:?} exists with other parameters",
                new.out_trade_no
            )));
        }
        let existing = existing.settle_expiry(now);
        match existing.state {
            OrderState::Closed => Err(PaymentError::Conflict(format!(
                "order {:?} is closed",
                new.out_trade_no
            ))),
            _ => Ok(existing.prepay_id),
        }
    }

    pub async fn order_by_number(
        &self,
        appid: &AppId,
        out_trade_no: &str,
    ) -> anyhow::Result<Option<Order>> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM pay_orders WHERE appid = $1 AND out_trade_no = $2"
        ))
        .bind(appid.as_str())
        .bind(out_trade_no)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(order).transpose()
    }

    pub async fn order_by_prepay_id(&self, prepay_id: &str) -> anyhow::Result<Option<Order>> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM pay_orders WHERE prepay_id = $1"
        ))
        .bind(prepay_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(order).transpose()
    }

    pub async fn close_order(&self, appid: &AppId, out_trade_no: &str) -> Result<(), PaymentError> {
        sqlx::query(
            "UPDATE pay_orders SET state = 'CLOSED' \
             WHERE appid = $1 AND out_trade_no = $2 AND state = 'NOTPAY'",
        )
        .bind(appid.as_str())
        .bind(out_trade_no)
        .execute(&self.pool)
        .await?;
        let order = self
            .order_by_number(appid, out_trade_no)
            .await?
            .ok_or_else(|| no_order(out_trade_no))?;
        match order.state {
            OrderState::Closed => Ok(()),
            _ => Err(PaymentError::Conflict(format!(
                "order {out_trade_no:?} is paid; refund it instead"
            ))),
        }
    }

    /// Settles an order its payer confirmed: one transaction debits the
    /// payer's wallet, credits the app's merchant account, marks the order
    /// paid and queues `payment.succeeded` for the program.
    pub async fn settle(
        &self,
        payer: AccountId,
        prepay_id: &str,
        now: i64,
    ) -> Result<Order, PaymentError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE pay_orders SET state = 'SUCCESS', paid_at = $1 \
             WHERE prepay_id = $2 AND payer_id = $3 AND state = 'NOTPAY' AND expires_at > $1 \
             RETURNING {ORDER_COLUMNS}"
        ))
        .bind(now)
        .bind(prepay_id)
        .bind(payer)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let found = sqlx::query(&format!(
                "SELECT {ORDER_COLUMNS} FROM pay_orders WHERE prepay_id = $1"
            ))
            .bind(prepay_id)
            .fetch_optional(&mut *tx)
            .await?;
            let found = found.as_ref().map(order).transpose()?;
            return Err(match found {
                Some(order) if order.payer_id == payer => match order.settle_expiry(now).state {
                    OrderState::Closed => {
                        PaymentError::Conflict(format!("order {prepay_id} is closed"))
                    }
                    _ => PaymentError::Conflict(format!("order {prepay_id} is already paid")),
                },
                _ => PaymentError::NotFound(format!("no order {prepay_id} to pay")),
            });
        };
        let paid = order(&row)?;
        let payload = serde_json::json!({
            "out_trade_no": paid.out_trade_no,
            "prepay_id": paid.prepay_id,
            "amount": paid.amount,
            "payer": paid.payer_openid,
            "attach": paid.attach,
            "paid_at": now,
        });
        self.enqueue(
            &mut tx,
            &paid.appid,
            &paid.channel,
            "payment.succeeded",
            &payload.to_string(),
            now,
        )
        .await?;
        transfer(
            &mut tx,
            &MoneyAccount::Wallet(payer),
            &MoneyAccount::Merchant(paid.appid.clone()),
            paid.amount as i64,
            &Movement {
                kind: "payment",
                appid: paid.appid.as_str(),
                reference: &paid.out_trade_no,
                now,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(paid)
    }

    /// Refunds part of a paid order to its payer, or returns the refund of
    /// the same number done before.
    pub async fn refund(
        &self,
        appid: &AppId,
        request: &RefundRequest,
        now: i64,
    ) -> Result<Refund, PaymentError> {
        let amount = request.amount as i64;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO pay_refunds (appid, out_refund_no, out_trade_no, amount, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (appid, out_refund_no) DO NOTHING",
        )
        .bind(appid.as_str())
        .bind(&request.out_refund_no)
        .bind(&request.out_trade_no)
        .bind(amount)
        .bind(&request.reason)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let row = sqlx::query(
                "SELECT r.out_trade_no, r.amount, r.reason, o.refunded FROM pay_refunds r \
                 JOIN pay_orders o ON o.appid = r.appid AND o.out_trade_no = r.out_trade_no \
                 WHERE r.appid = $1 AND r.out_refund_no = $2",
            )
            .bind(appid.as_str())
            .bind(&request.out_refund_no)
            .fetch_one(&mut *tx)
            .await?;
            let (out_trade_no, earlier, reason, refunded): (String, i64, String, i64) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            );
            if out_trade_no != request.out_trade_no || earlier != amount || reason != request.reason
            {
                return Err(PaymentError::Conflict(format!(
                    "refund {:?} exists with other parameters",
                    request.out_refund_no
                )));
            }
            return Ok(Refund {
                out_trade_no,
                out_refund_no: request.out_refund_no.clone(),
                amount: request.amount,
                refunded_total: refunded as u64,
            });
        }
        let row = sqlx::query(&format!(
            "UPDATE pay_orders SET refunded = refunded + $1, refunds = refunds + 1, state = 'REFUND' \
             WHERE appid = $2 AND out_trade_no = $3 AND state IN ('SUCCESS', 'REFUND') \
             AND refunded + $1 <= amount AND refunds < $4 \
             RETURNING {ORDER_COLUMNS}"
        ))
        .bind(amount)
        .bind(appid.as_str())
        .bind(&request.out_trade_no)
        .bind(MAX_REFUNDS_PER_ORDER)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let found = sqlx::query(&format!(
                "SELECT {ORDER_COLUMNS} FROM pay_orders WHERE appid = $1 AND out_trade_no = $2"
            ))
            .bind(appid.as_str())
            .bind(&request.out_trade_no)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(found) = found.as_ref().map(order).transpose()? else {
                return Err(no_order(&request.out_trade_no));
            };
            let no = &request.out_trade_no;
            return Err(match found.state {
                OrderState::NotPay | OrderState::Closed => {
                    PaymentError::Conflict(format!("order {no:?} is not paid"))
                }
                _ if found.refunds >= MAX_REFUNDS_PER_ORDER => PaymentError::LimitReached(format!(
                    "order {no:?} has {MAX_REFUNDS_PER_ORDER} refunds, the most it may have"
                )),
                _ => PaymentError::Invalid(format!(
                    "order {no:?} was paid {} fen and {} are refunded; {amount} more is too much",
                    found.amount, found.refunded
                )),
            });
        };
        let refunded = order(&row)?;
        let payload = serde_json::json!({
            "out_trade_no": request.out_trade_no,
            "out_refund_no": request.out_refund_no,
            "amount": request.amount,
            "refunded_at": now,
        });
        self.enqueue(
            &mut tx,
            appid,
            &refunded.channel,
            "refund.succeeded",
            &payload.to_string(),
            now,
        )
        .await?;
        transfer(
            &mut tx,
            &MoneyAccount::Merchant(appid.clone()),
            &MoneyAccount::Wallet(refunded.payer_id),
            amount,
            &Movement {
                kind: "refund",
                appid: appid.as_str(),
                reference: &request.out_refund_no,
                now,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Refund {
            out_trade_no: request.out_trade_no.clone(),
            out_refund_no: request.out_refund_no.clone(),
            amount: request.amount,
            refunded_total: refunded.refunded,
        })
    }

    /// Pays a user out of the app's merchant account, once per number.
    pub async fn payout(
        &self,
        appid: &AppId,
        request: &PayoutRequest,
        now: i64,
    ) -> Result<(), PaymentError> {
        let amount = request.amount as i64;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO pay_payouts (appid, out_payout_no, payee_id, amount, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (appid, out_payout_no) DO NOTHING",
        )
        .bind(appid.as_str())
        .bind(&request.out_payout_no)
        .bind(request.payee)
        .bind(amount)
        .bind(&request.description)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let row = sqlx::query(
                "SELECT payee_id, amount FROM pay_payouts WHERE appid = $1 AND out_payout_no = $2",
            )
            .bind(appid.as_str())
            .bind(&request.out_payout_no)
            .fetch_one(&mut *tx)
            .await?;
            let (payee, earlier): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            return if payee == request.payee && earlier == amount {
                Ok(())
            } else {
                Err(PaymentError::Conflict(format!(
                    "payout {:?} exists for another user or amount",
                    request.out_payout_no
                )))
            };
        }
        transfer(
            &mut tx,
            &MoneyAccount::Merchant(appid.clone()),
            &MoneyAccount::Wallet(request.payee),
            amount,
            &Movement {
                kind: "payout",
                appid: appid.as_str(),
                reference: &request.out_payout_no,
                now,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves money from the funding account to a wallet; returns the
    /// wallet's new balance.
    pub async fn top_up(
        &self,
        account: AccountId,
        amount: i64,
        reference: &str,
        now: i64,
    ) -> Result<u64, PaymentError> {
        let mut tx = self.pool.begin().await?;
        let wallet = MoneyAccount::Wallet(account);
        transfer(
            &mut tx,
            &MoneyAccount::Funding,
            &wallet,
            amount,
            &Movement {
                kind: "topup",
                appid: "",
                reference,
                now,
            },
        )
        .await?;
        let balance: i64 = sqlx::query("SELECT balance FROM pay_accounts WHERE id = $1")
            .bind(wallet.id())
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(balance as u64)
    }

    /// An account's balance; 0 for an account never credited.
    pub async fn balance(&self, id: &str) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT balance FROM pay_accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Every balance summed, and the smallest balance of any account but
    /// the funding one: the ledger's invariants, 0 and ≥ 0.
    pub async fn ledger_check(&self) -> anyhow::Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT), \
             COALESCE(MIN(CASE WHEN id = 'funding' THEN 0 ELSE balance END), 0), \
             (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger) FROM pay_accounts",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
    }

    pub async fn set_pin(&self, account: AccountId, hash: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO pay_pins (account_id, pin_hash, failed, locked_until) VALUES ($1, $2, 0, 0) \
             ON CONFLICT (account_id) DO UPDATE SET pin_hash = excluded.pin_hash, failed = 0, \
             locked_until = 0",
        )
        .bind(account)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user's PIN hash and until when payments are locked.
    pub async fn pin(&self, account: AccountId) -> anyhow::Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT pin_hash, locked_until FROM pay_pins WHERE account_id = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .transpose()
    }

    /// The latest ledger entries of an account, newest first, before the
    /// entry id `before`.
    pub async fn statement(
        &self,
        account: &str,
        before: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<StatementEntry>> {
        let rows = sqlx::query(
            "SELECT kind, appid, reference, amount, created_at FROM ledger \
             WHERE account = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(account)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StatementEntry {
                    kind: row.try_get(0)?,
                    appid: row.try_get(1)?,
                    reference: row.try_get(2)?,
                    amount: row.try_get(3)?,
                    created_at: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// An app's merchant account by day (days since the epoch, UTC).
    pub async fn merchant_days(
        &self,
        appid: &AppId,
        from_day: i64,
        to_day: i64,
    ) -> anyhow::Result<Vec<DayTotals>> {
        let (from, to) = (from_day * DAY_MS, (to_day + 1) * DAY_MS);
        // The queries spell DAY_MS out: a bound divisor would make PostgreSQL
        // compare a parameter in SELECT with one in GROUP BY.
        let mut days: std::collections::BTreeMap<i64, DayTotals> = Default::default();
        let movements = sqlx::query(
            "SELECT created_at / 86400000, kind, COUNT(*), CAST(SUM(amount) AS BIGINT) \
             FROM ledger WHERE account = $1 AND created_at >= $2 AND created_at < $3 \
             GROUP BY created_at / 86400000, kind",
        )
        .bind(MoneyAccount::Merchant(appid.clone()).id())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        for row in movements {
            let (day, kind, count, sum): (i64, String, i64, i64) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            );
            let totals = days.entry(day).or_default();
            match kind.as_str() {
                "payment" => (totals.payments, totals.paid_amount) = (count, sum),
                "refund" => (totals.refunds, totals.refunded_amount) = (count, -sum),
                "payout" => (totals.payouts, totals.payout_amount) = (count, -sum),
                _ => {}
            }
            totals.net += sum;
        }
        let created = sqlx::query(
            "SELECT created_at / 86400000, COUNT(*) FROM pay_orders \
             WHERE appid = $1 AND created_at >= $2 AND created_at < $3 \
             GROUP BY created_at / 86400000",
        )
        .bind(appid.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        for row in created {
            let (day, count): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            days.entry(day).or_default().orders_created = count;
        }
        Ok(days
            .into_iter()
            .map(|(day, totals)| DayTotals {
                day: day_name(day),
                ..totals
            })
            .collect())
    }

    pub async fn close_expired_orders(&self, now: i64) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "UPDATE pay_orders SET state = 'CLOSED' WHERE state = 'NOTPAY' AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
