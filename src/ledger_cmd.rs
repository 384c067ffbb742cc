//! The provenance ledger on the command line: the records `scan`, `deep`
//! and `verify` append (`--ledger`, `PROBITY_LEDGER`, `[provenance] ledger`),
//! and `probity log`, which shows a model's history and checks the chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use probity_provenance::ledger::{self, Ledger};
use serde_json::{json, Map, Value};

use crate::remote::Origin;
use crate::{fail, Format};

/// Most upstream commits recorded in one record.
const MAX_COMMITS: usize = 100;

/// The ledger to write to or read: `--ledger`, else `PROBITY_LEDGER`, else
/// `[provenance] ledger` of the config.
pub fn destination(flag: Option<PathBuf>, config: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| {
        std::env::var_os("PROBITY_LEDGER")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .or(config)
}

/// The config's ledger when neither the flag nor the environment names one
/// (the config is read only then: `verify` and `log` take no policy).
pub fn destination_from_cwd(flag: Option<PathBuf>) -> Result<Option<PathBuf>, ExitCode> {
    if let Some(d) = destination(flag, None) {
        return Ok(Some(d));
    }
    match crate::load_config(None) {
        Ok(c) => Ok(c.provenance.ledger),
        Err(e) => Err(fail(e)),
    }
}

/// One model a command looked at.
pub struct Subject {
    /// The input as given (a path or a URI).
    pub input: String,
    /// The local file or folder holding its files.
    pub root: PathBuf,
    pub origin: Option<Origin>,
    /// Paths left out of the manifest (a signature file inside the model).
    pub ignore: Vec<PathBuf>,
}

/// What a command found about one subject.
pub struct Entry {
    pub subject: Subject,
    /// The verdict and findings summary.
    pub verdict: Value,
    /// The signature status and signer.
    pub signature: Value,
    /// Other fields of the record (`base` for the deep scan).
    pub extra: Map<String, Value>,
}

/// `probity: LEDGER: reason`, exit 2.
pub fn ledger_failure(path: &Path, reason: impl std::fmt::Display) -> ExitCode {
    fail(format!("{}: {reason}", path.display()))
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .ok()
        .filter(|s| !s.is_empty())
}

/// Who ran the command: the CI identity the environment claims (GitHub
/// Actions, GitLab CI, Jenkins), else the user and host. Not authenticated.
pub fn actor() -> Value {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), v.into());
        }
    };
    if let Some(caller) = env("PROBITY_SERVICE_CALLER") {
        // a scan the service ran for a caller: the token's name (or the
        // watch) is who asked; the host is the service's
        put("kind", Some("probity-service".into()));
        put("user", Some(caller));
        put("job", env("PROBITY_SERVICE_JOB"));
    } else if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
        let run_url = match (env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
            (Some(r), Some(id)) => Some(format!(
                "{}/{r}/actions/runs/{id}",
                server.trim_end_matches('/')
            )),
            _ => None,
        };
        put("kind", Some("github-actions".into()));
        put("user", env("GITHUB_ACTOR"));
        put("repository", env("GITHUB_REPOSITORY"));
        put("workflow", env("GITHUB_WORKFLOW"));
        put("run_id", env("GITHUB_RUN_ID"));
        put("run_url", run_url);
    } else if env("GITLAB_CI").as_deref() == Some("true") {
        put("kind", Some("gitlab-ci".into()));
        put("user", env("GITLAB_USER_LOGIN"));
        put("repository", env("CI_PROJECT_PATH"));
        put("run_url", env("CI_JOB_URL"));
    } else if env("JENKINS_URL").is_some() {
        put("kind", Some("jenkins".into()));
        put("user", env("BUILD_USER_ID"));
        put("job", env("JOB_NAME"));
        put("run_url", env("BUILD_URL"));
    } else {
        put("kind", Some("local".into()));
        // SAFETY: getuid cannot fail
        let uid = unsafe { libc::getuid() };
        put(
            "user",
            Some(
                env("USER")
                    .or_else(|| env("LOGNAME"))
                    .unwrap_or_else(|| format!("uid {uid}")),
            ),
        );
    }
    put("host", hostname());
    m.insert("authenticated".into(), false.into());
    Value::Object(m)
}

