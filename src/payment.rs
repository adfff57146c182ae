//! The payment capability's logic, after WeChat Pay's mini-program flow:
//! a program creates an order for its signed-in caller; only that user,
//! with their payment PIN on a platform endpoint, confirms it; the result
//! reaches the program as an event, at least once.
//!
//! Money lives in a double-entry ledger of integer fen: every movement
//! debits one account and credits another by the same amount in one
//! transaction, so money is never created or lost. Accounts are a wallet
//! per user, a merchant account per app, and the funding account that
//! demo and test money comes from (`funding` is the only balance that may
//! go negative; all balances always sum to zero).
//!
//! Idempotency is on the numbers a program chooses: an order on (app,
//! out_trade_no), a refund on (app, out_refund_no), a payout on (app,
//! out_payout_no). The same request again answers the same result and
//! moves no money; the same number with other parameters is a conflict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use crate::accounts::AccountId;
use crate::db::{Attempt, Db, Secret, now_ms};
use crate::domain::AppId;
use crate::hashing::Hashing;

/// The most one order, refund, payout or top-up may move: 10 million yuan.
pub const MAX_AMOUNT: u64 = 1_000_000_000;

/// The most refunds of one order (WeChat Pay's limit).
pub const MAX_REFUNDS_PER_ORDER: i64 = 50;

/// How long an unpaid order stays payable by default: 2 hours.
pub const DEFAULT_ORDER_TTL: Duration = Duration::from_secs(2 * 3600);

/// The longest a manifest may keep unpaid orders open: 7 days.
pub const MAX_ORDER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Wrong PINs in a row before payments are locked.
pub const MAX_WRONG_PINS: i64 = 5;

/// How long payments stay locked after too many wrong PINs.
pub const PIN_LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// How long a node remembers a PIN it verified, so a user paying again
/// soon does not wait for argon2 again.
const VERIFIED_PIN_TTL: Duration = Duration::from_secs(10 * 60);

/// The most PINs a node remembers; past it the memory starts over.
const MAX_VERIFIED_PINS: usize = 100_000;

/// The payment section of a manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    /// Whether the program may pay users out of its merchant account.
    #[serde(default)]
    pub payout: bool,
    /// Seconds an unpaid order stays payable: 2 hours by default, at most 7 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_ttl_secs: Option<u64>,
}

impl PaymentSettings {
    /// The order lifetime in effect, or what is wrong with the asked one.
    pub fn order_ttl(&self) -> Result<Duration, String> {
        match self.order_ttl_secs {
            None => Ok(DEFAULT_ORDER_TTL),
            Some(secs) if (60..=MAX_ORDER_TTL.as_secs()).contains(&secs) => {
                Ok(Duration::from_secs(secs))
            }
            Some(_) => Err(format!(
                "order_ttl_secs must be between 60 and {}",
                MAX_ORDER_TTL.as_secs()
            )),
        }
    }
}

/// Why a payment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The account to debit holds too little.
    #[error("{0}")]
    InsufficientFunds(String),
    /// A per-order limit (refunds) is reached.
    #[error("{0}")]
    LimitReached(String),
    /// The operation needs something not granted: a signed-in user, the
    /// payout permission.
    #[error("{0}")]
    Denied(String),
    /// The PIN is wrong; `attempts_left` more before payments lock.
    #[error("wrong payment PIN: {attempts_left} attempts left before payments lock")]
    WrongPin { attempts_left: i64 },
    /// Too many wrong PINs.
    #[error("too many wrong payment PINs: try again in {retry_after_secs} seconds")]
    Locked { retry_after_secs: i64 },
    /// The user has no PIN yet.
    #[error("set a payment PIN first: PUT /v1/me/payment-pin")]
    NoPin,
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

impl From<sqlx::Error> for PaymentError {
    fn from(err: sqlx::Error) -> Self {
        PaymentError::Unavailable(err.into())
    }
}

/// Where an order stands, as WeChat Pay names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderState {
    NotPay,
    Success,
    Closed,
    Refund,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::NotPay => "NOTPAY",
            OrderState::Success => "SUCCESS",
            OrderState::Closed => "CLOSED",
            OrderState::Refund => "REFUND",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<OrderState> {
        Ok(match s {
            "NOTPAY" => OrderState::NotPay,
            "SUCCESS" => OrderState::Success,
            "CLOSED" => OrderState::Closed,
            "REFUND" => OrderState::Refund,
            other => anyhow::bail!("unknown order state {other:?} in the database"),
        })
    }
}

