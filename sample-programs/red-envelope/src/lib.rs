//! The payment sample for payouts: red envelopes (hongbao), the Spring
//! Festival classic. One user funds an envelope of N shares; once paid, it
//! splits into N random amounts; the first N users to grab it get one each,
//! paid from the app's merchant account into their wallet.
//!
//! | route | answer |
//! |---|---|
//! | `POST /envelopes` | body `{"amount":A,"shares":N}` (fen; 1 ≤ N ≤ 10000, N ≤ A ≤ 1000000000): 201 `{"envelope":id,"prepay_id":"...","amount":A}`, an order of the caller's to confirm on the platform |
//! | `POST /envelopes/:id/grab` | 200 `{"envelope":id,"share":k,"amount":a}`, the caller's share, paid out; 409 `{"error":"not_funded"}` before the envelope is paid; 409 `{"error":"already_grabbed","amount":a}` to a caller who has their share; 409 `{"error":"grab_in_progress"}` while another grab of the caller's is taking its share; 410 `{"error":"empty"}` once every share is taken |
//! | `GET /envelopes/:id` | `{"envelope":id,"amount":A,"shares":N,"funded":false,"taken":t}`, `t` the shares taken so far (at most N) |
//!
//! Envelope `id` (from the counter `envelope-seq`) is paid by the order
//! `env-<id, 8 digits or more>` whose `attach` is the id in decimal, and
//! lives in the app scope at the key `envelope/<id>`, a JSON object
//! `{"amount","shares","funder","funded"}`, `funder` being the funder's
//! openid. When `payment.succeeded` arrives for its order, the envelope is
//! split with WeChat's "double mean" method: each share but the last is
//! uniform in 1 to 2 × (what is left) / (shares left) − 1 fen, the last
//! takes the rest, so every share is at least 1 fen and they sum to the
//! amount exactly. The draws come from splitmix64 seeded with the FNV-1a
//! hash of the prepay id (a program has no randomness import), so a
//! redelivered event splits the same way; the shares (`envelope/<id>/shares`,
//! comma-separated decimals) and `funded: true` are written in one batch,
//! and an envelope funded already is left alone.
//!
//! A grab is a small state machine per user, at `envelope/<id>/grab/<openid>`,
//! so that nobody gets two shares and no share is paid twice, whatever
//! crashes or retries:
//!
//! 1. `claimed`, created with compare-and-swap from nothing: only one
//!    attempt of a user starts there;
//! 2. `ticket:<k>`: the `k`th increment of `envelope/<id>/taken`, the share
//!    `k`, written before any money moves (or `empty`, past the last share);
//! 3. `paid:<k>:<amount>`, after `payout` numbered `env<id>-<k>`.
//!
//! Only the attempt that created `claimed` takes a ticket: another attempt
//! of the same user finding `claimed` answers 409
//! `{"error":"grab_in_progress"}`, so a user racing themselves never burns
//! a share. An attempt that finds `ticket:<k>` (an earlier attempt crashed
//! or failed after taking it) resumes it: it pays share `k` again, which
//! pays nothing more if it was paid (payout is idempotent on its number).
//! Every state change is a compare-and-swap. The one window left: an
//! attempt that dies between `claimed` and writing its ticket leaves that
//! user's claim stuck, and the share it may have taken stays in the
//! merchant account; nobody is ever paid twice or past the envelope.
//!
//! Errors answer `{"error":<kind>,"detail":"..."}`: 400 `invalid` for a body
//! that is not `{"amount","shares"}` within the bounds (checked before
//! anything else); 401 `denied` when there is no signed-in caller; 404
//! `not-found` for an envelope that does not exist; otherwise the status
//! [`Error::status`] gives the host's error (403 `denied` for a capability
//! missing, 503 `unavailable`, 409 `conflict` when the merchant account
//! cannot pay, ...), and 500 for stored data the program cannot read. An
//! event it cannot record (a storage failure, a payload it cannot read) is
//! refused, so that the platform delivers it again; other topics, and
//! payments of orders not `env-`, are acknowledged. It logs one `info` line
//! per request and imports `miniapp:host/identity`, `miniapp:host/storage`,
//! `miniapp:host/payment` and `miniapp:host/log`; its manifest declares the
//! `identity`, `storage` and `payment` capabilities and
//! `"payment": {"payout": true}`.

