//! Probity as a service.
//!
//! `probity serve` runs an HTTP API (axum on tokio) over a persistent job
//! queue in SQLite. Every scan runs as a child process of the `probity`
//! binary itself (`probity scan|deep --format json --ledger DATA/ledger.db`),
//! so a scan that crashes or is killed takes nothing else down, the server's
//! reports are exactly the CLI's, and every scan is recorded in the same
//! provenance ledger `probity log` reads. Watches poll Hugging Face and MLflow
//! sources through the binary's remote code (the [`Sources`] trait), and
//! alerts go to webhooks, signed with HMAC-SHA256.

pub mod alerts;
mod api;
mod dashboard;
mod guard;
pub mod jobs;
pub mod store;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use store::{Role, Store};

/// What the binary tells the service about remote sources.
pub trait Sources: Send + Sync + 'static {
    /// Whether `source` is a remote URI the scanner fetches itself
    /// (`hf://`, `https://huggingface.co/…`, `models:/`, `runs:/`).
    fn is_remote(&self, source: &str) -> bool;
    /// Checks that `source` can be watched (`hf://ORG/NAME[@REV]`,
    /// `models:/NAME@ALIAS`, `models:/NAME`); the reason when not.
    fn check_watchable(&self, source: &str) -> Result<(), String>;
    /// The source's current revision, with one listing request, and the URI
    /// that scans exactly that revision's model.
    fn head(&self, source: &str) -> Result<Head, String>;
}

/// A watched source's current revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The Hub commit, or the MLflow model version.
    pub revision: String,
    /// What to scan (for `models:/NAME`, `models:/NAME/VERSION`).
    pub scan: String,
}

/// The service's settings (`probity serve` flags and `[server]`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    /// Holds `server.db`, `ledger.db`, `uploads/`, `work/` and `server.log`.
    pub data: PathBuf,
    /// Local paths a caller may scan; canonical.
    pub allow_roots: Vec<PathBuf>,
    /// The `probity` binary that runs each scan.
    pub exe: PathBuf,
    /// The policy file handed to every scan (`--config`).
    pub policy: Option<PathBuf>,
    /// Static scans run in parallel.
    pub static_workers: usize,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Largest JSON request body, bytes.
    pub max_body_bytes: usize,
    /// A static scan taking longer is stopped and marked failed.
    pub static_timeout_s: u64,
    /// A deep scan's budget when the request names none, seconds.
    pub deep_budget_s: u64,
    /// The shortest watch interval accepted, seconds.
    pub min_watch_interval_s: i64,
    /// Webhook attempts per alert and target, and the first retry delay
    /// (doubled after each failure).
    pub webhook_attempts: i64,
    pub webhook_backoff_s: i64,
    /// Where the dashboard and alerts link to (default http://BIND).
    pub public_url: Option<String>,
    /// A connection that sends or receives nothing for this long is closed
    /// (slow clients, idle keep-alive).
    pub io_timeout_s: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Settings {
    pub fn new(data: PathBuf, exe: PathBuf) -> Settings {
        Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8477)),
            data,
            allow_roots: Vec::new(),
            exe,
            policy: None,
            static_workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_upload_bytes: 20 << 30,
            max_body_bytes: 256 << 10,
            static_timeout_s: 3600,
            deep_budget_s: 3600,
            min_watch_interval_s: 60,
            webhook_attempts: 6,
            webhook_backoff_s: 2,
            public_url: None,
            io_timeout_s: 30,
            max_connections: 1024,
        }
    }
    pub fn ledger(&self) -> PathBuf {
        self.data.join("ledger.db")
    }
    fn base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_string()
    }
}

/// In-memory counters for `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub alerts_sent: AtomicU64,
    pub polls: AtomicU64,
}

/// Everything a handler, runner or watcher needs.
pub struct Ctx {
    pub settings: Settings,
    pub store: Store,
    pub sources: Arc<dyn Sources>,
    pub wake: tokio::sync::Notify,
    pub stats: Stats,
}

