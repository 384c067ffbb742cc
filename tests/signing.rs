//! Model signatures against the real OpenSSF model signing (`model_signing`,
//! model-signing 1.1.1 on PyPI), both ways, in key mode (ECDSA P-256 and
//! P-384): signed by it → verified by `probity verify`; signed by `probity
//! sign` → verified by `model_signing verify key`; every tamper case gives
//! exit 1 naming the file, a garbage signature or key exit 2.
//!
//! Needs model_signing: `.ci/run` installs it (`.ci/requirements-signing.txt`)
//! into `.ci/venv` and exports PROBITY_SIGNING_BIN (the venv's bin folder).
//! The tests fail without it, unless PROBITY_SKIP_SIGNING=1 says so
//! explicitly. Keys are made with `openssl` when it is on PATH, else with the
//! venv's Python `cryptography`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's bin folder holding `model_signing`, or None when the test is
/// explicitly skipped; panics when it is missing otherwise.
fn signing_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("PROBITY_SIGNING_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ci/venv/bin"));
    if dir.join("model_signing").is_file() {
        return Some(dir);
    }
    if std::env::var_os("PROBITY_SKIP_SIGNING").is_some() {
        eprintln!("PROBITY_SKIP_SIGNING set: model signing interoperability test skipped");
        return None;
    }
    panic!(
        "model_signing is needed at {}: python3 -m venv .ci/venv && .ci/venv/bin/pip install -r .ci/requirements-signing.txt (or set PROBITY_SIGNING_BIN, or PROBITY_SKIP_SIGNING=1 to skip)",
        dir.display()
    );
}

