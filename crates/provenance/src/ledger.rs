//! The provenance ledger: an append-only, hash-chained record of every
//! `scan`, `deep` and `verify` run against a model, in an SQLite file.
//!
//! Table `records(seq INTEGER PRIMARY KEY, prev TEXT, digest TEXT, body TEXT)`:
//! `body` is the record as canonical JSON (object keys sorted, no spaces) and
//! holds its own `seq`; `prev` is the `digest` of the record before it (64
//! zeros for the first); `digest` is the SHA-256 over `prev` (its 64 hex
//! characters), a newline, and `body`'s bytes. Table `meta` names the format.
//!
//! An append is one `BEGIN IMMEDIATE` transaction (read the last record,
//! insert the next) with a busy timeout, in WAL mode, so concurrent writers
//! (two CI jobs on one file) queue up and none is lost or forks the chain.
//!
//! [`check`] recomputes the chain and names the first broken record: an
//! edited body or digest, a deleted record (a gap in `seq`, or a `prev` that
//! no longer matches), a reordered one (a body stored under another `seq`, or
//! a `prev` naming another record). Deleting the last records, or rewriting
//! the whole chain, leaves a valid chain behind: only a head digest pinned
//! elsewhere (`--expect-head`) shows it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The ledger's format, in table `meta`.
pub const FORMAT: &str = "probity.ledger/v1";
/// The schema of a record body.
pub const RECORD_SCHEMA: &str = "probity.ledger.record/v1";

/// How long a writer waits for another to finish its append.
const BUSY: Duration = Duration::from_secs(120);

/// One stored record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub seq: i64,
    pub prev: String,
    pub digest: String,
    pub body: String,
}

/// An open ledger file.
pub struct Ledger {
    conn: Connection,
}

/// `v` as canonical JSON: object keys sorted by their UTF-8 bytes, no
/// insignificant whitespace (serde_json's escaping and number forms).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The digest of a record: SHA-256 over `prev`, a newline and `body`.
pub fn chain_digest(prev: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    crate::keys::hex(&h.finalize())
}

fn sql_err(e: rusqlite::Error) -> String {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            "not a Probity ledger (not an SQLite database)".to_string()
        }
        _ => e.to_string(),
    }
}

impl Ledger {
    /// Opens the ledger at `path` for appending, creating it (and its
    /// tables) when missing. Refuses an SQLite file that is some other
    /// database.
    pub fn open_for_append(path: &Path) -> Result<Ledger, String> {
        if path.is_dir() {
            return Err("is a directory, not a ledger file".into());
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err)?;
        conn.busy_timeout(BUSY).map_err(sql_err)?;
        // switching to WAL takes a lock of its own, which the busy handler
        // does not always wait for: retry while another writer holds it
        let start = std::time::Instant::now();
        loop {
            let r: rusqlite::Result<String> =
                conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0));
            match r {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy && start.elapsed() < BUSY =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(sql_err(e)),
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql_err)?;
        let mut l = Ledger { conn };
        let tx = l
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        let tables: Vec<String> = {
            let mut st = tx
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .map_err(sql_err)?;
            let names = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            names
        };
        if tables.is_empty() {
            tx.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE records (seq INTEGER PRIMARY KEY, prev TEXT NOT NULL, digest TEXT NOT NULL, body TEXT NOT NULL);",
            )
            .map_err(sql_err)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('format', ?1)",
                [FORMAT],
            )
            .map_err(sql_err)?;
        }
        tx.commit().map_err(sql_err)?;
        l.check_format()?;
        Ok(l)
    }

    /// Opens an existing ledger to read it.
    pub fn open_read(path: &Path) -> Result<Ledger, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a file".into());
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err)?;
        conn.busy_timeout(BUSY).map_err(sql_err)?;
        let l = Ledger { conn };
        l.check_format()?;
        Ok(l)
    }

    fn check_format(&self) -> Result<(), String> {
        let f: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    sql_err(e)
                }
                _ => "an SQLite database, but not a Probity ledger".to_string(),
            })
            .map(Some)?;
        match f.as_deref() {
            Some(FORMAT) => Ok(()),
            Some(other) => Err(format!(
                "ledger format {other}, this Probity reads {FORMAT}"
            )),
            None => Err("not a Probity ledger".into()),
        }
    }

    /// Appends a record: `build` gets the new record's `seq` and returns its
    /// body (a JSON object; `seq` is set in it). Returns `(seq, digest)`.
    /// Concurrent appenders are serialised by SQLite's write lock.
    pub fn append(&mut self, build: impl FnOnce(i64) -> Value) -> Result<(i64, String), String> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, digest FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(sql_err(e)),
            })?;
        let (seq, prev) = match last {
            Some((s, d)) => (s + 1, d),
            None => (1, GENESIS.to_string()),
        };
        let mut v = build(seq);
        let Some(obj) = v.as_object_mut() else {
            return Err("a ledger record must be a JSON object".into());
        };
        obj.insert("seq".into(), Value::from(seq));
        let body = canonical_json(&v);
        let digest = chain_digest(&prev, &body);
        tx.execute(
            "INSERT INTO records (seq, prev, digest, body) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![seq, prev, digest, body],
        )
        .map_err(sql_err)?;
        tx.commit().map_err(sql_err)?;
        Ok((seq, digest))
    }

    /// Every record, by `seq`.
    pub fn rows(&self) -> Result<Vec<Row>, String> {
        let mut st = self
            .conn
            .prepare("SELECT seq, prev, digest, body FROM records ORDER BY seq")
            .map_err(sql_err)?;
        let rows = st
            .query_map([], |r| {
                Ok(Row {
                    seq: r.get(0)?,
                    prev: r.get(1)?,
                    digest: r.get(2)?,
                    body: r.get(3)?,
                })
            })
            .map_err(sql_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_err)?;
        Ok(rows)
    }
}

