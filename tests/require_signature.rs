//! `probity scan --require-signature` and `[provenance]` in probity.toml: a
//! missing signature (SIG001) or one that does not verify against an
//! accepted signer (SIG002) is a critical finding that fails the scan; a
//! verified one is an info finding (SIG003) naming the signer. Uses the
//! vendored model signing release vectors (tests/data/model-signing) and a
//! model signed here by `probity sign`; needs no Python.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A P-256 test key (also in the provenance crate's unit tests) and its
/// public half, fingerprint 5b5e261b….
const KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEILMwDyD2wfGaWBx8sgp8d87/+XqrOMn1/GOweEEjDML5oAoGCCqGSM49
AwEHoUQDQgAEZjuLQLdwd6lYd+bhSFJLm9EODXgapdy7o9au05Haw+Ur3z5MNBvY
RTTYIsZETtS8ZaJcHRHqPWRqCai3LvkJcw==
-----END EC PRIVATE KEY-----
";
const PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZjuLQLdwd6lYd+bhSFJLm9EODXga
pdy7o9au05Haw+Ur3z5MNBvYRTTYIsZETtS8ZaJcHRHqPWRqCai3LvkJcw==
-----END PUBLIC KEY-----
";
const PUB_FP: &str = "5b5e261b2dfbcab05e1d57dceaa903d73722d0671f8d4d854c98d2c626a4fa23";
/// The model signing vectors' P-384 key (keys/signing-key-pub.pem), which
/// also signed the certificate vector's signing certificate.
const VECTOR_FP: &str = "c1e49d63327f85c7e2971aefd30b5a0d1c6b9b5e1a892e7f5fba995adace816d";

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/model-signing")
}

fn probity_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probity"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("probity runs")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The signature findings of a JSON report: (rule, message).
fn sig_findings(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for f in report["files"].as_array().unwrap() {
        for x in f["findings"].as_array().unwrap() {
            let rule = x["rule"].as_str().unwrap();
            if rule.starts_with("SIG") {
                v.push((rule.to_string(), x["message"].as_str().unwrap().to_string()));
            }
        }
    }
    v
}

/// Copies a folder (flat or nested) into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The v1.1.0 key-mode vector in a temporary folder, with the keys beside it.
fn signed_vector() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("model");
    copy_dir(&vectors().join("v1.1.0-elliptic-key"), &m);
    std::fs::copy(
        vectors().join("keys/signing-key-pub.pem"),
        d.path().join("vector.pub"),
    )
    .unwrap();
    std::fs::write(d.path().join("other.pub"), PUB).unwrap();
    (d, m)
}