/// The model's identity: source, the key its versions share, the local
/// path, the revision, and the file manifest with its root digest.
fn identity(s: &Subject) -> Value {
    let mut m = Map::new();
    m.insert("source".into(), s.input.clone().into());
    let canonical = s.root.canonicalize().ok();
    let (kind, key, revision, commit) = match &s.origin {
        Some(Origin::Hf {
            repo,
            revision,
            commit,
        }) => (
            "hf",
            format!("hf://{repo}"),
            Some(revision.clone()),
            Some(commit.clone()),
        ),
        Some(Origin::Mlflow { key, revision, .. }) => {
            ("mlflow", key.clone(), revision.clone(), None)
        }
        None => (
            "local",
            canonical
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| s.input.clone()),
            None,
            None,
        ),
    };
    m.insert("kind".into(), kind.into());
    m.insert("key".into(), key.into());
    if let Some(p) = &canonical {
        m.insert("path".into(), p.display().to_string().into());
    }
    if let Some(r) = revision {
        m.insert("revision".into(), r.into());
    }
    if let Some(c) = commit {
        m.insert("commit".into(), c.into());
    }
    match probity_provenance::model_manifest(&s.root, &s.ignore) {
        Ok(man) => {
            m.insert(
                "root_digest".into(),
                probity_provenance::manifest::Manifest::root_digest(&man.entries).into(),
            );
            m.insert(
                "files".into(),
                man.entries
                    .iter()
                    .map(|e| json!({"name": e.name, "sha256": e.sha256}))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        Err(e) => {
            m.insert("manifest_error".into(), e.lines().join("; ").into());
        }
    }
    Value::Object(m)
}

fn body_of(r: &ledger::Row) -> Option<Value> {
    serde_json::from_str(&r.body).ok()
}

fn model_str<'a>(b: &'a Value, k: &str) -> Option<&'a str> {
    b.get("model")
        .and_then(|m| m.get(k))
        .and_then(Value::as_str)
}

/// The upstream authorship since the last recorded revision of this model.
fn upstream(s: &Subject, model: &Value, rows: &[ledger::Row], offline: bool) -> Value {
    match &s.origin {
        Some(Origin::Hf { repo, commit, .. }) => {
            let key = model.get("key").and_then(Value::as_str).unwrap_or_default();
            let since = rows.iter().rev().filter_map(body_of).find_map(|b| {
                (model_str(&b, "key") == Some(key))
                    .then(|| model_str(&b, "commit").map(str::to_string))
                    .flatten()
            });
            if since.as_deref() == Some(commit.as_str()) {
                return json!({"source": "hf", "status": "unchanged", "since": since, "commits": []});
            }
            if offline {
                return json!({"source": "hf", "status": "not fetched", "reason": "--offline: the Hub was not asked", "since": since});
            }
            match crate::remote::hf::commits(repo, commit, since.as_deref(), MAX_COMMITS) {
                Ok((commits, truncated)) => json!({
                    "source": "hf",
                    "status": "fetched",
                    "since": since,
                    "commits": commits,
                    "truncated": truncated,
                }),
                Err(e) => {
                    json!({"source": "hf", "status": "not fetched", "reason": e, "since": since})
                }
            }
        }
        Some(Origin::Mlflow { details, .. }) => {
            let mut d = details.clone();
            if let Some(o) = d.as_object_mut() {
                o.insert("source".into(), "mlflow".into());
            }
            d
        }
        None => json!({"source": "local", "status": "not applicable"}),
    }
}

/// Appends one record per entry. `Err` is the reason the ledger could not
/// be written (the caller exits 2).
pub fn append(
    path: &Path,
    command: &str,
    offline: bool,
    entries: Vec<Entry>,
) -> Result<(), String> {
    let mut l = Ledger::open_for_append(path)?;
    let actor = actor();
    for e in entries {
        // read per entry: an earlier entry of this run may be the same model
        let rows = l.rows()?;
        let model = identity(&e.subject);
        let up = upstream(&e.subject, &model, &rows, offline);
        let mut body = Map::new();
        body.insert("schema".into(), ledger::RECORD_SCHEMA.into());
        body.insert(
            "time".into(),
            ledger::rfc3339(std::time::SystemTime::now()).into(),
        );
        body.insert("probity_version".into(), env!("CARGO_PKG_VERSION").into());
        body.insert("command".into(), command.into());
        body.insert("model".into(), model);
        body.insert("actor".into(), actor.clone());
        body.insert("upstream".into(), up);
        body.insert("lineage".into(), ledger::lineage(&e.subject.root));
        body.insert("signature".into(), e.signature);
        body.insert("verdict".into(), e.verdict);
        for (k, v) in e.extra {
            body.insert(k, v);
        }
        let body = Value::Object(body);
        l.append(|_| body)?;
    }
    Ok(())
}

