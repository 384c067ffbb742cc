//! `probity serve`, `probity token`, `probity watch --once`, `probity alerts
//! test`, and the client side of `probity scan --server`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::{fail, load_config, Format};
use probity_server::{Head, Role, Settings};

/// The binary's remote code, for the service's watches.
struct BinSources;

impl probity_server::Sources for BinSources {
    fn is_remote(&self, source: &str) -> bool {
        matches!(crate::remote::hf::parse(source), Some(Ok(_)))
            || matches!(crate::remote::mlflow::parse(source), Some(Ok(_)))
    }
    fn check_watchable(&self, source: &str) -> Result<(), String> {
        match crate::remote::hf::parse(source) {
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
        if let Some(name) = source.strip_prefix("models:/") {
            if !name.is_empty() && !name.contains(['/', '@']) {
                return Ok(());
            }
        }
        match crate::remote::mlflow::parse(source) {
            Some(Ok(crate::remote::mlflow::MlflowRef::Alias { .. })) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            _ => Err(format!(
                "'{source}' cannot be watched: give hf://ORG/NAME[@REVISION], models:/NAME (its newest version) or models:/NAME@ALIAS"
            )),
        }
    }
    fn head(&self, source: &str) -> Result<Head, String> {
        if let Some(r) = crate::remote::hf::parse(source) {
            let r = r.map_err(|e| e.to_string())?;
            let commit = crate::remote::hf::head(&r).map_err(|e| e.to_string())?;
            // scan exactly the commit polled: a branch moved back before
            // the scan runs cannot hide the version that was seen
            return Ok(Head {
                scan: format!("hf://{}@{commit}", r.repo),
                revision: commit,
            });
        }
        let (revision, scan) = crate::remote::mlflow::head(source).map_err(|e| e.to_string())?;
        Ok(Head { revision, scan })
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8477, or `bind` in [server]). Port 0 picks a free port; the address is printed.
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
    /// Folder for the database (server.db: tokens, jobs, watches, alerts), the provenance ledger (ledger.db), uploads and scan working files. Required here or as `data` in [server].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A folder whose files callers may scan by path (repeatable). Paths are canonicalised, so `..` and symbolic links cannot leave it. Without one, only URIs and uploads are accepted.
    #[arg(long = "allow-root", value_name = "DIR")]
    allow_roots: Vec<PathBuf>,
    /// Policy file (probity.toml): its [server] settings, and the policy every scan runs with (fail_on, allow, ignore, [deep], [provenance] signers and trusted_authors). Default: probity.toml in the current directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Static scans run in parallel (default: the number of cores). Deep scans run one at a time.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Largest upload in bytes (default 20 GiB).
    #[arg(long, value_name = "BYTES")]
    max_upload_bytes: Option<u64>,
    /// The shortest watch interval accepted, seconds (default 60).
    #[arg(long, value_name = "SECONDS")]
    min_watch_interval: Option<i64>,
    /// The URL the service is reached at, for links in alerts (default http://BIND).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Close a connection that sends or receives nothing for this long (slow or stalled clients, idle keep-alive), seconds (default 30).
    #[arg(long, value_name = "SECONDS")]
    io_timeout: Option<u64>,
}

fn settings(
    data: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<(Settings, crate::config::Config), String> {
    let cfg = load_config(config.clone()).map_err(|e| e.to_string())?;
    let data = data
        .or_else(|| cfg.server.data.clone())
        .ok_or("no data folder: give --data DIR or `data` in the [server] table of probity.toml")?;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the probity binary: {e}"))?;
    let mut s = Settings::new(data, exe);
    // scans run with the same policy file, by absolute path
    let policy = config.or_else(|| Some(PathBuf::from("probity.toml")).filter(|p| p.is_file()));
    s.policy = match policy {
        Some(p) => Some(
            p.canonicalize()
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    Ok((s, cfg))
}

/// `probity serve`.
pub fn serve(a: ServeArgs) -> ExitCode {
    let (mut s, cfg) = match settings(a.data, a.config) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let sc = &cfg.server;
    let bind = a
        .bind
        .or(sc.bind.clone())
        .unwrap_or_else(|| "127.0.0.1:8477".into());
    s.bind = match bind.parse() {
        Ok(b) => b,
        Err(_) => {
            return fail(format!(
                "--bind {bind}: expected ADDR:PORT, e.g. 127.0.0.1:8477"
            ))
        }
    };
    let roots = if a.allow_roots.is_empty() {
        sc.allow_roots.clone()
    } else {
        a.allow_roots
    };
    for r in roots {
        match r.canonicalize() {
            Ok(c) if c.is_dir() => s.allow_roots.push(c),
            _ => return fail(format!("--allow-root {}: not a folder", r.display())),
        }
    }
    if let Some(n) = a.workers.or(sc.static_workers) {
        if n == 0 {
            return fail("--workers must be at least 1");
        }
        s.static_workers = n;
    }
    if let Some(n) = a.max_upload_bytes.or(sc.max_upload_bytes) {
        s.max_upload_bytes = n;
    }
    if let Some(n) = sc.max_body_bytes {
        s.max_body_bytes = n;
    }
    if let Some(n) = sc.static_timeout {
        s.static_timeout_s = n;
    }
    if let Some(n) = sc.deep_budget.or(cfg.deep.budget) {
        s.deep_budget_s = n;
    }
    if let Some(n) = a.min_watch_interval.or(sc.min_watch_interval) {
        if n < 1 {
            return fail("--min-watch-interval must be at least 1 second");
        }
        s.min_watch_interval_s = n;
    }
    if let Some(n) = sc.webhook_attempts {
        s.webhook_attempts = n.max(1);
    }
    s.public_url = a.public_url.or(sc.public_url.clone());
    if let Some(t) = a.io_timeout.or(sc.io_timeout) {
        if t == 0 {
            return fail("--io-timeout must be at least 1 second");
        }
        s.io_timeout_s = t;
    }
    let data = s.data.clone();
    let r = probity_server::serve(s, Arc::new(BinSources), |addr| {
        use std::io::Write;
        println!(
            "probity serve: listening on http://{addr} (data {})",
            data.display()
        );
        let _ = std::io::stdout().flush();
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token and print it (only the token, on standard output); it is stored hashed and cannot be shown again.
    Create {
        /// The service's data folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// A unique name for the token (who or what uses it).
        #[arg(long)]
        name: String,
        /// read: see scans, models, history, watches, alerts; scan: also submit scans and uploads; admin: also create and delete watches.
        #[arg(long, value_parser = ["read", "scan", "admin"])]
        role: String,
    },
    /// List the tokens' names and roles.
    List {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Revoke a token by name.
    Revoke {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long)]
        name: String,
    },
}

/// `probity token`.
pub fn token(c: TokenCmd) -> ExitCode {
    match c {
        TokenCmd::Create { data, name, role } => {
            if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
                return fail("--name: 1 to 128 printable characters");
            }
            let store = match probity_server::open(&data) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let role = Role::parse(&role).unwrap_or(Role::Read);
            match store.create_token(&name, role) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        TokenCmd::List { data } => {
            let store = match probity_server::open(&data) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            match store.tokens() {
                Ok(t) => {
                    for (name, role, created) in t {
                        println!(
                            "{name}\t{role}\t{}",
                            probity_provenance::ledger::rfc3339_secs(created)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        TokenCmd::Revoke { data, name } => {
            let store = match probity_server::open(&data) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            match store.revoke_token(&name) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => fail(format!("no token named '{name}'")),
                Err(e) => fail(e),
            }
        }
    }
}

#[derive(Args)]
pub struct WatchArgs {
    /// Poll every watch once, run the scans a change needs, raise and deliver alerts, then exit (for cron or a CI schedule; `probity serve` polls continuously).
    #[arg(long, required = true)]
    once: bool,
    /// The data folder: its own, or a service's while that service is stopped (a running service polls its watches itself, and holds the folder's lock).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Sources to watch, added when not watched yet: hf://ORG/NAME[@REVISION], models:/NAME (newest version), models:/NAME@ALIAS.
    #[arg(value_name = "SOURCE")]
    sources: Vec<String>,
    /// For added sources: also deep-scan each new version against this base.
    #[arg(long, value_name = "BASE")]
    base: Option<String>,
    /// For added sources: a webhook for alerts, Probity's JSON payload (repeatable).
    #[arg(long = "webhook", value_name = "URL")]
    webhooks: Vec<String>,
    /// For added sources: a Slack incoming webhook (repeatable).
    #[arg(long = "slack", value_name = "URL")]
    slack: Vec<String>,
    /// The HMAC-SHA256 key that signs the JSON webhooks (header Probity-Signature). Default: PROBITY_WEBHOOK_SECRET.
    #[arg(
        long,
        value_name = "SECRET",
        env = "PROBITY_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    webhook_secret: Option<String>,
    /// Policy file for the scans and `[server] data` (default: probity.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// `probity watch --once`.
pub fn watch(a: WatchArgs) -> ExitCode {
    let (s, _) = match settings(a.data, a.config) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let store = match probity_server::open(&s.data) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let mut hooks: Vec<probity_server::store::Webhook> = a
        .webhooks
        .iter()
        .map(|u| probity_server::store::Webhook {
            url: u.clone(),
            format: "json".into(),
            secret: a.webhook_secret.clone(),
        })
        .collect();
    hooks.extend(a.slack.iter().map(|u| probity_server::store::Webhook {
        url: u.clone(),
        format: "slack".into(),
        secret: None,
    }));
    for h in &hooks {
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            return fail(format!("{}: not an http(s) URL", h.url));
        }
    }
    let src = BinSources;
    for source in &a.sources {
        if let Err(e) = probity_server::Sources::check_watchable(&src, source) {
            return fail(e);
        }
        if let Err(e) = store.add_watch(source, a.base.as_deref(), 3600, &hooks) {
            return fail(e);
        }
    }
    drop(store);
    let summary = match probity_server::watch_once(s, Arc::new(BinSources)) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        ),
        Format::Text => {
            println!(
                "{} watch(es) polled, {} changed, {} scan(s), {} alert(s), {} delivery(ies) pending",
                summary.watches,
                summary.changed,
                summary.scans.len(),
                summary.alerts,
                summary.undelivered
            );
            for j in &summary.scans {
                println!(
                    "  {} {} {}: {}",
                    j.id,
                    j.kind,
                    j.source,
                    j.verdict
                        .as_deref()
                        .or(j.error.as_deref())
                        .unwrap_or(&j.status)
                );
            }
        }
    }
    for e in &summary.poll_errors {
        eprintln!("probity: {e}");
    }
    if !summary.poll_errors.is_empty() || summary.scans.iter().any(|j| j.status == "failed") {
        ExitCode::from(2)
    } else if summary.alerts > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Subcommand)]
pub enum AlertsCmd {
    /// Send a test alert to a webhook and say whether it was accepted (exit 0) or not (exit 2).
    Test {
        /// The webhook URL.
        #[arg(value_name = "WEBHOOK")]
        url: String,
        /// json (Probity's payload) or slack.
        #[arg(long, value_parser = ["json", "slack"], default_value = "json")]
        format: String,
        /// Sign with this HMAC-SHA256 key (header Probity-Signature: t=UNIX_SECONDS,v1=HEX over "UNIX_SECONDS." + body). Default: PROBITY_WEBHOOK_SECRET.
        #[arg(long, env = "PROBITY_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
}

/// `probity alerts`.
pub fn alerts(c: AlertsCmd) -> ExitCode {
    match c {
        AlertsCmd::Test {
            url,
            format,
            secret,
        } => match probity_server::send_test_alert(&url, &format, secret.as_deref()) {
            Ok(status) => {
                println!("{url}: delivered (HTTP {status})");
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{url}: not delivered: {e}")),
        },
    }
}

// ------------------------------------------------------------- the client

/// A service to submit to.
pub struct Remote {
    base: String,
    token: String,
    agent: ureq::Agent,
}

fn body_text(r: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = r.status().as_u16();
    let text = r
        .into_body()
        .with_config()
        .limit(512 << 20)
        .read_to_string()
        .unwrap_or_default();
    (status, text)
}

fn api_error(status: u16, text: &str) -> String {
    let msg = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| text.trim().chars().take(200).collect());
    format!("the server answered {status}: {msg}")
}

impl Remote {
    pub fn new(url: &str, token: Option<String>) -> Result<Remote, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("--server {url}: not an http(s) URL"));
        }
        let token = token.ok_or("--server needs a token: --token TOKEN or PROBITY_TOKEN")?;
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.auth())
            .call()
            .map(body_text)
            .map_err(|e| format!("{}: {e}", self.base))
    }

    /// Uploads a file or (as a tar) a folder; the `upload:ID` source.
    fn upload(&self, path: &Path) -> Result<String, String> {
        let name = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.starts_with('.') && !n.starts_with('-'))
            .unwrap_or_else(|| "model".into());
        let (kind, file) = if path.is_dir() {
            let tmp = tempfile::tempfile().map_err(|e| format!("a temporary file: {e}"))?;
            let mut b = tar::Builder::new(tmp);
            b.follow_symlinks(true);
            // the folder's contents at the archive's top: the service
            // unpacks them as NAME/
            b.append_dir_all(".", path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut f = b
                .into_inner()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            use std::io::Seek;
            f.rewind().map_err(|e| e.to_string())?;
            ("tar", f)
        } else {
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            ("file", f)
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let url = format!(
            "{}/v1/uploads?name={}&kind={kind}",
            self.base,
            encode(&name)
        );
        let r = self
            .agent
            .post(&url)
            .header("Authorization", &self.auth())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", &len.to_string())
            .send(file)
            .map_err(|e| format!("{}: uploading {}: {e}", self.base, path.display()))?;
        let (status, text) = body_text(r);
        if status != 201 {
            return Err(format!(
                "{}: uploading {}: {}",
                self.base,
                path.display(),
                api_error(status, &text)
            ));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        v.get("source")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| "the server's upload answer has no source".into())
    }

    /// What to submit for a PATH|URI given on the command line.
    pub fn source_of(&self, input: &str) -> Result<String, String> {
        if crate::remote::hf::parse(input).is_some()
            || crate::remote::mlflow::parse(input).is_some()
        {
            return Ok(input.to_string());
        }
        let p = Path::new(input);
        if !p.exists() {
            return Err(format!("{input}: no such file or folder"));
        }
        self.upload(p)
    }

    /// Submits a scan and waits for it; the report, or the reason it failed.
    pub fn run(&self, request: &Value) -> Result<Value, String> {
        let mut key = [0u8; 12];
        let _ = getrandom_fill(&mut key);
        let idem: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let body = request.to_string();
        // a dropped connection is retried with the same Idempotency-Key, so
        // the scan is queued once
        let mut tries = 0;
        let (status, text) = loop {
            tries += 1;
            let r = self
                .agent
                .post(format!("{}/v1/scans", self.base))
                .header("Authorization", &self.auth())
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &idem)
                .send(body.as_bytes());
            match r {
                Ok(r) => break body_text(r),
                Err(e) if tries >= 3 => return Err(format!("{}: {e}", self.base)),
                Err(_) => std::thread::sleep(Duration::from_secs(tries)),
            }
        };
        if status != 202 && status != 200 {
            return Err(api_error(status, &text));
        }
        let job: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let id = job
            .get("id")
            .and_then(Value::as_str)
            .ok_or("the server's answer has no scan id")?
            .to_string();
        let mut wait = Duration::from_millis(200);
        loop {
            let (status, text) = self.get(&format!("/v1/scans/{id}"))?;
            if status != 200 {
                return Err(api_error(status, &text));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            match v.get("status").and_then(Value::as_str) {
                Some("done") => {
                    return v
                        .get("report")
                        .cloned()
                        .ok_or_else(|| format!("scan {id} is done but has no report"))
                }
                Some("failed") => {
                    return Err(v
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("the scan failed")
                        .to_string())
                }
                _ => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn getrandom_fill(b: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(b)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Replaces the name an upload was scanned under with the path the user
/// gave, so the report reads as a local scan's.
pub fn rename_paths(report: &mut probity_report::Report, uploaded: &str, given: &str) {
    for f in &mut report.files {
        if f.path == uploaded {
            f.path = given.to_string();
        } else if let Some(rest) = f.path.strip_prefix(&format!("{uploaded}/")) {
            f.path = format!("{}/{rest}", given.trim_end_matches('/'));
        }
    }
}

/// `probity scan --server`: each PATH|URI scanned by the service; the
/// reports merged into one.
pub fn remote_scan(
    server: &str,
    token: Option<String>,
    paths: &[PathBuf],
    options: Value,
    gate: probity_report::Severity,
) -> Result<probity_report::Report, String> {
    let remote = Remote::new(server, token)?;
    let mut files = Vec::new();
    let mut single = None;
    for p in paths {
        let input = p.display().to_string();
        let source = remote.source_of(&input)?;
        let req = json!({"source": source, "kind": "static", "options": options});
        let v = remote.run(&req).map_err(|e| format!("{input}: {e}"))?;
        let mut r: probity_report::Report = serde_json::from_value(v).map_err(|e| {
            format!("{input}: the server's report is not a probity.scan/v1 report: {e}")
        })?;
        if source.starts_with("upload:") {
            let name = Path::new(&input)
                .canonicalize()
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            rename_paths(&mut r, &name, &input);
        }
        files.extend(r.files.clone());
        single = Some(r);
    }
    if paths.len() == 1 {
        if let Some(mut r) = single {
            // the paths were renamed: keep the server's verdict and counts,
            // sorted as a local report is
            r.files.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok(r);
        }
    }
    Ok(probity_report::Report::new(files, gate))
}

/// `probity deep --server`: the deep report (JSON) from the service.
#[cfg(feature = "deep")]
pub fn remote_deep(
    server: &str,
    token: Option<String>,
    suspect: &Path,
    base: &Path,
    options: Value,
) -> Result<Value, String> {
    let remote = Remote::new(server, token)?;
    let (si, bi) = (suspect.display().to_string(), base.display().to_string());
    let s = remote.source_of(&si)?;
    let b = remote.source_of(&bi)?;
    let mut v = remote.run(&json!({"source": s, "kind": "deep", "base": b, "options": options}))?;
    // the models' paths as the user gave them, as a local report has them
    for (side, given) in [("suspect", si), ("base", bi)] {
        let shown = Path::new(&given)
            .canonicalize()
            .map(|c| c.display().to_string())
            .unwrap_or(given);
        if let Some(p) = v.pointer_mut(&format!("/{side}/path")) {
            *p = shown.into();
        }
    }
    Ok(v)
}