use miniapp_sdk::identity::{self, Caller};
use miniapp_sdk::payment::{self, Notification, PaymentSucceeded};
use miniapp_sdk::storage::{self, Scope, Write};
use miniapp_sdk::{Error, Event, MiniProgram, Params, Request, Response, Router, info, json, warn};

/// The program's type, exported below.
pub struct RedEnvelope;

impl MiniProgram for RedEnvelope {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .post("/envelopes", |request, _| answer(create(request)))
            .post("/envelopes/:id/grab", |_, params| answer(grab(params)))
            .get("/envelopes/:id", |_, params| answer(show(params)))
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        match Notification::from_event(&event) {
            Ok(Some(Notification::PaymentSucceeded(paid))) => fund(&paid)
                .map_err(|error| format!("event {} for {}: {error}", event.id, paid.out_trade_no)),
            Ok(_) => Ok(()),
            Err(error) => Err(format!("event {}: {error}", event.id)),
        }
    }
}

miniapp_sdk::export!(RedEnvelope);

/// The most shares an envelope may have.
const MAX_SHARES: u64 = 10_000;
/// The most an envelope may hold, in fen: what one order may cost.
const MAX_AMOUNT: u64 = 1_000_000_000;
/// The counter that numbers envelopes.
const ENVELOPE_SEQ_KEY: &str = "envelope-seq";
/// The prefix of the orders that fund envelopes.
const ORDER_PREFIX: &str = "env-";
/// What the user sees a share's payout as.
const PAYOUT_DESCRIPTION: &str = "Red envelope";
/// How many state changes one grab may go through before it gives up;
/// a grab needs three at most unless another attempt races it.
const GRAB_STEPS: u32 = 8;

fn envelope_key(id: u64) -> String {
    format!("envelope/{id}")
}

fn shares_key(id: u64) -> String {
    format!("envelope/{id}/shares")
}

fn taken_key(id: u64) -> String {
    format!("envelope/{id}/taken")
}

fn claim_key(id: u64, openid: &str) -> String {
    format!("envelope/{id}/grab/{openid}")
}

/// The order that funds envelope `id`.
fn order_number(id: u64) -> String {
    format!("{ORDER_PREFIX}{id:08}")
}

/// The envelope an order funds, if it is one of [`order_number`]'s.
fn envelope_of_order(out_trade_no: &str) -> Option<u64> {
    let digits = out_trade_no.strip_prefix(ORDER_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The payout of share `share` of envelope `id`.
fn payout_number(id: u64, share: u64) -> String {
    format!("env{id}-{share}")
}

/// An envelope as stored at `envelope/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Envelope {
    /// In fen.
    amount: u64,
    shares: u64,
    /// The funder's openid.
    funder: String,
    /// Whether it is paid and split.
    funded: bool,
}

impl Envelope {
    fn to_json(&self) -> String {
        json::Object::new()
            .number("amount", self.amount)
            .number("shares", self.shares)
            .string("funder", &self.funder)
            .boolean("funded", self.funded)
            .finish()
    }

    fn parse(stored: &[u8]) -> Result<Self, Error> {
        let unreadable = || Error::Invalid("a stored envelope is unreadable".into());
        let text = std::str::from_utf8(stored).map_err(|_| unreadable())?;
        let object = json::parse_flat(text).map_err(|_| unreadable())?;
        Ok(Self {
            amount: object.u64("amount").ok_or_else(unreadable)?,
            shares: object.u64("shares").ok_or_else(unreadable)?,
            funder: object.str("funder").ok_or_else(unreadable)?.to_owned(),
            funded: object.bool("funded").ok_or_else(unreadable)?,
        })
    }
}

/// What `POST /envelopes` asks for, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EnvelopeRequest {
    amount: u64,
    shares: u64,
}

