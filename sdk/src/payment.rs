//! Money: the `payment` import, after WeChat Pay's mini-program flow, and
//! the events that tell a program how its orders and refunds went.
//!
//! # The flow
//!
//! 1. The program creates an order for the signed-in caller with
//!    [`create_order`] and hands the prepay id it gets back to the user.
//! 2. The user confirms the order on a platform step with their payment PIN.
//!    No program can reach that step or fake it: a program never pays on a
//!    user's behalf.
//! 3. The result reaches the program as an event, topic
//!    [`PAYMENT_SUCCEEDED`], through [`MiniProgram::on_event`]. Events are
//!    delivered at least once: the same event may arrive again (with the same
//!    [`Event::id`]), so handle it idempotently or deduplicate by its id, and
//!    answer `Err` only when it should be delivered again.
//!
//! [`Notification::from_event`] reads the payload of either topic.
//! [`refund`] gives money back to a payer (topic [`REFUND_SUCCEEDED`]
//! follows), and [`payout`] pays a user from the app's merchant account (a
//! red envelope's share, a prize).
//!
//! Amounts are integer fen (1/100 yuan): 1 to 1,000,000,000 per order,
//! refund or payout. Money lives in a double-entry ledger, moving between
//! users' wallets and the app's merchant account; it is never created or
//! lost.
//!
//! A version uses this module only if its manifest declares the `payment`
//! capability; [`payout`] also needs `"payment": {"payout": true}`.
//!
//! # Errors
//!
//! Every function may answer:
//!
//! - [`Error::Denied`] when the version's manifest does not declare the
//!   `payment` capability;
//! - [`Error::Invalid`] when an argument is malformed or out of range (the
//!   detail names it);
//! - [`Error::Unavailable`] when the platform's database failed. Trying
//!   again with the same arguments is safe: every function is idempotent on
//!   the numbers the program chooses (`out_trade_no`, `out_refund_no`,
//!   `out_payout_no`).
//!
//! Each function's own errors are listed with it. Off WebAssembly (in a
//! program's unit tests, say) there is no host, and every function answers
//! [`Error::Unavailable`].
//!
//! # Events
//!
//! Each event's payload is a flat JSON object:
//!
//! | topic | payload members |
//! |---|---|
//! | `payment.succeeded` | `out_trade_no`, `prepay_id`, `amount` (fen), `payer` (the payer's openid in this app), `attach` (as given to [`create_order`]), `paid_at` (unix milliseconds) |
//! | `refund.succeeded` | `out_trade_no`, `out_refund_no`, `amount` (fen, this refund's), `refunded_at` (unix milliseconds) |
//!
//! # Example
//!
//! ```
//! use miniapp_sdk::payment::{self, Notification};
//! use miniapp_sdk::storage::{self, Scope};
//! use miniapp_sdk::{Error, Event, Response, json};
//!
//! /// Sells one cup of tea, 12 yuan, to the signed-in caller.
//! fn buy_tea(order_number: u64) -> Response {
//!     let out_trade_no = format!("tea-{order_number:08}");
//!     match payment::create_order(&out_trade_no, 1200, "1 × Jasmine tea", "tea") {
//!         Ok(prepay_id) => {
//!             let body = json::Object::new()
//!                 .string("out_trade_no", &out_trade_no)
//!                 .string("prepay_id", &prepay_id)
//!                 .finish();
//!             Response::json_raw(201, body)
//!         }
//!         // Not signed in: this program means "sign in first", not 403.
//!         Err(error @ Error::Denied(_)) => Response::error(401, &error),
//!         Err(error) => Response::error(error.status(), &error),
//!     }
//! }
//!
//! /// Marks an order paid when the platform says so; again on a redelivery,
//! /// which writes the same value.
//! fn on_event(event: Event) -> Result<(), String> {
//!     match Notification::from_event(&event) {
//!         Ok(Some(Notification::PaymentSucceeded(paid))) => {
//!             storage::set(Scope::App, &format!("paid/{}", paid.out_trade_no), paid.amount.to_string())
//!                 .map(|_| ())
//!                 .map_err(|error| error.to_string())
//!         }
//!         Ok(_) => Ok(()),
//!         Err(error) => Err(error.to_string()),
//!     }
//! }
//!
//! // Off WebAssembly there is no host to ask.
//! assert_eq!(buy_tea(1).status, 503);
//! let paid = Event {
//!     id: "evt-1".into(),
//!     topic: payment::PAYMENT_SUCCEEDED.into(),
//!     payload: r#"{"out_trade_no":"tea-00000001","prepay_id":"wx1","amount":1200,"payer":"o-1","attach":"tea","paid_at":1700000000000}"#.into(),
//! };
//! assert!(on_event(paid).unwrap_err().starts_with("unavailable"));
//! ```
//!
//! [`MiniProgram::on_event`]: crate::MiniProgram::on_event

