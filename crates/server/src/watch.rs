//! Watches: poll a source's head cheaply; on a new revision queue a static
//! scan (and a deep scan when the watch names a base); when the static scan
//! ends, compare its ledger record with the previous one (`probity diff
//! ledger:A ledger:B`) and raise an alert on an unexpected update, a worse
//! verdict, or a failed scan.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::store::{self, Job};
use crate::{Ctx, OnceSummary};

/// Polls one watch; queues the scans a new revision needs. Returns whether
/// the revision changed.
async fn poll(
    ctx: &Arc<Ctx>,
    id: &str,
    source: &str,
    base: Option<&str>,
    last: Option<&str>,
) -> Result<bool, String> {
    ctx.stats.polls.fetch_add(1, Ordering::Relaxed);
    let sources = ctx.sources.clone();
    let s = source.to_string();
    let head = tokio::task::spawn_blocking(move || sources.head(&s))
        .await
        .map_err(|e| e.to_string())?;
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            ctx.store.polled(id, None, Some(&e))?;
            return Err(format!("{source}: {e}"));
        }
    };
    if last == Some(head.revision.as_str()) {
        ctx.store.polled(id, None, None)?;
        return Ok(false);
    }
    let opts = json!({});
    // one scan per (watch, revision): a retried poll finds the same key
    let key = format!("{id}@{}", head.revision);
    ctx.store.submit(
        "static",
        &head.scan,
        None,
        &opts,
        None,
        Some(&key),
        Some(id),
    )?;
    if let Some(b) = base {
        ctx.store.submit(
            "deep",
            &head.scan,
            Some(b),
            &opts,
            None,
            Some(&format!("{key}#deep")),
            Some(id),
        )?;
    }
    ctx.store.polled(id, Some(&head.revision), None)?;
    ctx.wake.notify_waiters();
    Ok(true)
}

