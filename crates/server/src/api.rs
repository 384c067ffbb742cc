//! The HTTP API under `/v1`, health and metrics, and the OpenAPI document
//! generated from these handlers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::OpenApi;

use crate::jobs::{self, Options};
use crate::store::{self, Alert, Job, Role, Watch, Webhook};
use crate::Ctx;

type Shared = State<Arc<Ctx>>;

/// An error: its status and `{"error": "..."}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<String> for ApiError {
    fn from(e: String) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e)
    }
}

fn err(code: u16, msg: impl Into<String>) -> ApiError {
    ApiError(
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        msg.into(),
    )
}

/// `{"error": "..."}`
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// The caller, from `Authorization: Bearer TOKEN` (or, for the dashboard's
/// GET pages, the `probity_token` cookie set by `/login`).
pub fn caller(
    ctx: &Ctx,
    headers: &HeaderMap,
    method: &Method,
    need: Role,
) -> Result<(String, Role), ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(str::trim).map(str::to_string));
    let token = bearer.or_else(|| {
        // a cookie never authorises a change: no cross-site request forgery
        if method != Method::GET {
            return None;
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("probity_token=").map(str::to_string))
    });
    let Some(token) = token else {
        return Err(err(401, "a bearer token is required (Authorization: Bearer TOKEN; create one with probity token create)"));
    };
    // a database that cannot answer is not an invalid token; its message
    // goes to the log, not to a caller not yet authenticated
    let found = ctx.store.authenticate(&token).map_err(|e| {
        eprintln!("probity serve: checking a token: {e}");
        err(503, "cannot check the token now; try again")
    })?;
    let Some((name, role)) = found else {
        return Err(err(401, "the token is not valid"));
    };
    if role < need {
        return Err(err(
            403,
            format!(
                "the token's role is {}; this needs {}",
                role.as_str(),
                need.as_str()
            ),
        ));
    }
    Ok((name, role))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err(500, e.to_string()))?
}

// ------------------------------------------------------------------ scans

/// A scan to run.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// `hf://ORG/NAME[@REV]`, `https://huggingface.co/ORG/NAME`,
    /// `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `runs:/RUN/PATH`, an
    /// absolute path under an allowed root, or `upload:ID`.
    pub source: String,
    /// `static` (default) or `deep`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The base model of a deep scan (same forms as `source`).
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub options: Option<Options>,
}

/// A scan with its report once done (the shape of GET /v1/scans/{id}; the
/// handler splices the stored report in as text).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ScanView {
    #[serde(flatten)]
    pub job: Job,
    /// The `probity.scan/v1` or `probity.deep/v1` report, once `status` is `done`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<Value>,
}

/// A page of scans, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScanPage {
    pub items: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// The JSON body, read only after the caller is authorised, up to the cap.
async fn json_body(ctx: &Ctx, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let cap = ctx.settings.max_body_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > cap as u64 {
            return Err(err(413, format!("the body is {len} bytes; at most {cap}")));
        }
    }
    axum::body::to_bytes(body, cap).await.map_err(|_| {
        err(
            413,
            format!("the body is larger than {cap} bytes, or was cut off"),
        )
    })
}

