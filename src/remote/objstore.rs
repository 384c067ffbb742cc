//! Object stores: `s3://BUCKET[/PREFIX]` and `gs://BUCKET[/PREFIX]`, through
//! the `object_store` crate, with its standard credential chains.
//!
//! S3 (and S3-compatible stores: MinIO, Cloudflare R2, Ceph) is configured
//! from the `AWS_*` environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` (another endpoint;
//! `http://` ones are allowed), web identity and container or instance
//! credentials. Google Cloud Storage from `GOOGLE_*`:
//! `GOOGLE_SERVICE_ACCOUNT` (a key file), `GOOGLE_SERVICE_ACCOUNT_KEY`,
//! `GOOGLE_APPLICATION_CREDENTIALS`, or the metadata server;
//! `GOOGLE_BASE_URL` points at an emulator.
//!
//! Every object under the prefix is a file of the model (its path relative to
//! the prefix). `probity scan` reads them in place with ranged GETs; `deep`,
//! `--download`, signatures and the ledger download them whole into
//! Probity's cache (`PROBITY_CACHE_DIR/store/…`), each checked against the
//! size the listing gave and kept under its ETag, so an unchanged object is
//! not downloaded again.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::Digest;

use super::range::{InPlaceFile, Located, RemoteFile};
use super::{Fetched, RemoteError};

/// The most objects one input may hold.
const MAX_OBJECTS: usize = 100_000;

/// A bucket and a prefix in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRef {
    /// `s3` or `gs`.
    pub scheme: &'static str,
    pub bucket: String,
    /// The prefix, without leading or trailing `/` (empty: the whole bucket).
    pub prefix: String,
}

impl StoreRef {
    pub fn uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("{}://{}", self.scheme, self.bucket)
        } else {
            format!("{}://{}/{}", self.scheme, self.bucket, self.prefix)
        }
    }
}

/// Parses `s3://BUCKET[/PREFIX]` and `gs://BUCKET[/PREFIX]`; `None` when `s`
/// is neither.
pub fn parse(s: &str) -> Option<Result<StoreRef, RemoteError>> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("s3://") {
        ("s3", r)
    } else if let Some(r) = s.strip_prefix("gs://") {
        ("gs", r)
    } else {
        return None;
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if !bucket_ok {
        return Some(Err(RemoteError::Usage(format!(
            "{s}: expected {scheme}://BUCKET[/PREFIX] with a valid bucket name"
        ))));
    }
    if !prefix.is_empty() && !super::safe_relative(prefix) {
        return Some(Err(RemoteError::Usage(format!(
            "{s}: the prefix has empty, '.' or '..' segments"
        ))));
    }
    Some(Ok(StoreRef {
        scheme,
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    }))
}

/// The runtime the object store's async client runs on.
fn runtime() -> Result<&'static tokio::runtime::Runtime, RemoteError> {
    static RT: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .ok()
    })
    .as_ref()
    .ok_or_else(|| RemoteError::Fetch("cannot start the object store client".into()))
}

/// Runs a future of the object store client to its end.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, RemoteError> {
    Ok(runtime()?.block_on(f))
}

/// Two retries within 30 s: a failing store is reported, not waited on for
/// minutes (the crate's default is 10 retries within 3 minutes).
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    }
}

fn build(r: &StoreRef) -> Result<Arc<dyn ObjectStore>, RemoteError> {
    let fail = |e: object_store::Error| {
        RemoteError::Fetch(format!(
            "{}: cannot configure the client: {}",
            r.uri(),
            one_line(&e)
        ))
    };
    Ok(match r.scheme {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&r.bucket)
                .with_retry(retry());
            if let Ok(e) =
                std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"))
            {
                if e.starts_with("http://") {
                    b = b.with_allow_http(true);
                }
                b = b.with_endpoint(e);
            }
            Arc::new(b.build().map_err(fail)?)
        }
        _ => {
            let b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&r.bucket)
                .with_retry(retry());
            Arc::new(b.build().map_err(fail)?)
        }
    })
}

/// An object store error on one line: the store's error code when its
/// answer carries one (`NoSuchBucket`, `AccessDenied`, …), else the
/// client's message, shortened.
pub fn one_line(e: &object_store::Error) -> String {
    let s = e.to_string().replace('\n', " ");
    if let Some(code) = s
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(c, _)| c.to_string())
    {
        let status = s
            .split_once("status code: ")
            .map(|(_, r)| r.split(':').next().unwrap_or("").trim().to_string())
            .filter(|x| !x.is_empty());
        return match status {
            Some(st) => format!("the store answered {code} ({st})"),
            None => format!("the store answered {code}"),
        };
    }
    if s.len() > 300 {
        let cut = s
            .char_indices()
            .map(|(i, _)| i)
            .take_while(|&i| i <= 300)
            .last()
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

fn explain(r: &StoreRef, what: &str, e: object_store::Error) -> RemoteError {
    let why = match &e {
        object_store::Error::NotFound { .. } => "not found".to_string(),
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            format!(
                "access denied ({}); set the {} credentials",
                one_line(&e),
                if r.scheme == "s3" {
                    "AWS_*"
                } else {
                    "GOOGLE_*"
                }
            )
        }
        _ => one_line(&e),
    };
    RemoteError::Fetch(format!("{}: {what}: {why}", r.uri()))
}