#[test]
fn a_valid_signature_is_reported_and_passes_the_gate() {
    let (d, _) = signed_vector();
    let o = probity_in(
        d.path(),
        &[
            "scan",
            "model",
            "--require-signature",
            "--key",
            "vector.pub",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report = json(&o);
    // the signature result is a check of the model, not a file: the four
    // files of the folder are counted, not five
    assert_eq!(report["summary"]["files_scanned"], 4, "{report}");
    let f = sig_findings(&report);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "SIG003");
    assert!(
        f[0].1
            .contains(&format!("signed by P-384 key sha256:{VECTOR_FP}")),
        "{f:?}"
    );
    assert!(f[0].1.contains("2 files"), "{f:?}");
}

#[test]
fn tampering_missing_and_wrong_signer_fail_the_scan() {
    let (d, m) = signed_vector();
    // a changed byte: SIG002 naming the file, exit 1 even with a critical-only gate
    let mut b = std::fs::read(m.join("signme-1")).unwrap();
    b[0] ^= 1;
    std::fs::write(m.join("signme-1"), &b).unwrap();
    let args = [
        "scan",
        "model",
        "--require-signature",
        "--key",
        "vector.pub",
        "--format",
        "json",
        "--fail-on",
        "critical",
    ];
    let o = probity_in(d.path(), &args);
    assert_eq!(o.status.code(), Some(1));
    let f = sig_findings(&json(&o));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "SIG002");
    assert!(f[0].1.contains("signme-1"), "{f:?}");
    b[0] ^= 1;
    std::fs::write(m.join("signme-1"), &b).unwrap();
    assert_eq!(probity_in(d.path(), &args).status.code(), Some(0));

    // an added file
    std::fs::write(m.join("extra.bin"), b"x").unwrap();
    let o = probity_in(d.path(), &args);
    assert_eq!(o.status.code(), Some(1));
    let f = sig_findings(&json(&o));
    assert!(f[0].0 == "SIG002" && f[0].1.contains("extra.bin"), "{f:?}");
    std::fs::remove_file(m.join("extra.bin")).unwrap();

    // the wrong key
    let mut wrong = args.to_vec();
    wrong[4] = "other.pub";
    let o = probity_in(d.path(), &wrong);
    assert_eq!(o.status.code(), Some(1));
    let f = sig_findings(&json(&o));
    assert!(f[0].0 == "SIG002" && f[0].1.contains("wrong key"), "{f:?}");

    // two accepted keys: one suffices
    let mut both = wrong.clone();
    both.extend(["--key", "vector.pub"]);
    assert_eq!(probity_in(d.path(), &both).status.code(), Some(0));

    // a garbage signature file is a finding, not a crash
    std::fs::write(m.join("model.sig"), b"{not json").unwrap();
    let o = probity_in(d.path(), &args);
    assert_eq!(o.status.code(), Some(1));
    let f = sig_findings(&json(&o));
    assert!(
        f[0].0 == "SIG002" && f[0].1.contains("not a Sigstore bundle"),
        "{f:?}"
    );

    // no signature
    std::fs::remove_file(m.join("model.sig")).unwrap();
    let o = probity_in(d.path(), &args);
    assert_eq!(o.status.code(), Some(1));
    let f = sig_findings(&json(&o));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, "SIG001");
    assert!(f[0].1.contains("model.sig does not exist"), "{f:?}");

    // without --require-signature the same folder scans as before
    let o = probity_in(d.path(), &["scan", "model", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(sig_findings(&json(&o)).is_empty());
}

#[test]
fn the_policy_in_probity_toml_requires_a_signer_by_key_file_or_fingerprint() {
    let (d, _) = signed_vector();
    // relative key paths are relative to the config file
    std::fs::create_dir(d.path().join("policy")).unwrap();
    std::fs::rename(
        d.path().join("vector.pub"),
        d.path().join("policy/vector.pub"),
    )
    .unwrap();
    std::fs::write(
        d.path().join("policy/probity.toml"),
        "[provenance]\nrequire_signature = true\n[[provenance.signers]]\nkey = \"vector.pub\"\n",
    )
    .unwrap();
    let o = probity_in(
        d.path(),
        &[
            "scan",
            "model",
            "--config",
            "policy/probity.toml",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(sig_findings(&json(&o))[0].0, "SIG003");

    // probity.toml in the current directory, another signer only: fails
    std::fs::write(
        d.path().join("probity.toml"),
        "[provenance]\nrequire_signature = true\n[[provenance.signers]]\nkey = \"other.pub\"\n",
    )
    .unwrap();
    let o = probity_in(d.path(), &["scan", "model", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(sig_findings(&json(&o))[0].0, "SIG002");

    // a fingerprint pins a certificate-mode signature's key, whoever issued
    // the certificate (the vector's signing certificate is a CA one, which
    // a chain check refuses)
    let cert_model = d.path().join("cert-model");
    copy_dir(&vectors().join("v1.1.0-certificate"), &cert_model);
    std::fs::write(
        d.path().join("probity.toml"),
        format!("[provenance]\nrequire_signature = true\n[[provenance.signers]]\nfingerprint = \"sha256:{VECTOR_FP}\"\n"),
    )
    .unwrap();
    let o = probity_in(d.path(), &["scan", "cert-model", "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let f = sig_findings(&json(&o));
    assert_eq!(f[0].0, "SIG003", "{f:?}");
    assert!(f[0].1.contains("certificate"), "{f:?}");
    // …but cannot check a key-mode signature, which carries no key
    let o = probity_in(d.path(), &["scan", "model", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let f = sig_findings(&json(&o));
    assert!(
        f[0].0 == "SIG002" && f[0].1.contains("does not carry"),
        "{f:?}"
    );
    // another fingerprint: refused
    let o = probity_in(
        d.path(),
        &[
            "scan",
            "cert-model",
            "--config",
            "/dev/null",
            "--require-signature",
            "--key-fingerprint",
            PUB_FP,
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let f = sig_findings(&json(&o));
    assert!(
        f[0].0 == "SIG002" && f[0].1.contains("wrong signer"),
        "{f:?}"
    );
    // `probity verify --key-fingerprint` does the same
    let o = probity_in(
        d.path(),
        &[
            "verify",
            "cert-model",
            "--signature",
            "cert-model/model.sig",
            "--key-fingerprint",
            VECTOR_FP,
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn signed_here_single_file_and_custom_signature_names() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("k.pem"), KEY).unwrap();
    std::fs::write(d.path().join("k.pub"), PUB).unwrap();
    std::fs::create_dir(d.path().join("m")).unwrap();
    std::fs::write(
        d.path().join("m/config.json"),
        b"{\"model_type\": \"llama\"}",
    )
    .unwrap();
    // a single file signed as FILE.sig beside it
    std::fs::write(d.path().join("w.bin"), vec![3u8; 4096]).unwrap();
    let s = probity_in(
        d.path(),
        &[
            "sign",
            "w.bin",
            "--key",
            "k.pem",
            "--signature",
            "w.bin.sig",
        ],
    );
    assert_eq!(
        s.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    // a folder signed under a custom name, set in the policy
    let s = probity_in(
        d.path(),
        &[
            "sign",
            "m",
            "--key",
            "k.pem",
            "--signature",
            "m/release.sig",
        ],
    );
    assert_eq!(s.status.code(), Some(0));
    let signed = String::from_utf8_lossy(&s.stdout).into_owned();
    let root = signed
        .split("root digest sha256:")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        d.path().join("probity.toml"),
        "[provenance]\nrequire_signature = true\nsignature = \"release.sig\"\n[[provenance.signers]]\nkey = \"k.pub\"\n",
    )
    .unwrap();
    let o = probity_in(
        d.path(),
        &["scan", "m", "w.bin", "--format", "json", "--ledger", "l.db"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // the ledger's manifest is the signature's: the signature file is left out
    let log = json(&probity_in(
        d.path(),
        &["log", "m", "--ledger", "l.db", "--format", "json"],
    ));
    assert_eq!(log["records"].as_array().unwrap().len(), 1, "{log}");
    let rec = &log["records"][0]["record"];
    assert!(
        rec["model"]["root_digest"]
            .as_str()
            .unwrap()
            .ends_with(&root),
        "{rec} vs {root}"
    );
    assert_eq!(rec["signature"]["status"], "verified");
    let f = sig_findings(&json(&o));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f.iter().all(|(r, m)| r == "SIG003" && m.contains(PUB_FP)),
        "{f:?}"
    );
    // an explicit --signature for one model
    let o = probity_in(
        d.path(),
        &["scan", "m", "--signature", "w.bin.sig", "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(sig_findings(&json(&o))[0].0, "SIG002");
    // the text report names the rule
    std::fs::remove_file(d.path().join("m/release.sig")).unwrap();
    let o = probity_in(d.path(), &["scan", "m", "--color", "never"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("SIG001") && out.contains("release.sig does not exist"),
        "{out}"
    );
}

#[test]
fn bad_signature_policies_are_one_line_exit_2() {
    let (d, _) = signed_vector();
    let one_line = |o: &Output, needle: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.starts_with("probity: ") && err.contains(needle),
            "{err}"
        );
    };
    one_line(
        &probity_in(d.path(), &["scan", "model", "--key", "vector.pub"]),
        "add --require-signature",
    );
    one_line(
        &probity_in(d.path(), &["scan", "model", "--require-signature"]),
        "no accepted signer",
    );
    one_line(
        &probity_in(
            d.path(),
            &[
                "scan",
                "model",
                "--require-signature",
                "--key",
                "missing.pub",
            ],
        ),
        "missing.pub",
    );
    one_line(
        &probity_in(
            d.path(),
            &[
                "scan",
                "model",
                "--require-signature",
                "--key-fingerprint",
                "abc",
            ],
        ),
        "not a SHA-256 fingerprint",
    );
    one_line(
        &probity_in(
            d.path(),
            &[
                "scan",
                "model",
                "model",
                "--require-signature",
                "--key",
                "vector.pub",
                "--signature",
                "model/model.sig",
            ],
        ),
        "one PATH",
    );
    for (toml, needle) in [
        (
            "[provenance]\nrequire_signature = true\n",
            "list the accepted signers",
        ),
        (
            "[provenance]\n[[provenance.signers]]\nkey = \"a.pub\"\nidentity = \"x\"\nissuer = \"y\"\n",
            "exactly one of",
        ),
        (
            "[provenance]\n[[provenance.signers]]\nidentity = \"x\"\n",
            "go together",
        ),
        ("[provenance]\nsignature = \"../x.sig\"\n", "not a file name"),
        ("[provenance]\nrequire = true\n", "unknown field"),
    ] {
        std::fs::write(d.path().join("bad.toml"), toml).unwrap();
        one_line(
            &probity_in(d.path(), &["scan", "model", "--config", "bad.toml"]),
            needle,
        );
    }
}

#[test]
fn the_ledger_records_the_signature_result_of_a_scan() {
    let (d, m) = signed_vector();
    let scan = |extra: &[&str]| {
        let mut a = vec![
            "scan",
            "model",
            "--require-signature",
            "--key",
            "vector.pub",
            "--ledger",
            "l.db",
        ];
        a.extend_from_slice(extra);
        probity_in(d.path(), &a)
    };
    assert_eq!(scan(&[]).status.code(), Some(0));
    std::fs::write(m.join("extra.bin"), b"x").unwrap();
    assert_eq!(scan(&[]).status.code(), Some(1));
    std::fs::remove_file(m.join("model.sig")).unwrap();
    assert_eq!(scan(&[]).status.code(), Some(1));
    let o = probity_in(d.path(), &["log", "--ledger", "l.db", "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 3, "{v}");
    let status: Vec<&str> = recs
        .iter()
        .map(|r| r["record"]["signature"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["verified", "failed", "missing"]);
    // the vector's signer left out `ignore-me`, which the ledger's manifest
    // holds: the signed root digest is recorded beside it
    assert_eq!(
        recs[0]["record"]["signature"]["signed_root_digest"],
        "92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4"
    );
    assert!(recs[0]["record"]["signature"]["signer"]
        .as_str()
        .unwrap()
        .contains(VECTOR_FP));
    assert!(recs[1]["record"]["signature"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("extra.bin"));
    // a scan without the requirement records that nothing was checked
    let o = probity_in(d.path(), &["scan", "model", "--ledger", "l.db"]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&probity_in(
        d.path(),
        &["log", "--ledger", "l.db", "--format", "json"],
    ));
    assert_eq!(
        v["records"][3]["record"]["signature"]["status"],
        "not checked"
    );
}

/// `probity diff ledger:A ledger:B`: two recorded versions compared from the
/// ledger alone (the files may be gone): files by digest, the signature
/// status, new remote code; a broken chain or a missing record is exit 2.
#[test]
fn diff_of_two_ledger_records() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("k.pem"), KEY).unwrap();
    std::fs::write(d.path().join("k.pub"), PUB).unwrap();
    let m = d.path().join("m");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("config.json"), b"{\"model_type\": \"llama\"}").unwrap();
    std::fs::write(m.join("weights.bin"), vec![1u8; 2048]).unwrap();
    let sign = probity_in(
        d.path(),
        &["sign", "m", "--key", "k.pem", "--signature", "m/model.sig"],
    );
    assert_eq!(sign.status.code(), Some(0));
    let scan = || {
        probity_in(
            d.path(),
            &[
                "scan",
                "m",
                "--require-signature",
                "--key",
                "k.pub",
                "--ledger",
                "l.db",
            ],
        )
    };
    assert_eq!(scan().status.code(), Some(0)); // #1: signed
                                               // a new version: changed weights and remote code, not signed again
    std::fs::write(m.join("weights.bin"), vec![2u8; 2048]).unwrap();
    std::fs::write(m.join("modeling_x.py"), b"import os\n").unwrap();
    assert_eq!(scan().status.code(), Some(1)); // #2: signature fails
                                               // the files are gone; the ledger still tells what changed
    std::fs::remove_dir_all(&m).unwrap();
    let o = probity_in(
        d.path(),
        &[
            "diff", "ledger:1", "ledger:2", "--ledger", "l.db", "--format", "json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    let names = |k: &str| -> Vec<String> {
        v["files"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("added"), ["modeling_x.py"]);
    assert_eq!(names("changed"), ["weights.bin"]);
    assert!(names("removed").is_empty());
    let codes: Vec<&str> = v["unexpected_update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["new-remote-code", "new-unsigned-version"], "{v}");
    assert_eq!(v["old"]["signature"]["state"], "verified");
    assert_eq!(v["new"]["signature"]["state"], "invalid");
    assert!(
        v["notes"]
            .to_string()
            .contains("not recorded in the ledger"),
        "{v}"
    );
    // the same record on both sides: no change
    let o = probity_in(
        d.path(),
        &["diff", "ledger:2", "ledger:#2", "--ledger", "l.db"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // bad record numbers and a missing ledger: one line, exit 2
    for (args, needle) in [
        (
            vec!["diff", "ledger:1", "ledger:9", "--ledger", "l.db"],
            "no record #9",
        ),
        (
            vec!["diff", "ledger:1", "ledger:x", "--ledger", "l.db"],
            "not a ledger record number",
        ),
        (
            vec!["diff", "ledger:1", "ledger:2", "--ledger", "none.db"],
            "none.db",
        ),
    ] {
        let o = probity_in(d.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // an edited record breaks the chain: the diff refuses it
    let c = rusqlite::Connection::open(d.path().join("l.db")).unwrap();
    c.execute(
        "UPDATE records SET body = replace(body, 'modeling_x.py', 'modeling_y.py') WHERE seq = 2",
        [],
    )
    .unwrap();
    drop(c);
    let o = probity_in(
        d.path(),
        &["diff", "ledger:1", "ledger:2", "--ledger", "l.db"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("hash chain is broken at record #2"), "{err}");
}
