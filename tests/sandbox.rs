//! The restricted worker, proven from the inside through its self-test
//! requests: it cannot open a socket, cannot write outside its temporary
//! folder, cannot read outside the model folders, is killed at its memory and
//! time limits, sees no credentials, and the parent survives its crashes.
//!
//! Where the kernel lacks a primitive, the worker must say so in its isolation
//! report; the restriction tests then check the report instead.
#![cfg(feature = "deep")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use probity_deep::harness::protocol::{Probe, Request, Response};
use probity_deep::harness::sandbox::Policy;
use probity_deep::harness::{HarnessError, Worker};

struct Setup {
    _dir: tempfile::TempDir,
    model: PathBuf,
    temp: PathBuf,
    outside: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let temp = dir.path().join("tmp");
    let outside = dir.path().join("outside");
    for d in [&model, &temp, &outside] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
    Setup {
        _dir: dir,
        model,
        temp,
        outside,
    }
}

fn policy(s: &Setup) -> Policy {
    Policy {
        read_only: vec![s.model.clone()],
        temp_dir: s.temp.clone(),
        memory_bytes: 512 << 20,
        cpu_seconds: 2,
        max_file_bytes: 16 << 20,
        device: probity_deep::harness::sandbox::DeviceKind::Cpu,
    }
}

fn start(s: &Setup) -> Worker {
    Worker::start(
        Path::new(env!("CARGO_BIN_EXE_probity")),
        policy(s),
        Duration::from_secs(20),
    )
    .expect("worker starts")
}

