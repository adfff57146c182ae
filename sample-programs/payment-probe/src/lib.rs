//! A mini-program that probes the payment capability's edges, for the
//! host's tests (as `hostile` does the sandbox's): each route calls one
//! payment function with the request's query parameters, as given, and
//! answers what the host answered; events are counted and, for some
//! orders, refused on purpose.
//!
//! | route | calls | answer |
//! |---|---|---|
//! | `POST /order?no=&amount=&description=&attach=` | `create-order` | 200 `{"prepay_id":"..."}` |
//! | `GET /order?no=` | `query-order` | 200 `{"out_trade_no","prepay_id","amount","description","attach","state":"NOTPAY\|SUCCESS\|CLOSED\|REFUND","payer","refunded","created_at","expires_at","paid_at":null\|N}` |
//! | `POST /close?no=` | `close-order` | 200 `{"closed":true}` |
//! | `POST /refund?no=&refund=&amount=&reason=` | `refund` | 200 `{"out_trade_no","out_refund_no","amount","refunded_total"}` |
//! | `POST /payout?no=&amount=` | `payout` (description `probe payout`) | 200 `{"paid":true}`; the manifest does not allow payouts, so 403 `denied` |
//! | `GET /balance` | `merchant-balance` | 200 `{"balance":N}` |
//! | `GET /deliveries?id=<event id>` | | 200 `{"deliveries":N}`: how many times the event was delivered, 0 for one never seen |
//! | `GET /seen?no=<out_trade_no>` | | 200 `{"events":["payment.succeeded",...]}`: the topics acknowledged for the order, in order (a redelivery of an acknowledged event appears again) |
//!
//! A missing text parameter is passed on as the empty string, for the host
//! to judge; a missing or non-numeric `amount` answers 400 `invalid` before
//! any call. A host error answers `{"error":<kind>,"detail":"..."}` with the
//! status [`Error::status`] gives it: 403 `denied`, 413 `quota-exceeded`,
//! 404 `not-found`, 400 `invalid`, 409 `conflict`, 503 `unavailable`.
//!
//! Every delivery of an event counts first, at the app key
//! `delivery/<event id>` (an `increment`). Then the probe refuses, with
//! `Err("refusing delivery <n> on purpose")`, the first two deliveries of
//! a `payment.succeeded` whose `attach` is `flaky`, so the third is
//! acknowledged; it acknowledges every other delivery at once. Acknowledging
//! a payment or refund event appends its topic to the app key
//! `seen/<out_trade_no>` (one per line). A storage failure, or a payment
//! event whose payload it cannot read, is refused too. It imports
//! `miniapp:host/storage`, `miniapp:host/payment` and `miniapp:host/log`;
//! its manifest declares the `identity`, `storage` and `payment`
//! capabilities, and no payouts.

use miniapp_sdk::payment::{self, Notification, Order};
use miniapp_sdk::storage::{self, Scope};
use miniapp_sdk::{Error, Event, MiniProgram, Request, Response, Router, info, json};

/// The program's type, exported below.
pub struct PaymentProbe;

impl MiniProgram for PaymentProbe {
    fn handle(request: Request) -> Response {
        info!("{} {}?{}", request.method, request.path, request.query);
        Router::new()
            .post("/order", |request, _| answer(create_order(request)))
            .get("/order", |request, _| answer(query_order(request)))
            .post("/close", |request, _| answer(close_order(request)))
            .post("/refund", |request, _| answer(refund(request)))
            .post("/payout", |request, _| answer(payout(request)))
            .get("/balance", |_, _| answer(balance()))
            .get("/deliveries", |request, _| answer(deliveries(request)))
            .get("/seen", |request, _| answer(seen(request)))
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        receive(&event).map_err(|error| format!("event {}: {error}", event.id))?
    }
}

miniapp_sdk::export!(PaymentProbe);

/// The `attach` of orders whose payment event the probe refuses at first.
const FLAKY: &str = "flaky";
/// How many deliveries of a flaky order's payment event are refused.
const REFUSED_DELIVERIES: i64 = 2;
/// The description of the probe's payouts.
const PAYOUT_DESCRIPTION: &str = "probe payout";
/// How many times appending to a `seen/` list is tried against concurrent
/// deliveries.
const APPEND_ATTEMPTS: u32 = 10;

fn delivery_key(event_id: &str) -> String {
    format!("delivery/{event_id}")
}

fn seen_key(out_trade_no: &str) -> String {
    format!("seen/{out_trade_no}")
}

/// A host call's answer: 200 and its JSON, or the error with its status.
fn answer(outcome: Result<json::Object, Error>) -> Response {
    match outcome {
        Ok(body) => Response::json_raw(200, body.finish()),
        Err(error) => Response::error(error.status(), &error),
    }
}

/// The query parameter `name`, the empty string when absent.
fn text(request: &Request, name: &str) -> String {
    request.query_param(name).unwrap_or_default()
}

