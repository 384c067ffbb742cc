//! The service's state in SQLite (`DATA/server.db`): tokens (hashed), the
//! job queue, uploads, watches, alerts and every webhook delivery attempt.
//! The provenance ledger is a separate file (`DATA/ledger.db`) written by the
//! scans themselves.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How many times a job is started before a crash that interrupts it every
/// time marks it failed.
pub const MAX_ATTEMPTS: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  source TEXT NOT NULL,
  base TEXT,
  options TEXT NOT NULL,
  status TEXT NOT NULL,
  token TEXT,
  idem_key TEXT,
  watch_id TEXT,
  created INTEGER NOT NULL,
  started INTEGER,
  finished INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER,
  verdict TEXT,
  report TEXT,
  error TEXT,
  evaluated INTEGER NOT NULL DEFAULT 0,
  UNIQUE (token, idem_key)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, kind, seq);
CREATE INDEX IF NOT EXISTS jobs_source ON jobs (source, seq);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  token TEXT,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS watches (
  id TEXT PRIMARY KEY,
  source TEXT NOT NULL UNIQUE,
  base TEXT,
  interval_s INTEGER NOT NULL,
  webhooks TEXT NOT NULL,
  created INTEGER NOT NULL,
  next_due INTEGER NOT NULL,
  last_checked INTEGER,
  last_revision TEXT,
  last_seq INTEGER,
  last_verdict TEXT,
  last_error TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  watch_id TEXT,
  job_id TEXT UNIQUE,
  source TEXT NOT NULL,
  payload TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS targets (
  alert_id TEXT NOT NULL,
  url TEXT NOT NULL,
  format TEXT NOT NULL,
  secret TEXT,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL,
  PRIMARY KEY (alert_id, url)
);
CREATE TABLE IF NOT EXISTS deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id TEXT NOT NULL,
  url TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  at INTEGER NOT NULL,
  status INTEGER,
  error TEXT
);
";

/// Who may do what: each role can do everything the roles below it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read scans, models, history, watches and alerts.
    Read,
    /// Also submit scans and uploads.
    Scan,
    /// Also create and delete watches.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "scan" => Some(Role::Scan),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Scan => "scan",
            Role::Admin => "admin",
        }
    }
}

/// One job as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// The scan's id.
    pub id: String,
    /// `static` or `deep`.
    pub kind: String,
    /// What is scanned: a URI, a path under an allowed root, or `upload:ID`.
    pub source: String,
    /// The base model of a deep scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The options it was submitted with.
    pub options: Value,
    /// `queued`, `running`, `done` (a report exists) or `failed` (see `error`).
    pub status: String,
    /// The watch that started it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_id: Option<String>,
    /// The name of the token that submitted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// Unix seconds.
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
    /// How many times it was started (more than one after a crash).
    pub attempts: i64,
    /// The CLI's exit code for this report: 0 clean, 1 flagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The report's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

const JOB_COLS: &str = "id, kind, source, base, options, status, watch_id, created, started, finished, attempts, exit_code, verdict, error, token";

fn job_of(r: &Row) -> rusqlite::Result<Job> {
    let options: String = r.get(4)?;
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        source: r.get(2)?,
        base: r.get(3)?,
        options: serde_json::from_str(&options).unwrap_or(Value::Null),
        status: r.get(5)?,
        watch_id: r.get(6)?,
        created: r.get(7)?,
        started: r.get(8)?,
        finished: r.get(9)?,
        attempts: r.get(10)?,
        exit_code: r.get(11)?,
        verdict: r.get(12)?,
        error: r.get(13)?,
        submitted_by: r.get(14)?,
    })
}

/// A watched source.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Watch {
    pub id: String,
    /// `hf://ORG/NAME[@REVISION]`, `models:/NAME@ALIAS` or `models:/NAME` (latest version).
    pub source: String,
    /// A base model: each new version is also deep-scanned against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Seconds between polls.
    pub interval_seconds: i64,
    /// Where alerts go (secrets are not shown).
    pub webhooks: Vec<WebhookView>,
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<i64>,
    /// The revision (Hub commit, MLflow version) seen last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_revision: Option<String>,
    /// The verdict of the last completed scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<String>,
    /// The last poll's error, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A webhook as stored.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// An http:// or https:// URL.
    pub url: String,
    /// `json` (Probity's payload, HMAC-signed when a secret is set) or `slack`.
    #[serde(default = "json_format")]
    pub format: String,
    /// The HMAC-SHA256 key of the `Probity-Signature` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn json_format() -> String {
    "json".into()
}