/// The verdict of a static scan over the files of one input.
pub fn scan_verdict(
    files: &[&probity_report::FileReport],
    gate: probity_report::Severity,
) -> Value {
    let report = probity_report::Report::new(files.iter().map(|f| (*f).clone()).collect(), gate);
    let mut rules: BTreeMap<String, u64> = BTreeMap::new();
    for f in &report.files {
        for x in &f.findings {
            *rules.entry(x.rule.clone()).or_default() += 1;
        }
    }
    let s = &report.summary;
    json!({
        "result": serde_json::to_value(s.verdict).unwrap_or(Value::Null),
        "exit_code": report.exit_code(),
        "gate": serde_json::to_value(gate).unwrap_or(Value::Null),
        "files_scanned": s.files_scanned,
        "errors": s.errors,
        "findings": {"critical": s.critical, "warning": s.warning, "info": s.info},
        "rules": rules,
    })
}

/// Whether the scan report's file `display` belongs to the input `input`
/// (a local path: itself or under it).
pub fn under_input(display: &str, input: &str) -> bool {
    let base = input.trim_end_matches('/');
    display == input || display == base || display.starts_with(&format!("{base}/"))
}

// ---------------------------------------------------------------- log

/// The key a MODEL argument of `log` names, for a URI.
fn query_key(q: &str) -> Option<String> {
    if let Some(Ok(r)) = crate::remote::hf::parse(q) {
        return Some(format!("hf://{}", r.repo));
    }
    if let Some(Ok(r)) = crate::remote::mlflow::parse(q) {
        return Some(crate::remote::mlflow::ledger_key(&r));
    }
    None
}

fn matches(b: &Value, q: &str, key: Option<&str>, canonical: Option<&str>) -> bool {
    let digest = ledger::normalise_digest(q);
    model_str(b, "source") == Some(q)
        || model_str(b, "key") == Some(q)
        || (key.is_some() && model_str(b, "key") == key)
        || (canonical.is_some() && model_str(b, "path") == canonical)
        || (digest.len() >= 8
            && digest.chars().all(|c| c.is_ascii_hexdigit())
            && model_str(b, "root_digest").is_some_and(|d| d.starts_with(&digest)))
}

fn files_of(b: &Value) -> Option<BTreeMap<String, String>> {
    let a = b.get("model")?.get("files")?.as_array()?;
    Some(
        a.iter()
            .filter_map(|f| {
                Some((
                    f.get("name")?.as_str()?.to_string(),
                    f.get("sha256")?.as_str()?.to_string(),
                ))
            })
            .collect(),
    )
}

