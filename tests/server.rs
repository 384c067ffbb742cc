//! `probity serve` end to end over real HTTP on loopback: tokens and roles,
//! scans by path, URI and upload, the CLI as a client, idempotency, the
//! ledger's models, history and diff, path escapes and malformed requests,
//! a crash (kill -9) and restart, 10,000 mixed requests, watches on a local
//! Hub test server with alerts to a local webhook receiver that checks the
//! HMAC signature, `probity watch --once`, `probity alerts test`, and the
//! dashboard in a headless Chromium when one is installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_probity"))
}

fn token(data: &Path, name: &str, role: &str) -> String {
    let o = Command::new(exe())
        .args(["token", "create", "--data"])
        .arg(data)
        .args(["--name", name, "--role", role])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = String::from_utf8(o.stdout).unwrap();
    // only the token, on one line
    assert_eq!(t.lines().count(), 1, "{t:?}");
    t.trim().to_string()
}

struct Server {
    child: Child,
    url: String,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_at(data, "127.0.0.1:0", extra)
    }
    fn start_at(data: &Path, bind: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(exe())
            .args(["serve", "--bind", bind, "--data"])
            .arg(data)
            .args(extra)
            .current_dir(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        Server { child, url, addr }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// (status, JSON or Null)
fn get(url: &str, tok: Option<&str>) -> (u16, Value) {
    let mut r = agent().get(url);
    if let Some(t) = tok {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = r.call().unwrap();
    let s = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn post(url: &str, tok: Option<&str>, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut r = agent().post(url).header("Content-Type", "application/json");
    if let Some(t) = tok {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send(body).unwrap();
    let s = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The status of a request written on a raw socket: the server may answer
/// and close before the body is sent, so write errors are ignored.
fn raw_status(addr: &str, method: &str, path: &str, tok: &str, body: &[u8]) -> u16 {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = c.write_all(head.as_bytes()).and_then(|_| c.write_all(body));
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn submit(url: &str, tok: &str, req: Value) -> String {
    let (s, v) = post(
        &format!("{url}/v1/scans"),
        Some(tok),
        req.to_string().as_bytes(),
        &[],
    );
    assert_eq!(s, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Waits for a scan to end; its view.
fn wait(url: &str, tok: &str, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (s, v) = get(&format!("{url}/v1/scans/{id}"), Some(tok));
        assert_eq!(s, 200, "{v}");
        if v["status"] == "done" || v["status"] == "failed" {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "scan {id} never ended: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn malicious() -> PathBuf {
    root().join("fixtures/malicious/pickle/eval___builtin___eval_p0.pkl")
}

fn benign() -> PathBuf {
    root().join("fixtures/benign/pickle/plain_data.p1.pkl")
}

/// A data folder and an allowed root holding a benign and a malicious model.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let models = d.path().join("models");
    std::fs::create_dir_all(models.join("good")).unwrap();
    std::fs::create_dir_all(models.join("bad")).unwrap();
    std::fs::copy(benign(), models.join("good/model.pkl")).unwrap();
    std::fs::copy(malicious(), models.join("bad/model.pkl")).unwrap();
    (d, data, models)
}

fn local_scan_json(path: &Path) -> Value {
    let o = Command::new(exe())
        .args(["scan", "--format", "json", "--"])
        .arg(path)
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn roles_scans_reports_idempotency_models_history_diff_metrics() {
    let (_d, data, models) = setup();
    let read = token(&data, "viewer", "read");
    let scan = token(&data, "ci", "scan");
    let s = Server::start(&data, &["--allow-root", models.to_str().unwrap()]);
    let u = &s.url;

    // health, readiness and the OpenAPI document need no token
    assert_eq!(get(&format!("{u}/healthz"), None).0, 200);
    assert_eq!(get(&format!("{u}/readyz"), None).0, 200);
    let (st, doc) = get(&format!("{u}/openapi.json"), None);
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/scans"]["post"].is_object());

    // 401 without or with a wrong token, 403 with a weaker role
    let bad = models.join("bad/model.pkl");
    let req = json!({"source": bad, "kind": "static"});
    let body = req.to_string();
    assert_eq!(
        post(&format!("{u}/v1/scans"), None, body.as_bytes(), &[]).0,
        401
    );
    assert_eq!(
        post(
            &format!("{u}/v1/scans"),
            Some("pbt_nope"),
            body.as_bytes(),
            &[]
        )
        .0,
        401
    );
    let (st, v) = post(&format!("{u}/v1/scans"), Some(&read), body.as_bytes(), &[]);
    assert_eq!(st, 403, "{v}");
    assert_eq!(get(&format!("{u}/v1/scans"), None).0, 401);
    let (st, _) = post(
        &format!("{u}/v1/watches"),
        Some(&scan),
        br#"{"source":"hf://a/b"}"#,
        &[],
    );
    assert_eq!(st, 403);

    // a scan by path: the report is the CLI's
    let (st, job) = post(
        &format!("{u}/v1/scans"),
        Some(&scan),
        body.as_bytes(),
        &[("Idempotency-Key", "k1")],
    );
    assert_eq!(st, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    // the same key again: the same scan, not a second one
    let (st, again) = post(
        &format!("{u}/v1/scans"),
        Some(&scan),
        body.as_bytes(),
        &[("Idempotency-Key", "k1")],
    );
    assert_eq!(st, 200);
    assert_eq!(again["id"], job["id"]);
    let done = wait(u, &read, &id);
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["submitted_by"], "ci");
    assert_eq!(done["verdict"], "flagged");
    assert_eq!(done["exit_code"], 1);
    let local = local_scan_json(&bad.canonicalize().unwrap());
    assert_eq!(done["report"]["files"], local["files"]);
    assert_eq!(done["report"]["summary"], local["summary"]);
    let (st, raw) = get(&format!("{u}/v1/scans/{id}/report"), Some(&read));
    assert_eq!(st, 200);
    assert_eq!(raw["files"], local["files"]);

    let good = models.join("good/model.pkl");
    let gid = submit(u, &scan, json!({"source": good}));
    assert_eq!(wait(u, &read, &gid)["verdict"], "clean");

    // listing, filtered and paginated
    let (_, page) = get(&format!("{u}/v1/scans?verdict=flagged"), Some(&read));
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    let (_, p1) = get(&format!("{u}/v1/scans?limit=1"), Some(&read));
    assert_eq!(p1["items"][0]["id"], gid.as_str());
    let cursor = p1["next_cursor"].as_i64().unwrap();
    let (_, p2) = get(
        &format!("{u}/v1/scans?limit=1&cursor={cursor}"),
        Some(&read),
    );
    assert_eq!(p2["items"][0]["id"], id.as_str());
    assert!(p2.get("next_cursor").is_none(), "{p2}");
    let (st, _) = get(&format!("{u}/v1/scans?limit=0"), Some(&read));
    assert_eq!(st, 400);
    assert_eq!(get(&format!("{u}/v1/scans/scan_0000"), Some(&read)).0, 404);

    // the ledger: models, history, and a diff after the model changes
    std::fs::copy(malicious(), models.join("good/extra.pkl")).unwrap();
    let gid2 = submit(u, &scan, json!({"source": models.join("good")}));
    let gid1 = submit(u, &scan, json!({"source": models.join("good")}));
    let _ = (wait(u, &read, &gid2), wait(u, &read, &gid1));
    let (st, ms) = get(&format!("{u}/v1/models"), Some(&read));
    assert_eq!(st, 200);
    let folder = models.join("good").canonicalize().unwrap();
    let m = ms
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == folder.to_str().unwrap())
        .unwrap_or_else(|| panic!("{ms}"))
        .clone();
    assert_eq!(m["records"], 2);
    assert_eq!(m["verdict"], "flagged");
    let mid = m["id"].as_str().unwrap();
    let (st, h) = get(&format!("{u}/v1/models/{mid}/history"), Some(&read));
    assert_eq!(st, 200, "{h}");
    let recs = h["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["record"]["actor"]["user"], "token ci", "{h}");
    assert_eq!(recs[0]["record"]["actor"]["kind"], "probity-service", "{h}");
    let (a, b) = (
        recs[0]["seq"].as_i64().unwrap(),
        recs[1]["seq"].as_i64().unwrap(),
    );
    let (st, dv) = get(
        &format!("{u}/v1/models/{mid}/diff?from={a}&to={b}"),
        Some(&read),
    );
    assert_eq!(st, 200, "{dv}");
    assert_eq!(dv["summary"]["identical"], true, "{dv}");
    // a record of another model is refused
    let other = ms
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] != mid)
        .unwrap();
    let (st, _) = get(
        &format!(
            "{u}/v1/models/{}/diff?from={a}&to={b}",
            other["id"].as_str().unwrap()
        ),
        Some(&read),
    );
    assert_eq!(st, 404);
    assert_eq!(
        get(&format!("{u}/v1/models/ffff/history"), Some(&read)).0,
        404
    );

    // metrics
    let resp = agent()
        .get(format!("{u}/metrics"))
        .header("Authorization", &format!("Bearer {read}"))
        .call()
        .unwrap();
    let text = resp.into_body().read_to_string().unwrap();
    assert!(
        text.contains("probity_jobs{kind=\"static\",status=\"done\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("probity_scans_total{kind=\"static\",verdict=\"flagged\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("probity_scan_duration_seconds_count{kind=\"static\"} 4"),
        "{text}"
    );
    assert!(text.contains("probity_http_client_errors_total"), "{text}");
}

#[test]
fn escapes_and_malformed_requests_get_4xx_and_the_service_stays_up() {
    let (d, data, models) = setup();
    let scan = token(&data, "ci", "scan");
    // a secret outside the root, and a link to it inside
    let secret = d.path().join("secret.pkl");
    std::fs::copy(malicious(), &secret).unwrap();
    std::os::unix::fs::symlink(&secret, models.join("link.pkl")).unwrap();
    std::os::unix::fs::symlink(d.path(), models.join("up")).unwrap();
    let s = Server::start(
        &data,
        &[
            "--allow-root",
            models.to_str().unwrap(),
            "--max-upload-bytes",
            "4096",
            "--io-timeout",
            "2",
        ],
    );
    let u = &s.url;
    let scans = format!("{u}/v1/scans");
    let try_source = |src: String| {
        post(
            &scans,
            Some(&scan),
            json!({"source": src}).to_string().as_bytes(),
            &[],
        )
    };
    for (src, want) in [
        (format!("{}/../secret.pkl", models.display()), 403),
        (models.join("link.pkl").display().to_string(), 403),
        (models.join("up/secret.pkl").display().to_string(), 403),
        (secret.display().to_string(), 403),
        ("/etc/passwd".to_string(), 403),
        ("models/good/model.pkl".to_string(), 400),
        ("upload:upload_ffff".to_string(), 404),
        ("upload:../../x".to_string(), 400),
        ("file:///etc/passwd".to_string(), 400),
        (String::new(), 400),
    ] {
        let (st, v) = try_source(src.clone());
        assert_eq!(st, want, "{src}: {v}");
        assert!(v["error"].is_string(), "{src}: {v}");
    }
    // nothing was queued by any of those
    let (_, page) = get(&format!("{u}/v1/scans"), Some(&scan));
    assert_eq!(page["items"], json!([]));
    // malformed, unknown fields, wrong kinds and options, oversized bodies
    for (body, want) in [
        (b"{not json".to_vec(), 400),
        (br#"{"source": 3}"#.to_vec(), 400),
        (br#"{"source": "/x", "evil": 1}"#.to_vec(), 400),
        (br#"{"source": "/x", "kind": "fast"}"#.to_vec(), 400),
        (br#"{"source": "/x", "kind": "deep"}"#.to_vec(), 400),
        (
            br#"{"source": "/x", "options": {"output": "/etc/x"}}"#.to_vec(),
            400,
        ),
        (
            br#"{"source": "/x", "options": {"fail_on": "--help"}}"#.to_vec(),
            400,
        ),
        (
            br#"{"source": "/x", "options": {"fail_fast": true}}"#.to_vec(),
            400,
        ),
    ] {
        let (st, v) = post(&scans, Some(&scan), &body, &[]);
        assert_eq!(
            st,
            want,
            "{}: {v}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
    }
    // a body over the cap is refused from its Content-Length, before it is read
    assert_eq!(
        raw_status(&s.addr, "POST", "/v1/scans", &scan, &vec![b' '; 2 << 20]),
        413
    );
    assert_eq!(
        raw_status(
            &s.addr,
            "POST",
            "/v1/uploads?name=big.pkl",
            &scan,
            &[0u8; 5000]
        ),
        413
    );
    // uploads: names, sizes, unsafe tars
    let up = |q: &str, body: &[u8]| {
        let r = agent()
            .post(format!("{u}/v1/uploads?{q}"))
            .header("Authorization", &format!("Bearer {scan}"))
            .send(body)
            .unwrap();
        let st = r.status().as_u16();
        (st, r.into_body().read_to_string().unwrap_or_default())
    };
    assert_eq!(up("name=../x", b"abc").0, 400);
    assert_eq!(up("name=.hidden", b"abc").0, 400);
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // tar::Builder refuses `..` itself: write the name into the header bytes
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    evil.append(&h, &b"abc"[..]).unwrap();
    let (st, t) = up("name=m&kind=tar", &evil.into_inner().unwrap());
    assert_eq!(st, 400, "{t}");
    assert!(!data.join("uploads/escape").exists() && !data.join("escape").exists());
    let mut link = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    link.append_link(&mut h, "m/passwd", "/etc/passwd").unwrap();
    let (st, t) = up("name=m&kind=tar", &link.into_inner().unwrap());
    assert_eq!(st, 400, "{t}");
    // a slow client holding a half-sent request does not block anyone
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.write_all(b"POST /v1/scans HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"sou")
        .unwrap();
    let mut slow2 = TcpStream::connect(&s.addr).unwrap();
    slow2
        .write_all(b"GET /v1/scans HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    for _ in 0..20 {
        assert_eq!(get(&format!("{u}/healthz"), None).0, 200);
    }
    let ok = submit(u, &scan, json!({"source": models.join("good/model.pkl")}));
    assert_eq!(wait(u, &scan, &ok)["status"], "done");
    // and the stalled connections are closed after the I/O timeout
    for mut c in [slow, slow2] {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let t0 = Instant::now();
        let mut buf = Vec::new();
        let r = c.read_to_end(&mut buf);
        assert!(
            !matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
            "{r:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(25));
    }
    assert_eq!(get(&format!("{u}/v1/nothing"), Some(&scan)).0, 404);
    assert_eq!(get(&format!("{u}/readyz"), None).0, 200);
}

#[test]
fn the_cli_submits_to_the_service_and_prints_the_same_report() {
    let (d, data, _models) = setup();
    let scan = token(&data, "ci", "scan");
    let s = Server::start(&data, &[]);
    let work = d.path().join("work");
    std::fs::create_dir_all(work.join("my-model")).unwrap();
    std::fs::copy(malicious(), work.join("my-model/weights.pkl")).unwrap();
    std::fs::copy(benign(), work.join("my-model/ok.pkl")).unwrap();
    std::fs::copy(benign(), work.join("clean.pkl")).unwrap();
    let run = |args: &[&str], server: bool| {
        let mut c = Command::new(exe());
        c.arg("scan").args(args).current_dir(&work);
        if server {
            c.args(["--server", &s.url]).env("PROBITY_TOKEN", &scan);
        }
        c.output().unwrap()
    };
    for (args, code) in [
        (&["my-model", "--format", "json"][..], 1),
        (&["clean.pkl", "--format", "json"][..], 0),
        (&["my-model/", "--format", "sarif"][..], 1),
        (&["clean.pkl", "my-model", "--format", "json"][..], 1),
        (&["my-model", "--format", "text", "--color", "never"][..], 1),
    ] {
        let local = run(args, false);
        let remote = run(args, true);
        assert_eq!(local.status.code(), Some(code), "{args:?}");
        assert_eq!(
            remote.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&remote.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&remote.stdout),
            String::from_utf8_lossy(&local.stdout),
            "{args:?}"
        );
    }
    // errors are one line and exit 2
    for (args, env_token, want) in [
        (
            &["missing.pkl"][..],
            Some(scan.as_str()),
            "missing.pkl: no such file",
        ),
        (&["clean.pkl"][..], Some("pbt_wrong"), "401"),
        (&["clean.pkl"][..], None, "needs a token"),
        (
            &["clean.pkl", "--ledger", "x.db"][..],
            Some(scan.as_str()),
            "--ledger does not apply",
        ),
    ] {
        let mut c = Command::new(exe());
        c.arg("scan")
            .args(args)
            .args(["--server", &s.url])
            .current_dir(&work)
            .env_remove("PROBITY_TOKEN");
        if let Some(t) = env_token {
            c.env("PROBITY_TOKEN", t);
        }
        let o = c.output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn a_server_killed_mid_load_loses_no_accepted_scan() {
    let (_d, data, models) = setup();
    let scan = token(&data, "ci", "scan");
    let s = Server::start(
        &data,
        &["--allow-root", models.to_str().unwrap(), "--workers", "1"],
    );
    let (url, addr) = (s.url.clone(), s.addr.clone());
    // four clients submit and poll as fast as they can; a submission counts
    // as accepted only when its 202 arrived
    let accepted = Arc::new(Mutex::new(Vec::<(String, &'static str)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (url, scan, accepted, stop, models) = (
                url.clone(),
                scan.clone(),
                accepted.clone(),
                stop.clone(),
                models.clone(),
            );
            std::thread::spawn(move || {
                let a = agent();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let src = if (t + i) % 2 == 0 { "bad" } else { "good" };
                    let r = a
                        .post(format!("{url}/v1/scans"))
                        .header("Authorization", &format!("Bearer {scan}"))
                        .send_json(json!({"source": models.join(src).join("model.pkl")}));
                    match r {
                        Ok(r) if r.status().as_u16() == 202 => {
                            let v: Value = r.into_body().read_json().unwrap();
                            accepted
                                .lock()
                                .unwrap()
                                .push((v["id"].as_str().unwrap().to_string(), src));
                        }
                        Ok(r) => panic!("status {}", r.status()),
                        // the server is gone: this one was not accepted
                        Err(_) => return,
                    }
                    let _ = a
                        .get(format!("{url}/v1/scans?limit=5"))
                        .header("Authorization", &format!("Bearer {scan}"))
                        .call();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut s = s;
    // kill -9 mid-load, with scans queued and one running
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGKILL);
    }
    let _ = s.child.wait();
    std::mem::forget(s);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 20, "only {} accepted", accepted.len());
    let s = Server::start_at(&data, &addr, &["--allow-root", models.to_str().unwrap()]);
    for (id, src) in &accepted {
        let v = wait(&s.url, &scan, id);
        assert_eq!(v["status"], "done", "{v}");
        assert_eq!(
            v["verdict"],
            if *src == "bad" { "flagged" } else { "clean" },
            "{v}"
        );
        assert!(v["attempts"].as_i64().unwrap() <= 2, "{v}");
    }
    eprintln!(
        "{} scans accepted before kill -9; all finished after the restart",
        accepted.len()
    );
    // besides the accepted scans, at most one per client whose 202 was lost
    // with the connection; every one of them finished too
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = get(
            &format!("{}/v1/scans?limit=500{cursor}", s.url),
            Some(&scan),
        );
        all.extend(page["items"].as_array().unwrap().clone());
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(
        all.len() >= accepted.len() && all.len() <= accepted.len() + 4,
        "{} vs {}",
        all.len(),
        accepted.len()
    );
    for j in &all {
        assert_eq!(
            wait(&s.url, &scan, j["id"].as_str().unwrap())["status"],
            "done"
        );
    }
    // `since` filters by creation time
    let (_, later) = get(&format!("{}/v1/scans?since=4000000000", s.url), Some(&scan));
    assert_eq!(later["items"], json!([]));
}

#[test]
fn ten_thousand_mixed_requests() {
    let (_d, data, models) = setup();
    let scan = token(&data, "ci", "scan");
    let s = Server::start(&data, &["--allow-root", models.to_str().unwrap()]);
    let url = s.url.clone();
    let ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let seed = submit(
        &url,
        &scan,
        json!({"source": models.join("good/model.pkl")}),
    );
    let t0 = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (url, scan, ids, lat, seed) = (
                url.clone(),
                scan.clone(),
                ids.clone(),
                lat.clone(),
                seed.clone(),
            );
            let models = models.clone();
            std::thread::spawn(move || {
                let a = agent();
                let mut mine = Vec::new();
                let mut times = Vec::new();
                for i in 0..1250 {
                    let t1 = Instant::now();
                    let st = if i % 25 == 0 {
                        // 4% submissions (400 scans), each with a fresh key
                        let src = models
                            .join(if i % 50 == 0 { "bad" } else { "good" })
                            .join("model.pkl");
                        let r = a
                            .post(format!("{url}/v1/scans"))
                            .header("Authorization", &format!("Bearer {scan}"))
                            .header("Idempotency-Key", &format!("{t}-{i}"))
                            .send_json(json!({"source": src}))
                            .unwrap();
                        let st = r.status().as_u16();
                        let body = r.into_body().read_to_string().unwrap();
                        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
                            panic!("submission {t}-{i}: {st}, not JSON ({e}): {body}")
                        });
                        let Some(id) = v["id"].as_str() else {
                            panic!("submission {t}-{i}: {st} without an id: {body}");
                        };
                        mine.push(id.to_string());
                        st
                    } else {
                        let path = match i % 4 {
                            0 => "/v1/scans?limit=20".to_string(),
                            1 => "/metrics".to_string(),
                            _ => format!("/v1/scans/{}", mine.last().unwrap_or(&seed)),
                        };
                        let r = a
                            .get(format!("{url}{path}"))
                            .header("Authorization", &format!("Bearer {scan}"))
                            .call()
                            .unwrap();
                        let st = r.status().as_u16();
                        let body = r.into_body().read_to_vec().unwrap_or_default();
                        assert!(
                            st == 200,
                            "GET {path}: {st}: {}",
                            String::from_utf8_lossy(&body)
                        );
                        st
                    };
                    times.push(t1.elapsed().as_secs_f64() * 1000.0);
                    assert!(st == 200 || st == 202, "{st}");
                }
                ids.lock().unwrap().extend(mine);
                lat.lock().unwrap().extend(times);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(l.len(), 10_000);
    eprintln!(
        "10000 requests (400 submissions) in {secs:.2} s: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        10_000.0 / secs,
        l[5000],
        l[9900],
        l[9999]
    );
    // every accepted scan finishes
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 400);
    for id in &ids {
        assert_eq!(wait(&url, &scan, id)["status"], "done");
    }
}

// ------------------------------------------------------- watches, alerts

/// A commit: its id and files (name, bytes).
type Commit = (String, Vec<(String, Vec<u8>)>);
/// A webhook request's JSON body and whether its signature verified.
type Received = (Value, Result<(), String>);

/// A Hugging Face Hub test server whose `main` can move: the repository
/// acme/watched, one commit per entry, newest last.
#[derive(Clone, Default)]
struct Hub {
    commits: Arc<Mutex<Vec<Commit>>>,
    listings: Arc<Mutex<usize>>,
}

fn safetensors(value: f32) -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&value.to_le_bytes());
    b.extend_from_slice(&value.to_le_bytes());
    b
}

impl Hub {
    fn push(&self, weights: f32) {
        let mut c = self.commits.lock().unwrap();
        let id = format!("{:040x}", c.len() + 0xabc0);
        let files = vec![
            (
                "config.json".to_string(),
                br#"{"model_type": "llama"}"#.to_vec(),
            ),
            ("model.safetensors".to_string(), safetensors(weights)),
            (
                "tokenizer_config.json".to_string(),
                json!({"chat_template": format!("{{{{ messages[0]['content'] }}}} v{weights}")})
                    .to_string()
                    .into_bytes(),
            ),
        ];
        c.push((id, files));
    }

    fn start(&self) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let me = self.clone();
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let r = me.answer(&req);
                let _ = req.respond(r);
            }
        });
        url
    }

    fn answer(&self, req: &tiny_http::Request) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let h =
            |k: &str, v: &str| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
        let commits = self.commits.lock().unwrap().clone();
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let at = |rev: &str| {
            if rev == "main" {
                commits.last().cloned()
            } else {
                commits.iter().find(|c| c.0 == rev).cloned()
            }
        };
        if let Some(rest) = path.strip_prefix("/api/models/acme/watched/") {
            let (kind, rev) = rest.split_once('/').unwrap_or((rest, ""));
            let Some(c) = at(rev) else {
                return tiny_http::Response::from_string("no").with_status_code(404);
            };
            if kind == "revision" {
                *self.listings.lock().unwrap() += 1;
                let siblings: Vec<_> =
                    c.1.iter()
                        .map(|(n, d)| json!({"rfilename": n, "size": d.len()}))
                        .collect();
                return tiny_http::Response::from_string(
                    json!({"id": "acme/watched", "sha": c.0, "siblings": siblings}).to_string(),
                )
                .with_header(h("Content-Type", "application/json"));
            }
            if kind == "commits" {
                let i = commits.iter().position(|x| x.0 == c.0).unwrap();
                let list: Vec<_> = commits[..=i]
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(k, x)| json!({"id": x.0, "title": format!("commit {k}"), "authors": [{"user": if k == 0 && i > 0 { "mallory" } else { "alice" }}], "date": "2026-01-01T00:00:00.000Z"}))
                    .collect();
                return tiny_http::Response::from_string(Value::Array(list).to_string())
                    .with_header(h("Content-Type", "application/json"));
            }
        }
        let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
        if parts.len() == 5 && parts[2] == "resolve" {
            let Some(c) = at(parts[3]) else {
                return tiny_http::Response::from_string("no").with_status_code(404);
            };
            let Some((_, data)) = c.1.iter().find(|(n, _)| n == parts[4]).cloned() else {
                return tiny_http::Response::from_string("Entry not found").with_status_code(404);
            };
            use sha2::Digest;
            let etag: String = sha2::Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let range = req
                .headers()
                .iter()
                .find(|x| x.field.equiv("Range"))
                .map(|x| x.value.as_str().to_string());
            let probe = range.as_deref() == Some("bytes=0-0");
            let full = data.len();
            let body = if probe {
                data[..1].to_vec()
            } else {
                data.clone()
            };
            let end = if probe { 0 } else { full - 1 };
            let n = body.len();
            return tiny_http::Response::new(
                tiny_http::StatusCode(if range.is_some() { 206 } else { 200 }),
                vec![
                    h("ETag", &format!("\"{etag}\"")),
                    h("X-Repo-Commit", &c.0),
                    h("Content-Range", &format!("bytes 0-{end}/{full}")),
                    h("Connection", "close"),
                ],
                std::io::Cursor::new(body),
                Some(n),
                None,
            );
        }
        tiny_http::Response::from_string("unknown").with_status_code(404)
    }
}

/// A webhook receiver: every POST's body and whether its signature verified.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(&self, secret: &'static str) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", server.server_addr().to_ip().unwrap());
        let me = self.clone();
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                let sig = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Probity-Signature"))
                    .map(|h| h.value.as_str().to_string())
                    .unwrap_or_default();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                let check = probity_server::alerts::verify(secret, &sig, &body, now);
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                me.got.lock().unwrap().push((v, check));
                let _ = req.respond(tiny_http::Response::from_string("ok"));
            }
        });
        url
    }
    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

fn hub_env(c: &mut Command, hub: &str, home: &Path) {
    c.env("HF_ENDPOINT", hub)
        .env("HF_HUB_CACHE", home.join("hf-cache"))
        .env("HF_HOME", home.join("hf-home"))
        .env_remove("HF_TOKEN");
}

#[test]
fn a_new_commit_on_a_watched_repository_triggers_one_scan_and_one_signed_alert() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let admin = token(&data, "ops", "admin");
    let hub = Hub::default();
    hub.push(1.0);
    let hub_url = hub.start();
    let rx = Receiver::default();
    let hook = rx.start("s3cret");
    let mut c = Command::new(exe());
    c.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--min-watch-interval",
        "1",
        "--data",
    ])
    .arg(&data)
    .current_dir(d.path())
    .stdout(Stdio::piped());
    hub_env(&mut c, &hub_url, d.path());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    let s = Server {
        addr: url.trim_start_matches("http://").into(),
        url: url.clone(),
        child,
    };

    let (st, v) = post(
        &format!("{url}/v1/watches"),
        Some(&admin),
        json!({"source": "hf://acme/watched", "interval_seconds": 1, "webhooks": [{"url": hook, "secret": "s3cret"}]}).to_string().as_bytes(),
        &[],
    );
    assert_eq!(st, 201, "{v}");
    let wid = v["id"].as_str().unwrap().to_string();
    let (st, _) = post(
        &format!("{url}/v1/watches"),
        Some(&admin),
        br#"{"source": "/etc"}"#,
        &[],
    );
    assert_eq!(st, 400);
    // the first version: scanned once, clean, no alert
    // the watch's scans: each of a pinned commit
    let scans_of = || {
        let (_, p) = get(&format!("{url}/v1/scans"), Some(&admin));
        let all = p["items"].as_array().unwrap().clone();
        for j in &all {
            assert!(
                j["source"]
                    .as_str()
                    .unwrap()
                    .starts_with("hf://acme/watched@"),
                "{j}"
            );
        }
        all
    };
    let t0 = Instant::now();
    while !(scans_of().len() == 1 && scans_of()[0]["status"] == "done") {
        assert!(t0.elapsed() < Duration::from_secs(120), "{:?}", scans_of());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(scans_of()[0]["verdict"], "clean", "{:?}", scans_of());
    // several polls of an unchanged repository: one listing request each, no scan
    let before = *hub.listings.lock().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(*hub.listings.lock().unwrap() >= before + 2);
    assert_eq!(scans_of().len(), 1);
    assert_eq!(rx.count(), 0);
    // new weights under main
    hub.push(2.0);
    let t0 = Instant::now();
    while rx.count() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no alert; scans {:?}",
            scans_of()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(scans_of().len(), 2, "{:?}", scans_of());
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let (payload, check) = &got[0];
    assert_eq!(check, &Ok(()), "{payload}");
    assert_eq!(payload["type"], "probity.alert");
    assert_eq!(payload["source"], "hf://acme/watched");
    assert_eq!(payload["watch_id"], wid.as_str());
    let codes: Vec<&str> = payload["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    assert!(
        codes.contains(&"weights-changed-under-same-tag"),
        "{payload}"
    );
    assert!(codes.contains(&"chat-template-changed"), "{payload}");
    assert!(
        payload["upstream"]["commits"]
            .to_string()
            .contains("mallory"),
        "{payload}"
    );
    // the alert and its delivery attempt are recorded
    let (_, alerts) = get(&format!("{url}/v1/alerts"), Some(&admin));
    let a = alerts.as_array().unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["deliveries"][0]["status"], 200);
    let (_, w) = get(&format!("{url}/v1/watches/{wid}"), Some(&admin));
    assert_eq!(w["last_revision"].as_str().unwrap().len(), 40);
    assert_eq!(w["webhooks"][0]["signed"], true);
    assert!(w["webhooks"][0].get("secret").is_none());
    // the ledger has both versions
    let (_, ms) = get(&format!("{url}/v1/models"), Some(&admin));
    let m = ms
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "hf://acme/watched")
        .unwrap()
        .clone();
    assert_eq!(m["records"], 2);
    // deleting the watch
    let r = agent()
        .delete(format!("{url}/v1/watches/{wid}"))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    drop(s);
}

#[test]
fn watch_once_alerts_test_and_failed_deliveries_are_retried_and_recorded() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("state");
    let hub = Hub::default();
    hub.push(1.0);
    let hub_url = hub.start();
    let rx = Receiver::default();
    let hook = rx.start("k");
    let once = |extra: &[&str]| {
        let mut c = Command::new(exe());
        c.args(["watch", "--once", "--format", "json", "--data"])
            .arg(&data)
            .args(extra)
            .current_dir(d.path())
            .env("PROBITY_WEBHOOK_SECRET", "k");
        hub_env(&mut c, &hub_url, d.path());
        c.output().unwrap()
    };
    let o = once(&["hf://acme/watched", "--webhook", &hook]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["changed"], 1);
    assert_eq!(v["scans"].as_array().unwrap().len(), 1);
    // unchanged: nothing to do
    let o = once(&[]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["changed"].as_i64(), v["scans"].as_array().unwrap().len()),
        (Some(0), 0)
    );
    hub.push(3.0);
    let o = once(&[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["alerts"], 1);
    assert_eq!(v["undelivered"], 0);
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.got.lock().unwrap()[0].1, Ok(()));

    // probity alerts test
    let o = Command::new(exe())
        .args(["alerts", "test", &hook, "--secret", "k"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(rx.count(), 2);
    assert_eq!(rx.got.lock().unwrap()[1].0["type"], "probity.alert.test");
    assert_eq!(rx.got.lock().unwrap()[1].1, Ok(()));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/x", l.local_addr().unwrap())
    };
    let o = Command::new(exe())
        .args(["alerts", "test", &dead])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);

    // a webhook that fails: every attempt recorded, retried with backoff
    let store = probity_server::open(&data).unwrap();
    let alert = store
        .add_alert(
            None,
            None,
            "test",
            &json!({"id": "alert_retry", "reasons": []}),
            &[probity_server::store::Webhook {
                url: dead.clone(),
                format: "json".into(),
                secret: None,
            }],
        )
        .unwrap();
    drop(store);
    let o = once(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let store = probity_server::open(&data).unwrap();
    let a = store
        .alerts(10)
        .unwrap()
        .into_iter()
        .find(|a| a.id == alert)
        .unwrap();
    assert!(a.deliveries.len() >= 3, "{:?}", a.deliveries);
    assert!(a.deliveries.iter().all(|x| x.error.is_some()));
    drop(store);
    // a running service holds the data folder: watch --once refuses it
    let s = Server::start(&data, &[]);
    let o = once(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by another probity serve"));
    drop(s);
    let gaps: Vec<i64> = a.deliveries.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "backoff grows: {gaps:?}"
    );
}

#[test]
fn the_dashboard_renders_in_a_headless_browser() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|p| p.join(b))
                .find(|p| p.is_file())
        });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("PROBITY_REQUIRE_BROWSER").is_none(),
            "PROBITY_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED: no chromium (.ci/run installs it and sets PROBITY_REQUIRE_BROWSER=1)");
        return;
    };
    let (d, data, models) = setup();
    let read = token(&data, "viewer", "read");
    let scan = token(&data, "ci", "scan");
    let s = Server::start(&data, &["--allow-root", models.to_str().unwrap()]);
    let id = submit(&s.url, &scan, json!({"source": models.join("bad")}));
    wait(&s.url, &scan, &id);
    // without a token: the sign-in page
    let (st, page) = get(&format!("{}/", s.url), None);
    assert_eq!(st, 200);
    assert!(page.as_str().unwrap().contains("Sign in"));
    // a browser signs in through the form and lands on the models page
    let login = d.path().join("login.html");
    let visit = |target: &str, out: &[&str]| {
        std::fs::write(
            &login,
            format!(
                "<form method=post action=\"{}/login\"><input name=token value=\"{read}\"><input name=next value=\"{target}\"></form><script>document.forms[0].submit()</script>",
                s.url
            ),
        )
        .unwrap();
        let o = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,800",
                "--virtual-time-budget=8000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                d.path().join("profile").display()
            ))
            .args(out)
            .arg(format!("file://{}", login.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dom = visit("/", &["--dump-dom"]);
    let key = models.join("bad").canonicalize().unwrap();
    assert!(dom.contains(key.to_str().unwrap()), "{dom}");
    assert!(dom.contains("class=\"v flagged\""), "{dom}");
    let dom = visit(&format!("/scans/{id}"), &["--dump-dom"]);
    assert!(dom.contains("PKL"), "{dom}");
    // the model's timeline: who scanned it (the token's name), the verdict
    let (_, ms) = get(&format!("{}/v1/models", s.url), Some(&read));
    let mid = ms[0]["id"].as_str().unwrap().to_string();
    let dom = visit(&format!("/models/{mid}"), &["--dump-dom"]);
    assert!(dom.contains("token ci on"), "{dom}");
    assert!(dom.contains("probity-service"), "{dom}");
    let tshot = d.path().join("timeline.png");
    visit(
        &format!("/models/{mid}"),
        &[&format!("--screenshot={}", tshot.display())],
    );
    if let Some(dir) = std::env::var_os("PROBITY_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&tshot, Path::new(&dir).join("dashboard-timeline.png"));
    }
    let shot = d.path().join("models.png");
    visit("/", &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // 1280 x 800, and not a blank page: a compressed blank page is tiny
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1280);
    assert!(png.len() > 20_000, "{} bytes", png.len());
    if let Some(dir) = std::env::var_os("PROBITY_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("dashboard-models.png"));
    }
}

#[cfg(feature = "deep")]
#[test]
fn a_deep_scan_through_the_service_gives_the_local_report() {
    let zoo = root().join("tests/data/zoo-public/models");
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let scan = token(&data, "ci", "scan");
    let s = Server::start(&data, &[]);
    let run = |server: bool| {
        let mut c = Command::new(exe());
        c.args([
            "deep",
            "backdoor-1",
            "--base",
            "base",
            "--format",
            "json",
            "--budget",
            "300",
            "--fail-fast",
        ])
        .current_dir(&zoo)
        .env_remove("PROBITY_LEDGER");
        if server {
            c.args(["--server", &s.url, "--token", &scan]);
        }
        c.output().unwrap()
    };
    let (local, remote) = (run(false), run(true));
    assert_eq!(
        remote.status.code(),
        local.status.code(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    let (l, r): (Value, Value) = (
        serde_json::from_slice(&local.stdout).unwrap(),
        serde_json::from_slice(&remote.stdout).unwrap(),
    );
    for k in [
        "schema", "score", "verdict", "trigger", "target", "suspect", "base", "evidence",
    ] {
        assert_eq!(l[k], r[k], "{k}");
    }
    assert_eq!(l["signals"]["behavior"], r["signals"]["behavior"]);
    // --fail-fast reached the service's scan (the search's options are
    // reported with the flag)
    assert_eq!(l["signals"]["trigger"]["fitted"]["fail_fast"], true);
    assert_eq!(
        l["signals"]["trigger"]["fitted"],
        r["signals"]["trigger"]["fitted"]
    );
    // the service recorded it in its ledger
    let (_, ms) = get(&format!("{}/v1/models", s.url), Some(&scan));
    assert!(ms.to_string().contains("backdoor-1"), "{ms}");
    // a deep scan needs a base; --device and friends are local only
    let o = Command::new(exe())
        .args([
            "deep",
            "backdoor-1",
            "--base",
            "base",
            "--ledger",
            "x.db",
            "--server",
            &s.url,
            "--token",
            &scan,
        ])
        .current_dir(&zoo)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--ledger does not apply"));
}