/// An order as the platform holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub prepay_id: String,
    pub appid: AppId,
    pub out_trade_no: String,
    /// The channel (release or trial) the order was created on; its
    /// events go back to the same channel.
    #[serde(skip)]
    pub channel: String,
    #[serde(skip)]
    pub payer_id: AccountId,
    pub payer_openid: String,
    pub amount: u64,
    pub description: String,
    pub attach: String,
    pub state: OrderState,
    pub refunded: u64,
    #[serde(skip)]
    pub refunds: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub paid_at: Option<i64>,
}

impl Order {
    /// An unpaid order past its expiry reads as closed, whether or not the
    /// sweep has written it yet.
    pub fn settle_expiry(mut self, now: i64) -> Order {
        if self.state == OrderState::NotPay && self.expires_at <= now {
            self.state = OrderState::Closed;
        }
        self
    }
}

/// What a program asks for when it creates an order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub appid: AppId,
    pub channel: String,
    pub payer_id: AccountId,
    pub payer_openid: String,
    pub out_trade_no: String,
    pub amount: u64,
    pub description: String,
    pub attach: String,
    pub ttl: Duration,
}

/// A refund done.
#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub amount: u64,
    pub refunded_total: u64,
}

/// A refund as a program asks for it.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub amount: u64,
    pub reason: String,
}

/// A payout as a program asks for it.
#[derive(Debug, Clone)]
pub struct PayoutRequest {
    pub out_payout_no: String,
    pub payee: AccountId,
    pub amount: u64,
    pub description: String,
}

/// A money account of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyAccount {
    Wallet(AccountId),
    Merchant(AppId),
    Funding,
}

impl MoneyAccount {
    /// Where the account comes in the order movements lock accounts in:
    /// wallets, then merchant accounts, then the funding account, each
    /// kind by id. Any fixed order prevents deadlocks; this one puts the
    /// busiest rows last, so they are held the shortest time.
    pub fn lock_order(&self) -> (u8, String) {
        let rank = match self {
            MoneyAccount::Wallet(_) => 0,
            MoneyAccount::Merchant(_) => 1,
            MoneyAccount::Funding => 2,
        };
        (rank, self.id())
    }

    /// The account's id in the ledger.
    pub fn id(&self) -> String {
        match self {
            MoneyAccount::Wallet(account) => format!("wallet:{account}"),
            MoneyAccount::Merchant(appid) => format!("merchant:{appid}"),
            MoneyAccount::Funding => "funding".into(),
        }
    }
}

/// One line of a statement: a ledger entry of one account.
#[derive(Debug, Clone, Serialize)]
pub struct StatementEntry {
    /// `payment`, `refund`, `payout` or `topup`.
    pub kind: String,
    pub appid: String,
    /// The program's number for it (out_trade_no, out_refund_no,
    /// out_payout_no), or the top-up's id.
    pub reference: String,
    /// Signed: positive credits the account, negative debits it.
    pub amount: i64,
    pub created_at: i64,
}

/// One day of an app's merchant account.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DayTotals {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub orders_created: i64,
    pub payments: i64,
    pub paid_amount: i64,
    pub refunds: i64,
    pub refunded_amount: i64,
    pub payouts: i64,
    pub payout_amount: i64,
    /// What the day added to the merchant account: paid − refunded − paid out.
    pub net: i64,
}

/// Checks a number a program chooses for an order, refund or payout:
/// 6 to 32 characters of `0-9 A-Z a-z _ - | *`.
pub fn check_number(field: &str, number: &str) -> Result<(), PaymentError> {
    let fits = (6..=32).contains(&number.len())
        && number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b));
    if fits {
        Ok(())
    } else {
        Err(PaymentError::Invalid(format!(
            "{field} must be 6 to 32 characters of 0-9 A-Z a-z _ - | *, got {number:?}"
        )))
    }
}

/// Checks an amount in fen: 1 to [`MAX_AMOUNT`].
pub fn check_amount(field: &str, amount: u64) -> Result<i64, PaymentError> {
    if (1..=MAX_AMOUNT).contains(&amount) {
        Ok(amount as i64)
    } else {
        Err(PaymentError::Invalid(format!(
            "{field} must be between 1 and {MAX_AMOUNT} fen, got {amount}"
        )))
    }
}