use crate::bindings::miniapp::host::payment as wit;
use crate::program::Payload;
use crate::{Error, Event};

/// The topic of the event that says an order was paid.
pub const PAYMENT_SUCCEEDED: &str = "payment.succeeded";

/// The topic of the event that says a refund was made.
pub const REFUND_SUCCEEDED: &str = "refund.succeeded";

/// Where an order stands, as WeChat Pay names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// Created, waiting for the user to confirm (`NOTPAY`).
    NotPay,
    /// Paid (`SUCCESS`).
    Success,
    /// Closed unpaid, by the program or on expiry (`CLOSED`).
    Closed,
    /// Paid, then refunded in part or in full (`REFUND`).
    Refund,
}

impl OrderState {
    /// The state as WeChat Pay spells it: `NOTPAY`, `SUCCESS`, `CLOSED` or
    /// `REFUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::NotPay => "NOTPAY",
            OrderState::Success => "SUCCESS",
            OrderState::Closed => "CLOSED",
            OrderState::Refund => "REFUND",
        }
    }
}

/// An order as the platform holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Order {
    /// The program's own number for the order.
    pub out_trade_no: String,
    /// The platform's id for it, which the user confirms.
    pub prepay_id: String,
    /// The price, in fen.
    pub amount: u64,
    /// What the user was shown they pay for.
    pub description: String,
    /// The program's own data, as given to [`create_order`].
    pub attach: String,
    /// Where the order stands.
    pub state: OrderState,
    /// The openid (in this app) of the user who pays.
    pub payer: String,
    /// How much has been refunded, in fen.
    pub refunded: u64,
    /// When the order was created, in unix milliseconds.
    pub created_at: u64,
    /// When an unpaid order closes by itself, in unix milliseconds.
    pub expires_at: u64,
    /// When the user paid, in unix milliseconds; `None` while unpaid.
    pub paid_at: Option<u64>,
}

/// A refund, done: the money is back in the payer's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refund {
    /// The order refunded.
    pub out_trade_no: String,
    /// The program's number for the refund.
    pub out_refund_no: String,
    /// This refund's amount, in fen.
    pub amount: u64,
    /// All refunds of the order so far, this one included, in fen.
    pub refunded_total: u64,
}

/// Creates an order for the signed-in caller to pay; returns its prepay id,
/// which the user confirms on the platform.
///
/// `out_trade_no` is the program's number for the order: 6 to 32 characters
/// of `0-9 A-Z a-z _ - | *`, unique within the app. `amount` is in fen, 1 to
/// 1,000,000,000. `description` (1 to 127 characters) is what the user sees
/// they pay for; `attach` (at most 128 bytes) is the program's own data,
/// given back as is in the order and in its [`PAYMENT_SUCCEEDED`] event.
///
/// Creating the same order again (same number, amount, description and
/// attach) returns the same prepay id, so a retry is safe. An unpaid order
/// closes after the manifest's `payment.order_ttl_secs` (defaults to 2
/// hours, at most 7 days).
///
/// # Errors
///
/// [`Error::Denied`] when the call has no signed-in user (an anonymous
/// request, a platform event); [`Error::Conflict`] when the number is taken
/// by an order with other parameters; [`Error::Denied`], [`Error::Invalid`]
/// and [`Error::Unavailable`] as for every function.
///
/// ```
/// use miniapp_sdk::payment;
///
/// let prepay_id = payment::create_order("shop-00000042", 2500, "1 × Moon cake", "cake");
/// # assert!(prepay_id.is_err());
/// ```
pub fn create_order(
    out_trade_no: &str,
    amount: u64,
    description: &str,
    attach: &str,
) -> Result<String, Error> {
    host::create_order(out_trade_no, amount, description, attach).map_err(Error::from)
}