fn probity(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(args)
        .output()
        .expect("probity runs")
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[derive(Clone, Copy)]
enum Curve {
    P256,
    P384,
}

/// A private key (PKCS#8 PEM) and its public key (SPKI PEM) in `dir`.
fn keypair(bin: &Path, dir: &Path, name: &str, curve: Curve) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let openssl_curve = match curve {
        Curve::P256 => "P-256",
        Curve::P384 => "P-384",
    };
    let with_openssl = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
        .arg(format!("ec_paramgen_curve:{openssl_curve}"))
        .arg("-out")
        .arg(&key)
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .output()
            .is_ok_and(|o| o.status.success());
    if !with_openssl {
        let py_curve = match curve {
            Curve::P256 => "SECP256R1",
            Curve::P384 => "SECP384R1",
        };
        let script = format!(
            "import sys\n\
from cryptography.hazmat.primitives.asymmetric import ec\n\
from cryptography.hazmat.primitives import serialization as s\n\
k = ec.generate_private_key(ec.{py_curve}())\n\
open(sys.argv[1], 'wb').write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))\n\
open(sys.argv[2], 'wb').write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))\n"
        );
        let o = Command::new(bin.join("python"))
            .arg("-c")
            .arg(script)
            .arg(&key)
            .arg(&public)
            .output()
            .expect("python runs");
        assert!(o.status.success(), "key generation: {:?}", text(&o));
    }
    (key, public)
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A small model folder: a 3 MB weights file in a subfolder, a config, a
/// tokenizer, and git files that both tools leave out by default.
fn make_model(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(m.join("weights")).unwrap();
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::write(m.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(m.join("tokenizer.json"), br#"{"version": "1.0"}"#).unwrap();
    std::fs::write(
        m.join("weights/model.safetensors"),
        noise(3 << 20, 0x9e3779b97f4a7c15),
    )
    .unwrap();
    std::fs::write(m.join(".gitattributes"), b"*.safetensors filter=lfs\n").unwrap();
    std::fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    m
}

fn ms_sign(bin: &Path, model: &Path, key: &Path, sig: &Path) {
    let o = Command::new(bin.join("model_signing"))
        .args([os("sign"), os("key"), model.as_os_str()])
        .args([os("--private_key"), key.as_os_str()])
        .args([os("--signature"), sig.as_os_str()])
        .output()
        .expect("model_signing runs");
    assert!(o.status.success(), "model_signing sign: {:?}", text(&o));
}

fn ms_verify(bin: &Path, model: &Path, public: &Path, sig: &Path, extra: &[&Path]) -> Output {
    let mut c = Command::new(bin.join("model_signing"));
    c.args([os("verify"), os("key"), model.as_os_str()])
        .args([os("--public_key"), public.as_os_str()])
        .args([os("--signature"), sig.as_os_str()]);
    for p in extra {
        c.args([os("--ignore-paths"), p.as_os_str()]);
    }
    c.output().expect("model_signing runs")
}

fn verify(model: &Path, sig: &Path, public: &Path) -> Output {
    probity(&[
        os("verify"),
        model.as_os_str(),
        os("--signature"),
        sig.as_os_str(),
        os("--key"),
        public.as_os_str(),
    ])
}

/// The root digest in a bundle's signed statement.
fn signed_root(sig: &Path) -> String {
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(sig).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    st["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Asserts exit 1 with a stderr line naming `needle`.
fn assert_fails(o: &Output, needle: &str) {
    let (out, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1 ({needle}); stdout {out:?} stderr {err:?}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("probity: ") && l.contains(needle)),
        "no stderr line with {needle:?}: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn model_signing_signs_probity_verifies() {
    let Some(bin) = signing_bin() else { return };
    for curve in [Curve::P256, Curve::P384] {
        let dir = tempfile::tempdir().unwrap();
        let m = make_model(dir.path());
        let (key, public) = keypair(&bin, dir.path(), "signer", curve);
        // the signature beside the model, then inside it (where it leaves
        // itself out)
        let beside = dir.path().join("model.sig");
        let inside = m.join("model.sig");
        for sig in [&beside, &inside] {
            ms_sign(&bin, &m, &key, sig);
            let o = verify(&m, sig, &public);
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(0), "{out} {err}");
            let root = signed_root(sig);
            assert_eq!(out.lines().count(), 1, "{out}");
            assert!(out.contains("3 files"), "{out}");
            assert!(out.contains(&format!("root digest sha256:{root}")), "{out}");
            assert!(
                out.contains(match curve {
                    Curve::P256 => "P-256 key sha256:",
                    Curve::P384 => "P-384 key sha256:",
                }),
                "{out}"
            );
        }
        // the signature beside was made before model.sig existed inside: for
        // it, that file is an added one (model_signing agrees)
        assert_fails(&verify(&m, &beside, &public), "file added: model.sig");
        assert!(!ms_verify(&bin, &m, &public, &beside, &[]).status.success());
        std::fs::rename(&inside, dir.path().join("inside.sig")).unwrap();
        // the same files signed by Probity give the same root digest
        let ours = dir.path().join("ours.sig");
        let o = probity(&[
            os("sign"),
            m.as_os_str(),
            os("--key"),
            key.as_os_str(),
            os("--signature"),
            ours.as_os_str(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        assert_eq!(signed_root(&ours), signed_root(&beside));
    }
}

#[test]
fn probity_signs_model_signing_verifies() {
    let Some(bin) = signing_bin() else { return };
    for curve in [Curve::P256, Curve::P384] {
        let dir = tempfile::tempdir().unwrap();
        let m = make_model(dir.path());
        std::fs::write(m.join("README.md"), b"# notes, not signed\n").unwrap();
        let (key, public) = keypair(&bin, dir.path(), "signer", curve);
        // the default signature path is model.sig in the current directory
        let o = Command::new(env!("CARGO_BIN_EXE_probity"))
            .current_dir(&m)
            .args([os("sign"), os("."), os("--key"), key.as_os_str()])
            .args(["--ignore-paths", "README.md"])
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out} {err}");
        assert!(out.starts_with("signed .: 3 files"), "{out}");
        let sig = m.join("model.sig");
        assert!(sig.is_file());
        // model_signing's CLI reads --ignore-paths relative to the current
        // directory: pass it the absolute path
        let o = ms_verify(&bin, &m, &public, &sig, &[&m.join("README.md")]);
        assert!(o.status.success(), "model_signing verify: {:?}", text(&o));
        assert!(text(&o).0.contains("Verification succeeded"));
        // Probity reads the ignored paths from the signature
        let o = verify(&m, &sig, &public);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

        // and model_signing refuses what Probity refuses: a changed byte
        let w = m.join("weights/model.safetensors");
        let mut bytes = std::fs::read(&w).unwrap();
        bytes[1 << 20] ^= 0x01;
        std::fs::write(&w, &bytes).unwrap();
        let o = ms_verify(&bin, &m, &public, &sig, &[&m.join("README.md")]);
        assert!(!o.status.success(), "model_signing accepted a changed byte");
        assert_fails(
            &verify(&m, &sig, &public),
            "file changed: weights/model.safetensors",
        );
    }
}

#[test]
fn tampering_is_exit_1_naming_the_file() {
    let Some(bin) = signing_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = make_model(dir.path());
    let (key, public) = keypair(&bin, dir.path(), "signer", Curve::P256);
    let (_, other_public) = keypair(&bin, dir.path(), "other", Curve::P256);
    let sig = dir.path().join("model.sig");
    ms_sign(&bin, &m, &key, &sig);
    assert_eq!(verify(&m, &sig, &public).status.code(), Some(0));

    // a changed byte in the 3 MB file
    let w = m.join("weights/model.safetensors");
    let original = std::fs::read(&w).unwrap();
    let mut bytes = original.clone();
    bytes[2_000_001] ^= 0x80;
    std::fs::write(&w, &bytes).unwrap();
    assert_fails(
        &verify(&m, &sig, &public),
        "file changed: weights/model.safetensors",
    );
    std::fs::write(&w, &original).unwrap();

    // an added file
    std::fs::write(m.join("weights/extra.py"), b"import os\n").unwrap();
    assert_fails(&verify(&m, &sig, &public), "file added: weights/extra.py");
    std::fs::remove_file(m.join("weights/extra.py")).unwrap();

    // a removed file
    let cfg = std::fs::read(m.join("config.json")).unwrap();
    std::fs::remove_file(m.join("config.json")).unwrap();
    assert_fails(&verify(&m, &sig, &public), "file removed: config.json");

    // a renamed file
    std::fs::write(m.join("config2.json"), &cfg).unwrap();
    assert_fails(
        &verify(&m, &sig, &public),
        "file renamed: config.json -> config2.json",
    );
    std::fs::rename(m.join("config2.json"), m.join("config.json")).unwrap();
    assert_eq!(verify(&m, &sig, &public).status.code(), Some(0));

    // a signed file hidden with --ignore-paths
    let o = probity(&[
        os("verify"),
        m.as_os_str(),
        os("--signature"),
        sig.as_os_str(),
        os("--key"),
        public.as_os_str(),
        os("--ignore-paths"),
        os("tokenizer.json"),
    ]);
    assert_fails(&o, "file ignored but signed: tokenizer.json");

    // the wrong key
    assert_fails(&verify(&m, &sig, &other_public), "wrong key");

    // the signed statement altered (a digest swapped in the payload)
    let mut b: serde_json::Value = serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let altered = String::from_utf8(payload)
        .unwrap()
        .replace("\"name\": \"model\"", "\"name\": \"mode1\"");
    b["dsseEnvelope"]["payload"] = b64.encode(altered).into();
    let forged = dir.path().join("forged.sig");
    std::fs::write(&forged, serde_json::to_vec(&b).unwrap()).unwrap();
    assert_fails(&verify(&m, &forged, &public), "does not verify");
}

#[test]
fn garbage_is_exit_2_with_one_line() {
    let Some(bin) = signing_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = make_model(dir.path());
    let (key, public) = keypair(&bin, dir.path(), "signer", Curve::P256);
    let good = dir.path().join("good.sig");
    ms_sign(&bin, &m, &key, &good);
    let good_text = std::fs::read_to_string(&good).unwrap();
    let bad = dir.path().join("bad.sig");
    // model_signing writes compact JSON
    assert!(good_text.contains("\"payload\":\""), "{good_text}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("binary", b"\x00\xffnot json at all".to_vec()),
        (
            "truncated",
            good_text.as_bytes()[..good_text.len() / 2].to_vec(),
        ),
        (
            "no material",
            br#"{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}"#.to_vec(),
        ),
        (
            "unknown media type",
            good_text
                .replace("bundle.v0.3+json", "bundle.v9+json")
                .into_bytes(),
        ),
        (
            "bad base64 payload",
            good_text
                .replace("\"payload\":\"", "\"payload\":\"!!")
                .into_bytes(),
        ),
        (
            "no signature",
            good_text
                .replace("\"signatures\":[{", "\"signatures\":[],\"x\":[{")
                .into_bytes(),
        ),
    ];
    for (what, case) in cases {
        std::fs::write(&bad, &case).unwrap();
        let o = verify(&m, &bad, &public);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {out} {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("probity: {}: ", bad.display())),
            "{err}"
        );
    }
    // an unreadable or garbage key
    let garbage_key = dir.path().join("garbage.pub");
    std::fs::write(
        &garbage_key,
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    for k in [garbage_key, dir.path().join("missing.pub")] {
        let o = verify(&m, &good, &k);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with(&format!("probity: {}: ", k.display())),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // a private key that is not one
    let o = probity(&[
        os("sign"),
        m.as_os_str(),
        os("--key"),
        public.as_os_str(),
        os("--signature"),
        bad.as_os_str(),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!("probity: {}: ", public.display())),
        "{err}"
    );
    // a missing model
    let o = verify(&dir.path().join("nope"), &good, &public);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
}

/// Certificates made with the venv's Python `cryptography`: a CA, a second
/// unrelated CA, a code-signing certificate issued by the first (with its
/// key), one that has expired, and one only for TLS servers.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    key: PathBuf,
    leaf: PathBuf,
    expired: PathBuf,
    server_only: PathBuf,
}

fn make_pki(bin: &Path, dir: &Path) -> Pki {
    let script = r#"
import sys, datetime
from pathlib import Path
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
d = Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn): return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
def pem(c): return c.public_bytes(s.Encoding.PEM)
def ca(cn):
    k = ec.generate_private_key(ec.SECP384R1())
    c = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
         .public_key(k.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
             data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
             encipher_only=False, decipher_only=False), critical=True)
         .sign(k, hashes.SHA384()))
    return k, c
ca_key, ca_cert = ca("Probity Test CA")
_, other = ca("Someone Else CA")
leaf_key = ec.generate_private_key(ec.SECP256R1())
def leaf(cn, start, end, server_only=False):
    b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
         .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if server_only:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
             data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
             encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(ca_key, hashes.SHA384())
(d / "ca.crt").write_bytes(pem(ca_cert))
(d / "other-ca.crt").write_bytes(pem(other))
(d / "leaf.pem").write_bytes(leaf_key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
(d / "leaf.crt").write_bytes(pem(leaf("model publisher", now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7))))
(d / "expired.crt").write_bytes(pem(leaf("model publisher (expired)", now - datetime.timedelta(days=20), now - datetime.timedelta(days=10))))
(d / "server.crt").write_bytes(pem(leaf("tls server", now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7), True)))
"#;
    let o = Command::new(bin.join("python"))
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python runs");
    assert!(o.status.success(), "certificate generation: {:?}", text(&o));
    Pki {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other-ca.crt"),
        key: dir.join("leaf.pem"),
        leaf: dir.join("leaf.crt"),
        expired: dir.join("expired.crt"),
        server_only: dir.join("server.crt"),
    }
}

fn probity_sign_cert(m: &Path, pki: &Pki, cert: &Path, sig: &Path) -> Output {
    probity(&[
        os("sign"),
        m.as_os_str(),
        os("--key"),
        pki.key.as_os_str(),
        os("--certificate"),
        cert.as_os_str(),
        os("--certificate-chain"),
        pki.ca.as_os_str(),
        os("--signature"),
        sig.as_os_str(),
    ])
}

fn verify_cert(m: &Path, sig: &Path, ca: &Path) -> Output {
    probity(&[
        os("verify"),
        m.as_os_str(),
        os("--signature"),
        sig.as_os_str(),
        os("--certificate-chain"),
        ca.as_os_str(),
    ])
}

#[test]
fn certificate_mode_both_ways() {
    let Some(bin) = signing_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = make_model(dir.path());
    let pki = make_pki(&bin, dir.path());

    // model_signing signs with the certificate → Probity verifies
    let theirs = dir.path().join("theirs.sig");
    let o = Command::new(bin.join("model_signing"))
        .args([os("sign"), os("certificate"), m.as_os_str()])
        .args([os("--private_key"), pki.key.as_os_str()])
        .args([os("--signing_certificate"), pki.leaf.as_os_str()])
        .args([os("--certificate_chain"), pki.ca.as_os_str()])
        .args([os("--signature"), theirs.as_os_str()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "model_signing sign certificate: {:?}",
        text(&o)
    );
    let o = verify_cert(&m, &theirs, &pki.ca);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    assert!(out.contains("3 files"), "{out}");
    assert!(out.contains("certificate \"CN=model publisher\""), "{out}");
    assert!(out.contains(&signed_root(&theirs)), "{out}");

    // Probity signs with the certificate → model_signing verifies
    let ours = dir.path().join("ours.sig");
    let o = probity_sign_cert(&m, &pki, &pki.leaf, &ours);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = Command::new(bin.join("model_signing"))
        .args([os("verify"), os("certificate"), m.as_os_str()])
        .args([os("--signature"), ours.as_os_str()])
        .args([os("--certificate_chain"), pki.ca.as_os_str()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "model_signing verify certificate: {:?}",
        text(&o)
    );
    assert_eq!(verify_cert(&m, &ours, &pki.ca).status.code(), Some(0));
    assert_eq!(signed_root(&ours), signed_root(&theirs));

    // a certificate chain that does not lead to the trusted CA
    assert_fails(
        &verify_cert(&m, &theirs, &pki.other_ca),
        "does not chain to a trusted certificate",
    );
    // an expired signing certificate
    let expired = dir.path().join("expired.sig");
    let o = probity_sign_cert(&m, &pki, &pki.expired, &expired);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_fails(&verify_cert(&m, &expired, &pki.ca), "has expired");
    // a certificate that may not sign code
    let server = dir.path().join("server.sig");
    let o = probity_sign_cert(&m, &pki, &pki.server_only, &server);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_fails(
        &verify_cert(&m, &server, &pki.ca),
        "extended key usage does not allow code signing",
    );
    // a changed file under a valid certificate signature
    std::fs::write(m.join("config.json"), br#"{"model_type": "evil"}"#).unwrap();
    assert_fails(
        &verify_cert(&m, &theirs, &pki.ca),
        "file changed: config.json",
    );

    // the modes do not mix
    let (_, public) = keypair(&bin, dir.path(), "k", Curve::P256);
    assert_fails(&verify(&m, &theirs, &public), "--certificate-chain");
    // a certificate whose key is not --key's is refused at signing (exit 2)
    let (other_key, _) = keypair(&bin, dir.path(), "other", Curve::P256);
    let o = probity(&[
        os("sign"),
        m.as_os_str(),
        os("--key"),
        other_key.as_os_str(),
        os("--certificate"),
        pki.leaf.as_os_str(),
        os("--signature"),
        dir.path().join("x.sig").as_os_str(),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not the one paired with --key"), "{err}");
    // a garbage trusted-certificate file is exit 2
    let o = verify_cert(&m, &theirs, &public);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
}

#[test]
fn single_file_model_both_ways() {
    let Some(bin) = signing_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    std::fs::write(&file, noise(1 << 20, 7)).unwrap();
    let (key, public) = keypair(&bin, dir.path(), "signer", Curve::P256);
    // model_signing names the one resource "."
    let theirs = dir.path().join("theirs.sig");
    ms_sign(&bin, &file, &key, &theirs);
    let o = verify(&file, &theirs, &public);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("1 files"));
    let ours = dir.path().join("ours.sig");
    let o = probity(&[
        os("sign"),
        file.as_os_str(),
        os("--key"),
        key.as_os_str(),
        os("--signature"),
        ours.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(signed_root(&ours), signed_root(&theirs));
    let o = ms_verify(&bin, &file, &public, &ours, &[]);
    assert!(o.status.success(), "model_signing verify: {:?}", text(&o));
    // one changed byte
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[12345] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert_fails(&verify(&file, &ours, &public), "file changed: .");
}

/// Signatures made by released model_signing versions (1.0.0, 1.0.1,
/// 1.1.0), vendored in tests/data/model-signing: no Python needed.
#[test]
fn model_signing_release_vectors() {
    let d = root().join("tests/data/model-signing");
    let key = d.join("keys/signing-key-pub.pem");
    for (model, sig) in [
        (
            "v1.0.0-elliptic-key/signme-1",
            "v1.0.0-elliptic-key/model.sig",
        ),
        ("v1.0.1-elliptic-key", "v1.0.1-elliptic-key/model.sig"),
        ("v1.1.0-elliptic-key", "v1.1.0-elliptic-key/model.sig"),
    ] {
        let o = probity(&[
            os("verify"),
            d.join(model).as_os_str(),
            os("--signature"),
            d.join(sig).as_os_str(),
            os("--key"),
            key.as_os_str(),
            os("--ignore-paths"),
            os("ignore-me"),
        ]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{model}: {out} {err}");
        assert!(out.contains("signed by P-384 key sha256:c1e49d63327f85c7e2971aefd30b5a0d1c6b9b5e1a892e7f5fba995adace816d"), "{out}");
    }
    // 1.1.0 records `ignore-me` as ignored in the signature itself
    let o = verify(
        &d.join("v1.1.0-elliptic-key"),
        &d.join("v1.1.0-elliptic-key/model.sig"),
        &key,
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // 1.0.1 does not: there, the unsigned file is an added one
    assert_fails(
        &verify(
            &d.join("v1.0.1-elliptic-key"),
            &d.join("v1.0.1-elliptic-key/model.sig"),
            &key,
        ),
        "file added: ignore-me",
    );
    // the certificate vector: its signing certificate is a CA certificate
    let o = verify_cert(
        &d.join("v1.1.0-certificate"),
        &d.join("v1.1.0-certificate/model.sig"),
        &d.join("keys/ca-cert.pem"),
    );
    assert_fails(&o, "is a CA certificate");
    // a keyless signature checked with a key: named as keyless
    let sig = d.join("v1.1.0-sigstore/model.sig");
    assert_fails(
        &verify(&d.join("v1.1.0-sigstore"), &sig, &key),
        "keyless Sigstore one",
    );
}

fn verify_keyless(m: &Path, sig: &Path, identity: &str, issuer: &str) -> Output {
    probity(&[
        os("verify"),
        m.as_os_str(),
        os("--signature"),
        sig.as_os_str(),
        os("--identity"),
        os(identity),
        os("--issuer"),
        os(issuer),
    ])
}

/// A real keyless signature by model_signing 1.1.0 (Sigstore public good,
/// Fulcio certificate and Rekor entry), checked offline against the trusted
/// root built into Probity.
#[test]
fn keyless_release_vector() {
    let src = root().join("tests/data/model-signing/v1.1.0-sigstore");
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("v1.1.0-sigstore");
    std::fs::create_dir(&m).unwrap();
    for f in ["signme-1", "signme-2", "ignore-me", "model.sig"] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    let sig = m.join("model.sig");
    let (id, issuer) = (
        "stefanb@us.ibm.com",
        "https://sigstore.verify.ibm.com/oauth2",
    );
    let o = verify_keyless(&m, &sig, id, issuer);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out} {err}");
    assert!(out.contains("2 files"), "{out}");
    assert!(
        out.contains("signed by Sigstore identity stefanb@us.ibm.com (issuer https://sigstore.verify.ibm.com/oauth2), logged in Rekor at 2025-10-10"),
        "{out}"
    );
    // another identity, another issuer
    assert_fails(
        &verify_keyless(&m, &sig, "someone@example.com", issuer),
        "identity mismatch",
    );
    assert_fails(
        &verify_keyless(&m, &sig, id, "https://accounts.google.com"),
        "issuer mismatch",
    );
    // a changed byte in a signed file
    std::fs::write(m.join("signme-2"), b"changed\n").unwrap();
    assert_fails(
        &verify_keyless(&m, &sig, id, issuer),
        "file changed: signme-2",
    );
    std::fs::copy(src.join("signme-2"), m.join("signme-2")).unwrap();
    // the Rekor entry removed: the signature is not keyless any more and
    // fails as a certificate-mode one without trusted certificates
    let mut b: serde_json::Value = serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
    b["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    let stripped = dir.path().join("stripped.sig");
    std::fs::write(&stripped, serde_json::to_vec(&b).unwrap()).unwrap();
    let o = verify_keyless(&m, &stripped, id, issuer);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
}

/// Symbolic links: refused by default on both sides; with --allow-symlinks
/// (`--allow_symlinks`) the link is signed under its own name with its
/// target's content, and each tool verifies the other's signature.
#[test]
fn symlinks_both_ways() {
    let Some(bin) = signing_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = make_model(dir.path());
    std::fs::create_dir(dir.path().join("common")).unwrap();
    std::fs::write(dir.path().join("common/vocab.txt"), b"a\nb\n").unwrap();
    std::os::unix::fs::symlink("../common/vocab.txt", m.join("vocab.txt")).unwrap();
    let (key, public) = keypair(&bin, dir.path(), "signer", Curve::P256);
    let sig = dir.path().join("ours.sig");
    let sign = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_probity"));
        c.args([os("sign"), m.as_os_str(), os("--key"), key.as_os_str()])
            .args([os("--signature"), sig.as_os_str()])
            .args(extra);
        c.output().unwrap()
    };
    let o = sign(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("vocab.txt is a symbolic link"), "{err}");
    let o = sign(&["--allow-symlinks"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("4 files"));
    let o = Command::new(bin.join("model_signing"))
        .args([os("verify"), os("key"), m.as_os_str()])
        .args([os("--public_key"), public.as_os_str()])
        .args([os("--signature"), sig.as_os_str(), os("--allow_symlinks")])
        .output()
        .unwrap();
    assert!(o.status.success(), "model_signing verify: {:?}", text(&o));
    let theirs = dir.path().join("theirs.sig");
    let o = Command::new(bin.join("model_signing"))
        .args([os("sign"), os("key"), m.as_os_str()])
        .args([os("--private_key"), key.as_os_str()])
        .args([
            os("--signature"),
            theirs.as_os_str(),
            os("--allow_symlinks"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "model_signing sign: {:?}", text(&o));
    assert_eq!(signed_root(&sig), signed_root(&theirs));
    assert_eq!(verify(&m, &theirs, &public).status.code(), Some(0));
    // the target changed: the link's signed content changed
    std::fs::write(dir.path().join("common/vocab.txt"), b"a\nc\n").unwrap();
    assert_fails(&verify(&m, &theirs, &public), "file changed: vocab.txt");
    // a signature that does not allow links, on a model that has one
    std::fs::remove_file(m.join("vocab.txt")).unwrap();
    let plain = dir.path().join("plain.sig");
    ms_sign(&bin, &m, &key, &plain);
    std::os::unix::fs::symlink("../common/vocab.txt", m.join("vocab.txt")).unwrap();
    assert_fails(&verify(&m, &plain, &public), "vocab.txt is a symbolic link");
}