impl EnvelopeRequest {
    fn parse(body: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::Invalid("the body is UTF-8 JSON".into()))?;
        let object = json::parse_flat(text).map_err(|error| {
            Error::Invalid(format!(
                "the body is {{\"amount\":A,\"shares\":N}}: {error}"
            ))
        })?;
        let shares = object
            .u64("shares")
            .filter(|shares| (1..=MAX_SHARES).contains(shares))
            .ok_or_else(|| {
                Error::Invalid(format!("`shares` is a whole number, 1 to {MAX_SHARES}"))
            })?;
        let amount = object
            .u64("amount")
            .filter(|amount| (shares..=MAX_AMOUNT).contains(amount))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "`amount` is in fen, at least 1 per share and at most {MAX_AMOUNT}"
                ))
            })?;
        Ok(Self { amount, shares })
    }
}

/// Splits `amount` fen into `shares` shares by the "double mean" method:
/// each share but the last uniform in 1 to 2 × left / shares left − 1 (at
/// least 1), the last the rest. Each share is at least 1 fen and they sum
/// to `amount`, given `1 <= shares <= amount`: what a share leaves is at
/// least `left - (2 left / n - 1) >= left (n - 2) / n + 1 >= n - 1` fen for
/// the `n - 1` shares after it.
fn split(amount: u64, shares: u64, seed: u64) -> Vec<u64> {
    debug_assert!((1..=amount).contains(&shares));
    let mut random = SplitMix64(seed);
    let mut left = amount;
    let mut split = Vec::with_capacity(usize::try_from(shares).unwrap_or(0));
    for shares_left in (2..=shares).rev() {
        let most = (2 * left / shares_left).saturating_sub(1).max(1);
        let share = 1 + random.below(most);
        split.push(share);
        left -= share;
    }
    split.push(left);
    split
}

/// Sebastiano Vigna's splitmix64: a small, fast, well-mixed generator,
/// deterministic for a seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0), by the high half of a 128-bit
    /// product: unbiased enough for amounts far below 2^64.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }
}

/// The 64-bit FNV-1a hash of `text`: the seed of an envelope's split.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn encode_shares(shares: &[u64]) -> String {
    let decimals: Vec<String> = shares.iter().map(u64::to_string).collect();
    decimals.join(",")
}

/// Share `share` (counting from 1) of the stored shares.
fn nth_share(stored: &[u8], share: u64) -> Option<u64> {
    let index = usize::try_from(share.checked_sub(1)?).ok()?;
    std::str::from_utf8(stored)
        .ok()?
        .split(',')
        .nth(index)?
        .parse()
        .ok()
}

/// Where one user's grab of one envelope stands, as stored at
/// `envelope/<id>/grab/<openid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// The user started a grab; no share is theirs yet.
    Claimed,
    /// Share `k` is the user's; it may or may not be paid out yet.
    Ticket(u64),
    /// Share `k`, of `amount` fen, is paid out to the user.
    Paid { share: u64, amount: u64 },
    /// The user came after the last share.
    Empty,
}

impl Claim {
    fn encode(self) -> String {
        match self {
            Claim::Claimed => "claimed".to_owned(),
            Claim::Ticket(share) => format!("ticket:{share}"),
            Claim::Paid { share, amount } => format!("paid:{share}:{amount}"),
            Claim::Empty => "empty".to_owned(),
        }
    }