/// A webhook URL as shown to readers: scheme and host only (a Slack
/// incoming-webhook URL is itself a credential).
pub fn redact_url(u: &str) -> String {
    match u.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or(authority);
            if rest.len() > authority.len() {
                format!("{scheme}://{host}/…")
            } else {
                format!("{scheme}://{host}")
            }
        }
        None => "…".into(),
    }
}

/// A webhook as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub url: String,
    pub format: String,
    pub signed: bool,
}

fn watch_of(r: &Row) -> rusqlite::Result<Watch> {
    let hooks: String = r.get(4)?;
    let hooks: Vec<Webhook> = serde_json::from_str(&hooks).unwrap_or_default();
    Ok(Watch {
        id: r.get(0)?,
        source: r.get(1)?,
        base: r.get(2)?,
        interval_seconds: r.get(3)?,
        webhooks: hooks
            .into_iter()
            .map(|h| WebhookView {
                url: redact_url(&h.url),
                format: h.format,
                signed: h.secret.is_some(),
            })
            .collect(),
        created: r.get(5)?,
        last_checked: r.get(6)?,
        last_revision: r.get(7)?,
        last_verdict: r.get(8)?,
        last_error: r.get(9)?,
    })
}

const WATCH_COLS: &str =
    "id, source, base, interval_s, webhooks, created, last_checked, last_revision, last_verdict, last_error";

/// A watch due for a poll: (id, source, base, last revision).
pub type DueWatch = (String, String, Option<String>, Option<String>);

/// A webhook delivery attempt.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub url: String,
    pub attempt: i64,
    pub at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An alert with its delivery attempts.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_id: Option<String>,
    pub source: String,
    /// The payload sent to the webhooks.
    pub payload: Value,
    pub created: i64,
    pub deliveries: Vec<Delivery>,
}