/// The outcome of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub records: usize,
    /// `(seq, digest)` of the last record.
    pub head: Option<(i64, String)>,
    /// The first problem: the `seq` it was found at (`None` for a pinned
    /// head that is not in the ledger) and why.
    pub broken: Option<(Option<i64>, String)>,
    /// The `seq` of the pinned head, when one was given and found.
    pub pinned_at: Option<i64>,
}

/// A digest as given by a user: optional `sha256:`, any case.
pub fn normalise_digest(d: &str) -> String {
    d.trim()
        .strip_prefix("sha256:")
        .unwrap_or(d.trim())
        .to_ascii_lowercase()
}

/// Recomputes the chain of `rows` (in `seq` order) and, with `expect_head`,
/// checks that the pinned digest is still one of its records.
pub fn check(rows: &[Row], expect_head: Option<&str>) -> Check {
    let by_digest: std::collections::HashMap<&str, i64> =
        rows.iter().map(|r| (r.digest.as_str(), r.seq)).collect();
    let mut out = Check {
        records: rows.len(),
        head: rows.last().map(|r| (r.seq, r.digest.clone())),
        broken: None,
        pinned_at: None,
    };
    let mut expected_seq = 1i64;
    let mut expected_prev = GENESIS.to_string();
    for r in rows {
        let fail = |why: String| Some((Some(r.seq), why));
        if r.seq != expected_seq {
            out.broken = if expected_seq == r.seq - 1 {
                fail(format!(
                    "record {expected_seq} is missing (deleted): the sequence jumps from {} to {}",
                    expected_seq - 1,
                    r.seq
                ))
            } else {
                fail(format!(
                    "records {expected_seq} to {} are missing (deleted)",
                    r.seq - 1
                ))
            };
            break;
        }
        let body_seq = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("seq").and_then(Value::as_i64));
        match body_seq {
            None => {
                out.broken = fail("the body is not a ledger record (edited)".into());
                break;
            }
            Some(s) if s != r.seq => {
                out.broken = fail(format!(
                    "the body of record {s} is stored at {} (reordered)",
                    r.seq
                ));
                break;
            }
            _ => {}
        }
        if chain_digest(&r.prev, &r.body) != r.digest {
            out.broken =
                fail("the body or digest was edited: the digest does not match the content".into());
            break;
        }
        if r.prev != expected_prev {
            out.broken = match by_digest.get(r.prev.as_str()) {
                Some(k) => fail(format!(
                    "the record follows record {k}, not record {} (reordered)",
                    r.seq - 1
                )),
                None => fail(format!(
                    "the link to record {} does not match: a record before it was deleted or rewritten",
                    r.seq - 1
                )),
            };
            break;
        }
        expected_prev = r.digest.clone();
        expected_seq = r.seq + 1;
    }
    if out.broken.is_none() {
        if let Some(pin) = expect_head {
            let pin = normalise_digest(pin);
            match by_digest.get(pin.as_str()) {
                Some(s) => out.pinned_at = Some(*s),
                None => {
                    out.broken = Some((
                        None,
                        format!(
                            "the pinned head sha256:{pin} is not in the ledger: the record it names, or records after it, were deleted, or the chain was rewritten"
                        ),
                    ))
                }
            }
        }
    }
    out
}

