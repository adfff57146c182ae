-- The storage capability: key-value entries per (app, owner), where owner 0
-- is the app scope and any other owner is the account of the user scope.
-- Keys compare byte by byte, so pages come in byte order.

CREATE TABLE kv (
    appid       TEXT NOT NULL,
    owner_id    BIGINT NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    value       BYTEA NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (appid, owner_id, key)
);

-- What each (app, owner) holds, kept in step with kv by every write, so a
-- quota check reads one row instead of summing; every write locks this row
-- first, which serialises the writes of one partition.
CREATE TABLE kv_usage (
    appid     TEXT NOT NULL,
    owner_id  BIGINT NOT NULL,
    keys      BIGINT NOT NULL,
    bytes     BIGINT NOT NULL,
    PRIMARY KEY (appid, owner_id)
);
