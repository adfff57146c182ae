-- Usage records move from a row per call to a row per app per write of the
-- recorder: a JSON array of records (see src/db/calls.rs for its layout),
-- all from one 4,096 ms bucket of call ids (their first nine hex digits).
CREATE TABLE call_batches (
    appid     TEXT NOT NULL,
    first_id  TEXT COLLATE "C" NOT NULL,
    last_id   TEXT COLLATE "C" NOT NULL,
    calls     BIGINT NOT NULL,
    records   TEXT NOT NULL,
    PRIMARY KEY (appid, first_id)
);
CREATE INDEX call_batches_newest ON call_batches (appid, last_id);

-- The records already stored, a row per app per millisecond of call ids.
INSERT INTO call_batches (appid, first_id, last_id, calls, records)
SELECT appid, MIN(id), MAX(id), COUNT(*),
       json_agg(json_build_array(id, version, entry, started_at, fuel_consumed,
                                 wall_time_us, peak_memory_bytes, host_calls,
                                 outcome, detail, log) ORDER BY id)::text
FROM calls
GROUP BY appid, substr(id, 1, 12);

DROP TABLE calls;