#[utoipa::path(post, path = "/v1/scans", tag = "scans",
    request_body = ScanRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key (per token) returns the first scan instead of queuing another")),
    responses((status = 202, description = "Queued", body = Job), (status = 200, description = "An earlier scan with the same Idempotency-Key", body = Job),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
async fn submit_scan(
    State(ctx): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (who, _) = caller(&ctx, &headers, &Method::POST, Role::Scan)?;
    let body = json_body(&ctx, &headers, body).await?;
    let req: ScanRequest =
        serde_json::from_slice(&body).map_err(|e| err(400, format!("request body: {e}")))?;
    let kind = req.kind.unwrap_or_else(|| "static".into());
    if kind != "static" && kind != "deep" {
        return Err(err(400, format!("kind: '{kind}' is not static or deep")));
    }
    let opts = req.options.unwrap_or_default();
    opts.check(&kind).map_err(|e| err(400, e))?;
    match (&kind[..], &req.base) {
        ("deep", None) => return Err(err(400, "base: a deep scan needs a base model")),
        ("static", Some(_)) => return Err(err(400, "base: only a deep scan takes a base")),
        _ => {}
    }
    let idem = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| err(400, "Idempotency-Key: not text"))
        })
        .transpose()?;
    if idem.as_ref().is_some_and(|k| k.len() > 255) {
        return Err(err(400, "Idempotency-Key: longer than 255 characters"));
    }
    let c = ctx.clone();
    let (job, new) = blocking(move || {
        jobs::locate(&c, &req.source).map_err(|(s, e)| err(s, e))?;
        if let Some(b) = &req.base {
            jobs::locate(&c, b).map_err(|(s, e)| err(s, format!("base {e}")))?;
        }
        let options = serde_json::to_value(&opts).map_err(|e| err(500, e.to_string()))?;
        Ok(c.store.submit(
            &kind,
            &req.source,
            req.base.as_deref(),
            &options,
            Some(&who),
            idem.as_deref(),
            None,
        )?)
    })
    .await?;
    ctx.wake.notify_waiters();
    let status = if new {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/v1/scans/{}", job.id))],
        Json(job),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/scans/{id}", tag = "scans",
    params(("id" = String, Path, description = "The scan's id")),
    responses((status = 200, body = ScanView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_scan(
    State(ctx): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    blocking(move || {
        let job = c
            .store
            .job(&id)?
            .ok_or_else(|| err(404, format!("no scan {id}")))?;
        let mut body = serde_json::to_string(&job).map_err(|e| err(500, e.to_string()))?;
        if job.status == "done" {
            // the stored report (valid JSON, checked when stored) is spliced
            // in as text: a large report is never parsed per request
            if let Some(r) = c.store.report(&id)? {
                body.pop();
                body.push_str(",\"report\":");
                body.push_str(&r);
                body.push('}');
            }
        }
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    })
    .await
}

#[utoipa::path(get, path = "/v1/scans/{id}/report", tag = "scans",
    params(("id" = String, Path)),
    responses((status = 200, description = "The report exactly as `probity scan --format json` (or `deep`) wrote it", content_type = "application/json"),
        (status = 404, body = ErrorBody), (status = 409, description = "Not done yet", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_report(
    State(ctx): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    blocking(move || {
        let job = c
            .store
            .job(&id)?
            .ok_or_else(|| err(404, format!("no scan {id}")))?;
        if job.status != "done" {
            return Err(err(409, format!("scan {id} is {}", job.status)));
        }
        let r = c.store.report(&id)?.unwrap_or_default();
        Ok(([(header::CONTENT_TYPE, "application/json")], r).into_response())
    })
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ScanQuery {
    /// Only scans of this source.
    source: Option<String>,
    /// Only scans with this verdict.
    verdict: Option<String>,
    /// Only scans created at or after this time (Unix seconds).
    since: Option<i64>,
    /// At most this many (1–500, default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
}

#[utoipa::path(get, path = "/v1/scans", tag = "scans", params(ScanQuery),
    responses((status = 200, body = ScanPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_scans(
    State(ctx): Shared,
    headers: HeaderMap,
    q: Result<Query<ScanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ScanPage>, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let Query(q) = q.map_err(|e| err(400, e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(err(400, "limit: between 1 and 500"));
    }
    let c = ctx.clone();
    blocking(move || {
        let (items, next_cursor) = c.store.jobs(
            q.source.as_deref(),
            q.verdict.as_deref(),
            q.since,
            q.cursor,
            limit,
        )?;
        Ok(Json(ScanPage { items, next_cursor }))
    })
    .await
}

// ---------------------------------------------------------------- uploads

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file's name (or the folder's, for a tar): a plain name, no `/`.
    name: String,
    /// `file` (default): the body is the model file; `tar`: the body is a tar
    /// of a model folder, unpacked as NAME/ (regular files and folders only).
    kind: Option<String>,
}

/// A stored upload.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Upload {
    pub id: String,
    /// What to pass as a scan's `source`.
    pub source: String,
    pub name: String,
    /// Bytes received.
    pub size: u64,
    /// SHA-256 of the bytes received.
    pub sha256: String,
}

fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && !n.starts_with('.')
        && !n.starts_with('-')
        && !n.contains(['/', '\\', '\0'])
        && !n.chars().any(|c| c.is_control())
}

#[utoipa::path(post, path = "/v1/uploads", tag = "scans", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file, or a tar of a folder; streamed to disk"),
    responses((status = 201, body = Upload), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
async fn upload(
    State(ctx): Shared,
    headers: HeaderMap,
    q: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (who, _) = caller(&ctx, &headers, &Method::POST, Role::Scan)?;
    let Query(q) = q.map_err(|e| err(400, e.body_text()))?;
    if !plain_name(&q.name) {
        return Err(err(
            400,
            format!("name: '{}' is not a plain file name", q.name),
        ));
    }
    let kind = q.kind.unwrap_or_else(|| "file".into());
    if kind != "file" && kind != "tar" {
        return Err(err(400, "kind: file or tar"));
    }
    let cap = ctx.settings.max_upload_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > cap {
            return Err(err(
                413,
                format!("the upload is {len} bytes; this server takes at most {cap}"),
            ));
        }
    }
    let id = store::new_id("upload");
    let uploads = ctx.settings.data.join("uploads");
    let partial = uploads.join(format!("{id}.partial"));
    tokio::fs::create_dir_all(&partial)
        .await
        .map_err(|e| err(500, format!("uploads: {e}")))?;
    let staged = if kind == "tar" {
        partial.join(".upload.tar")
    } else {
        partial.join(&q.name)
    };
    let res = async {
        let mut f = tokio::fs::File::create(&staged)
            .await
            .map_err(|e| err(500, format!("uploads: {e}")))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| err(400, format!("reading the body: {e}")))?;
            size += chunk.len() as u64;
            if size > cap {
                return Err(err(
                    413,
                    format!("the upload is larger than this server's limit of {cap} bytes"),
                ));
            }
            hasher.update(&chunk);
            f.write_all(&chunk)
                .await
                .map_err(|e| err(500, format!("uploads: {e}")))?;
        }
        f.sync_all()
            .await
            .map_err(|e| err(500, format!("uploads: {e}")))?;
        Ok::<_, ApiError>((size, store::hex(&hasher.finalize())))
    }
    .await;
    let (size, sha) = match res {
        Ok(x) => x,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            return Err(e);
        }
    };
    if kind == "tar" {
        let (p, s, n) = (partial.clone(), staged.clone(), q.name.clone());
        let r = blocking(move || {
            unpack(&s, &p.join(&n), cap).map_err(|e| err(400, format!("tar: {e}")))
        })
        .await;
        let _ = std::fs::remove_file(&staged);
        if let Err(e) = r {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            return Err(e);
        }
    }
    let fin = uploads.join(&id);
    tokio::fs::rename(&partial, &fin)
        .await
        .map_err(|e| err(500, format!("uploads: {e}")))?;
    let c = ctx.clone();
    let (i2, n2, k2, s2) = (id.clone(), q.name.clone(), kind.clone(), sha.clone());
    blocking(move || Ok(c.store.add_upload(&i2, &n2, &k2, size, &s2, Some(&who))?)).await?;
    let up = Upload {
        source: format!("upload:{id}"),
        id,
        name: q.name,
        size,
        sha256: sha,
    };
    Ok((StatusCode::CREATED, Json(up)).into_response())
}

/// Unpacks a tar into `dest`: regular files and folders only, no absolute
/// paths or `..`, at most `cap` bytes and 100,000 entries.
fn unpack(tar_path: &std::path::Path, dest: &std::path::Path, cap: u64) -> Result<(), String> {
    use std::path::Component;
    let f = std::fs::File::open(tar_path).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(f);
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    let mut total = 0u64;
    for (n, entry) in ar.entries().map_err(|e| e.to_string())?.enumerate() {
        if n >= 100_000 {
            return Err("more than 100000 entries".into());
        }
        let mut e = entry.map_err(|e| e.to_string())?;
        let path = e.path().map_err(|e| e.to_string())?.into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "{}: not a relative path inside the folder",
                path.display()
            ));
        }
        let out = dest.join(&path);
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&out).map_err(|e| e.to_string())?
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                total += e.size();
                if total > cap {
                    return Err(format!("unpacks to more than {cap} bytes"));
                }
                if let Some(p) = out.parent() {
                    std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                }
                let mut o = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&out)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                std::io::copy(&mut (&mut e).take(cap), &mut o).map_err(|e| e.to_string())?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName => {}
            t => {
                return Err(format!(
                    "{}: {t:?} entries are not accepted (only files and folders)",
                    path.display()
                ))
            }
        }
    }
    Ok(())
}