    fn parse(stored: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(stored).ok()?;
        let number = |digits: &str| -> Option<u64> {
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().filter(|number| *number > 0)
        };
        match text.split(':').collect::<Vec<_>>()[..] {
            ["claimed"] => Some(Claim::Claimed),
            ["empty"] => Some(Claim::Empty),
            ["ticket", share] => Some(Claim::Ticket(number(share)?)),
            ["paid", share, amount] => Some(Claim::Paid {
                share: number(share)?,
                amount: number(amount)?,
            }),
            _ => None,
        }
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

/// Stored data the program cannot read: its own fault, not the user's.
fn unreadable(what: &str) -> Failure {
    Failure(Response::error(
        500,
        &Error::Invalid(format!("{what} is unreadable")),
    ))
}

fn no_such_envelope(id: &str) -> Failure {
    Failure(Response::error(
        404,
        &Error::NotFound(format!("no envelope {id:?}")),
    ))
}

/// A grab that gets no share, with its own small body.
fn refusal(status: u16, body: json::Object) -> Failure {
    Failure(Response::json_raw(status, body.finish()))
}

/// The envelope named by the route's `:id`; 404 when there is none.
fn load_envelope(params: &Params) -> Result<(u64, Envelope), Failure> {
    let raw = params.get("id").unwrap_or_default();
    let id = raw
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0 && raw.bytes().all(|byte| byte.is_ascii_digit()))
        .ok_or_else(|| no_such_envelope(raw))?;
    let Some(entry) = storage::get(Scope::App, &envelope_key(id))? else {
        return Err(no_such_envelope(raw));
    };
    let envelope = Envelope::parse(&entry.value).map_err(|_| unreadable("the envelope"))?;
    Ok((id, envelope))
}

fn create(request: &Request) -> Result<Response, Failure> {
    let asked = EnvelopeRequest::parse(&request.body)?;
    let funder = signed_in()?;
    let seq = storage::increment(Scope::App, ENVELOPE_SEQ_KEY, 1)?;
    let id = u64::try_from(seq).map_err(|_| unreadable("the envelope counter"))?;
    let envelope = Envelope {
        amount: asked.amount,
        shares: asked.shares,
        funder: funder.openid,
        funded: false,
    };
    // Stored before the order exists, so that its payment always finds it.
    storage::set(Scope::App, &envelope_key(id), envelope.to_json())?;
    let prepay_id = payment::create_order(
        &order_number(id),
        asked.amount,
        &format!("Red envelope of {} shares", asked.shares),
        &id.to_string(),
    )?;
    let body = json::Object::new()
        .number("envelope", id)
        .string("prepay_id", &prepay_id)
        .number("amount", asked.amount)
        .finish();
    Ok(Response::json_raw(201, body))
}

fn show(params: &Params) -> Result<Response, Failure> {
    let (id, envelope) = load_envelope(params)?;
    let taken = match storage::get(Scope::App, &taken_key(id))? {
        Some(entry) => std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| unreadable("the count of shares taken"))?,
        None => 0,
    };
    let taken = u64::try_from(taken).unwrap_or(0).min(envelope.shares);
    let body = json::Object::new()
        .number("envelope", id)
        .number("amount", envelope.amount)
        .number("shares", envelope.shares)
        .boolean("funded", envelope.funded)
        .number("taken", taken)
        .finish();
    Ok(Response::json_raw(200, body))
}

/// Funds the envelope `paid` is for: splits it and marks it funded, unless
/// it is funded already. Payments of other orders are left alone.
fn fund(paid: &PaymentSucceeded) -> Result<(), Error> {
    let Some(id) = envelope_of_order(&paid.out_trade_no) else {
        return Ok(());
    };
    let Some(entry) = storage::get(Scope::App, &envelope_key(id))? else {
        warn!("no envelope {id} for the payment of {}", paid.out_trade_no);
        return Ok(());
    };
    let envelope = Envelope::parse(&entry.value)?;
    if envelope.funded {
        return Ok(());
    }
    if paid.amount != envelope.amount {
        warn!(
            "envelope {id} holds {} fen, its order was paid {} fen",
            envelope.amount, paid.amount
        );
    }
    let shares = split(envelope.amount, envelope.shares, fnv1a(&paid.prepay_id));
    let funded = Envelope {
        funded: true,
        ..envelope
    };
    // A concurrent delivery of the same event writes the same bytes.
    storage::batch(
        Scope::App,
        &[
            Write::set(shares_key(id), encode_shares(&shares)),
            Write::set(envelope_key(id), funded.to_json()),
        ],
    )?;
    info!("envelope {id} funded: {} shares", shares.len());
    Ok(())
}