/// The query parameter `name` as a whole number.
fn number(request: &Request, name: &str) -> Result<u64, Error> {
    request
        .query_param(name)
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("{name}=N, a whole number")))
}

fn create_order(request: &Request) -> Result<json::Object, Error> {
    let prepay_id = payment::create_order(
        &text(request, "no"),
        number(request, "amount")?,
        &text(request, "description"),
        &text(request, "attach"),
    )?;
    Ok(json::Object::new().string("prepay_id", &prepay_id))
}

fn query_order(request: &Request) -> Result<json::Object, Error> {
    payment::query_order(&text(request, "no")).map(|order| order_json(&order))
}

fn order_json(order: &Order) -> json::Object {
    let paid_at = order
        .paid_at
        .map_or_else(|| "null".to_owned(), |paid_at| paid_at.to_string());
    json::Object::new()
        .string("out_trade_no", &order.out_trade_no)
        .string("prepay_id", &order.prepay_id)
        .number("amount", order.amount)
        .string("description", &order.description)
        .string("attach", &order.attach)
        .string("state", order.state.as_str())
        .string("payer", &order.payer)
        .number("refunded", order.refunded)
        .number("created_at", order.created_at)
        .number("expires_at", order.expires_at)
        .raw("paid_at", &paid_at)
}

fn close_order(request: &Request) -> Result<json::Object, Error> {
    payment::close_order(&text(request, "no"))?;
    Ok(json::Object::new().boolean("closed", true))
}

fn refund(request: &Request) -> Result<json::Object, Error> {
    let refund = payment::refund(
        &text(request, "no"),
        &text(request, "refund"),
        number(request, "amount")?,
        &text(request, "reason"),
    )?;
    Ok(json::Object::new()
        .string("out_trade_no", &refund.out_trade_no)
        .string("out_refund_no", &refund.out_refund_no)
        .number("amount", refund.amount)
        .number("refunded_total", refund.refunded_total))
}

fn payout(request: &Request) -> Result<json::Object, Error> {
    payment::payout(
        &text(request, "no"),
        number(request, "amount")?,
        PAYOUT_DESCRIPTION,
    )?;
    Ok(json::Object::new().boolean("paid", true))
}

fn balance() -> Result<json::Object, Error> {
    let balance = payment::merchant_balance()?;
    Ok(json::Object::new().number("balance", balance))
}

fn deliveries(request: &Request) -> Result<json::Object, Error> {
    let deliveries = match storage::get(Scope::App, &delivery_key(&text(request, "id")))? {
        Some(entry) => entry
            .text()
            .ok()
            .and_then(|count| count.parse::<i64>().ok())
            .ok_or_else(|| Error::Invalid("a delivery count is not a number".into()))?,
        None => 0,
    };
    Ok(json::Object::new().number("deliveries", deliveries))
}

fn seen(request: &Request) -> Result<json::Object, Error> {
    let topics = match storage::get(Scope::App, &seen_key(&text(request, "no")))? {
        Some(entry) => String::from_utf8_lossy(&entry.value).into_owned(),
        None => String::new(),
    };
    Ok(json::Object::new().raw("events", &topics_json(&topics)))
}

/// The stored topics, one per line, as a JSON array of strings.
fn topics_json(stored: &str) -> String {
    let topics: Vec<String> = stored.lines().map(json::quote).collect();
    format!("[{}]", topics.join(","))
}

/// Counts a delivery and decides on it: `Ok(Err(reason))` refuses it on
/// purpose, the outer `Err` when the probe could not do its part.
fn receive(event: &Event) -> Result<Result<(), String>, Error> {
    let delivery = storage::increment(Scope::App, &delivery_key(&event.id), 1)?;
    let notification = Notification::from_event(event)?;
    if refuses(notification.as_ref(), delivery) {
        info!("refusing delivery {delivery} of {}", event.id);
        return Ok(Err(format!("refusing delivery {delivery} on purpose")));
    }
    if let Some(notification) = notification {
        append_seen(notification.out_trade_no(), &event.topic)?;
    }
    Ok(Ok(()))
}

/// Whether the `delivery`th delivery of an event is refused on purpose: the
/// first [`REFUSED_DELIVERIES`] of a payment whose `attach` is [`FLAKY`].
fn refuses(notification: Option<&Notification>, delivery: i64) -> bool {
    match notification {
        Some(Notification::PaymentSucceeded(paid)) => {
            paid.attach == FLAKY && delivery <= REFUSED_DELIVERIES
        }
        _ => false,
    }
}