use std::io::Read as _;

// ----------------------------------------------------------------- models

/// A model the ledger knows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelSummary {
    /// Stable id: the first 16 hex digits of SHA-256 of `key`.
    pub id: String,
    /// `hf://ORG/NAME`, `models:/NAME`, or a canonical local path.
    pub key: String,
    /// `hf`, `mlflow` or `local`.
    pub kind: String,
    pub records: usize,
    /// The latest record.
    pub latest_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_digest: Option<String>,
    /// The latest record's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The latest record's signature status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

pub fn model_id(key: &str) -> String {
    store::hex(&Sha256::digest(key.as_bytes())[..8])
}

/// Every model in the ledger, by key.
pub fn models(ctx: &Ctx) -> Result<Vec<ModelSummary>, String> {
    let path = ctx.settings.ledger();
    if !path.exists() {
        return Ok(Vec::new());
    }
    let rows = probity_provenance::ledger::Ledger::open_read(&path)?.rows()?;
    let mut by: BTreeMap<String, ModelSummary> = BTreeMap::new();
    for r in rows {
        let Ok(b) = serde_json::from_str::<Value>(&r.body) else {
            continue;
        };
        let s = |p: &str| b.pointer(p).and_then(Value::as_str).map(str::to_string);
        let Some(key) = s("/model/key") else { continue };
        let m = by.entry(key.clone()).or_insert_with(|| ModelSummary {
            id: model_id(&key),
            key: key.clone(),
            kind: s("/model/kind").unwrap_or_default(),
            records: 0,
            latest_seq: 0,
            latest_time: None,
            revision: None,
            root_digest: None,
            verdict: None,
            signature: None,
        });
        m.records += 1;
        m.latest_seq = r.seq;
        m.latest_time = s("/time");
        m.revision = s("/model/commit").or(s("/model/revision"));
        m.root_digest = s("/model/root_digest");
        m.verdict = s("/verdict/result");
        m.signature = s("/signature/status");
    }
    Ok(by.into_values().collect())
}

