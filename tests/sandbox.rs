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
