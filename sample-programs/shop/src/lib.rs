//! The payment sample for selling: a catalog, orders its signed-in buyers pay
//! on the platform, refunds, the payment events that settle them, and the
//! "order shipped" notification to a buyer who subscribed to it.
//!
//! | route | answer |
//! |---|---|
//! | `GET /products` | `{"products":[{"id":"tea","name":"Jasmine tea","price":1200},...]}`, prices in fen |
//! | `POST /orders` | body `{"product":"tea","quantity":2}` (quantity 1 to 99, 1 when absent): 201 `{"out_trade_no":"shop-00000001","prepay_id":"...","amount":2400}`, an order of the caller's to confirm on the platform |
//! | `GET /orders/:no` | the caller's order: `{"out_trade_no":"...","product":"tea","quantity":2,"amount":2400,"status":"created"}`, the status `created`, `paid` or `refunded` |
//! | `POST /orders/:no/refund` | refunds the caller's paid order in full: `{"out_trade_no":"...","out_refund_no":"<no>-r","amount":2400,"refunded_total":2400}`; asking again refunds nothing more and answers the same |
//!
//! An order numbered `<no>` (`shop-` and a sequence number of 8 digits or
//! more, from the counter `order-seq`) lives in the app scope at the key
//! `order/<no>`, a JSON object `{"product","quantity","amount","buyer",
//! "status","notified"}`, `buyer` being the buyer's openid. It is written, as
//! `created`, before the platform's order is created, so that a payment
//! never arrives for an order the shop does not know. The shop's status
//! moves only forward, by the events: `payment.succeeded` sets `paid`,
//! `refund.succeeded` sets `refunded`; a redelivered or late event changes
//! nothing. Both are acknowledged for an order the shop does not know (with
//! a `warn` line); an event the shop cannot record (a storage failure, a
//! payload it cannot read) is refused, so that the platform delivers it
//! again.
//!
//! Once an order is paid, the buyer gets the notification `order_shipped`
//! (the template the manifest declares) with the product's name (cut to 20
//! characters), the order number and the amount in yuan (`24.00`), opening
//! `/orders/<no>`. `notified` says whether that is settled: `false` from
//! the order's creation, `true` once the notification is sent or refused
//! for good. The `payment.succeeded` event that marks the order paid sends
//! it; a redelivery that finds the order paid and `notified` still `false`
//! sends it again. A refusal that no retry would change (`denied`: the
//! buyer holds no subscription; `quota-exceeded`: the day's cap is
//! reached; `invalid`) is logged as a `warn` line and the event
//! acknowledged; when the platform is `unavailable` the event is refused,
//! so the platform delivers it again and the notification is tried again.
//! A buyer gets it twice only if storage fails right after it was sent. A
//! refunded order is not notified any more, and an order stored before
//! notifications existed (no `notified`) counts as notified.
//!
//! Errors answer `{"error":<kind>,"detail":"..."}`: 400 `invalid` for a body
//! that is not `{"product","quantity"}` with a known product and a quantity
//! of 1 to 99 (checked before anything else); 401 `denied` when there is
//! no signed-in caller; 404 `not-found` for an order that does not exist or
//! is another user's; 409 `conflict` for a refund of an order not paid;
//! otherwise the status [`Error::status`] gives the host's error (403
//! `denied` for a capability missing, 503 `unavailable`, ...), and 500 for
//! a stored order the shop cannot read. It logs one `info` line per
//! request and imports `miniapp:host/identity`, `miniapp:host/storage`,
//! `miniapp:host/payment`, `miniapp:host/messaging` and `miniapp:host/log`;
//! its manifest declares the `identity`, `storage`, `payment` and
//! `messaging` capabilities, no payouts, and the one template
//! `order_shipped`.

use miniapp_sdk::identity::{self, Caller};
use miniapp_sdk::messaging;
use miniapp_sdk::payment::{self, Notification};
use miniapp_sdk::storage::{self, Scope};
use miniapp_sdk::{Error, Event, MiniProgram, Params, Request, Response, Router, info, json, warn};

/// The program's type, exported below.
pub struct Shop;

