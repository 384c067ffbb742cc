//! A small server-rendered dashboard (no JavaScript): the team's models with
//! their latest verdict and signature status, each model's timeline, a
//! scan's findings and deep-scan evidence, watches and alerts.
//!
//! The browser signs in with a token once (`/login` sets an HttpOnly,
//! SameSite=Lax cookie); the cookie only authorises reading (GET), never a
//! change, so a cross-site request can do nothing with it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{self, caller, ApiError};
use crate::store::Role;
use crate::Ctx;

type Shared = State<Arc<Ctx>>;

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#14202e;color:#fff;padding:10px 24px;display:flex;gap:20px;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header b{font-size:18px;margin-right:12px}
main{padding:20px 24px;max-width:1200px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef1f4;font-weight:600}code{font:13px ui-monospace,monospace}
.v{padding:2px 8px;border-radius:10px;font-weight:600;font-size:13px}
.clean,.verified,.delivered{background:#d9f5e1;color:#11612e}.flagged,.backdoored,.failed,.critical{background:#fde0e0;color:#9a1c1c}
.suspicious,.warning,.missing,.queued,.running{background:#fff1c9;color:#7a5200}.info,.none{background:#e8ecf1;color:#394452}
.card{background:#fff;padding:14px 18px;margin:14px 0;border:1px solid #e3e6ea;border-radius:6px}
.muted{color:#5b6673}ol.timeline{list-style:none;padding:0}ol.timeline li{border-left:3px solid #9db4cf;padding:4px 14px;margin:0 0 12px}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{} · Probity</title><style>{STYLE}</style></head><body><header><b>Probity</b><a href=\"/\">Models</a><a href=\"/scans\">Scans</a><a href=\"/watches\">Watches</a><a href=\"/alerts\">Alerts</a><a href=\"/logout\">Sign out</a></header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    ))
}

fn badge(v: Option<&str>) -> String {
    let v = v.unwrap_or("none");
    let class: String = v.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("<span class=\"v {class}\">{}</span>", esc(v))
}

fn when(t: Option<i64>) -> String {
    t.map(probity_provenance::ledger::rfc3339_secs)
        .unwrap_or_default()
}

/// Reading pages: the caller must hold a read token, else the login page.
fn gate(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Box<Response>> {
    match caller(ctx, headers, &Method::GET, Role::Read) {
        Ok(_) => Ok(()),
        Err(ApiError(StatusCode::UNAUTHORIZED, _)) => {
            Err(Box::new(Redirect::to("/login").into_response()))
        }
        Err(e) => Err(Box::new(e.into_response())),
    }
}

async fn login_form() -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in · Probity</title><style>{STYLE}</style></head><body><header><b>Probity</b></header><main><h1>Sign in</h1><div class=card><form method=post action=/login><p>Paste a token made with <code>probity token create --role read</code>.</p><input name=token type=password size=70 autocomplete=off> <button>Sign in</button></form></div></main></body></html>"
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    /// A dashboard path to go to after signing in.
    #[serde(default)]
    next: Option<String>,
}

async fn login(State(ctx): Shared, Form(f): Form<LoginForm>) -> Response {
    let t = f.token.trim().to_string();
    let c = ctx.clone();
    let t2 = t.clone();
    let found = tokio::task::spawn_blocking(move || c.store.authenticate(&t2))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let ok = match found {
        Ok(f) => f.is_some(),
        Err(e) => {
            eprintln!("probity serve: checking a token: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    "Sign in",
                    "<p>The service cannot check tokens now. <a href=/login>Try again</a>.</p>",
                ),
            )
                .into_response();
        }
    };
    if !ok || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return (
            StatusCode::UNAUTHORIZED,
            page(
                "Sign in",
                "<p>That token is not valid. <a href=/login>Try again</a>.</p>",
            ),
        )
            .into_response();
    }
    // only a local path: never an open redirect
    let next = f
        .next
        .filter(|n| safe_next(n))
        .unwrap_or_else(|| "/".into());
    (
        StatusCode::SEE_OTHER,
        [
            // Lax: sent on top-level navigations; it authorises GET pages only
            (
                header::SET_COOKIE,
                format!("probity_token={t}; HttpOnly; SameSite=Lax; Path=/"),
            ),
            (header::LOCATION, next),
        ],
    )
        .into_response()
}

/// A local dashboard path: no scheme, no host, no whitespace or control
/// characters (browsers drop a tab, turning `/\t/evil` into `//evil`).
fn safe_next(n: &str) -> bool {
    n.starts_with('/')
        && !n.starts_with("//")
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
}

async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                "probity_token=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0".to_string(),
            ),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