fn model_key(ctx: &Ctx, id: &str) -> Result<String, ApiError> {
    models(ctx)?
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| m.key)
        .ok_or_else(|| err(404, format!("no model {id}")))
}

async fn probity_json(ctx: &Ctx, args: &[String]) -> Result<Value, ApiError> {
    let out = tokio::process::Command::new(&ctx.settings.exe)
        .args(args)
        .arg("--ledger")
        .arg(ctx.settings.ledger())
        .args(["--format", "json"])
        .current_dir(ctx.settings.data.join("work"))
        .env_remove("PROBITY_LEDGER")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| err(500, format!("cannot run probity: {e}")))?;
    if !matches!(out.status.code(), Some(0 | 1)) {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(err(
            500,
            why.trim().trim_start_matches("probity: ").to_string(),
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| err(500, format!("probity's output: {e}")))
}

#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, body = Vec<ModelSummary>)), security(("bearer" = [])))]
async fn list_models(
    State(ctx): Shared,
    headers: HeaderMap,
) -> Result<Json<Vec<ModelSummary>>, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    blocking(move || Ok(Json(models(&c)?))).await
}

/// The model's history as `probity log MODEL --format json` prints it.
pub async fn history_of(ctx: &Ctx, key: &str) -> Result<Value, ApiError> {
    probity_json(ctx, &["log".into(), key.into()]).await
}