/// `t` as an RFC 3339 UTC time with seconds (`2026-01-31T12:00:00Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339_secs(secs)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC time.
pub fn rfc3339_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The lineage a model claims: `base_model` and `datasets` from the YAML
/// front matter of its model card (README.md), `_name_or_path` from
/// config.json and `base_model_name_or_path` from adapter_config.json (the
/// shallowest of each within three folder levels). Claims, not checked.
pub fn lineage(root: &Path) -> Value {
    let mut out = serde_json::Map::new();
    if root.is_dir() {
        let find = |name: &str| -> Option<std::path::PathBuf> {
            walkdir::WalkDir::new(root)
                .max_depth(3)
                .follow_links(false)
                .sort_by_file_name()
                .into_iter()
                .flatten()
                .filter(|e| e.file_name() == name)
                .min_by_key(|e| e.depth())
                .map(|e| e.into_path())
        };
        let read = |p: &Path| -> Option<String> {
            let m = std::fs::metadata(p).ok()?;
            if !m.is_file() || m.len() > 4 << 20 {
                return None;
            }
            String::from_utf8(std::fs::read(p).ok()?).ok()
        };
        if let Some(card) = find("README.md").and_then(|p| read(&p)) {
            let (base, datasets) = card_lineage(&card);
            if !base.is_empty() {
                out.insert("base_model".into(), base.into());
            }
            if !datasets.is_empty() {
                out.insert("datasets".into(), datasets.into());
            }
        }
        for (file, key, field) in [
            ("config.json", "_name_or_path", "config_name_or_path"),
            (
                "adapter_config.json",
                "base_model_name_or_path",
                "adapter_base_model",
            ),
        ] {
            let v = find(file)
                .and_then(|p| read(&p))
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.get(key).and_then(Value::as_str).map(str::to_string))
                .filter(|s| !s.is_empty());
            if let Some(v) = v {
                out.insert(field.into(), v.into());
            }
        }
    }
    Value::Object(out)
}