impl MiniProgram for Shop {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .get("/products", |_, _| products_response())
            .post("/orders", |request, _| answer(place_order(request)))
            .get("/orders/:no", |_, params| answer(read_order(params)))
            .post("/orders/:no/refund", |_, params| {
                answer(refund_order(params))
            })
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        let settled = match Notification::from_event(&event) {
            Ok(Some(Notification::PaymentSucceeded(paid))) => (paid.out_trade_no, Status::Paid),
            Ok(Some(Notification::RefundSucceeded(refund))) => {
                (refund.out_trade_no, Status::Refunded)
            }
            Ok(None) => return Ok(()),
            Err(error) => return Err(format!("event {}: {error}", event.id)),
        };
        let (no, status) = settled;
        settle(&no, status).map_err(|error| format!("event {} for {no}: {error}", event.id))
    }
}

miniapp_sdk::export!(Shop);

/// One product of the catalog.
#[derive(Debug, PartialEq, Eq)]
struct Product {
    id: &'static str,
    name: &'static str,
    /// In fen.
    price: u64,
}

/// What the shop sells.
const CATALOG: [Product; 3] = [
    Product {
        id: "tea",
        name: "Jasmine tea",
        price: 1200,
    },
    Product {
        id: "cake",
        name: "Moon cake",
        price: 2500,
    },
    Product {
        id: "lantern",
        name: "Paper lantern",
        price: 800,
    },
];

/// The most of one product an order may hold.
const MAX_QUANTITY: u64 = 99;
/// The counter that numbers orders.
const ORDER_SEQ_KEY: &str = "order-seq";
/// What the platform records as the reason of a refund.
const REFUND_REASON: &str = "refund requested by buyer";
/// How many times an event's status update is tried against concurrent
/// writers of the order.
const UPDATE_ATTEMPTS: u32 = 10;
/// The notification a buyer gets once their order is paid, as the manifest
/// declares it.
const SHIPPED_TEMPLATE: &str = "order_shipped";
/// The most characters of a `thing` field of a notification.
const MAX_THING_CHARS: usize = 20;

fn product(id: &str) -> Option<&'static Product> {
    CATALOG.iter().find(|product| product.id == id)
}

fn order_key(no: &str) -> String {
    format!("order/{no}")
}

/// The order number of the shop's `seq`th order.
fn order_number(seq: i64) -> String {
    format!("shop-{seq:08}")
}

/// The number of the one refund an order may have.
fn refund_number(no: &str) -> String {
    format!("{no}-r")
}

/// Where an order stands for the shop; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Created,
    Paid,
    Refunded,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Paid => "paid",
            Status::Refunded => "refunded",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "created" => Some(Status::Created),
            "paid" => Some(Status::Paid),
            "refunded" => Some(Status::Refunded),
            _ => None,
        }
    }
}

/// An order as the shop stores it at `order/<no>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OrderRecord {
    product: String,
    quantity: u64,
    /// In fen.
    amount: u64,
    /// The buyer's openid.
    buyer: String,
    status: Status,
    /// Whether the "order shipped" notification is settled: sent, or
    /// refused for good.
    notified: bool,
}

impl OrderRecord {
    fn to_json(&self) -> String {
        json::Object::new()
            .string("product", &self.product)
            .number("quantity", self.quantity)
            .number("amount", self.amount)
            .string("buyer", &self.buyer)
            .string("status", self.status.as_str())
            .boolean("notified", self.notified)
            .finish()
    }

    fn parse(stored: &[u8]) -> Result<Self, Error> {
        let unreadable = || Error::Invalid("a stored order is unreadable".into());
        let text = std::str::from_utf8(stored).map_err(|_| unreadable())?;
        let object = json::parse_flat(text).map_err(|_| unreadable())?;
        let field = |name: &str| object.str(name).map(str::to_owned).ok_or_else(unreadable);
        Ok(Self {
            product: field("product")?,
            quantity: object.u64("quantity").ok_or_else(unreadable)?,
            amount: object.u64("amount").ok_or_else(unreadable)?,
            buyer: field("buyer")?,
            status: object
                .str("status")
                .and_then(Status::parse)
                .ok_or_else(unreadable)?,
            // Orders stored before notifications existed are not notified
            // late.
            notified: match object.get("notified") {
                None => true,
                Some(value) => value.as_bool().ok_or_else(unreadable)?,
            },
        })
    }

    /// This order moved on to `status`, or `None` when it is there or past
    /// it already (a redelivered or late event).
    fn advanced(&self, status: Status) -> Option<Self> {
        (status > self.status).then(|| Self {
            status,
            ..self.clone()
        })
    }

    /// This order with its notification settled, or `None` when it is
    /// already.
    fn with_notification_settled(&self) -> Option<Self> {
        (!self.notified).then(|| Self {
            notified: true,
            ..self.clone()
        })
    }