/// The order `out_trade_no` of this app, as the platform holds it.
///
/// # Errors
///
/// [`Error::NotFound`] when this app has no such order; [`Error::Denied`],
/// [`Error::Invalid`] and [`Error::Unavailable`] as for every function.
///
/// ```
/// use miniapp_sdk::payment::{self, OrderState};
///
/// let paid = payment::query_order("shop-00000042")
///     .map(|order| order.state == OrderState::Success);
/// # assert!(paid.is_err());
/// ```
pub fn query_order(out_trade_no: &str) -> Result<Order, Error> {
    host::query_order(out_trade_no)
        .map(Order::from)
        .map_err(Error::from)
}

/// Closes an unpaid order, so that it can no longer be paid. Closing a
/// closed order again is no error.
///
/// # Errors
///
/// [`Error::NotFound`] when this app has no such order; [`Error::Conflict`]
/// when the order is paid (refund it instead); [`Error::Denied`],
/// [`Error::Invalid`] and [`Error::Unavailable`] as for every function.
///
/// ```
/// use miniapp_sdk::payment;
///
/// let closed = payment::close_order("shop-00000042");
/// # assert!(closed.is_err());
/// ```
pub fn close_order(out_trade_no: &str) -> Result<(), Error> {
    host::close_order(out_trade_no).map_err(Error::from)
}

/// Refunds `amount` fen of a paid order, at once, from the app's merchant
/// account to the payer's wallet; a [`REFUND_SUCCEEDED`] event follows.
///
/// `out_refund_no` numbers the refund, by the rules of `out_trade_no` (see
/// [`create_order`]): sending the same refund again returns it again and
/// moves no money, so a retry is safe. `reason` has at most 80 characters.
/// Several refunds may together give back up to the order's amount.
///
/// # Errors
///
/// [`Error::NotFound`] when this app has no such order; [`Error::Conflict`]
/// when the order is not paid, when the merchant account holds less than
/// `amount`, or when the number is taken by a refund with other parameters;
/// [`Error::Invalid`] when the order's refunds would total more than its
/// amount; [`Error::QuotaExceeded`] past 50 refunds of one order;
/// [`Error::Denied`], [`Error::Invalid`] and [`Error::Unavailable`] as for
/// every function.
///
/// ```
/// use miniapp_sdk::payment;
///
/// let refund = payment::refund("shop-00000042", "shop-00000042-r", 2500, "out of cakes");
/// # assert!(refund.is_err());
/// ```
pub fn refund(
    out_trade_no: &str,
    out_refund_no: &str,
    amount: u64,
    reason: &str,
) -> Result<Refund, Error> {
    host::refund(out_trade_no, out_refund_no, amount, reason)
        .map(Refund::from)
        .map_err(Error::from)
}

/// Pays `amount` fen from the app's merchant account to the signed-in
/// caller's wallet: a red envelope's share, a prize.
///
/// `out_payout_no` numbers the payout, by the rules of `out_trade_no` (see
/// [`create_order`]): the same payout again pays nothing more, so a retry is
/// safe. `description` has 1 to 127 characters.
///
/// # Errors
///
/// [`Error::Denied`] when the manifest does not say `"payment": {"payout":
/// true}`, or when the call has no signed-in user; [`Error::Conflict`] when
/// the merchant account holds less than `amount`, or when the number is
/// taken by a payout of another amount or to another user;
/// [`Error::Denied`], [`Error::Invalid`] and [`Error::Unavailable`] as for
/// every function.
///
/// ```
/// use miniapp_sdk::payment;
///
/// let paid = payment::payout("env7-3", 88, "Red envelope");
/// # assert!(paid.is_err());
/// ```
pub fn payout(out_payout_no: &str, amount: u64, description: &str) -> Result<(), Error> {
    host::payout(out_payout_no, amount, description).map_err(Error::from)
}

