//! Usage records, stored in batches: one row holds the records of one app
//! that the recorder wrote together, as a JSON array.
//!
//! A row per call made metering the largest cost of a call after the call
//! itself: twelve bound values and two B-tree inserts per record, on the
//! database's thread. A batch row costs one insert for hundreds of records
//! and about a third of the bytes (README.md, Performance).
//!
//! Each record is a JSON array, positionally: `[id, version, entry,
//! started_at, fuel_consumed, wall_time_us, peak_memory_bytes, host_calls,
//! outcome, detail, log]`, so the records stay readable in SQL
//! (`json_each` on SQLite, `jsonb_array_elements` on PostgreSQL).
//!
//! Rows are found by call id: a row's records all share the first
//! [`BUCKET_DIGITS`] hex digits of their ids (ids begin with the call's
//! time, so a bucket is about four seconds of calls), and the row keeps its
//! lowest and highest id.

use sqlx::Row;

use super::Db;
use crate::domain::AppId;

/// The usage record of one call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub id: String,
    pub appid: AppId,
    pub version: i64,
    /// `request` or `event`.
    pub entry: &'static str,
    pub started_at: i64,
    pub fuel_consumed: u64,
    pub wall_time_us: u64,
    pub peak_memory_bytes: u64,
    pub host_calls: u64,
    pub outcome: &'static str,
    pub detail: Option<String>,
    #[serde(skip)]
    pub log: String,
}

/// A call's usage record as read back, with or without its log. Its fields
/// are in the order of a stored record's array, which it is read from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredCall {
    pub id: String,
    pub version: i64,
    pub entry: String,
    pub started_at: i64,
    pub fuel_consumed: i64,
    pub wall_time_us: i64,
    pub peak_memory_bytes: i64,
    pub host_calls: i64,
    pub outcome: String,
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// Hex digits of a call id that every record of one row shares: the top
/// 36 bits of the call's time in milliseconds, 4,096 ms.
pub const BUCKET_DIGITS: usize = 9;

/// A row stops taking records once its JSON reaches this many bytes
/// (logs make records up to 64 KiB each), so that finding one call never
/// decodes much more than a mebibyte.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// The most rows one INSERT writes (5 parameters each); a power of two.
const ROWS_PER_INSERT: usize = 64;

/// The id of a call made at `at_ms`: 12 hex digits of the time (unix
/// milliseconds), then 20 random ones. An app's ids sort by when the calls
/// were made, which [`Db::recent_calls`] and [`Db::forget_calls`] rely on.
pub fn call_id(at_ms: i64) -> String {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&call_time_prefix(at_ms));
    id[6..].copy_from_slice(&rand::random::<[u8; 10]>());
    hex::encode(id)
}

/// The first six bytes of the ids of calls made at `at_ms`.
fn call_time_prefix(at_ms: i64) -> [u8; 6] {
    let bytes = (at_ms.max(0) as u64).to_be_bytes();
    [bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]
}

/// Whether `id` has the shape [`call_id`] gives: 32 lowercase hex digits.
fn is_call_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A row to insert: an app's records of one bucket, encoded.
struct Batch<'a> {
    appid: &'a str,
    first_id: &'a str,
    last_id: &'a str,
    calls: i64,
    /// JSON, as serde_json writes it: UTF-8.
    records: Vec<u8>,
}

impl<'a> Batch<'a> {
    /// Appends one record to the JSON array (left open until [`Batch::close`]).
    fn push(&mut self, call: &'a CallRecord) {
        self.records
            .push(if self.records.is_empty() { b'[' } else { b',' });
        let record = (
            &call.id,
            call.version,
            call.entry,
            call.started_at,
            saturating_i64(call.fuel_consumed),
            saturating_i64(call.wall_time_us),
            saturating_i64(call.peak_memory_bytes),
            saturating_i64(call.host_calls),
            call.outcome,
            call.detail.as_deref(),
            &call.log,
        );
        serde_json::to_writer(&mut self.records, &record)
            .expect("strings and integers always serialize");
        self.last_id = &call.id;
        self.calls += 1;
    }

    fn close(mut self) -> Self {
        self.records.push(b']');
        self
    }
}

/// Groups `calls` into rows: by app, then by bucket, in id order, each row
/// under [`MAX_BATCH_BYTES`].
fn batches(calls: &[CallRecord]) -> Vec<Batch<'_>> {
    let mut sorted: Vec<&CallRecord> = calls.iter().collect();
    sorted.sort_unstable_by(|a, b| (a.appid.as_str(), &a.id).cmp(&(b.appid.as_str(), &b.id)));
    let mut batches = Vec::new();
    let mut open: Option<Batch> = None;
    for call in sorted {
        let fits = open.as_ref().is_some_and(|batch| {
            batch.appid == call.appid.as_str()
                && batch.first_id.get(..BUCKET_DIGITS) == call.id.get(..BUCKET_DIGITS)
                && batch.records.len() < MAX_BATCH_BYTES
        });
        if !fits {
            batches.extend(open.take().map(Batch::close));
            open = Some(Batch {
                appid: call.appid.as_str(),
                first_id: &call.id,
                last_id: &call.id,
                calls: 0,
                records: Vec::new(),
            });
        }
        if let Some(batch) = open.as_mut() {
            batch.push(call);
        }
    }
    batches.extend(open.map(Batch::close));
    batches
}