fn check_text(
    field: &str,
    text: &str,
    min_chars: usize,
    max_chars: usize,
) -> Result<(), PaymentError> {
    let chars = text.chars().count();
    if chars < min_chars || chars > max_chars {
        return Err(PaymentError::Invalid(format!(
            "{field} must have {min_chars} to {max_chars} characters, got {chars}"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(PaymentError::Invalid(format!(
            "{field} may not contain control characters"
        )));
    }
    Ok(())
}

/// A payment PIN: exactly six digits, not all the same and not a run
/// (123456, 987654), which are the first guesses.
pub struct Pin(String);

impl Pin {
    pub fn parse(raw: &str) -> Result<Pin, String> {
        let digits: Vec<u8> = raw.bytes().collect();
        if digits.len() != 6 || !digits.iter().all(u8::is_ascii_digit) {
            return Err("a payment PIN is exactly 6 digits".into());
        }
        let steps: Vec<i16> = digits
            .windows(2)
            .map(|pair| i16::from(pair[1]) - i16::from(pair[0]))
            .collect();
        if steps.iter().all(|step| *step == 0) {
            return Err("a payment PIN may not be one digit six times".into());
        }
        if steps.iter().all(|step| *step == 1) || steps.iter().all(|step| *step == -1) {
            return Err("a payment PIN may not be a run of digits like 123456".into());
        }
        Ok(Pin(raw.to_string()))
    }

    /// The argon2id hash in PHC form. Slow on purpose: a blocking thread.
    pub fn hash(&self) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let hash = Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map_err(|err| anyhow::anyhow!("hashing a PIN: {err}"))?;
        Ok(hash.to_string())
    }

    /// Whether the PIN matches a stored hash. Slow on purpose.
    fn verify(&self, stored: &str) -> bool {
        PasswordHash::new(stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(self.0.as_bytes(), &parsed)
                .is_ok()
        })
    }

    /// What a node remembers of a PIN it verified: a digest salted by the
    /// stored hash (itself salted), so a changed PIN never matches.
    fn remembered(&self, stored: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(stored.as_bytes())
            .chain_update([0])
            .chain_update(self.0.as_bytes())
            .finalize()
            .into()
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(***)")
    }
}

/// The payment service: orders, refunds, payouts and confirmations over
/// the ledger. Shared by the host functions and the HTTP endpoints.
pub struct Payments {
    db: Db,
    /// Rung after a result is queued for a program.
    events_queued: Arc<Notify>,
    /// PINs this node verified lately: account → (digest, when).
    verified: Mutex<HashMap<AccountId, ([u8; 32], Instant)>>,
    hashing: Arc<Hashing>,
}

impl Payments {
    pub fn new(db: Db, events_queued: Arc<Notify>, hashing: Arc<Hashing>) -> Payments {
        Payments {
            db,
            events_queued,
            verified: Mutex::new(HashMap::new()),
            hashing,
        }
    }

    pub async fn create_order(&self, new: NewOrder) -> Result<String, PaymentError> {
        check_number("out_trade_no", &new.out_trade_no)?;
        check_amount("amount", new.amount)?;
        check_text("description", &new.description, 1, 127)?;
        if new.attach.len() > 128 {
            return Err(PaymentError::Invalid(format!(
                "attach may hold at most 128 bytes, got {}",
                new.attach.len()
            )));
        }
        if new.attach.chars().any(char::is_control) {
            return Err(PaymentError::Invalid(
                "attach may not contain control characters".into(),
            ));
        }
        let prepay_id = format!("wx{}", hex::encode(rand::random::<[u8; 16]>()));
        let now = now_ms();
        let expires_at = now + new.ttl.as_millis() as i64;
        self.db
            .create_order(&new, &prepay_id, now, expires_at)
            .await
    }

    pub async fn query_order(
        &self,
        appid: &AppId,
        out_trade_no: &str,
    ) -> Result<Order, PaymentError> {
        check_number("out_trade_no", out_trade_no)?;
        self.db
            .order_by_number(appid, out_trade_no)
            .await?
            .map(|order| order.settle_expiry(now_ms()))
            .ok_or_else(|| no_order(out_trade_no))
    }

    pub async fn close_order(&self, appid: &AppId, out_trade_no: &str) -> Result<(), PaymentError> {
        check_number("out_trade_no", out_trade_no)?;
        self.db.close_order(appid, out_trade_no).await
    }

    pub async fn refund(
        &self,
        appid: &AppId,
        request: RefundRequest,
    ) -> Result<Refund, PaymentError> {
        check_number("out_trade_no", &request.out_trade_no)?;
        check_number("out_refund_no", &request.out_refund_no)?;
        check_amount("amount", request.amount)?;
        check_text("reason", &request.reason, 0, 80)?;
        let refund = self.db.refund(appid, &request, now_ms()).await?;
        self.events_queued.notify_one();
        Ok(refund)
    }

    pub async fn payout(&self, appid: &AppId, request: PayoutRequest) -> Result<(), PaymentError> {
        check_number("out_payout_no", &request.out_payout_no)?;
        check_amount("amount", request.amount)?;
        check_text("description", &request.description, 1, 127)?;
        self.db.payout(appid, &request, now_ms()).await
    }

    pub async fn balance(&self, account: &MoneyAccount) -> Result<u64, PaymentError> {
        Ok(self.db.balance(&account.id()).await?.max(0) as u64)
    }

    /// Moves demo or test money from the funding account to a wallet.
    pub async fn top_up(&self, account: AccountId, amount: u64) -> Result<u64, PaymentError> {
        check_amount("amount", amount)?;
        let reference = format!("topup-{}", hex::encode(rand::random::<[u8; 8]>()));
        self.db
            .top_up(account, amount as i64, &reference, now_ms())
            .await
    }

    /// Sets a user's payment PIN and clears any lockout.
    pub async fn set_pin(&self, account: AccountId, pin: Pin) -> Result<(), PaymentError> {
        let hash = self.hashing.run(move || pin.hash()).await??;
        self.db.set_pin(account, &hash).await?;
        self.forget_pin(account);
        Ok(())
    }

    /// The user's order `prepay_id`, for the page where they confirm it.
    /// Another user's order is not found.
    pub async fn order_for_payer(
        &self,
        payer: AccountId,
        prepay_id: &str,
    ) -> Result<Order, PaymentError> {
        match self.db.order_by_prepay_id(prepay_id).await? {
            Some(order) if order.payer_id == payer => Ok(order.settle_expiry(now_ms())),
            _ => Err(PaymentError::NotFound(format!(
                "no order {prepay_id} to pay"
            ))),
        }
    }

    /// The user confirms their order with their PIN: in one transaction,
    /// the wallet pays the merchant, the order is paid, and the result
    /// waits in the outbox for the program. Returns the paid order.
    pub async fn confirm(
        &self,
        payer: AccountId,
        prepay_id: &str,
        pin: &str,
    ) -> Result<Order, PaymentError> {
        self.check_pin(payer, pin).await?;
        let paid = self.db.settle(payer, prepay_id, now_ms()).await?;
        self.events_queued.notify_one();
        Ok(paid)
    }

    /// Checks a PIN against the user's. A PIN this node verified lately is
    /// checked by its digest; any other attempt counts towards the lockout
    /// before its hash is checked, so a burst of guesses gets no more
    /// checked than [`MAX_WRONG_PINS`]. A user's checks take turns, so a
    /// burst of the right PIN is verified once.
    async fn check_pin(&self, account: AccountId, pin: &str) -> Result<(), PaymentError> {
        let Some((stored, locked_until)) = self.db.pin(account).await? else {
            return Err(PaymentError::NoPin);
        };
        let now = now_ms();
        let locked = |until: i64| PaymentError::Locked {
            retry_after_secs: (until - now + 999) / 1000,
        };
        if locked_until > now {
            return Err(locked(locked_until));
        }
        let pin = Pin::parse(pin).ok();
        let digest = pin.as_ref().map(|pin| pin.remembered(&stored));
        if digest.is_some_and(|digest| self.remembers(account, &digest)) {
            return Ok(());
        }
        let _turn = self.hashing.turn((Secret::Pin, account)).await;
        // Verified by the confirmation ahead of this one.
        if digest.is_some_and(|digest| self.remembers(account, &digest)) {
            return Ok(());
        }
        let lock_until = now + PIN_LOCKOUT.as_millis() as i64;
        let left = match self
            .db
            .take_attempt(Secret::Pin, account, MAX_WRONG_PINS, now, lock_until)
            .await?
        {
            Attempt::Counted { left } => left,
            Attempt::Locked { until } => return Err(locked(until)),
        };
        let verified = self
            .hashing
            .run(move || pin.is_some_and(|pin| pin.verify(&stored)))
            .await?;
        let Some(digest) = digest.filter(|_| verified) else {
            self.forget_pin(account);
            return Err(match left {
                0 => locked(lock_until),
                left => PaymentError::WrongPin {
                    attempts_left: left,
                },
            });
        };
        self.db.clear_attempts(Secret::Pin, account).await?;
        let mut remembered = lock(&self.verified);
        if remembered.len() >= MAX_VERIFIED_PINS {
            remembered.clear();
        }
        remembered.insert(account, (digest, Instant::now()));
        Ok(())
    }

    fn remembers(&self, account: AccountId, digest: &[u8; 32]) -> bool {
        lock(&self.verified)
            .get(&account)
            .is_some_and(|(known, at)| {
                at.elapsed() < VERIFIED_PIN_TTL && constant_time_eq(known, digest)
            })
    }

    fn forget_pin(&self, account: AccountId) {
        lock(&self.verified).remove(&account);
    }

    /// A user's statement: the latest entries of their wallet, newest first.
    pub async fn wallet_statement(
        &self,
        account: AccountId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StatementEntry>, PaymentError> {
        Ok(self
            .db
            .statement(&MoneyAccount::Wallet(account).id(), before, limit)
            .await?)
    }

    /// An app's merchant account by day, UTC, from `from_day` to `to_day`
    /// (days since the epoch), oldest first; days without activity left out.
    pub async fn app_days(
        &self,
        appid: &AppId,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<DayTotals>, PaymentError> {
        Ok(self.db.merchant_days(appid, from_day, to_day).await?)
    }

    /// Closes unpaid orders past their expiry; returns how many.
    pub async fn close_expired(&self) -> Result<u64, PaymentError> {
        Ok(self.db.close_expired_orders(now_ms()).await?)
    }
}

pub(crate) fn no_order(out_trade_no: &str) -> PaymentError {
    PaymentError::NotFound(format!("no order {out_trade_no:?} in this app"))
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_wechat_pays_rules() {
        for good in ["shop-0001", "A_b-c|d*", "123456", &"x".repeat(32)] {
            assert!(check_number("n", good).is_ok(), "{good}");
        }
        for bad in [
            "12345",
            &"x".repeat(33),
            "has space",
            "semi;colon",
            "ünï-code",
        ] {
            assert!(check_number("n", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_positive_and_bounded() {
        assert!(check_amount("amount", 0).is_err());
        assert_eq!(check_amount("amount", 1).unwrap(), 1);
        assert!(check_amount("amount", MAX_AMOUNT).is_ok());
        assert!(check_amount("amount", MAX_AMOUNT + 1).is_err());
    }

    #[test]
    fn weak_pins_are_refused() {
        assert!(Pin::parse("274901").is_ok());
        for weak in [
            "000000", "123456", "987654", "12345", "1234567", "12a456", "",
        ] {
            assert!(Pin::parse(weak).is_err(), "{weak}");
        }
    }

    #[test]
    fn pins_verify_against_their_hash_only() {
        let pin = Pin::parse("274901").unwrap();
        let hash = pin.hash().unwrap();
        assert!(pin.verify(&hash));
        assert!(!Pin::parse("274902").unwrap().verify(&hash));
        assert!(!pin.verify("not a hash"));
        let other = pin.hash().unwrap();
        assert_ne!(pin.remembered(&hash), pin.remembered(&other));
    }

    #[test]
    fn order_ttl_defaults_and_bounds() {
        assert_eq!(
            PaymentSettings::default().order_ttl().unwrap(),
            DEFAULT_ORDER_TTL
        );
        let asked = |secs| PaymentSettings {
            payout: false,
            order_ttl_secs: Some(secs),
        };
        assert!(asked(59).order_ttl().is_err());
        assert_eq!(asked(60).order_ttl().unwrap(), Duration::from_secs(60));
        assert!(asked(MAX_ORDER_TTL.as_secs()).order_ttl().is_ok());
        assert!(asked(MAX_ORDER_TTL.as_secs() + 1).order_ttl().is_err());
    }
}