/// What the app's merchant account holds, in fen.
///
/// # Errors
///
/// [`Error::Denied`] and [`Error::Unavailable`], as for every function.
///
/// ```
/// use miniapp_sdk::payment;
///
/// if let Ok(balance) = payment::merchant_balance() {
///     println!("{}.{:02} yuan", balance / 100, balance % 100);
/// }
/// ```
pub fn merchant_balance() -> Result<u64, Error> {
    host::merchant_balance().map_err(Error::from)
}

/// The payload of a [`PAYMENT_SUCCEEDED`] event: an order was paid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentSucceeded {
    /// The program's number for the order.
    pub out_trade_no: String,
    /// The platform's id for the order.
    pub prepay_id: String,
    /// The amount paid, in fen.
    pub amount: u64,
    /// The payer's openid in this app.
    pub payer: String,
    /// The program's own data, as given to [`create_order`].
    pub attach: String,
    /// When the user paid, in unix milliseconds.
    pub paid_at: u64,
}

/// The payload of a [`REFUND_SUCCEEDED`] event: a refund was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefundSucceeded {
    /// The program's number for the order refunded.
    pub out_trade_no: String,
    /// The program's number for the refund.
    pub out_refund_no: String,
    /// This refund's amount, in fen.
    pub amount: u64,
    /// When the refund was made, in unix milliseconds.
    pub refunded_at: u64,
}

/// An event of this module's topics, its payload read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Notification {
    /// Topic [`PAYMENT_SUCCEEDED`].
    PaymentSucceeded(PaymentSucceeded),
    /// Topic [`REFUND_SUCCEEDED`].
    RefundSucceeded(RefundSucceeded),
}

impl Notification {
    /// Reads `event` if its topic is one of this module's: `Ok(None)` for
    /// any other topic, which a program should acknowledge.
    ///
    /// Members of the payload it does not know are ignored, so that the
    /// platform may add some.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when the payload is not a flat JSON object or
    /// lacks a member of its topic (or has one of another type); the detail
    /// says which.
    ///
    /// ```
    /// use miniapp_sdk::Event;
    /// use miniapp_sdk::payment::{Notification, REFUND_SUCCEEDED};
    ///
    /// let event = Event {
    ///     id: "evt-9".into(),
    ///     topic: REFUND_SUCCEEDED.into(),
    ///     payload: r#"{"out_trade_no":"shop-00000001","out_refund_no":"shop-00000001-r","amount":1200,"refunded_at":1700000000000}"#.into(),
    /// };
    /// let Ok(Some(Notification::RefundSucceeded(refund))) = Notification::from_event(&event) else {
    ///     panic!("a refund event");
    /// };
    /// assert_eq!((refund.out_refund_no.as_str(), refund.amount), ("shop-00000001-r", 1200));
    /// ```
    pub fn from_event(event: &Event) -> Result<Option<Self>, Error> {
        let topic = event.topic.as_str();
        if topic != PAYMENT_SUCCEEDED && topic != REFUND_SUCCEEDED {
            return Ok(None);
        }
        let fields = Payload::read(event)?;
        Ok(Some(if topic == PAYMENT_SUCCEEDED {
            Notification::PaymentSucceeded(PaymentSucceeded {
                out_trade_no: fields.string("out_trade_no")?,
                prepay_id: fields.string("prepay_id")?,
                amount: fields.number("amount")?,
                payer: fields.string("payer")?,
                attach: fields.string("attach")?,
                paid_at: fields.number("paid_at")?,
            })
        } else {
            Notification::RefundSucceeded(RefundSucceeded {
                out_trade_no: fields.string("out_trade_no")?,
                out_refund_no: fields.string("out_refund_no")?,
                amount: fields.number("amount")?,
                refunded_at: fields.number("refunded_at")?,
            })
        }))
    }