/// The service's polling loop.
pub async fn scheduler(ctx: Arc<Ctx>) {
    loop {
        match ctx.store.due_watches(false) {
            Ok(due) => {
                for (id, source, base, last) in due {
                    // a change still being scanned is not polled again
                    if ctx.store.watch_busy(&id).unwrap_or(true) {
                        continue;
                    }
                    if let Err(e) = poll(&ctx, &id, &source, base.as_deref(), last.as_deref()).await
                    {
                        eprintln!("probity serve: watch {e}");
                    }
                }
            }
            Err(e) => eprintln!("probity serve: watches: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The ledger record a finished scan appended: the one whose actor names
/// the job.
fn ledger_seq(ctx: &Ctx, job_id: &str) -> Option<(i64, Value)> {
    let l = probity_provenance::ledger::Ledger::open_read(&ctx.settings.ledger()).ok()?;
    l.rows().ok()?.into_iter().rev().find_map(|r| {
        let b: Value = serde_json::from_str(&r.body).ok()?;
        (b.pointer("/actor/job").and_then(Value::as_str) == Some(job_id)).then_some((r.seq, b))
    })
}

/// Weight files, by name: what "the weights changed" means.
fn weight_file(name: &str) -> bool {
    probity_report::is_weight_file(name)
}

/// `probity diff ledger:OLD ledger:NEW --format json`: the unexpected-update
/// reasons. Each version is scanned pinned (the Hub commit, the MLflow
/// version), so the diff cannot see that both came from the watched branch
/// or alias: changed weights are flagged here.
/// Runs `probity diff OLD NEW --format json --no-spectral`.
async fn run_diff(ctx: &Ctx, old: &str, new: &str) -> Result<Value, String> {
    let mut cmd = tokio::process::Command::new(&ctx.settings.exe);
    cmd.arg("diff")
        .arg(old)
        .arg(new)
        .arg("--ledger")
        .arg(ctx.settings.ledger())
        .args(["--format", "json", "--no-spectral", "--offline"])
        .current_dir(ctx.settings.data.join("work"))
        .env_remove("PROBITY_LEDGER")
        .kill_on_drop(true);
    if let Some(p) = &ctx.settings.policy {
        cmd.arg("--config").arg(p);
    }
    let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .map_err(|_| "probity diff took over 600 s".to_string())?
        .map_err(|e| format!("cannot run probity diff: {e}"))?;
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!(
            "probity diff: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("probity diff: {e}"))
}

/// The local folder a ledger record's files were read from, when it is
/// still there (a Hub cache snapshot, an MLflow cache folder).
fn record_path(ctx: &Ctx, seq: i64) -> Option<String> {
    let l = probity_provenance::ledger::Ledger::open_read(&ctx.settings.ledger()).ok()?;
    let row = l.rows().ok()?.into_iter().find(|r| r.seq == seq)?;
    let b: Value = serde_json::from_str(&row.body).ok()?;
    let p = b.pointer("/model/path")?.as_str()?.to_string();
    std::path::Path::new(&p).is_dir().then_some(p)
}

async fn diff_reasons(ctx: &Ctx, old: i64, new: i64, source: &str) -> Result<Vec<Value>, String> {
    // the records: files, signatures, upstream authors
    let v = run_diff(ctx, &format!("ledger:{old}"), &format!("ledger:{new}")).await?;
    let mut extra = Vec::new();
    // the two versions' files, when both are still in the cache: settings
    // too (chat template, remote code, special tokens)
    if let (Some(a), Some(b)) = (record_path(ctx, old), record_path(ctx, new)) {
        if a != b {
            if let Ok(w) = run_diff(ctx, &a, &b).await {
                extra = w
                    .get("unexpected_update")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
            }
        }
    }
    let mut reasons = v
        .get("unexpected_update")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in extra {
        if !reasons.iter().any(|x| x.get("code") == r.get("code")) {
            reasons.push(r);
        }
    }
    let names = |k: &str| -> Vec<String> {
        v.pointer(&format!("/files/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("name").and_then(Value::as_str).or(f.as_str()))
            .map(str::to_string)
            .collect()
    };
    let weights: Vec<String> = ["changed", "added", "removed"]
        .iter()
        .flat_map(|k| names(k))
        .filter(|n| weight_file(n))
        .collect();
    let pinned = source.contains('@') && source.starts_with("hf://") && {
        let rev = source.rsplit('@').next().unwrap_or("");
        rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
    };
    if !weights.is_empty()
        && !pinned
        && !reasons.iter().any(|r| {
            r.get("code").and_then(Value::as_str) == Some("weights-changed-under-same-tag")
        })
    {
        reasons.push(json!({
            "code": "weights-changed-under-same-tag",
            "message": format!("{source} now names different weights: {}", weights.join(", ")),
        }));
    }
    Ok(reasons)
}

/// Decides whether a finished watch scan raises an alert, and raises it.
pub async fn evaluate(ctx: &Arc<Ctx>, job: &Job) {
    if let Err(e) = evaluate_inner(ctx, job).await {
        eprintln!("probity serve: watch scan {}: {e}", job.id);
    }
}

async fn evaluate_inner(ctx: &Arc<Ctx>, job: &Job) -> Result<(), String> {
    let Some(wid) = job.watch_id.as_deref() else {
        return Ok(());
    };
    if ctx.store.alert_for_job(&job.id)? {
        return ctx.store.mark_evaluated(&job.id);
    }
    let watch = ctx.store.watch(wid)?;
    let source = watch
        .as_ref()
        .map(|w| w.source.clone())
        .unwrap_or_else(|| job.source.clone());
    if job.kind == "deep" {
        // the deep scan of a new version: its verdict alone
        let reasons = match (&job.status[..], job.verdict.as_deref()) {
            ("failed", _) => vec![
                json!({"code": "scan-failed", "message": format!("the deep scan of the new version failed: {}", job.error.as_deref().unwrap_or("unknown"))}),
            ],
            (_, Some(v @ ("suspicious" | "backdoor"))) => vec![
                json!({"code": "backdoor-suspected", "message": format!("the deep scan's verdict is {v}")}),
            ],
            _ => Vec::new(),
        };
        if !reasons.is_empty() {
            raise(
                ctx,
                wid,
                job,
                &source,
                watch.as_ref(),
                reasons,
                None,
                None,
                Value::Null,
            )?;
        }
        return ctx.store.mark_evaluated(&job.id);
    }
    let (prev_seq, prev_verdict) = ctx.store.watch_state(wid)?;
    let mut reasons: Vec<Value> = Vec::new();
    let mut new_seq = None;
    let mut record = Value::Null;
    if job.status == "failed" {
        reasons.push(json!({
            "code": "scan-failed",
            "message": format!("the scan of the new version failed: {}", job.error.as_deref().unwrap_or("unknown"))
        }));
    } else {
        if let Some((seq, body)) = ledger_seq(ctx, &job.id) {
            new_seq = Some(seq);
            record = body;
        }
        if let (Some(p), Some(n)) = (prev_seq, new_seq) {
            if p != n {
                match diff_reasons(ctx, p, n, &source).await {
                    Ok(r) => reasons.extend(r),
                    Err(e) => reasons.push(json!({"code": "diff-failed", "message": e})),
                }
            }
        }
        let (was, is) = (
            store::verdict_rank(prev_verdict.as_deref()),
            store::verdict_rank(job.verdict.as_deref()),
        );
        if is > 0 && is > was {
            reasons.push(json!({
                "code": if prev_verdict.is_some() { "verdict-worse" } else { "flagged" },
                "message": match &prev_verdict {
                    Some(p) => format!("the verdict went from {p} to {}", job.verdict.as_deref().unwrap_or("?")),
                    None => format!("the scan's verdict is {}", job.verdict.as_deref().unwrap_or("?")),
                }
            }));
        }
    }
    if !reasons.is_empty() {
        let upstream = record.get("upstream").cloned().unwrap_or(Value::Null);
        raise(
            ctx,
            wid,
            job,
            &source,
            watch.as_ref(),
            reasons,
            prev_verdict.clone(),
            prev_seq.zip(new_seq),
            upstream,
        )?;
    }
    // the state moves on only once the alert is stored: a crash before
    // this point evaluates the scan again after the restart
    ctx.store.set_watch_state(
        wid,
        new_seq,
        job.verdict.as_deref().or(prev_verdict.as_deref()),
    )?;
    ctx.store.mark_evaluated(&job.id)
}

/// Stores an alert (once per scan) with a delivery per webhook of the watch.
#[allow(clippy::too_many_arguments)]
fn raise(
    ctx: &Arc<Ctx>,
    wid: &str,
    job: &Job,
    source: &str,
    watch: Option<&store::Watch>,
    reasons: Vec<Value>,
    prev_verdict: Option<String>,
    seqs: Option<(i64, i64)>,
    upstream: Value,
) -> Result<(), String> {
    let base = ctx.settings.base_url();
    let id = store::new_id("alert");
    let payload = json!({
        "type": "probity.alert",
        "id": id,
        "message": format!("{source} changed unexpectedly"),
        "source": source,
        "watch_id": wid,
        "scan_id": job.id,
        "scan_url": format!("{base}/v1/scans/{}", job.id),
        "dashboard_url": format!("{base}/scans/{}", job.id),
        "scanned": job.source,
        "kind": job.kind,
        "revision": watch.and_then(|w| w.last_revision.clone()),
        "verdict": job.verdict,
        "previous_verdict": prev_verdict,
        "ledger": seqs.map(|(p, n)| json!({"previous": p, "current": n})),
        "upstream": upstream,
        "reasons": reasons,
        "created": store::now(),
    });
    let hooks = ctx.store.webhooks(wid)?;
    ctx.store
        .add_alert(Some(wid), Some(&job.id), source, &payload, &hooks)?;
    Ok(())
}

/// After a restart: the watch scans that ended without being evaluated.
pub async fn evaluate_pending(ctx: Arc<Ctx>) {
    match ctx.store.unevaluated() {
        Ok(jobs) => {
            for j in jobs {
                evaluate(&ctx, &j).await;
            }
        }
        Err(e) => eprintln!("probity serve: watches: {e}"),
    }
}

/// `probity watch --once`.
pub async fn once(ctx: Arc<Ctx>) -> Result<OnceSummary, String> {
    let mut s = OnceSummary::default();
    let alerts_before = ctx.store.alerts(i64::MAX)?.len();
    // scans left over from an earlier interrupted run first
    evaluate_pending(ctx.clone()).await;
    s.scans.extend(crate::jobs::drain(&ctx).await?);
    let due = ctx.store.due_watches(true)?;
    s.watches = due.len();
    for (id, source, base, last) in due {
        match poll(&ctx, &id, &source, base.as_deref(), last.as_deref()).await {
            Ok(true) => s.changed += 1,
            Ok(false) => {}
            Err(e) => s.poll_errors.push(e),
        }
    }
    s.scans.extend(crate::jobs::drain(&ctx).await?);
    s.alerts = ctx.store.alerts(i64::MAX)?.len() - alerts_before;
    // deliver, retrying with backoff for up to a minute; what is still
    // pending is retried by the next run
    let until = store::now() + 60;
    loop {
        crate::alerts::deliver_due(&ctx).await;
        s.undelivered = ctx.store.pending_targets()?;
        if s.undelivered == 0 || store::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(s)
}