#[utoipa::path(get, path = "/v1/models/{id}/history", tag = "models",
    params(("id" = String, Path, description = "The model's id from /v1/models")),
    responses((status = 200, description = "The ledger's records of the model, as `probity log MODEL --format json`", content_type = "application/json"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn history(
    State(ctx): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    let key = blocking(move || model_key(&c, &id)).await?;
    Ok(Json(history_of(&ctx, &key).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DiffQuery {
    /// The older ledger record (its seq).
    from: i64,
    /// The newer ledger record.
    to: i64,
}

#[utoipa::path(get, path = "/v1/models/{id}/diff", tag = "models",
    params(("id" = String, Path), DiffQuery),
    responses((status = 200, description = "`probity diff ledger:FROM ledger:TO --format json`", content_type = "application/json"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn diff(
    State(ctx): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let Query(q) = q.map_err(|e| err(400, e.body_text()))?;
    let c = ctx.clone();
    let key = blocking(move || model_key(&c, &id)).await?;
    let hist = history_of(&ctx, &key).await?;
    let seqs: Vec<i64> = hist
        .get("records")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("seq").and_then(Value::as_i64))
                .collect()
        })
        .unwrap_or_default();
    for s in [q.from, q.to] {
        if !seqs.contains(&s) {
            return Err(err(404, format!("record {s} is not a record of {key}")));
        }
    }
    let v = probity_json(
        &ctx,
        &[
            "diff".into(),
            format!("ledger:{}", q.from),
            format!("ledger:{}", q.to),
            "--no-spectral".into(),
        ],
    )
    .await?;
    Ok(Json(v))
}

// ---------------------------------------------------------------- watches

/// A watch to create.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    /// `hf://ORG/NAME[@REVISION]`, `models:/NAME@ALIAS`, or `models:/NAME` (its latest version).
    pub source: String,
    /// Also deep-scan each new version against this base.
    #[serde(default)]
    pub base: Option<String>,
    /// Seconds between polls (default 600; at least the server's minimum).
    #[serde(default)]
    pub interval_seconds: Option<i64>,
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

#[utoipa::path(post, path = "/v1/watches", tag = "watches", request_body = WatchRequest,
    responses((status = 201, body = Watch), (status = 200, description = "The source was watched already", body = Watch),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn add_watch(
    State(ctx): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller(&ctx, &headers, &Method::POST, Role::Admin)?;
    let body = json_body(&ctx, &headers, body).await?;
    let req: WatchRequest =
        serde_json::from_slice(&body).map_err(|e| err(400, format!("request body: {e}")))?;
    let interval = req.interval_seconds.unwrap_or(600);
    if interval < ctx.settings.min_watch_interval_s {
        return Err(err(
            400,
            format!(
                "interval_seconds: at least {}",
                ctx.settings.min_watch_interval_s
            ),
        ));
    }
    ctx.sources
        .check_watchable(&req.source)
        .map_err(|e| err(400, format!("source: {e}")))?;
    for h in &req.webhooks {
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            return Err(err(
                400,
                format!("webhooks: '{}' is not an http(s) URL", h.url),
            ));
        }
        if h.format != "json" && h.format != "slack" {
            return Err(err(
                400,
                format!("webhooks: format '{}' is not json or slack", h.format),
            ));
        }
    }
    let c = ctx.clone();
    let (w, new) = blocking(move || {
        if let Some(b) = &req.base {
            jobs::locate(&c, b).map_err(|(s, e)| err(s, format!("base {e}")))?;
        }
        Ok(c.store
            .add_watch(&req.source, req.base.as_deref(), interval, &req.webhooks)?)
    })
    .await?;
    Ok((
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(w),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/watches", tag = "watches",
    responses((status = 200, body = Vec<Watch>)), security(("bearer" = [])))]
async fn list_watches(
    State(ctx): Shared,
    headers: HeaderMap,
) -> Result<Json<Vec<Watch>>, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    blocking(move || Ok(Json(c.store.watches()?))).await
}

#[utoipa::path(get, path = "/v1/watches/{id}", tag = "watches", params(("id" = String, Path)),
    responses((status = 200, body = Watch), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_watch(
    State(ctx): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Watch>, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    blocking(move || {
        c.store
            .watch(&id)?
            .map(Json)
            .ok_or_else(|| err(404, format!("no watch {id}")))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/watches/{id}", tag = "watches", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn delete_watch(
    State(ctx): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller(&ctx, &headers, &Method::DELETE, Role::Admin)?;
    let c = ctx.clone();
    blocking(move || {
        if c.store.delete_watch(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(err(404, format!("no watch {id}")))
        }
    })
    .await
}

#[utoipa::path(get, path = "/v1/alerts", tag = "watches",
    responses((status = 200, description = "Alerts newest first, each with every delivery attempt", body = Vec<Alert>)), security(("bearer" = [])))]
async fn list_alerts(State(ctx): Shared, headers: HeaderMap) -> Result<Json<Vec<Alert>>, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    blocking(move || Ok(Json(c.store.alerts(500)?))).await
}

// ------------------------------------------------------- health, metrics

#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "The process is up")))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "service",
    responses((status = 200, description = "The database answers and the scanner binary is there"), (status = 503, body = ErrorBody)))]
async fn readyz(State(ctx): Shared) -> Result<&'static str, ApiError> {
    let c = ctx.clone();
    blocking(move || {
        c.store.queue_depth().map_err(|e| err(503, e))?;
        if !c.settings.exe.is_file() {
            return Err(err(
                503,
                format!(
                    "{}: the scanner binary is missing",
                    c.settings.exe.display()
                ),
            ));
        }
        Ok("ready\n")
    })
    .await
}

const BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format: queue depth, scans by verdict, scan durations, requests, alerts", content_type = "text/plain")),
    security(("bearer" = [])))]