/// The claim at `key` and its version.
fn read_claim(key: &str) -> Result<(Claim, u64), Failure> {
    let entry = storage::get(Scope::App, key)?.ok_or_else(|| unreadable("the claim"))?;
    let claim = Claim::parse(&entry.value).ok_or_else(|| unreadable("the claim"))?;
    Ok((claim, entry.version))
}

fn grab(params: &Params) -> Result<Response, Failure> {
    let caller = signed_in()?;
    let (id, envelope) = load_envelope(params)?;
    if !envelope.funded {
        return Err(refusal(
            409,
            json::Object::new().string("error", "not_funded"),
        ));
    }
    let key = claim_key(id, &caller.openid);
    let (mut claim, mut version) =
        match storage::compare_and_swap(Scope::App, &key, 0, Claim::Claimed.encode()) {
            Ok(version) => (Claim::Claimed, version),
            Err(Error::Conflict(_)) => match read_claim(&key)? {
                // Another attempt of this user created the claim and is
                // taking its ticket: a second ticket would burn a share.
                (Claim::Claimed, _) => {
                    return Err(refusal(
                        409,
                        json::Object::new().string("error", "grab_in_progress"),
                    ));
                }
                found => found,
            },
            Err(error) => return Err(error.into()),
        };
    for _ in 0..GRAB_STEPS {
        let next = match claim {
            Claim::Paid { amount, .. } => {
                return Err(refusal(
                    409,
                    json::Object::new()
                        .string("error", "already_grabbed")
                        .number("amount", amount),
                ));
            }
            Claim::Empty => return Err(empty()),
            Claim::Claimed => {
                let ticket = storage::increment(Scope::App, &taken_key(id), 1)?;
                match u64::try_from(ticket) {
                    Ok(share) if share >= 1 && share <= envelope.shares => Claim::Ticket(share),
                    _ => Claim::Empty,
                }
            }
            Claim::Ticket(share) => {
                let stored = storage::get(Scope::App, &shares_key(id))?
                    .ok_or_else(|| unreadable("the shares"))?;
                let amount =
                    nth_share(&stored.value, share).ok_or_else(|| unreadable("the shares"))?;
                payment::payout(&payout_number(id, share), amount, PAYOUT_DESCRIPTION)?;
                Claim::Paid { share, amount }
            }
        };
        match storage::compare_and_swap(Scope::App, &key, version, next.encode()) {
            Ok(new_version) => {
                (claim, version) = (next, new_version);
                match claim {
                    Claim::Paid { share, amount } => return Ok(granted(id, share, amount)),
                    Claim::Empty => return Err(empty()),
                    _ => {}
                }
            }
            Err(Error::Conflict(_)) => {
                // Another attempt of this user moved the claim on.
                (claim, version) = read_claim(&key)?;
                if let (Claim::Paid { share, amount }, Claim::Paid { share: mine, .. }) =
                    (claim, next)
                    && share == mine
                {
                    return Ok(granted(id, share, amount));
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(Error::Conflict(format!("the grab did not settle in {GRAB_STEPS} steps")).into())
}

fn granted(id: u64, share: u64, amount: u64) -> Response {
    let body = json::Object::new()
        .number("envelope", id)
        .number("share", share)
        .number("amount", amount)
        .finish();
    Response::json_raw(200, body)
}

fn empty() -> Failure {
    refusal(410, json::Object::new().string("error", "empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(response: Response) -> (u16, String) {
        let body = response.body_text().unwrap().to_owned();
        (response.status, body)
    }

    #[test]
    fn a_split_sums_exactly_with_every_share_at_least_one_fen() {
        let cases = [
            (1, 1),
            (2, 2),
            (10, 10),
            (11, 10),
            (100, 3),
            (888, 8),
            (10_000, 10_000),
            (10_001, 10_000),
            (1_000_000_000, 1),
            (1_000_000_000, 2),
            (1_000_000_000, 10_000),
        ];
        for (amount, shares) in cases {
            for seed in [0, 1, u64::MAX, fnv1a("wx-prepay-1")] {
                let split = split(amount, shares, seed);
                assert_eq!(split.len() as u64, shares, "{amount}/{shares}");
                assert_eq!(split.iter().sum::<u64>(), amount, "{amount}/{shares}");
                assert!(split.iter().all(|&share| share >= 1), "{amount}/{shares}");
            }
        }
    }

    #[test]
    fn a_share_is_at_most_twice_the_mean_of_what_is_left() {
        let amount = 100_000;
        let split = split(amount, 100, 42);
        let mut left = amount;
        for (index, &share) in split[..99].iter().enumerate() {
            let shares_left = 100 - index as u64;
            assert!(share < 2 * left / shares_left, "share {index}");
            left -= share;
        }
        // Random, not equal shares.
        assert!(split.iter().any(|&share| share != split[0]));
    }

    #[test]
    fn a_split_depends_only_on_its_seed() {
        let seed = fnv1a("wx-prepay-1");
        assert_eq!(split(8888, 88, seed), split(8888, 88, seed));
        assert_ne!(split(8888, 88, seed), split(8888, 88, fnv1a("wx-prepay-2")));
    }

    #[test]
    fn splitmix64_and_fnv1a_match_their_references() {
        // The first outputs of splitmix64 seeded with 0, and FNV-1a's test
        // vectors.
        let mut random = SplitMix64(0);
        assert_eq!(random.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(random.next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(fnv1a(""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a("a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn shares_are_stored_as_decimals_and_read_by_number() {
        let stored = encode_shares(&[5, 1, 1_000_000]);
        assert_eq!(stored, "5,1,1000000");
        assert_eq!(nth_share(stored.as_bytes(), 1), Some(5));
        assert_eq!(nth_share(stored.as_bytes(), 3), Some(1_000_000));
        assert_eq!(nth_share(stored.as_bytes(), 0), None);
        assert_eq!(nth_share(stored.as_bytes(), 4), None);
        assert_eq!(nth_share(b"5,x", 2), None);
    }

    #[test]
    fn claims_read_back_what_they_store() {
        for claim in [
            Claim::Claimed,
            Claim::Ticket(7),
            Claim::Paid {
                share: 7,
                amount: 88,
            },
            Claim::Empty,
        ] {
            assert_eq!(Claim::parse(claim.encode().as_bytes()), Some(claim));
        }
        assert_eq!(Claim::Ticket(3).encode(), "ticket:3");
        assert_eq!(
            Claim::Paid {
                share: 3,
                amount: 120
            }
            .encode(),
            "paid:3:120"
        );
    }

    #[test]
    fn malformed_claims_are_refused() {
        for bad in [
            &b""[..],
            b"claimed:1",
            b"ticket:",
            b"ticket:0",
            b"ticket:+1",
            b"ticket:x",
            b"paid:1",
            b"paid:1:",
            b"paid:1:2:3",
            b"\xff",
        ] {
            assert_eq!(Claim::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_envelope_reads_back_what_it_stores() {
        let envelope = Envelope {
            amount: 8888,
            shares: 8,
            funder: "o-1".into(),
            funded: false,
        };
        assert_eq!(
            envelope.to_json(),
            r#"{"amount":8888,"shares":8,"funder":"o-1","funded":false}"#
        );
        assert_eq!(Envelope::parse(envelope.to_json().as_bytes()), Ok(envelope));
        assert!(Envelope::parse(br#"{"amount":1,"shares":1,"funder":"o"}"#).is_err());
    }

    #[test]
    fn envelope_requests_are_bounded() {
        assert_eq!(
            EnvelopeRequest::parse(br#"{"amount":8888,"shares":8}"#),
            Ok(EnvelopeRequest {
                amount: 8888,
                shares: 8
            })
        );
        assert!(EnvelopeRequest::parse(br#"{"amount":10000,"shares":10000}"#).is_ok());
        assert!(EnvelopeRequest::parse(br#"{"amount":1000000000,"shares":1}"#).is_ok());
        for bad in [
            &br#"{"amount":8888}"#[..],
            br#"{"shares":8}"#,
            br#"{"amount":7,"shares":8}"#,
            br#"{"amount":100,"shares":0}"#,
            br#"{"amount":100000,"shares":10001}"#,
            br#"{"amount":1000000001,"shares":1}"#,
            br#"{"amount":-1,"shares":1}"#,
            br#"{"amount":"100","shares":1}"#,
            b"",
        ] {
            let error = EnvelopeRequest::parse(bad).unwrap_err();
            assert!(matches!(error, Error::Invalid(_)), "{bad:?}");
        }
    }

    #[test]
    fn orders_and_payouts_are_numbered_by_envelope() {
        assert_eq!(order_number(7), "env-00000007");
        assert_eq!(envelope_of_order("env-00000007"), Some(7));
        assert_eq!(envelope_of_order("env-123456789"), Some(123_456_789));
        for other in ["shop-00000007", "env-", "env-+7", "env-7a", "env7-1"] {
            assert_eq!(envelope_of_order(other), None, "{other}");
        }
        assert_eq!(payout_number(7, 3), "env7-3");
    }

    #[test]
    fn a_bad_body_is_400_before_sign_in_or_storage() {
        let request = Request::new("POST", "/envelopes").with_body(r#"{"amount":1,"shares":2}"#);
        let (status, body) = answer_of(RedEnvelope::handle(request));
        assert_eq!(status, 400);
        assert!(body.contains(r#""error":"invalid""#), "{body}");
    }

    #[test]
    fn events_that_are_not_envelope_payments_are_acknowledged() {
        let event = |topic: &str, payload: &str| Event {
            id: "evt-1".into(),
            topic: topic.into(),
            payload: payload.into(),
        };
        assert_eq!(RedEnvelope::on_event(event("message.received", "")), Ok(()));
        let shop_payment = event(
            payment::PAYMENT_SUCCEEDED,
            r#"{"out_trade_no":"shop-00000001","prepay_id":"wx1","amount":1,"payer":"o","attach":"","paid_at":1}"#,
        );
        assert_eq!(RedEnvelope::on_event(shop_payment), Ok(()));
        // Its own payment needs storage, which is unavailable off wasm32:
        // refused, so that the platform delivers it again.
        let own_payment = event(
            payment::PAYMENT_SUCCEEDED,
            r#"{"out_trade_no":"env-00000001","prepay_id":"wx1","amount":1,"payer":"o","attach":"1","paid_at":1}"#,
        );
        let refused = RedEnvelope::on_event(own_payment).unwrap_err();
        assert!(refused.contains("unavailable"), "{refused}");
    }

    #[test]
    fn off_wasm_the_routes_reach_no_host() {
        for (method, target, body) in [
            ("POST", "/envelopes", r#"{"amount":100,"shares":3}"#),
            ("POST", "/envelopes/1/grab", ""),
            ("GET", "/envelopes/1", ""),
        ] {
            let request = Request::new(method, target).with_body(body);
            let (status, body) = answer_of(RedEnvelope::handle(request));
            assert_eq!(status, 503, "{method} {target}");
            assert!(body.contains(r#""error":"unavailable""#), "{body}");
        }
        assert_eq!(
            RedEnvelope::handle(Request::new("GET", "/envelopes/1/grab")).status,
            405
        );
    }
}
