-- The messaging capability.
--
-- A user's subscriptions to an app's notification templates: one-time
-- grants left (each allows one message), and whether a long-term grant
-- holds (1) or not (0). The openid is the user's in that app, which is how
-- the app names them.
CREATE TABLE msg_subscriptions (
    account_id   BIGINT NOT NULL,
    appid        TEXT NOT NULL,
    template_id  TEXT NOT NULL,
    openid       TEXT NOT NULL,
    one_time     BIGINT NOT NULL,
    long_term    BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, appid, template_id)
);
CREATE INDEX msg_subscriptions_by_openid ON msg_subscriptions (appid, openid, template_id);

-- Notifications sent per (app, user, UTC day since the epoch), for the daily cap.
CREATE TABLE msg_daily (
    appid       TEXT NOT NULL,
    account_id  BIGINT NOT NULL,
    day         BIGINT NOT NULL,
    sent        BIGINT NOT NULL,
    PRIMARY KEY (appid, account_id, day)
);

-- Customer-service conversations: when the user last wrote to the app, and
-- how many replies the app sent since.
CREATE TABLE msg_conversations (
    appid                 TEXT NOT NULL,
    account_id            BIGINT NOT NULL,
    openid                TEXT NOT NULL,
    last_user_message_at  BIGINT NOT NULL,
    replies_since         BIGINT NOT NULL,
    PRIMARY KEY (appid, account_id)
);
CREATE INDEX msg_conversations_by_openid ON msg_conversations (appid, openid);

-- What users wrote to apps.
CREATE TABLE msg_received (
    id          BIGSERIAL PRIMARY KEY,
    appid       TEXT NOT NULL,
    account_id  BIGINT NOT NULL,
    text        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Users' inboxes. A message's seq is its number in its user's inbox,
-- taken from msg_inbox_seq in the inserting transaction: the row lock
-- makes a user's messages commit in seq order, so a stream that has
-- delivered seq N has every message up to N.
CREATE TABLE msg_inbox_seq (
    account_id  BIGINT PRIMARY KEY,
    last_seq    BIGINT NOT NULL
);
CREATE TABLE messages (
    account_id   BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    appid        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    template_id  TEXT,
    title        TEXT NOT NULL,
    content      TEXT NOT NULL,
    page         TEXT,
    created_at   BIGINT NOT NULL,
    read_at      BIGINT,
    PRIMARY KEY (account_id, seq)
);