async fn metrics(State(ctx): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    caller(&ctx, &headers, &Method::GET, Role::Read)?;
    let c = ctx.clone();
    let (depth, verdicts, durations) = blocking(move || {
        Ok((
            c.store.queue_depth()?,
            c.store.verdict_counts()?,
            c.store.durations()?,
        ))
    })
    .await?;
    let mut o = String::new();
    o.push_str("# HELP probity_jobs Scan jobs by kind and status (queued and running are the queue).\n# TYPE probity_jobs gauge\n");
    for kind in ["static", "deep"] {
        for status in ["queued", "running", "done", "failed"] {
            let n = depth
                .iter()
                .find(|(k, s, _)| k == kind && s == status)
                .map(|x| x.2)
                .unwrap_or(0);
            let _ = writeln!(o, "probity_jobs{{kind=\"{kind}\",status=\"{status}\"}} {n}");
        }
    }
    o.push_str("# HELP probity_scans_total Finished scans by kind and verdict.\n# TYPE probity_scans_total counter\n");
    for (k, v, n) in &verdicts {
        let _ = writeln!(o, "probity_scans_total{{kind=\"{k}\",verdict=\"{v}\"}} {n}");
    }
    o.push_str("# HELP probity_scan_duration_seconds Time from start to end of finished scans.\n# TYPE probity_scan_duration_seconds histogram\n");
    for kind in ["static", "deep"] {
        let d: Vec<i64> = durations
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|x| x.1)
            .collect();
        for b in BUCKETS {
            let n = d.iter().filter(|x| (**x as f64) <= b).count();
            let _ = writeln!(
                o,
                "probity_scan_duration_seconds_bucket{{kind=\"{kind}\",le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "probity_scan_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
            d.len()
        );
        let _ = writeln!(
            o,
            "probity_scan_duration_seconds_sum{{kind=\"{kind}\"}} {}",
            d.iter().sum::<i64>()
        );
        let _ = writeln!(
            o,
            "probity_scan_duration_seconds_count{{kind=\"{kind}\"}} {}",
            d.len()
        );
    }
    let s = &ctx.stats;
    for (name, help, v) in [
        (
            "probity_http_requests_total",
            "HTTP requests answered.",
            &s.requests,
        ),
        (
            "probity_http_client_errors_total",
            "HTTP requests answered with a 4xx status.",
            &s.client_errors,
        ),
        (
            "probity_http_server_errors_total",
            "HTTP requests answered with a 5xx status.",
            &s.server_errors,
        ),
        (
            "probity_alerts_delivered_total",
            "Webhook deliveries that succeeded.",
            &s.alerts_sent,
        ),
        ("probity_watch_polls_total", "Watch polls made.", &s.polls),
    ] {
        let _ = writeln!(
            o,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o).into_response())
}

