-- Accounts and sessions, the app lifecycle (manifests, review states,
-- phased releases, testers, audit log) and the identity capability (scope
-- grants, login codes, launches). Times are unix milliseconds.

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    -- An argon2 PHC string; empty for accounts that cannot sign in.
    password_hash  TEXT NOT NULL,
    nickname       TEXT NOT NULL,
    avatar_url     TEXT NOT NULL,
    -- Space-separated, sorted: a subset of `admin developer reviewer`.
    roles          TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Bearer tokens, by the sha256 of the token: the token itself is never stored.
CREATE TABLE sessions (
    token_sha256  TEXT PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts (id),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX sessions_by_account ON sessions (account_id);

-- Secrets the platform generates once and every node shares.
CREATE TABLE platform_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Apps now have an owner, a secret and a release; limits move into each
-- version's manifest.
ALTER TABLE apps ADD COLUMN owner_id BIGINT REFERENCES accounts (id);
ALTER TABLE apps ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN secret_sha256 TEXT;
ALTER TABLE apps RENAME COLUMN active_version TO released_version;
-- Users in the phase (see lifecycle::in_phase) get released_version; the
-- others get fallback_version, or nothing while it is NULL.
ALTER TABLE apps ADD COLUMN release_percent BIGINT NOT NULL DEFAULT 100;
ALTER TABLE apps ADD COLUMN fallback_version BIGINT;
-- The fully released version before the current one: what rollback restores.
ALTER TABLE apps ADD COLUMN previous_version BIGINT;
ALTER TABLE apps ADD COLUMN trial_version BIGINT;
ALTER TABLE apps DROP COLUMN limits;

ALTER TABLE versions ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE versions ADD COLUMN manifest TEXT NOT NULL DEFAULT '{"name":"","version":""}';
ALTER TABLE versions ADD COLUMN state TEXT NOT NULL DEFAULT 'development';
ALTER TABLE versions ADD COLUMN notes TEXT NOT NULL DEFAULT '';
ALTER TABLE versions ADD COLUMN uploaded_by BIGINT;
ALTER TABLE versions ADD COLUMN submitted_at BIGINT;
ALTER TABLE versions ADD COLUMN reviewed_at BIGINT;
ALTER TABLE versions ADD COLUMN reviewer_id BIGINT;
ALTER TABLE versions ADD COLUMN review_reason TEXT;
UPDATE versions SET state = 'retired';
UPDATE versions SET state = 'released'
    WHERE EXISTS (SELECT 1 FROM apps a WHERE a.appid = versions.appid AND a.released_version = versions.version);
CREATE INDEX versions_by_state ON versions (state, submitted_at);

CREATE TABLE testers (
    appid       TEXT NOT NULL REFERENCES apps (appid),
    account_id  BIGINT NOT NULL REFERENCES accounts (id),
    PRIMARY KEY (appid, account_id)
);

-- Every lifecycle transition: who (NULL for the platform itself), when, why.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    appid       TEXT NOT NULL,
    version     BIGINT,
    actor_id    BIGINT,
    action      TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    reason      TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX audit_log_by_app ON audit_log (appid, id);

-- A user's grant of a scope (e.g. `profile`) to an app.
CREATE TABLE grants (
    account_id  BIGINT NOT NULL REFERENCES accounts (id),
    appid       TEXT NOT NULL REFERENCES apps (appid),
    scope       TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, appid, scope)
);

-- One-time login codes, by sha256 of the code.
CREATE TABLE login_codes (
    code_sha256  TEXT PRIMARY KEY,
    appid        TEXT NOT NULL,
    account_id   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);

CREATE TABLE launches (
    id          INTEGER PRIMARY KEY,
    appid       TEXT NOT NULL,
    account_id  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    channel     TEXT NOT NULL,
    path        TEXT NOT NULL,
    query       TEXT NOT NULL,
    scene       TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX launches_by_app ON launches (appid, id);