/// Appends `topic` to the order's `seen/` list, by compare-and-swap.
fn append_seen(out_trade_no: &str, topic: &str) -> Result<(), Error> {
    let key = seen_key(out_trade_no);
    for _ in 0..APPEND_ATTEMPTS {
        let (version, mut topics) = match storage::get(Scope::App, &key)? {
            Some(entry) => (entry.version, entry.value),
            None => (0, Vec::new()),
        };
        topics.extend_from_slice(topic.as_bytes());
        topics.push(b'\n');
        match storage::compare_and_swap(Scope::App, &key, version, topics) {
            Ok(_) => return Ok(()),
            Err(Error::Conflict(_)) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(Error::Conflict(format!(
        "{key} changed under {APPEND_ATTEMPTS} attempts"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniapp_sdk::payment::{OrderState, PaymentSucceeded, RefundSucceeded};

    fn answer_of(response: Response) -> (u16, String) {
        let body = response.body_text().unwrap().to_owned();
        (response.status, body)
    }

    fn paid(attach: &str) -> Notification {
        Notification::PaymentSucceeded(PaymentSucceeded {
            out_trade_no: "probe-1".into(),
            prepay_id: "wx1".into(),
            amount: 100,
            payer: "o-1".into(),
            attach: attach.into(),
            paid_at: 1,
        })
    }

    #[test]
    fn only_the_first_two_deliveries_of_a_flaky_payment_are_refused() {
        let flaky = paid("flaky");
        assert!(refuses(Some(&flaky), 1));
        assert!(refuses(Some(&flaky), 2));
        assert!(!refuses(Some(&flaky), 3));
        assert!(!refuses(Some(&paid("steady")), 1));
        let refund = Notification::RefundSucceeded(RefundSucceeded {
            out_trade_no: "probe-1".into(),
            out_refund_no: "probe-1-r".into(),
            amount: 100,
            refunded_at: 2,
        });
        assert!(!refuses(Some(&refund), 1));
        assert!(!refuses(None, 1));
    }

    #[test]
    fn an_order_answers_every_field_and_null_before_payment() {
        let mut order = Order {
            out_trade_no: "probe-1".into(),
            prepay_id: "wx1".into(),
            amount: 100,
            description: "a \"probe\"".into(),
            attach: "flaky".into(),
            state: OrderState::NotPay,
            payer: "o-1".into(),
            refunded: 0,
            created_at: 10,
            expires_at: 20,
            paid_at: None,
        };
        assert_eq!(
            order_json(&order).finish(),
            r#"{"out_trade_no":"probe-1","prepay_id":"wx1","amount":100,"description":"a \"probe\"","attach":"flaky","state":"NOTPAY","payer":"o-1","refunded":0,"created_at":10,"expires_at":20,"paid_at":null}"#
        );
        order.state = OrderState::Refund;
        order.paid_at = Some(15);
        let body = order_json(&order).finish();
        assert!(body.contains(r#""state":"REFUND""#), "{body}");
        assert!(body.ends_with(r#""paid_at":15}"#), "{body}");
    }

    #[test]
    fn seen_topics_answer_as_an_array() {
        assert_eq!(topics_json(""), "[]");
        assert_eq!(
            topics_json("payment.succeeded\nrefund.succeeded\n"),
            r#"["payment.succeeded","refund.succeeded"]"#
        );
    }

    #[test]
    fn a_bad_amount_is_400_before_any_call() {
        for (method, target) in [
            ("POST", "/order?no=probe-1"),
            ("POST", "/order?no=probe-1&amount=x"),
            ("POST", "/refund?no=probe-1&refund=r-1&amount=-1"),
            ("POST", "/payout?no=p-1&amount=1.5"),
        ] {
            let (status, body) = answer_of(PaymentProbe::handle(Request::new(method, target)));
            assert_eq!(status, 400, "{target}");
            assert!(body.contains(r#""error":"invalid""#), "{body}");
        }
    }

    #[test]
    fn off_wasm_every_route_answers_the_hosts_error_with_its_status() {
        for (method, target) in [
            ("POST", "/order?no=probe-1&amount=100&description=d"),
            ("GET", "/order?no=probe-1"),
            ("POST", "/close?no=probe-1"),
            ("POST", "/refund?no=probe-1&refund=r-1&amount=100"),
            ("POST", "/payout?no=p-1&amount=1"),
            ("GET", "/balance"),
            ("GET", "/deliveries?id=evt-1"),
            ("GET", "/seen?no=probe-1"),
        ] {
            let (status, body) = answer_of(PaymentProbe::handle(Request::new(method, target)));
            assert_eq!(status, 503, "{method} {target}");
            assert!(body.contains(r#""error":"unavailable""#), "{body}");
        }
    }

    #[test]
    fn a_delivery_that_cannot_be_counted_is_refused() {
        let event = Event {
            id: "evt-1".into(),
            topic: "message.received".into(),
            payload: "{}".into(),
        };
        let refused = PaymentProbe::on_event(event).unwrap_err();
        assert!(refused.starts_with("event evt-1: unavailable"), "{refused}");
    }
}