    /// The number of the order the event is about.
    pub fn out_trade_no(&self) -> &str {
        match self {
            Notification::PaymentSucceeded(paid) => &paid.out_trade_no,
            Notification::RefundSucceeded(refund) => &refund.out_trade_no,
        }
    }
}

impl From<wit::OrderState> for OrderState {
    fn from(state: wit::OrderState) -> Self {
        match state {
            wit::OrderState::NotPay => OrderState::NotPay,
            wit::OrderState::Success => OrderState::Success,
            wit::OrderState::Closed => OrderState::Closed,
            wit::OrderState::Refund => OrderState::Refund,
        }
    }
}

impl From<wit::Order> for Order {
    fn from(order: wit::Order) -> Self {
        Self {
            out_trade_no: order.out_trade_no,
            prepay_id: order.prepay_id,
            amount: order.amount,
            description: order.description,
            attach: order.attach,
            state: order.state.into(),
            payer: order.payer,
            refunded: order.refunded,
            created_at: order.created_at,
            expires_at: order.expires_at,
            paid_at: order.paid_at,
        }
    }
}

impl From<wit::RefundInfo> for Refund {
    fn from(refund: wit::RefundInfo) -> Self {
        Self {
            out_trade_no: refund.out_trade_no,
            out_refund_no: refund.out_refund_no,
            amount: refund.amount,
            refunded_total: refund.refunded_total,
        }
    }
}

/// The host's functions: the imports on WebAssembly, stand-ins that answer
/// `unavailable` elsewhere.
#[cfg(target_arch = "wasm32")]
mod host {
    pub(super) use super::wit::{
        close_order, create_order, merchant_balance, payout, query_order, refund,
    };
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use super::wit;
    use crate::bindings::miniapp::host::types::Error;
    use crate::error::no_host;

    pub(super) fn create_order(_: &str, _: u64, _: &str, _: &str) -> Result<String, Error> {
        Err(no_host("payment.create-order"))
    }

    pub(super) fn query_order(_: &str) -> Result<wit::Order, Error> {
        Err(no_host("payment.query-order"))
    }

    pub(super) fn close_order(_: &str) -> Result<(), Error> {
        Err(no_host("payment.close-order"))
    }

    pub(super) fn refund(_: &str, _: &str, _: u64, _: &str) -> Result<wit::RefundInfo, Error> {
        Err(no_host("payment.refund"))
    }

    pub(super) fn payout(_: &str, _: u64, _: &str) -> Result<(), Error> {
        Err(no_host("payment.payout"))
    }

