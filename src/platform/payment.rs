//! Money as users, developers and admins reach it: PINs, confirmations,
//! wallets, statements, top-ups and the events an app was sent.

use super::{Platform, PlatformError};
use crate::accounts::{Account, Role, Username};
use crate::db::EventRecord;
use crate::domain::AppId;
use crate::payment::{DayTotals, MoneyAccount, Order, Pin, StatementEntry};

/// A user's wallet: what it holds and its latest entries.
#[derive(Debug, serde::Serialize)]
pub struct WalletStatement {
    pub balance: u64,
    pub entries: Vec<StatementEntry>,
}

/// An app's merchant account: what it holds and its days.
#[derive(Debug, serde::Serialize)]
pub struct MerchantStatement {
    pub balance: u64,
    pub days: Vec<DayTotals>,
}

impl Platform {
    /// Sets the user's payment PIN; needs their password again, so a stolen
    /// session alone cannot set one and pay.
    pub async fn set_payment_pin(
        &self,
        account: &Account,
        password: String,
        pin: &str,
    ) -> Result<(), PlatformError> {
        let pin = Pin::parse(pin).map_err(PlatformError::Invalid)?;
        self.reauthenticate(account, password).await?;
        Ok(self.payments.set_pin(account.id, pin).await?)
    }

    /// The user's order, for the page where they confirm it.
    pub async fn payment_order(
        &self,
        account: &Account,
        prepay_id: &str,
    ) -> Result<Order, PlatformError> {
        Ok(self.payments.order_for_payer(account.id, prepay_id).await?)
    }

    /// The user confirms their order with their PIN.
    pub async fn confirm_payment(
        &self,
        account: &Account,
        prepay_id: &str,
        pin: &str,
    ) -> Result<Order, PlatformError> {
        Ok(self.payments.confirm(account.id, prepay_id, pin).await?)
    }

    pub async fn wallet(
        &self,
        account: &Account,
        before: Option<i64>,
        limit: i64,
    ) -> Result<WalletStatement, PlatformError> {
        let balance = self
            .payments
            .balance(&MoneyAccount::Wallet(account.id))
            .await?;
        let entries = self
            .payments
            .wallet_statement(account.id, before, limit)
            .await?;
        Ok(WalletStatement { balance, entries })
    }

    /// An admin adds demo or test money to a user's wallet.
    pub async fn top_up(
        &self,
        by: &Account,
        username: &str,
        amount: u64,
    ) -> Result<u64, PlatformError> {
        if !by.has(Role::Admin) {
            return Err(PlatformError::Forbidden("this needs the admin role".into()));
        }
        let username: Username = username
            .parse()
            .map_err(|_| PlatformError::NotFound(format!("no account {username:?}")))?;
        let account = self
            .db
            .account_by_username(&username)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("no account {username}")))?;
        Ok(self.payments.top_up(account.id, amount).await?)
    }

    /// The developer's statement of an app's merchant account by day.
    pub async fn merchant_statement(
        &self,
        account: &Account,
        appid: &AppId,
        from_day: i64,
        to_day: i64,
    ) -> Result<MerchantStatement, PlatformError> {
        self.owned_app(account, appid).await?;
        let balance = self
            .payments
            .balance(&MoneyAccount::Merchant(appid.clone()))
            .await?;
        let days = self.payments.app_days(appid, from_day, to_day).await?;
        Ok(MerchantStatement { balance, days })
    }

    /// The latest events sent to an app, for its developer.
    pub async fn app_events(
        &self,
        account: &Account,
        appid: &AppId,
        limit: i64,
    ) -> Result<Vec<EventRecord>, PlatformError> {
        self.owned_app(account, appid).await?;
        Ok(self.db.app_events(appid, limit).await?)
    }
}