async fn home(State(ctx): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&ctx, &headers) {
        return *r;
    }
    let c = ctx.clone();
    let models = tokio::task::spawn_blocking(move || api::models(&c)).await;
    let models = match models {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return api::ApiError(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => {
            return api::ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    };
    let mut b = String::new();
    if models.is_empty() {
        b.push_str("<p class=muted>No model scanned yet. Submit one with <code>POST /v1/scans</code> or <code>probity scan --server</code>.</p>");
    } else {
        b.push_str("<table><tr><th>Model</th><th>Kind</th><th>Revision</th><th>Verdict</th><th>Signature</th><th>Records</th><th>Last recorded</th></tr>");
        for m in &models {
            let _ = write!(
                b,
                "<tr><td><a href=\"/models/{}\">{}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.id),
                esc(&m.key),
                esc(&m.kind),
                esc(&m.revision.as_deref().unwrap_or("").chars().take(12).collect::<String>()),
                badge(m.verdict.as_deref()),
                badge(m.signature.as_deref()),
                m.records,
                esc(m.latest_time.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</table>");
    }
    page("Models", &b).into_response()
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

async fn model(State(ctx): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&ctx, &headers) {
        return *r;
    }
    let c = ctx.clone();
    let id2 = id.clone();
    let key = tokio::task::spawn_blocking(move || {
        api::models(&c)
            .ok()
            .and_then(|m| m.into_iter().find(|m| m.id == id2).map(|m| m.key))
    })
    .await
    .ok()
    .flatten();
    let Some(key) = key else {
        return (
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No such model.</p>"),
        )
            .into_response();
    };
    let hist = match api::history_of(&ctx, &key).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let mut b = String::from("<ol class=timeline>");
    let recs = hist
        .get("records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in recs.iter().rev() {
        let rec = &r["record"];
        let _ = write!(
            b,
            "<li><b>#{}</b> {} · <code>{}</code> {} {}<br>",
            r["seq"],
            esc(s(rec, "/time")),
            esc(s(rec, "/command")),
            badge(rec.pointer("/verdict/result").and_then(Value::as_str)),
            badge(rec.pointer("/signature/status").and_then(Value::as_str)),
        );
        let rev = format!("{} {}", s(rec, "/model/revision"), s(rec, "/model/commit"));
        if !rev.trim().is_empty() {
            let _ = write!(
                b,
                "<span class=muted>revision</span> <code>{}</code> ",
                esc(rev.trim())
            );
        }
        let _ = write!(
            b,
            "<span class=muted>root digest</span> <code>{}</code>",
            esc(&s(rec, "/model/root_digest")
                .chars()
                .take(16)
                .collect::<String>()),
        );
        let mut who = s(rec, "/actor/user").to_string();
        if !s(rec, "/actor/host").is_empty() {
            who = format!("{who} on {}", s(rec, "/actor/host"));
        }
        let _ = write!(
            b,
            "<br><span class=muted>scanned by</span> {} <span class=muted>({})</span>",
            esc(&who),
            esc(s(rec, "/actor/kind"))
        );
        if let Some(a) = rec.pointer("/upstream/commits").and_then(Value::as_array) {
            for c in a.iter().take(10) {
                let authors: Vec<&str> = c
                    .get("authors")
                    .and_then(Value::as_array)
                    .map(|x| x.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let _ = write!(
                    b,
                    "<br><span class=muted>upstream</span> {} by {} — {}",
                    esc(s(c, "/date")),
                    esc(&authors.join(", ")),
                    esc(s(c, "/title"))
                );
            }
        }
        for (k, label) in [
            ("/upstream/user_id", "version created by"),
            ("/upstream/created", "created"),
            ("/upstream/run_user_id", "run by"),
        ] {
            if !s(rec, k).is_empty() {
                let _ = write!(b, "<br><span class=muted>{label}</span> {}", esc(s(rec, k)));
            }
        }
        let ch = &r["changes"];
        for (k, label) in [
            ("added", "added"),
            ("removed", "removed"),
            ("changed", "changed"),
        ] {
            if let Some(a) = ch.get(k).and_then(Value::as_array) {
                if !a.is_empty() {
                    let names: Vec<String> = a.iter().filter_map(Value::as_str).map(esc).collect();
                    let _ = write!(
                        b,
                        "<br><span class=muted>{label}</span> {}",
                        names.join(", ")
                    );
                }
            }
        }
        b.push_str("</li>");
    }
    b.push_str("</ol>");
    page(&key, &b).into_response()
}

async fn scans(State(ctx): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&ctx, &headers) {
        return *r;
    }
    let c = ctx.clone();
    let jobs = tokio::task::spawn_blocking(move || c.store.jobs(None, None, None, None, 200)).await;
    let Ok(Ok((jobs, _))) = jobs else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response();
    };
    let mut b = String::from("<table><tr><th>Scan</th><th>Kind</th><th>Source</th><th>Status</th><th>Verdict</th><th>Created</th></tr>");
    for j in &jobs {
        let _ = write!(
            b,
            "<tr><td><a href=\"/scans/{0}\"><code>{0}</code></a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td></tr>",
            esc(&j.id), esc(&j.kind), esc(&j.source), badge(Some(&j.status)), badge(j.verdict.as_deref()), esc(&when(Some(j.created)))
        );
    }
    b.push_str("</table>");
    page("Scans", &b).into_response()
}

fn findings_html(report: &Value, b: &mut String) {
    let files = report
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    b.push_str("<table><tr><th>File</th><th>Severity</th><th>Rule</th><th>Finding</th></tr>");
    let mut any = false;
    for f in &files {
        for x in f
            .get("findings")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            any = true;
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(s(f, "/path")),
                badge(x.get("severity").and_then(Value::as_str)),
                esc(s(&x, "/rule")),
                esc(s(&x, "/message"))
            );
        }
    }
    if !any {
        b.push_str("<tr><td colspan=4 class=muted>No findings.</td></tr>");
    }
    b.push_str("</table>");
}

fn deep_html(report: &Value, b: &mut String) {
    let _ = write!(
        b,
        "<div class=card><b>Verdict</b> {}",
        badge(report.get("verdict").and_then(Value::as_str))
    );
    if let Some(p) = report
        .pointer("/score/probability")
        .or_else(|| report.get("probability"))
    {
        let _ = write!(b, " · backdoor probability <b>{}</b>", esc(&p.to_string()));
    }
    b.push_str("</div>");
    for key in ["evidence", "triggers", "findings"] {
        if let Some(a) = report.get(key).and_then(Value::as_array) {
            let _ = write!(b, "<h2>{}</h2>", esc(key));
            for e in a.iter().take(50) {
                let _ = write!(
                    b,
                    "<div class=card><pre>{}</pre></div>",
                    esc(&serde_json::to_string_pretty(e).unwrap_or_default())
                );
            }
        }
    }
}

async fn scan(State(ctx): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&ctx, &headers) {
        return *r;
    }
    let c = ctx.clone();
    let id2 = id.clone();
    let got = tokio::task::spawn_blocking(move || {
        Ok::<_, String>((c.store.job(&id2)?, c.store.report(&id2)?))
    })
    .await;
    let Ok(Ok((Some(job), report))) = got else {
        return (
            StatusCode::NOT_FOUND,
            page("Not found", "<p>No such scan.</p>"),
        )
            .into_response();
    };
    let mut b = format!(
        "<div class=card><b>{}</b> scan of <code>{}</code>{}<br>status {} · verdict {} · created {} · attempts {}</div>",
        esc(&job.kind),
        esc(&job.source),
        job.base.as_deref().map(|x| format!(" against base <code>{}</code>", esc(x))).unwrap_or_default(),
        badge(Some(&job.status)),
        badge(job.verdict.as_deref()),
        esc(&when(Some(job.created))),
        job.attempts
    );
    if let Some(e) = &job.error {
        let _ = write!(b, "<div class=card><b>Failed:</b> {}</div>", esc(e));
    }
    if let Some(r) = report.and_then(|r| serde_json::from_str::<Value>(&r).ok()) {
        if job.kind == "deep" {
            deep_html(&r, &mut b);
        } else {
            findings_html(&r, &mut b);
        }
    }
    page(&format!("Scan {id}"), &b).into_response()
}