/// `base_model` and `datasets` from a model card's YAML front matter (each a
/// string or a list of strings).
pub fn card_lineage(card: &str) -> (Vec<String>, Vec<String>) {
    let text = card.strip_prefix('\u{feff}').unwrap_or(card);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (Vec::new(), Vec::new());
    };
    let end = rest.match_indices("\n---").map(|(i, _)| i).find(|&i| {
        let after = &rest[i + 4..];
        after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n")
    });
    let yaml = match end {
        Some(i) => &rest[..i],
        None if rest.starts_with("---") => "",
        None => return (Vec::new(), Vec::new()),
    };
    let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(yaml) else {
        return (Vec::new(), Vec::new());
    };
    let strings = |key: &str| -> Vec<String> {
        match v.get(key) {
            Some(serde_yaml_ng::Value::String(s)) => vec![s.clone()],
            Some(serde_yaml_ng::Value::Sequence(a)) => a
                .iter()
                .filter_map(|x| match x {
                    serde_yaml_ng::Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    (strings("base_model"), strings("datasets"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ledger_with(n: i64) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ledger.db");
        let mut l = Ledger::open_for_append(&p).unwrap();
        for i in 0..n {
            l.append(|_| json!({"n": i, "b": "x"})).unwrap();
        }
        (d, p)
    }

    fn rows(p: &Path) -> Vec<Row> {
        Ledger::open_read(p).unwrap().rows().unwrap()
    }

    #[test]
    fn canonical_sorts_keys() {
        let v = json!({"b": 1, "a": {"d": [1, {"z": null, "y": "é\""}], "c": 2.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":2.5,"d":[1,{"y":"é\"","z":null}]},"b":1}"#
        );
    }

    #[test]
    fn chain_appends_and_links() {
        let (_d, p) = ledger_with(3);
        let r = rows(&p);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].prev, GENESIS);
        assert_eq!(r[1].prev, r[0].digest);
        assert_eq!(r[2].prev, r[1].digest);
        assert_eq!(r[0].body, r#"{"b":"x","n":0,"seq":1}"#);
        assert_eq!(r[0].digest, chain_digest(GENESIS, &r[0].body));
        let c = check(&r, None);
        assert_eq!(c.broken, None);
        assert_eq!(c.head, Some((3, r[2].digest.clone())));
        let c = check(
            &r,
            Some(format!("sha256:{}", r[1].digest.to_uppercase()).as_str()),
        );
        assert_eq!((c.broken, c.pinned_at), (None, Some(2)));
    }

    #[test]
    fn tampering_is_named() {
        let (_d, p) = ledger_with(4);
        let good = rows(&p);
        // edited body
        let mut r = good.clone();
        r[1].body = r[1].body.replace("\"x\"", "\"y\"");
        let c = check(&r, None);
        assert_eq!(c.broken.as_ref().unwrap().0, Some(2));
        assert!(c.broken.unwrap().1.contains("edited"));
        // deleted middle record
        let mut r = good.clone();
        r.remove(1);
        let c = check(&r, None);
        assert_eq!(c.broken.as_ref().unwrap().0, Some(3));
        assert!(c.broken.unwrap().1.contains("record 2 is missing"));
        // deleted and renumbered: the link breaks
        let mut r = good.clone();
        r.remove(1);
        r[1].seq = 2;
        r[2].seq = 3;
        let c = check(&r, None);
        assert_eq!(c.broken.unwrap().0, Some(2));
        // two bodies swapped
        let mut r = good.clone();
        let b = r[1].body.clone();
        r[1].body = r[2].body.clone();
        r[2].body = b;
        let c = check(&r, None);
        assert_eq!(c.broken.as_ref().unwrap().0, Some(2));
        assert!(c.broken.unwrap().1.contains("reordered"));
        // the last record deleted: only a pinned head shows it
        let mut r = good.clone();
        r.pop();
        assert_eq!(check(&r, None).broken, None);
        let c = check(&r, Some(good[3].digest.as_str()));
        assert_eq!(c.broken.as_ref().unwrap().0, None);
        assert!(c.broken.unwrap().1.contains("not in the ledger"));
        // a rewritten digest alone
        let mut r = good.clone();
        r[3].digest = GENESIS.into();
        assert_eq!(check(&r, None).broken.unwrap().0, Some(4));
    }

    #[test]
    fn not_a_ledger() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.db");
        std::fs::write(&p, vec![b'x'; 4096]).unwrap();
        assert!(Ledger::open_read(&p)
            .err()
            .unwrap()
            .contains("not a Probity ledger"));
        assert!(Ledger::open_for_append(&p)
            .err()
            .unwrap()
            .contains("not a Probity ledger"));
        let other = d.path().join("other.db");
        let c = Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
        drop(c);
        assert!(Ledger::open_for_append(&other)
            .err()
            .unwrap()
            .contains("not a Probity ledger"));
    }

    #[test]
    fn time_and_card() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_709_251_199), "2024-02-29T23:59:59Z");
        let card = "---\nlicense: mit\nbase_model: meta-llama/Llama-3.2-1B\ndatasets:\n  - acme/chat\n  - acme/code\n---\n# x\n";
        assert_eq!(
            card_lineage(card),
            (
                vec!["meta-llama/Llama-3.2-1B".to_string()],
                vec!["acme/chat".to_string(), "acme/code".to_string()]
            )
        );
        assert_eq!(card_lineage("# no front matter"), (vec![], vec![]));
    }
}
