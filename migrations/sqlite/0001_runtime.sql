-- Apps, their uploaded versions, content-addressed component bytes, and
-- the usage record of every call. Times are unix milliseconds.

CREATE TABLE components (
    sha256      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    bytes       BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE apps (
    appid           TEXT PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    -- JSON of the app's own limits; NULL means the platform defaults.
    limits          TEXT,
    -- The highest version number handed out, and the one users reach.
    latest_version  BIGINT NOT NULL DEFAULT 0,
    active_version  BIGINT
);

CREATE TABLE versions (
    appid       TEXT NOT NULL REFERENCES apps (appid),
    version     BIGINT NOT NULL,
    sha256      TEXT NOT NULL REFERENCES components (sha256),
    imports     TEXT NOT NULL,
    exports     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (appid, version)
);

-- One row per call. Ids are time-ordered (see platform::new_call_id), so the
-- one index, the primary key, grows at its end.
CREATE TABLE calls (
    appid              TEXT NOT NULL,
    id                 TEXT NOT NULL,
    version            BIGINT NOT NULL,
    entry              TEXT NOT NULL,
    started_at         BIGINT NOT NULL,
    fuel_consumed      BIGINT NOT NULL,
    wall_time_us       BIGINT NOT NULL,
    peak_memory_bytes  BIGINT NOT NULL,
    host_calls         BIGINT NOT NULL,
    outcome            TEXT NOT NULL,
    detail             TEXT,
    log                TEXT NOT NULL,
    PRIMARY KEY (appid, id)
);