// ---------------------------------------------------------------- openapi

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Probity", description = "Probity's service API: submit static and deep scans of models, read their reports and the provenance ledger, watch Hugging Face and MLflow models and receive alerts."),
    paths(submit_scan, get_scan, get_report, list_scans, upload, list_models, history, diff,
          add_watch, list_watches, get_watch, delete_watch, list_alerts, healthz, readyz, metrics),
    components(schemas(ScanRequest, Options, Job, ScanView, ScanPage, Upload, ModelSummary, WatchRequest, Watch, Webhook,
        store::WebhookView, Alert, store::Delivery, ErrorBody)),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut d = ApiDoc::openapi();
    d.info.version = env!("CARGO_PKG_VERSION").into();
    d
}

async fn openapi_json() -> Response {
    match openapi().to_pretty_json() {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => err(500, e.to_string()).into_response(),
    }
}

// ----------------------------------------------------------------- router

async fn count(State(ctx): Shared, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let s = &ctx.stats;
    s.requests.fetch_add(1, Ordering::Relaxed);
    if res.status().is_client_error() {
        s.client_errors.fetch_add(1, Ordering::Relaxed);
    } else if res.status().is_server_error() {
        s.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    res
}

async fn not_found() -> ApiError {
    err(404, "no such endpoint")
}

pub fn router(ctx: Arc<Ctx>) -> Router {
    let limit = ctx.settings.max_body_bytes;
    let api = Router::new()
        .route("/v1/scans", post(submit_scan).get(list_scans))
        .route("/v1/scans/{id}", get(get_scan))
        .route("/v1/scans/{id}/report", get(get_report))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}/history", get(history))
        .route("/v1/models/{id}/diff", get(diff))
        .route("/v1/watches", post(add_watch).get(list_watches))
        .route("/v1/watches/{id}", get(get_watch).delete(delete_watch))
        .route("/v1/alerts", get(list_alerts))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(crate::dashboard::routes())
        .layer(DefaultBodyLimit::max(limit));
    // uploads stream to disk under their own cap
    let uploads = Router::new()
        .route("/v1/uploads", post(upload))
        .layer(DefaultBodyLimit::disable());
    api.merge(uploads)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), count))
        .with_state(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_endpoint() {
        let v: Value = serde_json::from_str(&openapi().to_json().unwrap()).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
        for p in [
            "/v1/scans",
            "/v1/scans/{id}",
            "/v1/uploads",
            "/v1/models",
            "/v1/models/{id}/history",
            "/v1/models/{id}/diff",
            "/v1/watches",
            "/v1/watches/{id}",
            "/v1/alerts",
            "/metrics",
            "/healthz",
            "/readyz",
        ] {
            assert!(v["paths"].get(p).is_some(), "{p} missing");
        }
        assert!(v["components"]["schemas"]["ScanRequest"].is_object());
    }

    #[test]
    fn upload_names_are_plain() {
        for bad in ["", "..", ".hidden", "a/b", "-rf", "a\\b", "a\nb"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert!(plain_name("model.safetensors"));
    }
}