fn probe(w: &mut Worker, p: Probe) -> (bool, String) {
    match w.call(&Request::SelfTest(p)).expect("worker answers") {
        Response::Probe { succeeded, detail } => (succeeded, detail),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn isolation_is_reported_and_applied_here() {
    let s = setup();
    let w = start(&s);
    let iso = w.isolation.clone();
    eprintln!("isolation: {iso:#?}");
    // Every primitive is available on the development and CI machines
    // (landlock ABI 7, seccomp, namespaces, rlimits): a regression that stops
    // applying one must fail here. On a kernel that lacks one, set
    // PROBITY_ALLOW_PARTIAL_SANDBOX=1; the report must still name it.
    if std::env::var_os("PROBITY_ALLOW_PARTIAL_SANDBOX").is_none() {
        assert!(
            iso.missing().is_empty(),
            "primitives not applied: {:?}",
            iso.missing()
        );
    } else {
        for m in iso.missing() {
            assert!(
                m.contains(':') && m.len() > 20,
                "a missing primitive says why: {m}"
            );
        }
    }
    w.shutdown().unwrap();
}

#[test]
fn no_network() {
    let s = setup();
    let mut w = start(&s);
    // a listener in the parent, on loopback: the worker must not reach it
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (ok, detail) = probe(&mut w, Probe::Connect(addr));
    assert!(!ok, "connected: {detail}");
    let (ok, detail) = probe(&mut w, Probe::Socket("inet".into()));
    if w.isolation.seccomp.applied {
        assert!(!ok, "AF_INET socket created: {detail}");
    }
    let (ok, _) = probe(&mut w, Probe::Socket("inet6".into()));
    assert!(!ok || !w.isolation.seccomp.applied);
    let (ok, detail) = probe(&mut w, Probe::Socket("unix".into()));
    assert!(ok, "Unix sockets stay available: {detail}");
    w.shutdown().unwrap();
}

#[test]
fn filesystem_is_confined() {
    let s = setup();
    let mut w = start(&s);
    let landlock = w.isolation.landlock_filesystem.applied;
    let (ok, d) = probe(&mut w, Probe::Write(s.temp.join("scratch.bin")));
    assert!(ok, "the private temp dir is writable: {d}");
    let (ok, d) = probe(&mut w, Probe::Read(s.model.join("config.json")));
    assert!(ok, "the model folder is readable: {d}");
    if landlock {
        let (ok, d) = probe(&mut w, Probe::Write(s.outside.join("x")));
        assert!(!ok, "wrote outside the temp dir: {d}");
        let (ok, d) = probe(&mut w, Probe::Write(s.model.join("tampered")));
        assert!(!ok, "wrote into the read-only model folder: {d}");
        let (ok, d) = probe(&mut w, Probe::Read(s.outside.join("secret.txt")));
        assert!(!ok, "read outside the model folders: {d}");
        let (ok, d) = probe(&mut w, Probe::Read(PathBuf::from("/etc/hostname")));
        assert!(!ok, "read /etc/hostname: {d}");
    } else {
        eprintln!(
            "landlock not applied here: {}",
            w.isolation.landlock_filesystem.detail
        );
    }
    w.shutdown().unwrap();
}

#[test]
fn no_credentials_reach_the_worker() {
    let s = setup();
    std::env::set_var("HF_TOKEN", "hf_should_not_leak");
    let mut w = start(&s);
    let (_, names) = probe(&mut w, Probe::Environment);
    assert!(!names.contains("HF_TOKEN"), "{names}");
    // cleared: only the thread count the parent sets survives
    assert_eq!(names, "RAYON_NUM_THREADS", "the environment is cleared");
    w.shutdown().unwrap();
}

#[test]
fn killed_at_memory_limit_and_parent_survives() {
    let s = setup();
    let mut w = start(&s);
    let r = w.call(&Request::SelfTest(Probe::Allocate(2 << 30)));
    match r {
        Err(HarnessError::Crashed(why)) => {
            assert!(why.contains("signal") || why.contains("code"), "{why}")
        }
        other => panic!("2 GiB allocation under a 512 MiB limit must kill the worker: {other:?}"),
    }
    // the parent carries on: a fresh worker works
    let mut w2 = start(&s);
    let (ok, _) = probe(&mut w2, Probe::Allocate(16 << 20));
    assert!(ok);
    w2.shutdown().unwrap();
}

#[test]
fn killed_at_cpu_limit() {
    let s = setup();
    let mut w = start(&s);
    match w.call(&Request::SelfTest(Probe::Spin(10))) {
        Err(HarnessError::Crashed(why)) => {
            assert!(why.contains("SIGXCPU") || why.contains("SIGKILL"), "{why}")
        }
        other => panic!("spinning past a 2 s CPU limit must kill the worker: {other:?}"),
    }
}

#[test]
fn killed_at_wall_clock_limit() {
    let s = setup();
    let mut w = Worker::start(
        Path::new(env!("CARGO_BIN_EXE_probity")),
        policy(&s),
        Duration::from_secs(2),
    )
    .unwrap();
    match w.call(&Request::SelfTest(Probe::Sleep(30))) {
        Err(HarnessError::Timeout(d)) => assert_eq!(d, Duration::from_secs(2)),
        other => panic!("sleeping past the wall clock must time out: {other:?}"),
    }
}

#[test]
fn crash_is_reported() {
    let s = setup();
    let mut w = start(&s);
    match w.call(&Request::SelfTest(Probe::Crash)) {
        Err(HarnessError::Crashed(why)) => assert!(why.contains("SIGABRT"), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------
// The adversarial suite: what a hostile model (or a compromised worker)
// would try. Each attack must fail closed, with a clear outcome, and leave
// the parent able to start a fresh worker.

fn fresh_worker_works(s: &Setup) {
    let mut w = start(s);
    let (ok, d) = probe(&mut w, Probe::Read(s.model.join("config.json")));
    assert!(ok, "a fresh worker after the attack: {d}");
    w.shutdown().unwrap();
}

#[test]
fn fork_bomb_is_refused() {
    let s = setup();
    let mut w = start(&s);
    let (ok, d) = probe(&mut w, Probe::Fork(10_000));
    eprintln!("fork bomb: {d}");
    if w.isolation.seccomp.applied {
        assert!(!ok, "the worker started processes: {d}");
        assert!(d.starts_with("0 of 10000"), "{d}");
    }
    // threads are still allowed (rayon needs them)
    let (ok, d) = probe(&mut w, Probe::Threads(4));
    assert!(ok, "threads: {d}");
    w.shutdown().unwrap();
    fresh_worker_works(&s);
}

#[test]
fn thread_bomb_is_bounded_by_the_address_space() {
    let s = setup();
    let mut w = start(&s);
    // 2 MiB stacks under a 512 MiB address-space limit: a few hundred at most
    match w.call(&Request::SelfTest(Probe::Threads(100_000))) {
        Ok(Response::Probe { succeeded, detail }) => {
            eprintln!("thread bomb: {detail}");
            assert!(!succeeded, "100,000 threads started: {detail}")
        }
        Err(HarnessError::Crashed(why)) => eprintln!("thread bomb killed the worker: {why}"),
        other => panic!("{other:?}"),
    }
    fresh_worker_works(&s);
}

#[test]
fn other_programs_cannot_be_run() {
    let s = setup();
    let mut w = start(&s);
    let (ok, d) = probe(&mut w, Probe::Exec(PathBuf::from("/bin/true")));
    eprintln!("exec: {d}");
    assert!(!ok, "exec /bin/true: {d}");
    // and the worker is still the worker
    let (ok, d) = probe(&mut w, Probe::Read(s.model.join("config.json")));
    assert!(ok, "{d}");
    w.shutdown().unwrap();
}

#[test]
fn proc_and_links_do_not_reach_outside() {
    let s = setup();
    // a symbolic link planted inside the model folder
    std::os::unix::fs::symlink(s.outside.join("secret.txt"), s.model.join("tokenizer.json"))
        .unwrap();
    std::os::unix::fs::symlink("/etc/hostname", s.model.join("vocab.txt")).unwrap();
    let mut w = start(&s);
    if w.isolation.landlock_filesystem.applied {
        let parent = std::process::id();
        for p in [
            s.model.join("tokenizer.json"),
            s.model.join("vocab.txt"),
            PathBuf::from(format!("/proc/{parent}/environ")),
            PathBuf::from(format!("/proc/{parent}/cmdline")),
            PathBuf::from("/proc/self/mounts"),
            PathBuf::from("/proc/1/environ"),
            s.model.join("../outside/secret.txt"),
        ] {
            let (ok, d) = probe(&mut w, Probe::Read(p.clone()));
            eprintln!("read {}: {d}", p.display());
            assert!(!ok, "read {}: {d}", p.display());
        }
    }
    w.shutdown().unwrap();
    // the parent refuses such folders before a worker starts: a link out of
    // the model folder, and any hard link (which no path rule can see)
    let roots = [s.model.clone()];
    let e = probity_deep::links_stay_inside(&s.model, &roots).unwrap_err();
    assert!(e.contains("symbolic link") && e.contains("outside"), "{e}");
    std::fs::remove_file(s.model.join("tokenizer.json")).unwrap();
    std::fs::remove_file(s.model.join("vocab.txt")).unwrap();
    probity_deep::links_stay_inside(&s.model, &roots).unwrap();
    std::fs::hard_link(s.outside.join("secret.txt"), s.model.join("merges.txt")).unwrap();
    let e = probity_deep::links_stay_inside(&s.model, &roots).unwrap_err();
    assert!(e.contains("hard links"), "{e}");
}

#[test]
fn file_size_limit_stops_a_runaway_writer() {
    let s = setup();
    let mut w = start(&s);
    match w.call(&Request::SelfTest(Probe::WriteLarge(
        s.temp.join("big.bin"),
        64 << 20,
    ))) {
        Ok(Response::Probe { succeeded, detail }) => {
            eprintln!("large write: {detail}");
            assert!(!succeeded, "wrote 64 MiB past a 16 MiB limit: {detail}")
        }
        Err(HarnessError::Crashed(why)) => {
            eprintln!("large write: {why}");
            assert!(why.contains("SIGXFSZ"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let written = std::fs::metadata(s.temp.join("big.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 16 << 20, "{written} bytes written");
    fresh_worker_works(&s);
}

#[test]
fn a_compromised_worker_cannot_confuse_the_parent() {
    let s = setup();
    for kind in ["huge", "json", "short", "type"] {
        let mut w = start(&s);
        let t = std::time::Instant::now();
        match w.call(&Request::SelfTest(Probe::BadFrame(kind.into()))) {
            Err(HarnessError::Crashed(why)) | Err(HarnessError::Protocol(why)) => {
                eprintln!("bad frame {kind}: {why}");
                assert!(
                    why.contains("frame") || why.contains("pipe"),
                    "{kind}: {why}"
                )
            }
            other => panic!("{kind}: a malformed frame was accepted: {other:?}"),
        }
        // the parent neither waits for the worker's 30 s sleep nor trusts it
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{kind}: {:?}",
            t.elapsed()
        );
    }
    fresh_worker_works(&s);
}