/// A webhook delivery still to make.
#[derive(Clone, Debug)]
pub struct Target {
    pub alert_id: String,
    pub url: String,
    pub format: String,
    pub secret: Option<String>,
    pub attempts: i64,
    pub payload: Value,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random id with a prefix: `PREFIX_` and 20 hex digits.
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 10];
    if getrandom::fill(&mut b).is_err() {
        // never: the kernel's RNG is always there on the supported systems
        b = Sha256::digest(format!("{:?}", std::time::SystemTime::now()).as_bytes())[..10]
            .try_into()
            .unwrap_or([0; 10]);
    }
    format!("{prefix}_{}", hex(&b))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub struct Store {
    /// Every write, and reads that must see them at once.
    conn: Mutex<Connection>,
    /// Reads (WAL lets them run beside a write).
    readers: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

fn db_err(e: rusqlite::Error) -> String {
    format!("database: {e}")
}

/// The verdict's rank, to tell a worse one: clean < flagged < failed.
pub fn verdict_rank(v: Option<&str>) -> i32 {
    match v {
        Some("clean") => 0,
        Some("suspicious") => 1,
        Some("flagged") | Some("backdoor") => 2,
        None => -1,
        _ => 3,
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(|e| format!("{}: {e}", path.display()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| format!("{}: not a Probity server database: {e}", path.display()))?;
        let mut readers = Vec::new();
        for _ in 0..4 {
            let r = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
            r.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(db_err)?;
            readers.push(Mutex::new(r));
        }
        Ok(Store {
            conn: Mutex::new(conn),
            readers,
            next: Default::default(),
        })
    }

    fn c(&self) -> MutexGuard<'_, Connection> {
        // a panic while holding the lock leaves SQLite consistent (every
        // change is one statement or one transaction), so go on
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reader: a free one, else the next in turn.
    fn r(&self) -> MutexGuard<'_, Connection> {
        for m in &self.readers {
            if let Ok(g) = m.try_lock() {
                return g;
            }
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        self.readers[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    // ------------------------------------------------------------ tokens

    pub fn create_token(&self, name: &str, role: Role) -> Result<String, String> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
        let token = format!("pbt_{}", hex(&b));
        self.c()
            .execute(
                "INSERT INTO tokens (name, role, hash, created) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), token_hash(&token), now()],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    format!("a token named '{name}' exists already (revoke it first)")
                }
                e => db_err(e),
            })?;
        Ok(token)
    }

    pub fn revoke_token(&self, name: &str) -> Result<bool, String> {
        self.c()
            .execute("DELETE FROM tokens WHERE name = ?1", params![name])
            .map(|n| n > 0)
            .map_err(db_err)
    }

    pub fn tokens(&self) -> Result<Vec<(String, String, i64)>, String> {
        let c = self.c();
        let mut st = c
            .prepare("SELECT name, role, created FROM tokens ORDER BY name")
            .map_err(db_err)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    /// The name and role of a presented token; `Ok(None)` for an unknown token, `Err`
    /// when the database could not answer (never mistaken for "not valid").
    pub fn authenticate(&self, token: &str) -> Result<Option<(String, Role)>, String> {
        let c = self.r();
        let row = c
            .query_row(
                "SELECT name, role FROM tokens WHERE hash = ?1",
                params![token_hash(token)],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(db_err)?;
        Ok(row.and_then(|(n, r)| Some((n, Role::parse(&r)?))))
    }

    // -------------------------------------------------------------- jobs

    /// Queues a job; with an idempotency key already used by this token,
    /// returns the earlier job instead (and `false`).
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &self,
        kind: &str,
        source: &str,
        base: Option<&str>,
        options: &Value,
        token: Option<&str>,
        idem_key: Option<&str>,
        watch_id: Option<&str>,
    ) -> Result<(Job, bool), String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(db_err)?;
        if let Some(k) = idem_key {
            let found = tx
                .query_row(
                    &format!("SELECT {JOB_COLS} FROM jobs WHERE token IS ?1 AND idem_key = ?2"),
                    params![token, k],
                    job_of,
                )
                .optional()
                .map_err(db_err)?;
            if let Some(j) = found {
                return Ok((j, false));
            }
        }
        let id = new_id("scan");
        tx.execute(
            "INSERT INTO jobs (id, kind, source, base, options, status, token, idem_key, watch_id, created) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9)",
            params![id, kind, source, base, options.to_string(), token, idem_key, watch_id, now()],
        )
        .map_err(db_err)?;
        let j = tx
            .query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
                params![id],
                job_of,
            )
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok((j, true))
    }

    pub fn job(&self, id: &str) -> Result<Option<Job>, String> {
        self.r()
            .query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
                params![id],
                job_of,
            )
            .optional()
            .map_err(db_err)
    }

    pub fn report(&self, id: &str) -> Result<Option<String>, String> {
        self.r()
            .query_row("SELECT report FROM jobs WHERE id = ?1", params![id], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(db_err)
    }

    /// Jobs newest first, filtered; `before` is the cursor (a job's seq).
    pub fn jobs(
        &self,
        source: Option<&str>,
        verdict: Option<&str>,
        since: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Job>, Option<i64>), String> {
        let c = self.r();
        let mut st = c
            .prepare(&format!(
                "SELECT {JOB_COLS}, seq FROM jobs WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR verdict = ?2) AND (?3 IS NULL OR created >= ?3) AND (?4 IS NULL OR seq < ?4) ORDER BY seq DESC LIMIT ?5"
            ))
            .map_err(db_err)?;
        let rows = st
            .query_map(params![source, verdict, since, before, limit + 1], |r| {
                Ok((job_of(r)?, r.get::<_, i64>(15)?))
            })
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        let more = rows.len() as i64 > limit;
        let mut jobs: Vec<(Job, i64)> = rows;
        jobs.truncate(limit as usize);
        let next = if more {
            jobs.last().map(|(_, s)| *s)
        } else {
            None
        };
        Ok((jobs.into_iter().map(|(j, _)| j).collect(), next))
    }

    /// Takes the oldest queued job of `kind` and marks it running.
    pub fn claim(&self, kind: &str) -> Result<Option<Job>, String> {
        self.c()
            .query_row(
                &format!(
                    "UPDATE jobs SET status = 'running', started = ?2, attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND kind = ?1 ORDER BY seq LIMIT 1) RETURNING {JOB_COLS}"
                ),
                params![kind, now()],
                job_of,
            )
            .optional()
            .map_err(db_err)
    }

    pub fn finish(
        &self,
        id: &str,
        exit_code: i64,
        verdict: Option<&str>,
        report: &str,
    ) -> Result<(), String> {
        self.c()
            .execute(
                "UPDATE jobs SET status = 'done', finished = ?2, exit_code = ?3, verdict = ?4, report = ?5, error = NULL WHERE id = ?1",
                params![id, now(), exit_code, verdict, report],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    pub fn fail(&self, id: &str, error: &str) -> Result<(), String> {
        self.c()
            .execute(
                "UPDATE jobs SET status = 'failed', finished = ?2, error = ?3 WHERE id = ?1",
                params![id, now(), error],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// After a restart: jobs that were running go back to the queue, unless
    /// they were interrupted `MAX_ATTEMPTS` times already. Returns
    /// (requeued, failed).
    pub fn recover(&self) -> Result<(usize, usize), String> {
        let c = self.c();
        let failed = c
            .execute(
                "UPDATE jobs SET status = 'failed', finished = ?1, error = 'interrupted while running ' || attempts || ' times (the server stopped); not retried' WHERE status = 'running' AND attempts >= ?2",
                params![now(), MAX_ATTEMPTS],
            )
            .map_err(db_err)?;
        let requeued = c
            .execute(
                "UPDATE jobs SET status = 'queued', started = NULL WHERE status = 'running'",
                [],
            )
            .map_err(db_err)?;
        Ok((requeued, failed))
    }

    pub fn queue_depth(&self) -> Result<Vec<(String, String, i64)>, String> {
        let c = self.r();
        let mut st = c
            .prepare("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status ORDER BY kind, status")
            .map_err(db_err)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    pub fn verdict_counts(&self) -> Result<Vec<(String, String, i64)>, String> {
        let c = self.r();
        let mut st = c
            .prepare("SELECT kind, coalesce(verdict, 'none'), count(*) FROM jobs WHERE status = 'done' GROUP BY kind, verdict ORDER BY kind, verdict")
            .map_err(db_err)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    /// (kind, seconds) of every finished job.
    pub fn durations(&self) -> Result<Vec<(String, i64)>, String> {
        let c = self.r();
        let mut st = c
            .prepare("SELECT kind, finished - started FROM jobs WHERE status IN ('done', 'failed') AND started IS NOT NULL AND finished IS NOT NULL")
            .map_err(db_err)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    /// The latest finished job of each source: (source, job).
    pub fn latest_by_source(&self) -> Result<Vec<Job>, String> {
        let c = self.r();
        let mut st = c
            .prepare(&format!(
                "SELECT {JOB_COLS} FROM jobs j WHERE seq = (SELECT max(seq) FROM jobs k WHERE k.source = j.source AND k.status IN ('done', 'failed')) ORDER BY source"
            ))
            .map_err(db_err)?;
        let v = st
            .query_map([], job_of)
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    // ----------------------------------------------------------- uploads

    pub fn add_upload(
        &self,
        id: &str,
        name: &str,
        kind: &str,
        size: u64,
        sha256: &str,
        token: Option<&str>,
    ) -> Result<(), String> {
        self.c()
            .execute(
                "INSERT INTO uploads (id, name, kind, size, sha256, token, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, name, kind, size as i64, sha256, token, now()],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// An upload's stored name.
    pub fn upload(&self, id: &str) -> Result<Option<String>, String> {
        self.r()
            .query_row("SELECT name FROM uploads WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)
    }

    // ----------------------------------------------------------- watches

    pub fn add_watch(
        &self,
        source: &str,
        base: Option<&str>,
        interval: i64,
        hooks: &[Webhook],
    ) -> Result<(Watch, bool), String> {
        let c = self.c();
        if let Some(w) = c
            .query_row(
                &format!("SELECT {WATCH_COLS} FROM watches WHERE source = ?1"),
                params![source],
                watch_of,
            )
            .optional()
            .map_err(db_err)?
        {
            return Ok((w, false));
        }
        let id = new_id("watch");
        c.execute(
            "INSERT INTO watches (id, source, base, interval_s, webhooks, created, next_due) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
            params![id, source, base, interval, serde_json::to_string(hooks).unwrap_or_default(), now()],
        )
        .map_err(db_err)?;
        let w = c
            .query_row(
                &format!("SELECT {WATCH_COLS} FROM watches WHERE id = ?1"),
                params![id],
                watch_of,
            )
            .map_err(db_err)?;
        Ok((w, true))
    }

    pub fn watches(&self) -> Result<Vec<Watch>, String> {
        let c = self.r();
        let mut st = c
            .prepare(&format!("SELECT {WATCH_COLS} FROM watches ORDER BY source"))
            .map_err(db_err)?;
        let v = st
            .query_map([], watch_of)
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    pub fn watch(&self, id: &str) -> Result<Option<Watch>, String> {
        self.r()
            .query_row(
                &format!("SELECT {WATCH_COLS} FROM watches WHERE id = ?1"),
                params![id],
                watch_of,
            )
            .optional()
            .map_err(db_err)
    }

    pub fn webhooks(&self, watch_id: &str) -> Result<Vec<Webhook>, String> {
        let s: Option<String> = self
            .c()
            .query_row(
                "SELECT webhooks FROM watches WHERE id = ?1",
                params![watch_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default())
    }

    pub fn delete_watch(&self, id: &str) -> Result<bool, String> {
        self.c()
            .execute("DELETE FROM watches WHERE id = ?1", params![id])
            .map(|n| n > 0)
            .map_err(db_err)
    }

    /// Watches whose next poll is due (all of them with `all`).
    pub fn due_watches(&self, all: bool) -> Result<Vec<DueWatch>, String> {
        let c = self.c();
        let mut st = c
            .prepare("SELECT id, source, base, last_revision FROM watches WHERE ?1 OR next_due <= ?2 ORDER BY source")
            .map_err(db_err)?;
        let v = st
            .query_map(params![all, now()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    /// Records a poll: the revision seen (when it succeeded) and schedules the next.
    pub fn polled(
        &self,
        id: &str,
        revision: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), String> {
        let t = now();
        self.c()
            .execute(
                "UPDATE watches SET last_checked = ?2, last_revision = coalesce(?3, last_revision), last_error = ?4, next_due = ?2 + interval_s WHERE id = ?1",
                params![id, t, revision, error],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// The ledger record and verdict of the watch's last completed static scan.
    pub fn watch_state(&self, id: &str) -> Result<(Option<i64>, Option<String>), String> {
        self.c()
            .query_row(
                "SELECT last_seq, last_verdict FROM watches WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map(|o| o.unwrap_or((None, None)))
            .map_err(db_err)
    }

    pub fn set_watch_state(
        &self,
        id: &str,
        seq: Option<i64>,
        verdict: Option<&str>,
    ) -> Result<(), String> {
        self.c()
            .execute(
                "UPDATE watches SET last_seq = coalesce(?2, last_seq), last_verdict = ?3 WHERE id = ?1",
                params![id, seq, verdict],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Whether a job of this watch is still queued or running.
    pub fn watch_busy(&self, id: &str) -> Result<bool, String> {
        self.c()
            .query_row(
                "SELECT count(*) FROM jobs WHERE watch_id = ?1 AND status IN ('queued', 'running')",
                params![id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(db_err)
    }

    // ------------------------------------------------------------ alerts

    /// Stores an alert and one pending delivery per webhook, in one transaction.
    pub fn add_alert(
        &self,
        watch_id: Option<&str>,
        job_id: Option<&str>,
        source: &str,
        payload: &Value,
        hooks: &[Webhook],
    ) -> Result<String, String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(db_err)?;
        let id = payload
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| new_id("alert"));
        let seq: i64 = tx
            .query_row("SELECT coalesce(max(seq), 0) + 1 FROM alerts", [], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        // one alert per scan, even when a scan is evaluated twice
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO alerts (id, seq, watch_id, job_id, source, payload, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, seq, watch_id, job_id, source, payload.to_string(), now()],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Ok(id);
        }
        for h in hooks {
            tx.execute(
                "INSERT OR IGNORE INTO targets (alert_id, url, format, secret, state, next_at) VALUES (?1, ?2, ?3, ?4, 'pending', 0)",
                params![id, h.url, h.format, h.secret],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(id)
    }

    /// Marks a watch scan evaluated (its alert, if any, is stored).
    pub fn mark_evaluated(&self, id: &str) -> Result<(), String> {
        self.c()
            .execute("UPDATE jobs SET evaluated = 1 WHERE id = ?1", params![id])
            .map(|_| ())
            .map_err(db_err)
    }

    /// Watch scans that ended but were not evaluated (a crash in between).
    pub fn unevaluated(&self) -> Result<Vec<Job>, String> {
        let c = self.c();
        let mut st = c
            .prepare(&format!(
                "SELECT {JOB_COLS} FROM jobs WHERE watch_id IS NOT NULL AND evaluated = 0 AND status IN ('done', 'failed') ORDER BY seq"
            ))
            .map_err(db_err)?;
        let v = st
            .query_map([], job_of)
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    /// Whether the job already raised its alert (so a job evaluated twice after a crash alerts once).
    pub fn alert_for_job(&self, job_id: &str) -> Result<bool, String> {
        self.c()
            .query_row(
                "SELECT count(*) FROM alerts WHERE job_id = ?1",
                params![job_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(db_err)
    }

    pub fn alerts(&self, limit: i64) -> Result<Vec<Alert>, String> {
        let c = self.r();
        let mut st = c
            .prepare("SELECT id, watch_id, job_id, source, payload, created FROM alerts ORDER BY seq DESC LIMIT ?1")
            .map_err(db_err)?;
        let mut alerts = st
            .query_map(params![limit], |r| {
                let p: String = r.get(4)?;
                Ok(Alert {
                    id: r.get(0)?,
                    watch_id: r.get(1)?,
                    scan_id: r.get(2)?,
                    source: r.get(3)?,
                    payload: serde_json::from_str(&p).unwrap_or(Value::Null),
                    created: r.get(5)?,
                    deliveries: Vec::new(),
                })
            })
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        let mut st = c
            .prepare("SELECT url, attempt, at, status, error FROM deliveries WHERE alert_id = ?1 ORDER BY seq")
            .map_err(db_err)?;
        for a in &mut alerts {
            a.deliveries = st
                .query_map(params![a.id], |r| {
                    Ok(Delivery {
                        url: redact_url(&r.get::<_, String>(0)?),
                        attempt: r.get(1)?,
                        at: r.get(2)?,
                        status: r.get(3)?,
                        error: r.get(4)?,
                    })
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
        }
        Ok(alerts)
    }

    /// Deliveries due now.
    pub fn due_targets(&self) -> Result<Vec<Target>, String> {
        let c = self.c();
        let mut st = c
            .prepare("SELECT t.alert_id, t.url, t.format, t.secret, t.attempts, a.payload FROM targets t JOIN alerts a ON a.id = t.alert_id WHERE t.state = 'pending' AND t.next_at <= ?1 ORDER BY a.seq, t.url")
            .map_err(db_err)?;
        let v = st
            .query_map(params![now()], |r| {
                let p: String = r.get(5)?;
                Ok(Target {
                    alert_id: r.get(0)?,
                    url: r.get(1)?,
                    format: r.get(2)?,
                    secret: r.get(3)?,
                    attempts: r.get(4)?,
                    payload: serde_json::from_str(&p).unwrap_or(Value::Null),
                })
            })
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err);
        v
    }

    /// Whether any delivery is still pending (due now or later).
    pub fn pending_targets(&self) -> Result<i64, String> {
        self.c()
            .query_row(
                "SELECT count(*) FROM targets WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    /// Records one delivery attempt and its outcome; `next_at` None ends the
    /// target (delivered, or given up).
    pub fn delivered(
        &self,
        t: &Target,
        status: Option<i64>,
        error: Option<&str>,
        ok: bool,
        next_at: Option<i64>,
    ) -> Result<(), String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(db_err)?;
        tx.execute(
            "INSERT INTO deliveries (alert_id, url, attempt, at, status, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.alert_id, t.url, t.attempts + 1, now(), status, error],
        )
        .map_err(db_err)?;
        let state = if ok {
            "delivered"
        } else if next_at.is_some() {
            "pending"
        } else {
            "failed"
        };
        tx.execute(
            "UPDATE targets SET attempts = attempts + 1, state = ?3, next_at = ?4 WHERE alert_id = ?1 AND url = ?2",
            params![t.alert_id, t.url, state, next_at.unwrap_or(0)],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("server.db")).unwrap();
        (d, s)
    }

    #[test]
    fn a_database_that_cannot_answer_is_an_error_not_an_invalid_token() {
        let (d, s) = store();
        let t = s.create_token("ci", Role::Scan).unwrap();
        Connection::open(d.path().join("server.db"))
            .unwrap()
            .execute_batch("DROP TABLE tokens")
            .unwrap();
        let e = s.authenticate(&t).unwrap_err();
        assert!(e.starts_with("database:"), "{e}");
    }

    #[test]
    fn tokens_are_stored_hashed_and_names_are_unique() {
        let (d, s) = store();
        let t = s.create_token("ci", Role::Scan).unwrap();
        assert!(t.starts_with("pbt_") && t.len() == 68);
        assert_eq!(s.authenticate(&t), Ok(Some(("ci".into(), Role::Scan))));
        assert_eq!(s.authenticate("pbt_wrong"), Ok(None));
        assert!(s
            .create_token("ci", Role::Read)
            .unwrap_err()
            .contains("exists"));
        drop(s);
        let raw = std::fs::read(d.path().join("server.db")).unwrap();
        let wal = std::fs::read(d.path().join("server.db-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()));
        }
    }

    #[test]
    fn webhook_urls_are_shown_without_path_or_credentials() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redact_url("http://user:pw@h:8080"), "http://h:8080");
        assert_eq!(redact_url("not a url"), "…");
    }

    #[test]
    fn idempotency_key_returns_the_same_job_per_token() {
        let (_d, s) = store();
        let o = serde_json::json!({});
        let (a, new_a) = s
            .submit("static", "x", None, &o, Some("t1"), Some("k"), None)
            .unwrap();
        let (b, new_b) = s
            .submit("static", "x", None, &o, Some("t1"), Some("k"), None)
            .unwrap();
        let (c, _) = s
            .submit("static", "x", None, &o, Some("t2"), Some("k"), None)
            .unwrap();
        assert!(new_a && !new_b);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn recovery_requeues_running_jobs_and_gives_up_after_max_attempts() {
        let (_d, s) = store();
        let o = serde_json::json!({});
        let (j, _) = s.submit("static", "x", None, &o, None, None, None).unwrap();
        for _ in 0..MAX_ATTEMPTS - 1 {
            assert_eq!(s.claim("static").unwrap().unwrap().id, j.id);
            assert_eq!(s.recover().unwrap(), (1, 0));
            assert_eq!(s.job(&j.id).unwrap().unwrap().status, "queued");
        }
        s.claim("static").unwrap().unwrap();
        assert_eq!(s.recover().unwrap(), (0, 1));
        let j = s.job(&j.id).unwrap().unwrap();
        assert_eq!(j.status, "failed");
        assert!(j.error.unwrap().contains("interrupted"));
    }

    #[test]
    fn pagination_walks_every_job_once() {
        let (_d, s) = store();
        let o = serde_json::json!({});
        for i in 0..7 {
            s.submit("static", &format!("s{i}"), None, &o, None, None, None)
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (jobs, next) = s.jobs(None, None, None, cursor, 3).unwrap();
            seen.extend(jobs.into_iter().map(|j| j.source));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, ["s6", "s5", "s4", "s3", "s2", "s1", "s0"]);
    }
}