/// Opens (creating) the data directory and its database.
pub fn open(data: &Path) -> Result<Store, String> {
    std::fs::create_dir_all(data.join("uploads"))
        .and_then(|_| std::fs::create_dir_all(data.join("work")))
        .map_err(|e| format!("{}: cannot create the data directory: {e}", data.display()))?;
    let policy = data.join("default-policy.toml");
    if !policy.exists() {
        std::fs::write(
            &policy,
            "# the policy of scans when probity serve has no --config\n",
        )
        .map_err(|e| format!("{}: {e}", policy.display()))?;
    }
    Store::open(&data.join("server.db"))
}

/// Holds the data folder's lock: one service (or one `watch --once`) runs
/// the queue of a data folder at a time.
pub struct DataLock(#[allow(dead_code)] std::fs::File);

pub fn lock(data: &Path) -> Result<DataLock, String> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(data)
        .map_err(|e| format!("{}: cannot create the data directory: {e}", data.display()))?;
    let p = data.join("server.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    // SAFETY: flock on a file descriptor this function owns
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(format!(
            "{}: in use by another probity serve or watch --once (a running service polls its own watches)",
            data.display()
        ));
    }
    Ok(DataLock(f))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn context(settings: Settings, sources: Arc<dyn Sources>) -> Result<Arc<Ctx>, String> {
    let store = open(&settings.data)?;
    Ok(Arc::new(Ctx {
        settings,
        store,
        sources,
        wake: tokio::sync::Notify::new(),
        stats: Stats::default(),
    }))
}

/// Runs the service until SIGINT or SIGTERM. `ready` is called with the
/// bound address once it listens.
pub fn serve(
    settings: Settings,
    sources: Arc<dyn Sources>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let _lock = lock(&settings.data)?;
    let ctx = context(settings, sources)?;
    let (requeued, failed) = ctx.store.recover()?;
    if requeued + failed > 0 {
        eprintln!(
            "probity serve: {requeued} interrupted scan(s) queued again, {failed} marked failed"
        );
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(ctx.settings.bind)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", ctx.settings.bind))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {}: {e}", ctx.settings.bind))?;
        tokio::spawn(jobs::runner(
            ctx.clone(),
            "static",
            ctx.settings.static_workers.max(1),
        ));
        tokio::spawn(jobs::runner(ctx.clone(), "deep", 1));
        tokio::spawn(watch::scheduler(ctx.clone()));
        tokio::spawn(alerts::sender(ctx.clone()));
        // scans that ended before a crash but were not yet evaluated
        tokio::spawn(watch::evaluate_pending(ctx.clone()));
        ready(addr);
        let app = api::router(ctx.clone());
        let listener = guard::Guarded::new(
            listener,
            std::time::Duration::from_secs(ctx.settings.io_timeout_s),
            ctx.settings.max_connections,
        );
        axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| format!("server: {e}"))
    })
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// What `probity watch --once` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct OnceSummary {
    pub watches: usize,
    pub changed: usize,
    pub scans: Vec<store::Job>,
    pub alerts: usize,
    pub poll_errors: Vec<String>,
    pub undelivered: i64,
}

/// `probity watch --once`: polls every watch now, runs the scans a change
/// needs, raises and delivers the alerts, and returns.
pub fn watch_once(settings: Settings, sources: Arc<dyn Sources>) -> Result<OnceSummary, String> {
    let _lock = lock(&settings.data)?;
    let ctx = context(settings, sources)?;
    ctx.store.recover()?;
    runtime()?.block_on(watch::once(ctx))
}

/// `probity alerts test URL`: sends one test alert and says how it went.
pub fn send_test_alert(url: &str, format: &str, secret: Option<&str>) -> Result<u16, String> {
    let payload = serde_json::json!({
        "type": "probity.alert.test",
        "id": store::new_id("alert"),
        "message": "A test alert from probity alerts test: this webhook receives Probity's alerts.",
        "reasons": [],
        "created": store::now(),
    });
    alerts::post(url, format, secret, &payload)
}