/// Inserts `batches` in statements of a power-of-two number of rows, so
/// that a few statement shapes serve every size.
async fn insert_batches(
    conn: &mut sqlx::AnyConnection,
    batches: &[Batch<'_>],
) -> anyhow::Result<()> {
    let mut rest = batches;
    while !rest.is_empty() {
        let rows = 1usize << rest.len().ilog2();
        let (chunk, after) = rest.split_at(rows);
        rest = after;
        let mut sql = String::from(
            "INSERT INTO call_batches (appid, first_id, last_id, calls, records) VALUES ",
        );
        for row in 0..rows {
            let n = row * 5;
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5
            ));
        }
        let mut query = sqlx::query(&sql);
        for batch in chunk {
            query = query
                .bind(batch.appid)
                .bind(batch.first_id)
                .bind(batch.last_id)
                .bind(batch.calls)
                .bind(std::str::from_utf8(&batch.records)?);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The records of a row, with their logs.
fn decode(records: &str) -> anyhow::Result<Vec<StoredCall>> {
    serde_json::from_str(records).map_err(|err| anyhow::anyhow!("a stored usage batch: {err}"))
}

impl Db {
    /// Writes usage records, all or none: grouped into batch rows (see the
    /// module docs), inserted by one statement of up to 64 rows, several
    /// in one transaction when there are more. A batch that repeats a
    /// stored record's id as its first fails whole, so a retry of a batch
    /// already written is refused, not stored twice.
    pub async fn insert_calls(&self, calls: &[CallRecord]) -> anyhow::Result<()> {
        let batches = batches(calls);
        if batches.is_empty() {
            return Ok(());
        }
        if batches.len() <= ROWS_PER_INSERT {
            let mut conn = self.pool.acquire().await?;
            return insert_batches(&mut conn, &batches).await;
        }
        let mut tx = self.pool.begin().await?;
        for chunk in batches.chunks(ROWS_PER_INSERT) {
            insert_batches(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the usage records of calls made before `cutoff_ms`, app by
    /// app, at most `chunk` rows per statement so that no statement holds
    /// the write lock for long; returns how many records went. A row that
    /// also holds later records is rewritten without the earlier ones.
    ///
    /// The apps are those with records, not those registered: a call that
    /// finished while its app was being deleted leaves a record after the
    /// deletion removed the others, and that one goes at its time too.
    /// They are found by skipping through the primary key, one seek per app.
    pub async fn forget_calls(&self, cutoff_ms: i64, chunk: i64) -> anyhow::Result<u64> {
        let below = hex::encode(call_time_prefix(cutoff_ms));
        let appids: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE owners (appid) AS ( \
               SELECT MIN(appid) FROM call_batches \
               UNION ALL \
               SELECT (SELECT MIN(c.appid) FROM call_batches c WHERE c.appid > owners.appid) \
               FROM owners WHERE owners.appid IS NOT NULL) \
             SELECT appid FROM owners WHERE appid IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut forgotten = 0;
        for appid in appids {
            loop {
                let counts: Vec<i64> = sqlx::query_scalar(
                    "DELETE FROM call_batches WHERE appid = $1 AND first_id IN \
                     (SELECT first_id FROM call_batches WHERE appid = $1 AND last_id < $2 \
                      ORDER BY last_id LIMIT $3) \
                     RETURNING calls",
                )
                .bind(&appid)
                .bind(&below)
                .bind(chunk)
                .fetch_all(&self.pool)
                .await?;
                forgotten += counts.iter().sum::<i64>() as u64;
                if (counts.len() as i64) < chunk.max(1) {
                    break;
                }
            }
            forgotten += self.trim_batches(&appid, &below).await?;
        }
        Ok(forgotten)
    }

    /// Rewrites the rows of `appid` that hold records on both sides of
    /// `below` with only the later ones; returns how many went. Of two
    /// nodes trimming one row, the second finds it changed and leaves it.
    async fn trim_batches(&self, appid: &str, below: &str) -> anyhow::Result<u64> {
        let rows = sqlx::query(
            "SELECT first_id, records FROM call_batches \
             WHERE appid = $1 AND first_id < $2 AND last_id >= $2",
        )
        .bind(appid)
        .bind(below)
        .fetch_all(&self.pool)
        .await?;
        let mut trimmed = 0;
        for row in rows {
            let first_id: String = row.try_get(0)?;
            let records: String = row.try_get(1)?;
            // Rewritten as stored, whatever each record holds: a record is
            // an array whose first element is its id.
            let all: Vec<serde_json::Value> = serde_json::from_str(&records)?;
            let total = all.len();
            let kept: Vec<serde_json::Value> = all
                .into_iter()
                .filter(|record| record[0].as_str().is_some_and(|id| id >= below))
                .collect();
            let Some(new_first) = kept.iter().filter_map(|record| record[0].as_str()).min() else {
                continue;
            };
            let new_first = new_first.to_string();
            let reencoded = serde_json::to_string(&kept)?;
            let updated = sqlx::query(
                "UPDATE call_batches SET first_id = $1, calls = $2, records = $3 \
                 WHERE appid = $4 AND first_id = $5",
            )
            .bind(new_first)
            .bind(kept.len() as i64)
            .bind(reencoded)
            .bind(appid)
            .bind(&first_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if updated == 1 {
                trimmed += (total - kept.len()) as u64;
            }
        }
        Ok(trimmed)
    }

    /// The latest usage records of an app, newest first, without logs.
    pub async fn recent_calls(&self, appid: &AppId, limit: i64) -> anyhow::Result<Vec<StoredCall>> {
        use futures_util::TryStreamExt as _;
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut calls: Vec<StoredCall> = Vec::new();
        if limit == 0 {
            return Ok(calls);
        }
        let mut rows = sqlx::query(
            "SELECT last_id, records FROM call_batches WHERE appid = $1 ORDER BY last_id DESC",
        )
        .bind(appid.as_str())
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            let last_id: String = row.try_get(0)?;
            // Rows come newest last id first: once a row's newest record is
            // older than the limit's oldest, no later row has a newer one.
            if calls.len() == limit && calls.last().is_some_and(|oldest| last_id < oldest.id) {
                break;
            }
            let records: String = row.try_get(1)?;
            calls.extend(
                decode(&records)?
                    .into_iter()
                    .map(|call| StoredCall { log: None, ..call }),
            );
            calls.sort_unstable_by(|a, b| b.id.cmp(&a.id));
            calls.truncate(limit);
        }
        Ok(calls)
    }

    /// One call's usage record with its log.
    pub async fn call(&self, appid: &AppId, id: &str) -> anyhow::Result<Option<StoredCall>> {
        if !is_call_id(id) {
            return Ok(None);
        }
        let bucket_start = format!("{:0<32}", &id[..BUCKET_DIGITS]);
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT records FROM call_batches \
             WHERE appid = $1 AND first_id >= $2 AND first_id <= $3 AND last_id >= $3",
        )
        .bind(appid.as_str())
        .bind(&bucket_start)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        for records in rows {
            if let Some(found) = decode(&records)?.into_iter().find(|call| call.id == id) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(appid: &str, id: String, log: &str) -> CallRecord {
        CallRecord {
            id,
            appid: appid.parse().unwrap(),
            version: 3,
            entry: "request",
            started_at: 1_700_000_000_000,
            fuel_consumed: u64::MAX,
            wall_time_us: 12,
            peak_memory_bytes: 65536,
            host_calls: 1,
            outcome: "trap",
            detail: Some("unreachable \"executed\"".into()),
            log: log.into(),
        }
    }

    #[test]
    fn a_batch_decodes_to_the_records_it_was_made_of() {
        let calls = [
            record("bravo", call_id(1_000), "second app"),
            record("alpha", call_id(2_000), "line\n\u{fffd} \" \\"),
            record("alpha", call_id(1_000), ""),
        ];
        let batches = batches(&calls);
        assert_eq!(batches.len(), 2, "one row per app");
        let a = &batches[0];
        assert_eq!((a.appid, a.calls), ("alpha", 2));
        assert_eq!((a.first_id, a.last_id), (&*calls[2].id, &*calls[1].id));
        let decoded = decode(std::str::from_utf8(&a.records).unwrap()).unwrap();
        assert_eq!(decoded[1].id, calls[1].id);
        assert_eq!(decoded[1].log.as_deref(), Some("line\n\u{fffd} \" \\"));
        assert_eq!(decoded[1].fuel_consumed, i64::MAX, "saturated, as before");
        assert_eq!(
            decoded[1].detail.as_deref(),
            Some("unreachable \"executed\"")
        );
        assert_eq!(
            (decoded[1].version, decoded[1].outcome.as_str()),
            (3, "trap")
        );
    }

    #[test]
    fn a_row_never_spans_two_buckets_or_grows_past_its_size() {
        // 4,096 ms apart: the second starts a bucket of its own.
        let apart = [
            record("alpha", call_id(4_095), ""),
            record("alpha", call_id(4_096), ""),
        ];
        assert_eq!(batches(&apart).len(), 2);
        let big_log = "x".repeat(64 << 10);
        let many: Vec<_> = (0..40)
            .map(|_| record("alpha", call_id(5_000), &big_log))
            .collect();
        let rows = batches(&many);
        assert!(rows.len() >= 2, "{} rows", rows.len());
        assert!(
            rows.iter()
                .all(|row| row.records.len() < MAX_BATCH_BYTES + (70 << 10))
        );
        assert_eq!(rows.iter().map(|row| row.calls).sum::<i64>(), 40);
    }

    #[test]
    fn only_ids_of_the_call_id_shape_are_looked_up() {
        assert!(is_call_id(&call_id(1_700_000_000_000)));
        assert!(!is_call_id("0123"));
        assert!(!is_call_id(&"A".repeat(32)));
        assert!(!is_call_id(&"é".repeat(16)));
    }
}