/// One object of an input.
struct Listed {
    rel: String,
    path: StorePath,
    size: u64,
    etag: Option<String>,
}

fn list(r: &StoreRef, store: &Arc<dyn ObjectStore>) -> Result<Vec<Listed>, RemoteError> {
    let prefix = (!r.prefix.is_empty()).then(|| StorePath::from(r.prefix.as_str()));
    let _dog = super::watchdog::Watchdog::start(format!("{}: listing objects", r.uri()));
    let metas: Vec<object_store::ObjectMeta> = block_on(async {
        store
            .list(prefix.as_ref())
            .take(MAX_OBJECTS + 1)
            .try_collect()
            .await
    })?
    .map_err(|e| explain(r, "listing objects", e))?;
    if metas.len() > MAX_OBJECTS {
        return Err(RemoteError::Fetch(format!(
            "{}: more than {MAX_OBJECTS} objects",
            r.uri()
        )));
    }
    let mut out = Vec::new();
    for m in metas {
        let full = m.location.to_string();
        let rel = if r.prefix.is_empty() {
            full.clone()
        } else {
            match full.strip_prefix(&format!("{}/", r.prefix)) {
                Some(x) => x.to_string(),
                None => continue, // a sibling sharing the prefix's characters
            }
        };
        if !super::safe_relative(&rel) {
            return Err(RemoteError::Fetch(format!(
                "{}: the listing names an unsafe path '{full}'",
                r.uri()
            )));
        }
        out.push(Listed {
            rel,
            path: m.location,
            size: m.size,
            etag: m.e_tag,
        });
    }
    if out.is_empty() && !r.prefix.is_empty() {
        // the prefix may name one object
        let path = StorePath::from(r.prefix.as_str());
        let m = block_on(store.head(&path))?.map_err(|e| match e {
            object_store::Error::NotFound { .. } => RemoteError::Fetch(format!(
                "{}: not found: no object of this name and none under this prefix",
                r.uri()
            )),
            e => explain(r, "reading", e),
        })?;
        let name = r.prefix.rsplit('/').next().unwrap_or(&r.prefix).to_string();
        out.push(Listed {
            rel: name,
            path,
            size: m.size,
            etag: m.e_tag,
        });
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn cache_folder(r: &StoreRef) -> PathBuf {
    let key: String = sha2::Sha256::digest(r.uri().as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    super::mlflow::cache_root().join("store").join(key)
}

/// The ETags the cache folder's files were downloaded at.
fn cache_index(root: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    std::fs::read_to_string(root.join(".probity-etags.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn cached(
    root: &std::path::Path,
    index: &serde_json::Map<String, serde_json::Value>,
    f: &Listed,
) -> bool {
    let p = root.join(&f.rel);
    let same_size = std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.len() == f.size);
    let same_tag = match &f.etag {
        Some(t) => index.get(&f.rel).and_then(|v| v.as_str()) == Some(t.as_str()),
        None => true,
    };
    same_size && same_tag
}

/// Downloads one object whole into `dest` (a temporary file renamed when
/// complete and of the listed size).
fn download(
    r: &StoreRef,
    store: &Arc<dyn ObjectStore>,
    f: &Listed,
    dest: &std::path::Path,
) -> Result<(), RemoteError> {
    let write_err =
        |e: std::io::Error| RemoteError::Fetch(format!("{}: cannot write the cache: {e}", r.uri()));
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(write_err)?;
    }
    let tmp = dest.with_extension("probity-part");
    let dog = super::watchdog::Watchdog::start(format!("{}: downloading {}", r.uri(), f.rel));
    dog.cleanup(tmp.clone());
    let res = (|| -> Result<u64, RemoteError> {
        let mut out = std::fs::File::create(&tmp).map_err(write_err)?;
        let got = block_on(async {
            let mut stream = store.get(&f.path).await?.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                if n > f.size {
                    break;
                }
                if out.write_all(&chunk).is_err() {
                    return Err(object_store::Error::Generic {
                        store: "cache",
                        source: "cannot write the cache".into(),
                    });
                }
                dog.tick();
            }
            Ok(n)
        })?
        .map_err(|e| explain(r, &format!("downloading {}", f.rel), e))?;
        out.sync_all().ok();
        Ok(got)
    })();
    drop(dog);
    match res {
        Ok(n) if n == f.size => std::fs::rename(&tmp, dest).map_err(write_err),
        Ok(n) => {
            let _ = std::fs::remove_file(&tmp);
            Err(RemoteError::Fetch(format!(
                "{}: {}: received {n} of {} bytes (interrupted download); nothing was cached",
                r.uri(),
                f.rel,
                f.size
            )))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Lists an input's objects and fetches them whole into the cache, or (with
/// `in_place`) lists them to be read in place. Offline, the cache folder of
/// the last fetch is used as it is.
pub fn fetch_as(r: &StoreRef, offline: bool, in_place: bool) -> Result<Fetched, RemoteError> {
    let root = cache_folder(r);
    let uri = r.uri();
    let display = |rel: &str| format!("{uri}/{rel}");
    if offline {
        let index = cache_index(&root);
        if index.is_empty() {
            return Err(RemoteError::Fetch(format!(
                "{uri}: not in the cache ({}) and --offline forbids downloading",
                root.display()
            )));
        }
        let mut files = Vec::new();
        for rel in index.keys() {
            let p = root.join(rel);
            if !super::safe_relative(rel) || !p.is_file() {
                return Err(RemoteError::Fetch(format!(
                    "{uri}: cached file '{rel}' is missing; fetch again without --offline"
                )));
            }
            files.push((p, display(rel)));
        }
        return Ok(Fetched {
            note: format!("{uri}: {} file(s) from the cache (offline)", files.len()),
            files,
            in_place: Vec::new(),
            root,
            origin: None,
        });
    }
    let store = build(r)?;
    let listed = list(r, &store)?;
    if listed.is_empty() {
        return Err(RemoteError::Fetch(format!(
            "{uri}: no objects under this prefix"
        )));
    }
    let mut index = cache_index(&root);
    if in_place {
        let mut out = Vec::new();
        let mut from_cache = 0;
        for f in &listed {
            let at = if cached(&root, &index, f) {
                from_cache += 1;
                Located::Local(root.join(&f.rel))
            } else {
                Located::Remote(RemoteFile {
                    display: display(&f.rel),
                    url: display(&f.rel),
                    size: f.size,
                    auth: None,
                    sha256_claim: None,
                    store: Some((store.clone(), f.path.clone())),
                })
            };
            out.push(InPlaceFile {
                rel: f.rel.clone(),
                display: display(&f.rel),
                at,
            });
        }
        return Ok(Fetched {
            note: format!(
                "{uri}: {} object(s): {} read in place by range requests, {from_cache} from the cache",
                out.len(),
                out.len() - from_cache
            ),
            files: Vec::new(),
            in_place: out,
            root,
            origin: None,
        });
    }
    let mut files = Vec::new();
    let mut downloaded = 0;
    for f in &listed {
        let dest = root.join(&f.rel);
        if !cached(&root, &index, f) {
            download(r, &store, f, &dest)?;
            downloaded += 1;
            index.insert(
                f.rel.clone(),
                f.etag
                    .clone()
                    .map(Into::into)
                    .unwrap_or(serde_json::Value::Null),
            );
        }
        files.push((dest, display(&f.rel)));
    }
    // only what this listing holds is recorded (for --offline)
    index.retain(|k, _| listed.iter().any(|f| &f.rel == k));
    let tmp = root.join(".probity-etags.json.tmp");
    if std::fs::write(&tmp, serde_json::Value::Object(index).to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, root.join(".probity-etags.json"));
    }
    Ok(Fetched {
        note: format!("{uri}: {} object(s), {downloaded} downloaded", files.len()),
        files,
        in_place: Vec::new(),
        root,
        origin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let ok = |s: &str, scheme: &str, bucket: &str, prefix: &str| {
            let r = parse(s).unwrap().unwrap();
            assert_eq!(
                (r.scheme, r.bucket.as_str(), r.prefix.as_str()),
                (scheme, bucket, prefix),
                "{s}"
            );
        };
        ok("s3://models/llama/v1", "s3", "models", "llama/v1");
        ok("s3://models/llama/v1/", "s3", "models", "llama/v1");
        ok("gs://my-bucket", "gs", "my-bucket", "");
        assert!(parse("./x").is_none());
        assert!(parse("s3://A_B/x").unwrap().is_err());
        assert!(parse("s3://bucket/../x").unwrap().is_err());
        assert!(parse("gs://b").unwrap().is_err());
    }
}
