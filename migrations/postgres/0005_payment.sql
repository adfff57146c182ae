-- The payment capability: a double-entry ledger in integer fen.
--
-- Money accounts: `wallet:<account id>` per user, `merchant:<appid>` per app,
-- and `funding`, where demo and test money comes from. Only `funding` may go
-- negative: it holds minus everything ever issued, so all balances sum to 0.
CREATE TABLE pay_accounts (
    id       TEXT PRIMARY KEY,
    balance  BIGINT NOT NULL,
    CHECK (balance >= 0 OR id = 'funding')
);
INSERT INTO pay_accounts (id, balance) VALUES ('funding', 0);

-- Every movement is two entries of opposite sign, written in the
-- transaction that changes the two balances: a balance is the sum of its
-- account's entries.
CREATE TABLE ledger (
    id          BIGSERIAL PRIMARY KEY,
    account     TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    appid       TEXT NOT NULL,
    reference   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ledger_by_account ON ledger (account, id);

CREATE TABLE pay_orders (
    prepay_id     TEXT PRIMARY KEY,
    appid         TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    channel       TEXT NOT NULL,
    payer_id      BIGINT NOT NULL,
    payer_openid  TEXT NOT NULL,
    amount        BIGINT NOT NULL,
    description   TEXT NOT NULL,
    attach        TEXT NOT NULL,
    state         TEXT NOT NULL,
    refunded      BIGINT NOT NULL DEFAULT 0,
    refunds       BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    paid_at       BIGINT,
    UNIQUE (appid, out_trade_no)
);
CREATE INDEX pay_orders_by_app ON pay_orders (appid, created_at);

CREATE TABLE pay_refunds (
    appid          TEXT NOT NULL,
    out_refund_no  TEXT NOT NULL,
    out_trade_no   TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (appid, out_refund_no)
);

CREATE TABLE pay_payouts (
    appid          TEXT NOT NULL,
    out_payout_no  TEXT NOT NULL,
    payee_id       BIGINT NOT NULL,
    amount         BIGINT NOT NULL,
    description    TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (appid, out_payout_no)
);

-- A user's payment PIN (argon2id), and its lockout after wrong guesses.
CREATE TABLE pay_pins (
    account_id    BIGINT PRIMARY KEY,
    pin_hash      TEXT NOT NULL,
    failed        BIGINT NOT NULL DEFAULT 0,
    locked_until  BIGINT NOT NULL DEFAULT 0
);

-- Platform events for programs (payment results, later messages), written
-- in the transaction of what they report and delivered at least once.
-- state: pending, delivered, failed (gave up after the last retry).
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    appid            TEXT NOT NULL,
    channel          TEXT NOT NULL,
    topic            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_app ON outbox (appid, id);