/// What changed between two records of one model.
fn changes(prev: Option<(i64, &Value)>, cur: &Value) -> Value {
    let Some((seq, p)) = prev else {
        return json!({"first": true});
    };
    let (Some(a), Some(b)) = (files_of(p), files_of(cur)) else {
        return json!({"since": seq, "unknown": "a manifest is missing"});
    };
    let added: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let removed: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let changed: Vec<&String> = b
        .iter()
        .filter(|(k, d)| a.get(*k).is_some_and(|x| x != *d))
        .map(|(k, _)| k)
        .collect();
    json!({
        "since": seq,
        "root_digest_changed": model_str(p, "root_digest") != model_str(cur, "root_digest"),
        "added": added,
        "removed": removed,
        "changed": changed,
    })
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

fn list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn text_record(seq: i64, b: &Value, ch: &Value, out: &mut String) {
    use std::fmt::Write;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let model = b.get("model").cloned().unwrap_or(Value::Null);
    let _ = writeln!(
        out,
        "#{seq}  {}  {}  {}",
        s(b, "time"),
        s(b, "command"),
        s(&model, "source")
    );
    let mut ident = String::new();
    if let Some(r) = model.get("revision").and_then(Value::as_str) {
        let _ = write!(ident, "revision {r}");
        if let Some(c) = model.get("commit").and_then(Value::as_str) {
            let _ = write!(ident, " (commit {})", short(c));
        }
        ident.push_str(", ");
    }
    match model.get("root_digest").and_then(Value::as_str) {
        Some(d) => {
            let n = model
                .get("files")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let _ = write!(ident, "root sha256:{d}, {n} file(s)");
        }
        None => {
            let _ = write!(ident, "no manifest: {}", s(&model, "manifest_error"));
        }
    }
    let _ = writeln!(out, "    model      {ident}");
    let up = b.get("upstream").cloned().unwrap_or(Value::Null);
    match up.get("source").and_then(Value::as_str) {
        Some("hf") => {
            let since = up
                .get("since")
                .and_then(Value::as_str)
                .map(|c| format!(" since {}", short(c)))
                .unwrap_or_default();
            match up.get("status").and_then(Value::as_str) {
                Some("fetched") => {
                    let commits = up
                        .get("commits")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let more = if up.get("truncated").and_then(Value::as_bool) == Some(true) {
                        " (list cut)"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "    upstream   {} commit(s){since}{more}",
                        commits.len()
                    );
                    for c in &commits {
                        let _ = writeln!(
                            out,
                            "               {} {} {} \"{}\"",
                            short(&s(c, "id")),
                            s(c, "date"),
                            list(c.get("authors")).join(", "),
                            s(c, "title")
                        );
                    }
                }
                Some("unchanged") => {
                    let _ = writeln!(out, "    upstream   no new commit{since}");
                }
                _ => {
                    let _ = writeln!(out, "    upstream   not fetched: {}", s(&up, "reason"));
                }
            }
        }
        Some("mlflow") => {
            if up.get("status").and_then(Value::as_str) == Some("fetched") {
                let mut parts = Vec::new();
                if let Some(v) = up.get("version").and_then(Value::as_str) {
                    parts.push(format!(
                        "version {v} created by {} at {}",
                        s(&up, "user_id"),
                        s(&up, "created")
                    ));
                }
                if let Some(r) = up.get("run_id").and_then(Value::as_str) {
                    parts.push(format!("run {r} by {}", s(&up, "run_user_id")));
                }
                let _ = writeln!(out, "    upstream   {}", parts.join("; "));
            } else {
                let _ = writeln!(out, "    upstream   not fetched: {}", s(&up, "reason"));
            }
        }
        _ => {}
    }
    let lin = b.get("lineage").cloned().unwrap_or(Value::Null);
    let mut claims = Vec::new();
    let base = list(lin.get("base_model"));
    if !base.is_empty() {
        claims.push(format!("base model {}", base.join(", ")));
    }
    let ds = list(lin.get("datasets"));
    if !ds.is_empty() {
        claims.push(format!("datasets {}", ds.join(", ")));
    }
    for (k, what) in [
        ("config_name_or_path", "config _name_or_path"),
        ("adapter_base_model", "adapter base"),
    ] {
        if let Some(v) = lin.get(k).and_then(Value::as_str) {
            claims.push(format!("{what} {v}"));
        }
    }
    if !claims.is_empty() {
        let _ = writeln!(out, "    lineage    {}", claims.join("; "));
    }
    let a = b.get("actor").cloned().unwrap_or(Value::Null);
    let who = match a.get("kind").and_then(Value::as_str) {
        Some("local") | None => format!("{}@{}", s(&a, "user"), s(&a, "host")),
        Some(kind) => {
            let mut w = format!("{kind}: {}", s(&a, "user"));
            for k in ["repository", "job", "workflow"] {
                if let Some(v) = a.get(k).and_then(Value::as_str) {
                    let _ = write!(w, ", {k} {v}");
                }
            }
            if let Some(u) = a.get("run_url").and_then(Value::as_str) {
                let _ = write!(w, ", {u}");
            }
            w
        }
    };
    let _ = writeln!(out, "    scanned by {who}");
    let v = b.get("verdict").cloned().unwrap_or(Value::Null);
    let mut verdict = s(&v, "result");
    if let Some(f) = v.get("findings") {
        let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
        let _ = write!(
            verdict,
            ": {} critical, {} warning, {} info",
            n("critical"),
            n("warning"),
            n("info")
        );
    }
    if let Some(sc) = v.get("score").and_then(Value::as_f64) {
        let _ = write!(verdict, ", score {sc:.3}");
    }
    if let Some(c) = v.get("exit_code").and_then(Value::as_i64) {
        let _ = write!(verdict, " (exit {c})");
    }
    let _ = writeln!(out, "    verdict    {verdict}");
    let sig = b.get("signature").cloned().unwrap_or(Value::Null);
    let mut st = s(&sig, "status");
    if let Some(by) = sig.get("signer").and_then(Value::as_str) {
        let _ = write!(st, " by {by}");
    }
    let reasons = list(sig.get("reasons"));
    if !reasons.is_empty() {
        let _ = write!(st, ": {}", reasons.join("; "));
    }
    let _ = writeln!(out, "    signature  {st}");
    let what = if ch.get("first").is_some() {
        "first record of this model".to_string()
    } else if let Some(u) = ch.get("unknown").and_then(Value::as_str) {
        format!("unknown ({u})")
    } else {
        let mut parts = Vec::new();
        for k in ["added", "removed", "changed"] {
            let l = list(ch.get(k));
            if !l.is_empty() {
                parts.push(format!("{} {k} ({})", l.len(), l.join(", ")));
            }
        }
        let since = ch.get("since").and_then(Value::as_i64).unwrap_or(0);
        if parts.is_empty() {
            format!("no file changed since #{since}")
        } else {
            format!("since #{since}: {}", parts.join(", "))
        }
    };
    let _ = writeln!(out, "    changed    {what}");
}

/// Runs `probity log`.
pub fn log(
    model: Option<String>,
    ledger_flag: Option<PathBuf>,
    format: Format,
    verify: bool,
    expect_head: Option<String>,
) -> ExitCode {
    let path = match destination_from_cwd(ledger_flag) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return fail(
                "no ledger: give --ledger FILE, set PROBITY_LEDGER, or set `ledger` in the [provenance] table of probity.toml",
            )
        }
        Err(code) => return code,
    };
    let rows = match Ledger::open_read(&path).and_then(|l| l.rows()) {
        Ok(r) => r,
        Err(e) => return ledger_failure(&path, e),
    };
    if verify || expect_head.is_some() {
        let c = ledger::check(&rows, expect_head.as_deref());
        let head = c.head.clone();
        match format {
            Format::Json => {
                let v = json!({
                    "ledger": path.display().to_string(),
                    "records": c.records,
                    "intact": c.broken.is_none(),
                    "head": head.as_ref().map(|(s, d)| json!({"seq": s, "digest": d})),
                    "pinned_at": c.pinned_at,
                    "broken": c.broken.as_ref().map(|(s, why)| json!({"seq": s, "reason": why})),
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            Format::Text => match &c.broken {
                None => {
                    let head = head
                        .map(|(s, d)| format!("head #{s} sha256:{d}"))
                        .unwrap_or_else(|| "empty".into());
                    let pinned = c
                        .pinned_at
                        .map(|s| format!("; the pinned head is record #{s}"))
                        .unwrap_or_default();
                    println!(
                        "{}: {} record(s), chain intact, {head}{pinned}",
                        path.display(),
                        c.records
                    );
                }
                Some((seq, why)) => {
                    let at = seq.map(|s| format!("record #{s}: ")).unwrap_or_default();
                    eprintln!("probity: {}: chain broken at {at}{why}", path.display());
                }
            },
        }
        return if c.broken.is_some() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    let key = model.as_deref().and_then(query_key);
    let canonical = model
        .as_deref()
        .and_then(|m| Path::new(m).canonicalize().ok())
        .map(|p| p.display().to_string());
    // the last record of each model so far, for "what changed"
    let mut last: BTreeMap<String, (i64, Value)> = BTreeMap::new();
    let mut shown = Vec::new();
    for r in &rows {
        let Some(b) = body_of(r) else {
            shown.push((r, Value::Null, json!({"unknown": "the record is not JSON"})));
            continue;
        };
        let k = model_str(&b, "key").unwrap_or_default().to_string();
        let ch = changes(last.get(&k).map(|(s, v)| (*s, v)), &b);
        let keep = match model.as_deref() {
            None => true,
            Some(q) => matches(&b, q, key.as_deref(), canonical.as_deref()),
        };
        last.insert(k, (r.seq, b.clone()));
        if keep {
            shown.push((r, b, ch));
        }
    }
    match format {
        Format::Json => {
            let records: Vec<Value> = shown
                .iter()
                .map(|(r, b, ch)| {
                    json!({"seq": r.seq, "prev": r.prev, "digest": r.digest, "record": b, "changes": ch})
                })
                .collect();
            let v =
                json!({"ledger": path.display().to_string(), "model": model, "records": records});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Text => {
            let mut out = String::new();
            if shown.is_empty() {
                out.push_str(&match &model {
                    Some(m) => format!("no record of {m} in {}\n", path.display()),
                    None => format!("{}: no record\n", path.display()),
                });
            }
            for (i, (r, b, ch)) in shown.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if b.is_null() {
                    out.push_str(&format!("#{}  (not a readable record)\n", r.seq));
                } else {
                    text_record(r.seq, b, ch, &mut out);
                }
            }
            print!("{out}");
        }
    }
    ExitCode::SUCCESS
}