    /// The fields of its "order shipped" notification: the product's name
    /// (a `thing`, cut to 20 characters), the order number and the amount
    /// in yuan.
    fn shipped_fields(&self, no: &str) -> [(&'static str, String); 3] {
        let name = product(&self.product).map_or(self.product.as_str(), |product| product.name);
        [
            ("thing1", name.chars().take(MAX_THING_CHARS).collect()),
            ("character_string2", no.to_owned()),
            ("amount3", yuan(self.amount)),
        ]
    }
}

/// What `POST /orders` asks for, checked.
#[derive(Debug, PartialEq, Eq)]
struct OrderRequest {
    product: &'static Product,
    quantity: u64,
}

impl OrderRequest {
    fn parse(body: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::Invalid("the body is UTF-8 JSON".into()))?;
        let object = json::parse_flat(text).map_err(|error| {
            Error::Invalid(format!(
                "the body is {{\"product\":\"<id>\",\"quantity\":N}}: {error}"
            ))
        })?;
        let id = object
            .str("product")
            .ok_or_else(|| Error::Invalid("`product` is a product's id".into()))?;
        let product = product(id).ok_or_else(|| Error::Invalid(format!("no product {id:?}")))?;
        let quantity = match object.get("quantity") {
            None => 1,
            Some(value) => value
                .as_u64()
                .filter(|quantity| (1..=MAX_QUANTITY).contains(quantity))
                .ok_or_else(|| {
                    Error::Invalid(format!("`quantity` is a whole number, 1 to {MAX_QUANTITY}"))
                })?,
        };
        Ok(Self { product, quantity })
    }

    fn amount(&self) -> u64 {
        self.product.price * self.quantity
    }

    /// What the buyer sees they pay for: `2 × Jasmine tea`.
    fn description(&self) -> String {
        format!("{} × {}", self.quantity, self.product.name)
    }
}

/// A request that failed, as the response that says so.
#[derive(Debug)]
struct Failure(Response);

impl From<Error> for Failure {
    /// The host's error with the status [`Error::status`] gives it.
    fn from(error: Error) -> Self {
        Failure(Response::error(error.status(), &error))
    }
}

fn answer(outcome: Result<Response, Failure>) -> Response {
    outcome.unwrap_or_else(|Failure(response)| response)
}

/// The signed-in caller; 401 without one.
fn signed_in() -> Result<Caller, Failure> {
    identity::caller().map_err(|error| match error {
        Error::Denied(_) => Failure(Response::error(401, &error)),
        other => other.into(),
    })
}

fn no_such_order(no: &str) -> Failure {
    Failure(Response::error(
        404,
        &Error::NotFound(format!("you have no order {no:?}")),
    ))
}

/// A stored order the shop cannot read: its own fault, not the user's.
fn unreadable(error: Error) -> Failure {
    Failure(Response::error(500, &error))
}

fn products_response() -> Response {
    let products: Vec<String> = CATALOG
        .iter()
        .map(|product| {
            json::Object::new()
                .string("id", product.id)
                .string("name", product.name)
                .number("price", product.price)
                .finish()
        })
        .collect();
    let body = json::Object::new()
        .raw("products", &format!("[{}]", products.join(",")))
        .finish();
    Response::json_raw(200, body)
}

fn place_order(request: &Request) -> Result<Response, Failure> {
    let order = OrderRequest::parse(&request.body)?;
    let buyer = signed_in()?;
    let no = order_number(storage::increment(Scope::App, ORDER_SEQ_KEY, 1)?);
    let record = OrderRecord {
        product: order.product.id.to_owned(),
        quantity: order.quantity,
        amount: order.amount(),
        buyer: buyer.openid,
        status: Status::Created,
        notified: false,
    };
    let key = order_key(&no);
    storage::set(Scope::App, &key, record.to_json())?;
    let prepay_id =
        match payment::create_order(&no, record.amount, &order.description(), order.product.id) {
            Ok(prepay_id) => prepay_id,
            Err(error) => {
                // No platform order, so no payment can come for this record.
                if let Err(cleanup) = storage::delete(Scope::App, &key) {
                    warn!("order {no} not created ({error}); its record stays: {cleanup}");
                }
                return Err(error.into());
            }
        };
    let body = json::Object::new()
        .string("out_trade_no", &no)
        .string("prepay_id", &prepay_id)
        .number("amount", record.amount)
        .finish();
    Ok(Response::json_raw(201, body))
}