    pub(super) fn merchant_balance() -> Result<u64, Error> {
        Err(no_host("payment.merchant-balance"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_wasm_every_function_is_unavailable_and_names_itself() {
        let errors = [
            create_order("order-1", 1, "d", "").unwrap_err(),
            query_order("order-1").unwrap_err(),
            close_order("order-1").unwrap_err(),
            refund("order-1", "refund-1", 1, "").unwrap_err(),
            payout("payout-1", 1, "d").unwrap_err(),
            merchant_balance().unwrap_err(),
        ];
        let functions = [
            "payment.create-order",
            "payment.query-order",
            "payment.close-order",
            "payment.refund",
            "payment.payout",
            "payment.merchant-balance",
        ];
        for (error, function) in errors.iter().zip(functions) {
            assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
            assert!(error.detail().starts_with(function), "{error}");
        }
    }

    #[test]
    fn order_states_convert_case_by_case_and_spell_as_wechat_pay() {
        let cases = [
            (wit::OrderState::NotPay, OrderState::NotPay, "NOTPAY"),
            (wit::OrderState::Success, OrderState::Success, "SUCCESS"),
            (wit::OrderState::Closed, OrderState::Closed, "CLOSED"),
            (wit::OrderState::Refund, OrderState::Refund, "REFUND"),
        ];
        for (from_host, state, spelled) in cases {
            assert_eq!(OrderState::from(from_host), state);
            assert_eq!(state.as_str(), spelled);
        }
    }

    #[test]
    fn the_host_records_convert_field_by_field() {
        let order = Order::from(wit::Order {
            out_trade_no: "shop-1".into(),
            prepay_id: "wx1".into(),
            amount: 1200,
            description: "tea".into(),
            attach: "a".into(),
            state: wit::OrderState::Refund,
            payer: "o-1".into(),
            refunded: 200,
            created_at: 1,
            expires_at: 2,
            paid_at: Some(3),
        });
        assert_eq!(
            order,
            Order {
                out_trade_no: "shop-1".into(),
                prepay_id: "wx1".into(),
                amount: 1200,
                description: "tea".into(),
                attach: "a".into(),
                state: OrderState::Refund,
                payer: "o-1".into(),
                refunded: 200,
                created_at: 1,
                expires_at: 2,
                paid_at: Some(3),
            }
        );
        let refund = Refund::from(wit::RefundInfo {
            out_trade_no: "shop-1".into(),
            out_refund_no: "shop-1-r".into(),
            amount: 200,
            refunded_total: 300,
        });
        assert_eq!(
            refund,
            Refund {
                out_trade_no: "shop-1".into(),
                out_refund_no: "shop-1-r".into(),
                amount: 200,
                refunded_total: 300,
            }
        );
    }

    fn event(topic: &str, payload: &str) -> Event {
        Event {
            id: "evt-1".into(),
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn a_payment_event_reads_every_member() {
        let paid = event(
            PAYMENT_SUCCEEDED,
            r#"{"out_trade_no":"shop-00000001","prepay_id":"wx42","amount":2400,"payer":"o-1","attach":"tea","paid_at":1700000000123,"later":"ignored"}"#,
        );
        assert_eq!(
            Notification::from_event(&paid),
            Ok(Some(Notification::PaymentSucceeded(PaymentSucceeded {
                out_trade_no: "shop-00000001".into(),
                prepay_id: "wx42".into(),
                amount: 2400,
                payer: "o-1".into(),
                attach: "tea".into(),
                paid_at: 1_700_000_000_123,
            })))
        );
    }

    #[test]
    fn a_refund_event_reads_every_member() {
        let refunded = event(
            REFUND_SUCCEEDED,
            r#"{"out_trade_no":"shop-00000001","out_refund_no":"shop-00000001-r","amount":2400,"refunded_at":1700000000456}"#,
        );
        let notification = Notification::from_event(&refunded).unwrap().unwrap();
        assert_eq!(notification.out_trade_no(), "shop-00000001");
        assert_eq!(
            notification,
            Notification::RefundSucceeded(RefundSucceeded {
                out_trade_no: "shop-00000001".into(),
                out_refund_no: "shop-00000001-r".into(),
                amount: 2400,
                refunded_at: 1_700_000_000_456,
            })
        );
    }

    #[test]
    fn other_topics_are_none_whatever_their_payload() {
        assert_eq!(
            Notification::from_event(&event("message.received", "not json")),
            Ok(None)
        );
    }

    #[test]
    fn a_bad_payload_is_invalid_and_says_what_is_wrong() {
        let cases = [
            (r#"{"out_trade_no":"x"#, "not a flat JSON object"),
            (
                r#"{"out_trade_no":"x","prepay_id":"p","amount":"12","payer":"o","attach":"","paid_at":1}"#,
                "lacks `amount`, a whole number",
            ),
            (
                r#"{"out_trade_no":"x","prepay_id":"p","amount":12,"payer":"o","paid_at":1}"#,
                "lacks `attach`, a string",
            ),
        ];
        for (payload, says) in cases {
            let error = Notification::from_event(&event(PAYMENT_SUCCEEDED, payload)).unwrap_err();
            assert!(matches!(error, Error::Invalid(_)), "{error:?}");
            assert!(error.detail().contains(says), "{error}");
            assert!(error.detail().contains(PAYMENT_SUCCEEDED), "{error}");
        }
    }
}
