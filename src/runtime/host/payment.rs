//! The `payment` capability: orders for the signed-in caller, refunds and
//! payouts. There is no function to confirm an order: only its payer can,
//! with their PIN, on a platform endpoint the guest never reaches.

use std::sync::Arc;
use std::time::Duration;

use crate::accounts::AccountId;
use crate::domain::AppId;
use crate::identity::Identity;
use crate::payment::{
    MoneyAccount, NewOrder, Order, OrderState, PaymentError, Payments, PayoutRequest, RefundRequest,
};
use crate::runtime::CallState;
use crate::runtime::miniapp::host::payment::{self as wit, Host, RefundInfo};
use crate::runtime::miniapp::host::types::Error;

/// What one call may do through `payment`: granted when the version's
/// manifest declares the capability.
pub struct PaymentGrant {
    pub service: Arc<Payments>,
    pub appid: AppId,
    /// The channel the call came through; an order's events go back there.
    pub channel: &'static str,
    /// The signed-in user who made the call: who pays the orders the call
    /// creates, and receives its payouts.
    pub caller: Option<AccountId>,
    /// Derives the payer's openid in this app, for the orders the call
    /// creates (the app's developer is its unionid space).
    pub identity: Arc<Identity>,
    pub owner: Option<AccountId>,
    /// Whether the manifest allows payouts.
    pub payout: bool,
    /// How long the orders it creates stay payable.
    pub order_ttl: Duration,
}

type Answer<T> = wasmtime::Result<Result<T, Error>>;

fn to_guest(err: PaymentError) -> Error {
    let detail = err.to_string();
    match err {
        PaymentError::Invalid(_) => Error::Invalid(detail),
        PaymentError::NotFound(_) => Error::NotFound(detail),
        PaymentError::Conflict(_) | PaymentError::InsufficientFunds(_) => Error::Conflict(detail),
        PaymentError::LimitReached(_) => Error::QuotaExceeded(detail),
        PaymentError::Denied(_)
        | PaymentError::WrongPin { .. }
        | PaymentError::Locked { .. }
        | PaymentError::NoPin => Error::Denied(detail),
        PaymentError::Unavailable(cause) => {
            tracing::warn!(error = format!("{cause:#}"), "payment unavailable");
            Error::Unavailable("the platform's payment service is unavailable; retry later".into())
        }
    }
}

impl CallState {
    fn payment(&mut self) -> Result<&PaymentGrant, Error> {
        self.host_calls += 1;
        self.grants.payment.as_ref().ok_or_else(|| {
            Error::Denied("the version's manifest does not declare the payment capability".into())
        })
    }
}

fn needs_caller(grant: &PaymentGrant) -> Result<AccountId, Error> {
    grant
        .caller
        .ok_or_else(|| Error::Denied("the call has no signed-in user".into()))
}

impl From<Order> for wit::Order {
    fn from(order: Order) -> Self {
        wit::Order {
            out_trade_no: order.out_trade_no,
            prepay_id: order.prepay_id,
            amount: order.amount,
            description: order.description,
            attach: order.attach,
            state: match order.state {
                OrderState::NotPay => wit::OrderState::NotPay,
                OrderState::Success => wit::OrderState::Success,
                OrderState::Closed => wit::OrderState::Closed,
                OrderState::Refund => wit::OrderState::Refund,
            },
            payer: order.payer_openid,
            refunded: order.refunded,
            created_at: order.created_at as u64,
            expires_at: order.expires_at as u64,
            paid_at: order.paid_at.map(|at| at as u64),
        }
    }
}

impl Host for CallState {
    async fn create_order(
        &mut self,
        out_trade_no: String,
        amount: u64,
        description: String,
        attach: String,
    ) -> Answer<String> {
        let grant = match self.payment() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        let payer_id = match needs_caller(grant) {
            Ok(caller) => caller,
            Err(denied) => return Ok(Err(denied)),
        };
        let payer_openid = grant
            .identity
            .app_user(&grant.appid, grant.owner, payer_id)
            .openid;
        let new = NewOrder {
            appid: grant.appid.clone(),
            channel: grant.channel.to_string(),
            payer_id,
            payer_openid,
            out_trade_no,
            amount,
            description,
            attach,
            ttl: grant.order_ttl,
        };
        let service = grant.service.clone();
        Ok(service.create_order(new).await.map_err(to_guest))
    }

    async fn query_order(&mut self, out_trade_no: String) -> Answer<wit::Order> {
        let grant = match self.payment() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        let (service, appid) = (grant.service.clone(), grant.appid.clone());
        Ok(service
            .query_order(&appid, &out_trade_no)
            .await
            .map(wit::Order::from)
            .map_err(to_guest))
    }

    async fn close_order(&mut self, out_trade_no: String) -> Answer<()> {
        let grant = match self.payment() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        let (service, appid) = (grant.service.clone(), grant.appid.clone());
        Ok(service
            .close_order(&appid, &out_trade_no)
            .await
            .map_err(to_guest))
    }

    async fn refund(
        &mut self,
        out_trade_no: String,
        out_refund_no: String,
        amount: u64,
        reason: String,
    ) -> Answer<RefundInfo> {
        let grant = match self.payment() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        let (service, appid) = (grant.service.clone(), grant.appid.clone());
        let request = RefundRequest {
            out_trade_no,
            out_refund_no,
            amount,
            reason,
        };
        Ok(service
            .refund(&appid, request)
            .await
            .map(|refund| RefundInfo {
                out_trade_no: refund.out_trade_no,
                out_refund_no: refund.out_refund_no,
                amount: refund.amount,
                refunded_total: refund.refunded_total,
            })
            .map_err(to_guest))
    }

    async fn payout(
        &mut self,
        out_payout_no: String,
        amount: u64,
        description: String,
    ) -> Answer<()> {
        let grant = match self.payment() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        if !grant.payout {
            return Ok(Err(Error::Denied(
                "the version's manifest does not allow payouts: \"payment\": {\"payout\": true}"
                    .into(),
            )));
        }
        let payee = match needs_caller(grant) {
            Ok(caller) => caller,
            Err(denied) => return Ok(Err(denied)),
        };
        let (service, appid) = (grant.service.clone(), grant.appid.clone());
        let request = PayoutRequest {
            out_payout_no,
            payee,
            amount,
            description,
        };
        Ok(service.payout(&appid, request).await.map_err(to_guest))
    }

    async fn merchant_balance(&mut self) -> Answer<u64> {
        let grant = match self.payment() {
            Ok(grant) => grant,
            Err(denied) => return Ok(Err(denied)),
        };
        let (service, account) = (
            grant.service.clone(),
            MoneyAccount::Merchant(grant.appid.clone()),
        );
        Ok(service.balance(&account).await.map_err(to_guest))
    }
}