/// The caller's order `no`; 404 when it does not exist or is another's.
fn own_order(no: &str, caller: &Caller) -> Result<OrderRecord, Failure> {
    let Some(entry) = storage::get(Scope::App, &order_key(no))? else {
        return Err(no_such_order(no));
    };
    let record = OrderRecord::parse(&entry.value).map_err(unreadable)?;
    if record.buyer != caller.openid {
        return Err(no_such_order(no));
    }
    Ok(record)
}

fn read_order(params: &Params) -> Result<Response, Failure> {
    let no = params.get("no").unwrap_or_default();
    let caller = signed_in()?;
    let record = own_order(no, &caller)?;
    Ok(Response::json_raw(200, order_json(no, &record)))
}

fn order_json(no: &str, record: &OrderRecord) -> String {
    json::Object::new()
        .string("out_trade_no", no)
        .string("product", &record.product)
        .number("quantity", record.quantity)
        .number("amount", record.amount)
        .string("status", record.status.as_str())
        .finish()
}

fn refund_order(params: &Params) -> Result<Response, Failure> {
    let no = params.get("no").unwrap_or_default();
    let caller = signed_in()?;
    let record = own_order(no, &caller)?;
    if record.status == Status::Created {
        return Err(Failure(Response::error(
            409,
            &Error::Conflict(format!("order {no} is not paid")),
        )));
    }
    // Paid, or refunded already: the same refund number again refunds
    // nothing more and answers the refund made.
    let refund = payment::refund(no, &refund_number(no), record.amount, REFUND_REASON)?;
    let body = json::Object::new()
        .string("out_trade_no", &refund.out_trade_no)
        .string("out_refund_no", &refund.out_refund_no)
        .number("amount", refund.amount)
        .number("refunded_total", refund.refunded_total)
        .finish();
    Ok(Response::json_raw(200, body))
}

/// An amount in fen as yuan with two decimals: 2400 is `24.00`.
fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// What an event about the order `no` does: moves it on to `status`, then
/// notifies the buyer of a paid order not notified yet (which a
/// redelivery retries).
fn settle(no: &str, status: Status) -> Result<(), Error> {
    match advance(no, status)? {
        Some(record) if record.status == Status::Paid && !record.notified => {
            notify_shipped(no, &record)
        }
        _ => Ok(()),
    }
}

/// Moves the order `no` on to `status`, if it is not there or past it, and
/// returns it as it now stands. An order the shop does not know is left
/// alone (`None`).
fn advance(no: &str, status: Status) -> Result<Option<OrderRecord>, Error> {
    let updated = update(no, |record| record.advanced(status))?;
    if updated.is_none() {
        warn!("no order {no} to set {}", status.as_str());
    }
    Ok(updated)
}