async fn watches(State(ctx): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&ctx, &headers) {
        return *r;
    }
    let c = ctx.clone();
    let Ok(Ok(ws)) = tokio::task::spawn_blocking(move || c.store.watches()).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response();
    };
    let mut b = String::from("<table><tr><th>Source</th><th>Every</th><th>Last checked</th><th>Revision</th><th>Verdict</th><th>Webhooks</th><th>Error</th></tr>");
    for w in &ws {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{} s</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&w.source),
            w.interval_seconds,
            esc(&when(w.last_checked)),
            esc(&w.last_revision.as_deref().unwrap_or("").chars().take(12).collect::<String>()),
            badge(w.last_verdict.as_deref()),
            w.webhooks.len(),
            esc(w.last_error.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table>");
    page("Watches", &b).into_response()
}

async fn alerts(State(ctx): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&ctx, &headers) {
        return *r;
    }
    let c = ctx.clone();
    let Ok(Ok(al)) = tokio::task::spawn_blocking(move || c.store.alerts(200)).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response();
    };
    let mut b = String::new();
    if al.is_empty() {
        b.push_str("<p class=muted>No alerts.</p>");
    }
    for a in &al {
        let _ = write!(
            b,
            "<div class=card><b>{}</b> · {}",
            esc(s(&a.payload, "/message")),
            esc(&when(Some(a.created)))
        );
        if let Some(sid) = &a.scan_id {
            let _ = write!(b, " · <a href=\"/scans/{0}\">{0}</a>", esc(sid));
        }
        b.push_str("<ul>");
        for r in a
            .payload
            .get("reasons")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let _ = write!(
                b,
                "<li><code>{}</code> {}</li>",
                esc(s(&r, "/code")),
                esc(s(&r, "/message"))
            );
        }
        b.push_str("</ul><span class=muted>deliveries:</span> ");
        let d: Vec<String> = a
            .deliveries
            .iter()
            .map(|d| {
                format!(
                    "{} #{} {}",
                    esc(&d.url),
                    d.attempt,
                    badge(Some(if d.error.is_none() {
                        "delivered"
                    } else {
                        "failed"
                    }))
                )
            })
            .collect();
        b.push_str(&if d.is_empty() {
            "none yet".to_string()
        } else {
            d.join(" · ")
        });
        b.push_str("</div>");
    }
    page("Alerts", &b).into_response()
}

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout))
        .route("/models/{id}", get(model))
        .route("/scans", get(scans))
        .route("/scans/{id}", get(scan))
        .route("/watches", get(watches))
        .route("/alerts", get(alerts))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for ok in ["/", "/scans/scan_00ff", "/models/ab12"] {
            assert!(super::safe_next(ok), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "https://evil.example",
            "/\\evil",
            "/a b",
            "scans",
            "/x?y=//z",
        ] {
            assert!(!super::safe_next(bad), "{bad:?}");
        }
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            super::esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