/// Applies `change` to the stored order `no` (`None` from it: nothing to
/// change), with compare-and-swap against concurrent writers, and returns
/// the order as it now stands; `None` when the shop has no such order.
fn update(
    no: &str,
    change: impl Fn(&OrderRecord) -> Option<OrderRecord>,
) -> Result<Option<OrderRecord>, Error> {
    let key = order_key(no);
    for _ in 0..UPDATE_ATTEMPTS {
        let Some(entry) = storage::get(Scope::App, &key)? else {
            return Ok(None);
        };
        let record = OrderRecord::parse(&entry.value)?;
        let Some(updated) = change(&record) else {
            return Ok(Some(record));
        };
        match storage::compare_and_swap(Scope::App, &key, entry.version, updated.to_json()) {
            Ok(_) => {
                if updated.status != record.status {
                    info!("order {no} {}", updated.status.as_str());
                }
                return Ok(Some(updated));
            }
            Err(Error::Conflict(_)) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(Error::Conflict(format!(
        "the order changed under {UPDATE_ATTEMPTS} attempts"
    )))
}

/// Sends the buyer of the paid order `no` the "order shipped"
/// notification, then records it settled. Only `unavailable` fails, so
/// that the event is delivered again and the notification retried; any
/// other refusal is final and logged.
fn notify_shipped(no: &str, record: &OrderRecord) -> Result<(), Error> {
    let fields = record.shipped_fields(no);
    let fields = fields.each_ref().map(|(key, value)| (*key, value.as_str()));
    let page = format!("/orders/{no}");
    match messaging::send_notification(&record.buyer, SHIPPED_TEMPLATE, &fields, Some(&page)) {
        Ok(()) => info!("order {no}: the buyer is notified"),
        Err(error @ Error::Unavailable(_)) => return Err(error),
        Err(error) => warn!("order {no}: no notification: {error}"),
    }
    update(no, OrderRecord::with_notification_settled).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(response: Response) -> (u16, String) {
        let body = response.body_text().unwrap().to_owned();
        (response.status, body)
    }

    fn record(status: Status) -> OrderRecord {
        OrderRecord {
            product: "tea".into(),
            quantity: 2,
            amount: 2400,
            buyer: "o-\"1\"".into(),
            status,
            notified: false,
        }
    }

    #[test]
    fn the_catalog_lists_every_product_with_its_price_in_fen() {
        assert_eq!(
            answer_of(Shop::handle(Request::new("GET", "/products"))),
            (
                200,
                r#"{"products":[{"id":"tea","name":"Jasmine tea","price":1200},{"id":"cake","name":"Moon cake","price":2500},{"id":"lantern","name":"Paper lantern","price":800}]}"#.to_owned()
            )
        );
    }

    #[test]
    fn an_order_request_reads_product_and_quantity() {
        let order = OrderRequest::parse(br#"{"product":"tea","quantity":2}"#).unwrap();
        assert_eq!((order.product.id, order.quantity), ("tea", 2));
        assert_eq!(order.amount(), 2400);
        assert_eq!(order.description(), "2 × Jasmine tea");
        let order = OrderRequest::parse(br#" {"product":"lantern"} "#).unwrap();
        assert_eq!((order.quantity, order.amount()), (1, 800));
        let order = OrderRequest::parse(br#"{"quantity":99,"product":"cake"}"#).unwrap();
        assert_eq!(order.amount(), 99 * 2500);
    }

    #[test]
    fn bad_order_requests_are_invalid() {
        for body in [
            &b""[..],
            b"\xff",
            b"tea",
            br#"{"product":"coffee"}"#,
            br#"{"product":"Tea"}"#,
            br#"{"product":7}"#,
            br#"{"quantity":1}"#,
            br#"{"product":"tea","quantity":0}"#,
            br#"{"product":"tea","quantity":100}"#,
            br#"{"product":"tea","quantity":-1}"#,
            br#"{"product":"tea","quantity":1.5}"#,
            br#"{"product":"tea","quantity":"2"}"#,
            br#"{"product":"tea","quantity":null}"#,
            br#"{"product":"tea","product":"cake"}"#,
        ] {
            let error = OrderRequest::parse(body).unwrap_err();
            assert!(matches!(error, Error::Invalid(_)), "{body:?}: {error:?}");
        }
    }

    #[test]
    fn a_bad_order_request_is_400_before_sign_in_or_storage() {
        let request = Request::new("POST", "/orders").with_body(r#"{"product":"coffee"}"#);
        let (status, body) = answer_of(Shop::handle(request));
        assert_eq!(status, 400);
        assert_eq!(
            body,
            r#"{"error":"invalid","detail":"no product \"coffee\""}"#
        );
    }

    #[test]
    fn order_numbers_are_padded_to_eight_digits() {
        assert_eq!(order_number(1), "shop-00000001");
        assert_eq!(order_number(123_456_789), "shop-123456789");
        assert_eq!(refund_number("shop-00000001"), "shop-00000001-r");
    }

    #[test]
    fn a_record_reads_back_what_it_stores() {
        for status in [Status::Created, Status::Paid, Status::Refunded] {
            let stored = record(status).to_json();
            assert_eq!(OrderRecord::parse(stored.as_bytes()), Ok(record(status)));
        }
        assert_eq!(
            record(Status::Paid).to_json(),
            r#"{"product":"tea","quantity":2,"amount":2400,"buyer":"o-\"1\"","status":"paid","notified":false}"#
        );
        let notified = OrderRecord {
            notified: true,
            ..record(Status::Paid)
        };
        assert_eq!(
            OrderRecord::parse(notified.to_json().as_bytes()),
            Ok(notified)
        );
        for bad in [
            &b"{}"[..],
            b"\xff",
            br#"{"product":"tea","quantity":2,"amount":2400,"buyer":"o","status":"lost"}"#,
            br#"{"product":"tea","quantity":2,"amount":2400,"buyer":"o","status":"paid","notified":"no"}"#,
        ] {
            assert!(OrderRecord::parse(bad).is_err());
        }
    }

    #[test]
    fn an_order_answers_the_shops_status() {
        assert_eq!(
            order_json("shop-00000001", &record(Status::Created)),
            r#"{"out_trade_no":"shop-00000001","product":"tea","quantity":2,"amount":2400,"status":"created"}"#
        );
    }

    #[test]
    fn the_status_only_moves_forward() {
        let created = record(Status::Created);
        assert_eq!(created.advanced(Status::Paid), Some(record(Status::Paid)));
        assert_eq!(
            created.advanced(Status::Refunded),
            Some(record(Status::Refunded))
        );
        let paid = record(Status::Paid);
        assert_eq!(paid.advanced(Status::Paid), None, "a redelivery");
        assert_eq!(
            paid.advanced(Status::Refunded),
            Some(record(Status::Refunded))
        );
        let refunded = record(Status::Refunded);
        assert_eq!(
            refunded.advanced(Status::Paid),
            None,
            "a late payment event"
        );
        assert_eq!(refunded.advanced(Status::Refunded), None);
    }

    #[test]
    fn an_order_stored_before_notifications_counts_as_notified() {
        let stored =
            br#"{"product":"tea","quantity":2,"amount":2400,"buyer":"o-\"1\"","status":"paid"}"#;
        assert_eq!(
            OrderRecord::parse(stored),
            Ok(OrderRecord {
                notified: true,
                ..record(Status::Paid)
            })
        );
    }

    #[test]
    fn the_notification_is_settled_once() {
        let paid = record(Status::Paid);
        let settled = paid.with_notification_settled().unwrap();
        assert!(settled.notified);
        assert_eq!(settled.status, Status::Paid);
        assert_eq!(settled.with_notification_settled(), None, "a redelivery");
        let refunded = settled.advanced(Status::Refunded).unwrap();
        assert!(refunded.notified, "a refund keeps what was notified");
    }

    #[test]
    fn the_shipped_notification_names_product_order_and_yuan() {
        assert_eq!(
            record(Status::Paid).shipped_fields("shop-00000001"),
            [
                ("thing1", "Jasmine tea".to_owned()),
                ("character_string2", "shop-00000001".to_owned()),
                ("amount3", "24.00".to_owned()),
            ]
        );
        assert_eq!(yuan(1), "0.01");
        assert_eq!(yuan(800), "8.00");
        assert_eq!(yuan(99 * 2500), "2475.00");
        assert_eq!(yuan(1_000_000_000), "10000000.00");
    }

    #[test]
    fn a_long_product_name_is_cut_to_twenty_characters_not_bytes() {
        let unknown = OrderRecord {
            product: "茉莉花茶茉莉花茶茉莉花茶茉莉花茶茉莉花茶 extra".into(),
            ..record(Status::Paid)
        };
        let [(_, thing), ..] = unknown.shipped_fields("shop-00000001");
        assert_eq!(thing, "茉莉花茶茉莉花茶茉莉花茶茉莉花茶茉莉花茶");
        for product in CATALOG {
            assert!(
                product.name.chars().count() <= MAX_THING_CHARS,
                "{product:?}"
            );
        }
    }

    fn event(topic: &str, payload: &str) -> Event {
        Event {
            id: "evt-1".into(),
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn unknown_topics_are_acknowledged() {
        assert_eq!(Shop::on_event(event("message.received", "{}")), Ok(()));
    }

    #[test]
    fn payment_events_that_cannot_be_recorded_are_refused() {
        let paid = event(
            payment::PAYMENT_SUCCEEDED,
            r#"{"out_trade_no":"shop-00000001","prepay_id":"wx1","amount":2400,"payer":"o-1","attach":"tea","paid_at":1}"#,
        );
        // Off WebAssembly, storage is unavailable: the platform must retry.
        let refused = Shop::on_event(paid).unwrap_err();
        assert!(refused.contains("unavailable"), "{refused}");
        let unreadable = Shop::on_event(event(payment::REFUND_SUCCEEDED, "{")).unwrap_err();
        assert!(unreadable.contains("invalid"), "{unreadable}");
    }

    #[test]
    fn off_wasm_the_routes_reach_no_host() {
        for (method, target, body) in [
            ("POST", "/orders", r#"{"product":"tea"}"#),
            ("GET", "/orders/shop-00000001", ""),
            ("POST", "/orders/shop-00000001/refund", ""),
        ] {
            let request = Request::new(method, target).with_body(body);
            let (status, body) = answer_of(Shop::handle(request));
            assert_eq!(status, 503, "{method} {target}");
            assert!(body.contains(r#""error":"unavailable""#), "{body}");
        }
        assert_eq!(Shop::handle(Request::new("GET", "/orders")).status, 405);
        assert_eq!(Shop::handle(Request::new("GET", "/nowhere")).status, 404);
    }
}
