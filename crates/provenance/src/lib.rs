//! Provenance: model signatures compatible with OpenSSF model signing
//! (`model-signing` 1.x on PyPI).
//!
//! A signature is a Sigstore bundle (media type
//! `application/vnd.dev.sigstore.bundle.v0.3+json`) holding a DSSE envelope
//! over an in-toto Statement v1 (predicate type
//! `https://model_signing/signature/v1.0`) that lists the SHA-256 of every
//! file of the model (predicate `resources`); its single subject carries the
//! root digest, the SHA-256 over the files' digests in canonical order.
//!
//! Key mode (ECDSA P-256 / P-384) is supported for signing and verifying: the
//! bundle's verification material is the key hint model signing writes (the
//! SHA-256 of the public key's PEM text) and no transparency log entry.
//! Certificate mode too: the verification material is the signing
//! certificate and the chain above it, checked against trusted certificates.
//! Keyless signatures (Sigstore public good: Fulcio certificate, Rekor entry)
//! are verified, not made, with `sigstore-verify` against the trusted root
//! built into `sigstore-trust-root`, offline.
//!
//! The bundle and DSSE types (and the DSSE pre-authentication encoding) come
//! from `sigstore-types`; ECDSA from RustCrypto's `p256` / `p384`; X.509
//! parsing from `x509-cert` and chain checks from `rustls-webpki`; keyless
//! checks from `sigstore-verify`; the manifest and statement logic is here.

pub mod certs;
pub mod keys;
pub mod ledger;
pub mod manifest;
pub mod statement;

use std::path::{Path, PathBuf};

use sigstore_types::bundle::{PublicKeyIdentifier, VerificationMaterialContent, X509Certificate};
use sigstore_types::{
    Bundle, DerCertificate, DsseEnvelope, DsseSignature, KeyId, MediaType, PayloadBytes,
    SignatureBytes, SignatureContent, VerificationMaterial,
};

pub use keys::{PrivateKey, PublicKey};
use manifest::{IgnorePath, Manifest, Problem};
use statement::{ParseError, Serialization, PAYLOAD_TYPE};

/// Largest signature file read (a bundle for a million files is ~200 MB).
const MAX_BUNDLE: u64 = 512 << 20;

/// Why signing or verifying did not succeed.
#[derive(Debug)]
pub enum Error {
    /// An input could not be read or is not what it should be: a missing
    /// model, an unreadable or malformed key, a garbage bundle (exit 2).
    Input { path: PathBuf, reason: String },
    /// Verification failed: each line names the reason and, where there is
    /// one, the file (exit 1).
    Failed(Vec<String>),
}

impl Error {
    fn input(path: &Path, reason: impl Into<String>) -> Error {
        Error::Input {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The process exit code: 1 for a failed verification, 2 for an input.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input { .. } => 2,
            Error::Failed(_) => 1,
        }
    }

    /// One line per problem, without the program name.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Error::Input { path, reason } => vec![format!("{}: {reason}", path.display())],
            Error::Failed(l) => l.clone(),
        }
    }
}

/// Reads a PEM private key file.
pub fn read_private_key(path: &Path) -> Result<PrivateKey, Error> {
    let text = read_small_text(path)?;
    PrivateKey::from_pem(&text).map_err(|r| Error::input(path, r))
}

/// Reads a PEM public key file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, Error> {
    let text = read_small_text(path)?;
    PublicKey::from_pem(&text).map_err(|r| Error::input(path, r))
}

/// Reads PEM certificates (DER, in file order) from each file in turn.
pub fn read_certificates(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for p in paths {
        let text = read_small_text(p)?;
        out.extend(certs::pem_certificates(text.as_bytes()).map_err(|r| Error::input(p, r))?);
    }
    Ok(out)
}

/// The certificates a certificate-mode signature carries: the signing
/// certificate (whose key must be `key`'s) then the chain above it.
pub fn read_signing_certificates(
    certificate: &Path,
    chain: &[PathBuf],
    key: &PrivateKey,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut all = read_certificates(&[certificate.to_path_buf()])?;
    all.truncate(1);
    let signer = certs::signer_of(&all[0]).map_err(|r| Error::input(certificate, r))?;
    if signer.public.fingerprint() != key.public().fingerprint() {
        return Err(Error::input(
            certificate,
            "the certificate's public key is not the one paired with --key",
        ));
    }
    all.extend(read_certificates(chain)?);
    Ok(all)
}

/// What a signature is checked against.
pub enum Trust {
    /// Key mode: the public key paired with the signing key.
    Key(PublicKey),
    /// Certificate mode: trusted certificates (DER), roots or intermediates;
    /// the signing certificate must chain to one of them and be valid now.
    Certificates(Vec<Vec<u8>>),
    /// Keyless (Sigstore public good): a Fulcio certificate for `identity`
    /// from the OIDC `issuer`, and its Rekor entry, checked against the
    /// Sigstore trusted root built into `sigstore-trust-root` (offline).
    Keyless { identity: String, issuer: String },
    /// Certificate mode, pinned: a signing certificate whose public key has
    /// this SHA-256 fingerprint (hex, of its DER SubjectPublicKeyInfo, the
    /// same number a key file's fingerprint is), whatever issued it. The pin
    /// is the trust: no chain, no validity dates. A key-mode signature cannot
    /// be checked against a fingerprint alone (it carries no key).
    Fingerprint(String),
}

/// Checks a keyless bundle with `sigstore-verify`: the Fulcio chain and SCT,
/// the Rekor entry, the identity and issuer, and the DSSE signature over a
/// statement whose subject digest is `root_digest`.
fn verify_keyless(
    bundle: &Bundle,
    root_digest: &str,
    identity: &str,
    issuer: &str,
) -> Result<String, String> {
    use sigstore_verify::trust_root::{SigstoreInstance, TrustedRoot};
    let root = TrustedRoot::from_embedded(SigstoreInstance::PublicGood)
        .map_err(|e| format!("the built-in Sigstore trusted root: {e}"))?;
    let verifier = sigstore_verify::Verifier::new(&root)
        .map_err(|e| format!("the built-in Sigstore trusted root: {e}"))?;
    let digest = sigstore_types::Sha256Hash::from_hex(root_digest).map_err(|e| e.to_string())?;
    let policy = sigstore_verify::VerificationPolicy::new(identity.to_string(), issuer);
    let result = verifier
        .verify(digest, bundle, &policy)
        .map_err(|e| format!("keyless verification failed: {e}"))?;
    let time = result
        .integrated_time()
        .map(|t| format!(", logged in Rekor at {t}"))
        .unwrap_or_default();
    Ok(format!(
        "Sigstore identity {identity} (issuer {issuer}){time}"
    ))
}

fn read_small_text(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::input(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(Error::input(path, "not a file"));
    }
    if meta.len() > 1 << 20 {
        return Err(Error::input(
            path,
            "too large for a key or certificate file",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::input(path, e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| Error::input(path, "not a PEM text file"))
}

/// Hashing choices shared by `sign` and `verify`.
#[derive(Debug, Clone, Default)]
pub struct HashOptions {
    /// Extra paths to ignore, relative to the model folder (an absolute path
    /// must lie inside it).
    pub ignore_paths: Vec<PathBuf>,
    /// Include symbolic links (their targets' content) instead of refusing
    /// them. Signing only: verification follows the signature's setting.
    pub allow_symlinks: bool,
}

/// What `sign` did.
#[derive(Debug, Clone)]
pub struct Signed {
    pub files: usize,
    pub root_digest: String,
    /// The key (curve and fingerprint) or the certificate (subject and
    /// fingerprint) that signed.
    pub signer: String,
    /// The paths left out, relative to the model folder, as recorded.
    pub ignore_paths: Vec<String>,
}

/// What a successful `verify` found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub files: usize,
    pub root_digest: String,
    /// The key (curve and fingerprint) or the certificate (subject and
    /// fingerprint) that signed.
    pub signer: String,
    pub model_name: String,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `path` relative to the model folder when it lies inside it (after
/// resolving symbolic links of the existing part).
fn inside_model(model_root: &Path, path: &Path) -> Option<String> {
    let abs = absolute(path);
    // resolve the parent (the file itself may not exist yet)
    let resolved = match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|p| p.join(name))
            .unwrap_or(abs.clone()),
        _ => abs.clone(),
    };
    let rel = resolved.strip_prefix(model_root).ok()?;
    let s = rel.to_str()?;
    IgnorePath::parse(s).map(|i| i.as_string())
}

/// The user's `--ignore-paths`: relative to the model folder, or absolute
/// inside it. A path outside the model cannot hide anything and is dropped.
fn user_ignores(model_root: &Path, paths: &[PathBuf]) -> Vec<IgnorePath> {
    let mut out = Vec::new();
    for p in paths {
        let rel = if p.is_absolute() {
            inside_model(model_root, p)
        } else {
            p.to_str().map(str::to_string)
        };
        if let Some(i) = rel.as_deref().and_then(IgnorePath::parse) {
            out.push(i);
        }
    }
    out
}

fn key_description(k: &PublicKey) -> String {
    format!("{} key sha256:{}", k.curve().name(), k.fingerprint())
}

fn cert_description(c: &certs::CertSigner) -> String {
    format!(
        "certificate \"{}\" sha256:{} ({} key)",
        c.subject,
        c.fingerprint,
        c.public.curve().name()
    )
}

fn model_root(model: &Path) -> Result<PathBuf, Error> {
    model
        .canonicalize()
        .map_err(|e| Error::input(model, e.to_string()))
}

fn hash_model(
    model: &Path,
    ignore: &[IgnorePath],
    allow_symlinks: bool,
) -> Result<Manifest, manifest::WalkError> {
    let files = manifest::list_files(model, ignore, allow_symlinks)?;
    manifest::hash_files(files)
}

/// The model's name as model signing records it: the folder's (or file's)
/// last path component.
fn model_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Signs the model at `model` with `key` and writes the bundle to
/// `signature`: in key mode when `certificates` is empty, else in
/// certificate mode with those certificates (signing certificate first, see
/// `read_signing_certificates`). Ignored: `ignore_git` paths (`.git`, `.gitattributes`,
/// `.github`, `.gitignore`), the signature file itself when it lies inside the
/// model, and `opts.ignore_paths`.
pub fn sign(
    model: &Path,
    key: &PrivateKey,
    certificates: &[Vec<u8>],
    signature: &Path,
    opts: &HashOptions,
    ignore_git: bool,
) -> Result<Signed, Error> {
    let root = model_root(model)?;
    let is_dir = root.is_dir();
    let mut ignore = if is_dir {
        user_ignores(&root, &opts.ignore_paths)
    } else {
        Vec::new()
    };
    if is_dir {
        if ignore_git {
            ignore.extend(
                manifest::GIT_PATHS
                    .iter()
                    .filter_map(|p| IgnorePath::parse(p)),
            );
        }
        if let Some(sig) = inside_model(&root, signature).and_then(|s| IgnorePath::parse(&s)) {
            ignore.push(sig);
        }
    }
    ignore.sort();
    ignore.dedup();
    let manifest = hash_model(model, &ignore, opts.allow_symlinks)
        .map_err(|e| Error::input(model, e.to_string()))?;
    let ser = Serialization {
        allow_symlinks: opts.allow_symlinks,
        ignore_paths: ignore.iter().map(IgnorePath::as_string).collect(),
    };
    let payload = statement::build(&model_name(&root), &manifest, &ser);
    let sig = key.sign(&sigstore_types::pae(PAYLOAD_TYPE, &payload));
    let public = key.public();
    let (material, signer) = if certificates.is_empty() {
        (
            VerificationMaterialContent::PublicKey(PublicKeyIdentifier::new(
                public.model_signing_hint(),
            )),
            key_description(&public),
        )
    } else {
        let leaf = certs::signer_of(&certificates[0]).map_err(|r| Error::input(model, r))?;
        (
            VerificationMaterialContent::X509CertificateChain {
                certificates: certificates
                    .iter()
                    .map(|c| X509Certificate::new(DerCertificate::from_bytes(c)))
                    .collect(),
            },
            cert_description(&leaf),
        )
    };
    let bundle = Bundle::new(
        MediaType::Bundle0_3,
        VerificationMaterial::new(material),
        SignatureContent::DsseEnvelope(DsseEnvelope::new(
            PAYLOAD_TYPE,
            PayloadBytes::from_bytes(&payload),
            DsseSignature::new(SignatureBytes::from_bytes(&sig), KeyId::default()),
        )),
    );
    let mut json = bundle
        .to_json_pretty()
        .map_err(|e| Error::input(signature, e.to_string()))?;
    json.push('\n');
    std::fs::write(signature, json).map_err(|e| Error::input(signature, e.to_string()))?;
    Ok(Signed {
        files: manifest.entries.len(),
        root_digest: Manifest::root_digest(&manifest.entries),
        signer,
        ignore_paths: ser.ignore_paths,
    })
}

/// The manifest the ledger records for a model: the files `sign` would sign
/// with its defaults (git paths left out, and each of `ignore`: the
/// signature file when it lies inside the model), except that symbolic
/// links are followed (a Hugging Face cache snapshot is made of them). For a
/// model without symbolic links its root digest is `sign`'s.
pub fn model_manifest(model: &Path, ignore: &[PathBuf]) -> Result<Manifest, Error> {
    let root = model_root(model)?;
    let mut ign = Vec::new();
    if root.is_dir() {
        ign.extend(
            manifest::GIT_PATHS
                .iter()
                .filter_map(|p| IgnorePath::parse(p)),
        );
        for p in ignore {
            if let Some(i) = inside_model(&root, p).and_then(|s| IgnorePath::parse(&s)) {
                ign.push(i);
            }
        }
    }
    ign.sort();
    ign.dedup();
    hash_model(&root, &ign, true).map_err(|e| Error::input(model, e.to_string()))
}

/// Reads and parses a bundle file; every problem is an `Error::Input`.
pub fn read_bundle(path: &Path) -> Result<Bundle, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::input(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(Error::input(path, "not a file"));
    }
    if meta.len() > MAX_BUNDLE {
        return Err(Error::input(path, "too large for a signature bundle"));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::input(path, e.to_string()))?;
    let mut value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(path, format!("not a Sigstore bundle: {e}")))?;
    // model signing 1.0 wrote `"keyid": null` in the DSSE signature, which
    // its reader still accepts: so does Probity
    if let Some(sigs) = value
        .get_mut("dsseEnvelope")
        .and_then(|e| e.get_mut("signatures"))
        .and_then(|s| s.as_array_mut())
    {
        for sig in sigs.iter_mut().filter_map(|s| s.as_object_mut()) {
            if sig.get("keyid").is_some_and(|k| k.is_null()) {
                sig.remove("keyid");
            }
        }
    }
    let bundle: Bundle = serde_json::from_value(value)
        .map_err(|e| Error::input(path, format!("not a Sigstore bundle: {e}")))?;
    if bundle.media_type() != MediaType::Bundle0_3 {
        return Err(Error::input(
            path,
            format!(
                "bundle media type is {}, expected {}",
                bundle.media_type(),
                MediaType::Bundle0_3
            ),
        ));
    }
    Ok(bundle)
}

/// Verifies the model at `model` against the bundle at `signature`, trusting
/// `trust`: a public key (key mode), certificates (certificate mode) or a
/// Sigstore identity and issuer (keyless mode).
///
/// The signature's own serialization settings are used (its ignored paths
/// and symbolic-link choice, both signed), plus the signature file itself
/// when it lies inside the model and `opts.ignore_paths` (a signed file that
/// they hide is a failure).
pub fn verify(
    model: &Path,
    signature: &Path,
    trust: &Trust,
    opts: &HashOptions,
) -> Result<Verified, Error> {
    let bundle = read_bundle(signature)?;
    let envelope = model_envelope(&bundle, signature)?;
    let sig_name = signature.display();
    let keyless = matches!(trust, Trust::Keyless { .. });
    if !keyless && !bundle.verification_material.tlog_entries.is_empty() {
        return Err(Error::Failed(vec![format!(
            "{sig_name}: the signature is a keyless Sigstore one (Fulcio certificate, Rekor entry): verify it with --identity and --issuer"
        )]));
    }
    let fail = |m: String| Err(Error::Failed(vec![format!("{sig_name}: {m}")]));
    let (key, signer) = match (trust, &bundle.verification_material.content) {
        (Trust::Keyless { identity, issuer }, _) => {
            return verify_keyless_model(model, signature, &bundle, envelope, identity, issuer, opts)
        }
        (Trust::Key(key), VerificationMaterialContent::PublicKey(id)) => {
            let expected = key.model_signing_hint();
            if !id.hint.is_empty() && !id.hint.eq_ignore_ascii_case(&expected) {
                return fail(format!(
                    "wrong key: the signature names key hint {}, the given key's is {expected} (fingerprint {})",
                    id.hint,
                    key.fingerprint()
                ));
            }
            (key.clone(), key_description(key))
        }
        (Trust::Key(_), _) => {
            return fail(
                "the signature was made with a certificate, not a bare key: verify it with --certificate-chain".into(),
            )
        }
        (Trust::Fingerprint(_), VerificationMaterialContent::PublicKey(_)) => {
            return fail(
                "the signature was made with a bare key (key mode), which it does not carry: a key fingerprint alone cannot check it; give the public key file".into(),
            )
        }
        (Trust::Fingerprint(pin), material) => {
            let chain = bundle_certificates(material, signature)?;
            let leaf = &chain[0];
            let c = certs::signer_of(leaf).map_err(|r| Error::input(signature, r))?;
            let pin = pin.trim_start_matches("sha256:").to_ascii_lowercase();
            let found = c.public.fingerprint();
            if found != pin {
                return fail(format!(
                    "wrong signer: the signing certificate's key has fingerprint {found}, not the pinned {pin}"
                ));
            }
            (c.public.clone(), cert_description(&c))
        }
        (Trust::Certificates(_), VerificationMaterialContent::PublicKey(_)) => {
            return fail(
                "the signature was made with a bare key (key mode), not a certificate: verify it with --key".into(),
            )
        }
        (Trust::Certificates(anchors), material) => {
            let chain = bundle_certificates(material, signature)?;
            let (leaf, rest) = (&chain[0], &chain[1..]);
            match certs::verify_chain(leaf, rest, anchors, std::time::SystemTime::now()) {
                Ok(c) => (c.public.clone(), cert_description(&c)),
                Err(certs::ChainError::Malformed(r)) => return Err(Error::input(signature, r)),
                Err(certs::ChainError::Untrusted(r)) => return fail(r),
            }
        }
    };
    let pae = envelope.pae();
    if !key.verify(&pae, envelope.signature.sig.as_bytes()) {
        return Err(Error::Failed(vec![format!(
            "{sig_name}: the signature does not verify with the {signer}: wrong key, or the signed statement was altered"
        )]));
    }
    let parsed = parse_statement(signature, envelope.payload.as_bytes())?;
    check_files(model, signature, parsed, signer, opts)
}

/// The signed statement of a key-mode or certificate-mode signature, read
/// without hashing any model file: with `key`, the DSSE signature is checked
/// against it (key mode) and the signer described; without one, the statement
/// is only parsed and checked for self-consistency (its root digest against
/// its file list) and the signer is `None`: such a statement says what was
/// signed, not who signed it. Used by `probity diff` to compare a folder with
/// its sidecar signature.
pub fn read_signed_statement(
    signature: &Path,
    key: Option<&PublicKey>,
) -> Result<(statement::Parsed, Option<String>), Error> {
    let bundle = read_bundle(signature)?;
    let envelope = model_envelope(&bundle, signature)?;
    let sig_name = signature.display();
    let signer = match key {
        None => None,
        Some(key) => {
            if let VerificationMaterialContent::PublicKey(id) =
                &bundle.verification_material.content
            {
                let expected = key.model_signing_hint();
                if !id.hint.is_empty() && !id.hint.eq_ignore_ascii_case(&expected) {
                    return Err(Error::Failed(vec![format!(
                        "{sig_name}: wrong key: the signature names key hint {}, the given key's is {expected}",
                        id.hint
                    )]));
                }
            }
            if !key.verify(&envelope.pae(), envelope.signature.sig.as_bytes()) {
                return Err(Error::Failed(vec![format!(
                    "{sig_name}: the signature does not verify with the {}: wrong key, or the signed statement was altered",
                    key_description(key)
                )]));
            }
            Some(key_description(key))
        }
    };
    let parsed = parse_statement(signature, envelope.payload.as_bytes())?;
    Ok((parsed, signer))
}

/// The DSSE envelope of a model signature: a bundle holding a message
/// signature, or a payload other than an in-toto statement, is not one.
fn model_envelope<'a>(bundle: &'a Bundle, signature: &Path) -> Result<&'a DsseEnvelope, Error> {
    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return Err(Error::input(
            signature,
            "the bundle holds a message signature, not a DSSE envelope (not a model signature)",
        ));
    };
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(Error::input(
            signature,
            format!(
                "DSSE payload type is {:?}, expected {PAYLOAD_TYPE}",
                envelope.payload_type
            ),
        ));
    }
    Ok(envelope)
}

/// The certificates a certificate-mode bundle carries, signing certificate
/// first; never empty.
fn bundle_certificates(
    material: &VerificationMaterialContent,
    signature: &Path,
) -> Result<Vec<Vec<u8>>, Error> {
    let chain: Vec<Vec<u8>> = match material {
        VerificationMaterialContent::Certificate(c) => vec![c.raw_bytes.as_bytes().to_vec()],
        VerificationMaterialContent::X509CertificateChain { certificates } => certificates
            .iter()
            .map(|c| c.raw_bytes.as_bytes().to_vec())
            .collect(),
        _ => return Err(Error::input(signature, "unsupported verification material")),
    };
    if chain.is_empty() {
        return Err(Error::input(signature, "the certificate chain is empty"));
    }
    Ok(chain)
}

fn parse_statement(signature: &Path, payload: &[u8]) -> Result<statement::Parsed, Error> {
    let sig_name = signature.display();
    match statement::parse(payload) {
        Ok(p) => Ok(p),
        Err(ParseError::Malformed(r)) => Err(Error::input(signature, r)),
        Err(ParseError::Inconsistent { subject, computed }) => Err(Error::Failed(vec![format!(
            "{sig_name}: the signed root digest {subject} is not the digest of the signed files ({computed})"
        )])),
    }
}

fn verify_keyless_model(
    model: &Path,
    signature: &Path,
    bundle: &Bundle,
    envelope: &DsseEnvelope,
    identity: &str,
    issuer: &str,
    opts: &HashOptions,
) -> Result<Verified, Error> {
    // the statement is read first for its subject digest, which the
    // verifier then binds to the signature
    let parsed = parse_statement(signature, envelope.payload.as_bytes())?;
    let signer = verify_keyless(bundle, &parsed.root_digest, identity, issuer)
        .map_err(|r| Error::Failed(vec![format!("{}: {r}", signature.display())]))?;
    check_files(model, signature, parsed, signer, opts)
}

/// Hashes the model and compares it with the verified statement.
fn check_files(
    model: &Path,
    signature: &Path,
    parsed: statement::Parsed,
    signer: String,
    opts: &HashOptions,
) -> Result<Verified, Error> {
    let root = model_root(model)?;
    let is_dir = root.is_dir();
    let user = if is_dir {
        user_ignores(&root, &opts.ignore_paths)
    } else {
        Vec::new()
    };
    let mut ignore: Vec<IgnorePath> = Vec::new();
    if is_dir {
        ignore.extend(
            parsed
                .serialization
                .ignore_paths
                .iter()
                .filter_map(|p| IgnorePath::parse(p)),
        );
        ignore.extend(user.iter().cloned());
        if let Some(sig) = inside_model(&root, signature).and_then(|s| IgnorePath::parse(&s)) {
            ignore.push(sig);
        }
    }
    let found = match hash_model(model, &ignore, parsed.serialization.allow_symlinks) {
        Ok(m) => m,
        Err(manifest::WalkError::Symlink(n)) => {
            return Err(Error::Failed(vec![format!(
                "{}: {n} is a symbolic link, which the signature does not allow",
                model.display()
            )]))
        }
        Err(e) => return Err(Error::input(model, e.to_string())),
    };
    let problems: Vec<Problem> = manifest::diff(&parsed.resources, &found, &user);
    if !problems.is_empty() {
        return Err(Error::Failed(
            problems
                .iter()
                .map(|p| format!("{}: {p}", model.display()))
                .collect(),
        ));
    }
    Ok(Verified {
        files: parsed.resources.len(),
        root_digest: parsed.root_digest,
        signer,
        model_name: parsed.model_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEILMwDyD2wfGaWBx8sgp8d87/+XqrOMn1/GOweEEjDML5oAoGCCqGSM49
AwEHoUQDQgAEZjuLQLdwd6lYd+bhSFJLm9EODXgapdy7o9au05Haw+Ur3z5MNBvY
RTTYIsZETtS8ZaJcHRHqPWRqCai3LvkJcw==
-----END EC PRIVATE KEY-----
";

    const KEY384: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDBioKzpzVYn9c7Rf2hn
Tb69tbpjbCOGmoO66GVJq9ixAPbWHsW76SiNSqhzETl3lKqhZANiAASjr5ed2PkV
m5JYa2rfZX+0tlxhJMqLaijmV/qoiHFWEbxoN3/nPf5h731AUN4/EXSFedjFrq+T
jZCrNEe8JEV6SqO4YQjAfCJe/h8utp0GQtcEzJnXdHmAj1NLzJAIbBE=
-----END PRIVATE KEY-----
";

    fn model() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("model");
        std::fs::create_dir_all(m.join("sub")).unwrap();
        std::fs::create_dir_all(m.join(".git")).unwrap();
        std::fs::write(m.join("config.json"), b"{\"a\":1}\n").unwrap();
        std::fs::write(m.join("sub/weights.bin"), vec![7u8; 100_000]).unwrap();
        std::fs::write(m.join(".git/HEAD"), b"ref").unwrap();
        d
    }

    fn failed(r: Result<Verified, Error>) -> Vec<String> {
        match r {
            Err(Error::Failed(l)) => l,
            other => panic!("expected a failed verification, got {other:?}"),
        }
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let d = model();
        let m = d.path().join("model");
        let sig = m.join("model.sig");
        let key = PrivateKey::from_pem(KEY).unwrap();
        let pubk = key.public();
        let s = sign(&m, &key, &[], &sig, &HashOptions::default(), true).unwrap();
        assert_eq!(s.files, 2);
        assert_eq!(
            s.ignore_paths,
            [
                ".git",
                ".gitattributes",
                ".github",
                ".gitignore",
                "model.sig"
            ]
        );
        let first = std::fs::read(&sig).unwrap();
        // deterministic: signing again writes the same bytes
        sign(&m, &key, &[], &sig, &HashOptions::default(), true).unwrap();
        assert_eq!(first, std::fs::read(&sig).unwrap());
        let v = verify(&m, &sig, &Trust::Key(pubk.clone()), &HashOptions::default()).unwrap();
        assert_eq!(v.root_digest, s.root_digest);
        assert_eq!(v.model_name, "model");
        // a signature outside the model verifies the same way
        let out = d.path().join("elsewhere.sig");
        sign(&m, &key, &[], &out, &HashOptions::default(), true).unwrap();
        verify(&m, &out, &Trust::Key(pubk.clone()), &HashOptions::default()).unwrap();

        // an added file
        std::fs::write(m.join("extra.py"), b"import os").unwrap();
        let l = failed(verify(
            &m,
            &sig,
            &Trust::Key(pubk.clone()),
            &HashOptions::default(),
        ));
        assert_eq!(l.len(), 1);
        assert!(l[0].contains("file added: extra.py"), "{l:?}");
        // ... that --ignore-paths may leave out
        let opts = HashOptions {
            ignore_paths: vec!["extra.py".into()],
            ..Default::default()
        };
        verify(&m, &sig, &Trust::Key(pubk.clone()), &opts).unwrap();
        std::fs::remove_file(m.join("extra.py")).unwrap();
        // --ignore-paths cannot hide a signed file
        let opts = HashOptions {
            ignore_paths: vec!["config.json".into()],
            ..Default::default()
        };
        let l = failed(verify(&m, &sig, &Trust::Key(pubk.clone()), &opts));
        assert!(l[0].contains("ignored but signed: config.json"), "{l:?}");

        // a changed byte
        let mut w = std::fs::read(m.join("sub/weights.bin")).unwrap();
        w[50_000] ^= 1;
        std::fs::write(m.join("sub/weights.bin"), &w).unwrap();
        let l = failed(verify(
            &m,
            &sig,
            &Trust::Key(pubk.clone()),
            &HashOptions::default(),
        ));
        assert!(l[0].contains("file changed: sub/weights.bin"), "{l:?}");
        w[50_000] ^= 1;
        std::fs::write(m.join("sub/weights.bin"), &w).unwrap();

        // a renamed file
        std::fs::rename(m.join("config.json"), m.join("config2.json")).unwrap();
        let l = failed(verify(
            &m,
            &sig,
            &Trust::Key(pubk.clone()),
            &HashOptions::default(),
        ));
        assert!(
            l[0].contains("file renamed: config.json -> config2.json"),
            "{l:?}"
        );
        // a removed file
        std::fs::remove_file(m.join("config2.json")).unwrap();
        let l = failed(verify(
            &m,
            &sig,
            &Trust::Key(pubk.clone()),
            &HashOptions::default(),
        ));
        assert!(l[0].contains("file removed: config.json"), "{l:?}");
        std::fs::write(m.join("config.json"), b"{\"a\":1}\n").unwrap();
        verify(&m, &sig, &Trust::Key(pubk.clone()), &HashOptions::default()).unwrap();

        // the wrong key (a P-384 one): named by its hint
        let other = PrivateKey::from_pem(KEY384).unwrap();
        assert_eq!(other.public().curve(), keys::Curve::P384);
        let l = failed(verify(
            &m,
            &sig,
            &Trust::Key(other.public()),
            &HashOptions::default(),
        ));
        assert!(l[0].contains("wrong key"), "{l:?}");
        // without the hint, the signature check itself refuses it
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
        v["verificationMaterial"]["publicKey"] = serde_json::json!({});
        std::fs::write(&out, serde_json::to_vec(&v).unwrap()).unwrap();
        let l = failed(verify(
            &m,
            &out,
            &Trust::Key(other.public()),
            &HashOptions::default(),
        ));
        assert!(l[0].contains("does not verify"), "{l:?}");
        verify(&m, &out, &Trust::Key(pubk.clone()), &HashOptions::default()).unwrap();
        // P-384 signs and verifies too
        sign(&m, &other, &[], &out, &HashOptions::default(), true).unwrap();
        verify(
            &m,
            &out,
            &Trust::Key(other.public()),
            &HashOptions::default(),
        )
        .unwrap();

        // a garbage bundle is an input error
        std::fs::write(&out, b"\x00\x01garbage").unwrap();
        let e = verify(&m, &out, &Trust::Key(pubk.clone()), &HashOptions::default()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        std::fs::write(&out, b"{\"mediaType\": 3}").unwrap();
        assert_eq!(
            verify(&m, &out, &Trust::Key(pubk.clone()), &HashOptions::default())
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn altered_statement_fails_the_signature() {
        let d = model();
        let m = d.path().join("model");
        let sig = d.path().join("model.sig");
        let key = PrivateKey::from_pem(KEY).unwrap();
        sign(&m, &key, &[], &sig, &HashOptions::default(), true).unwrap();
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = b64
            .decode(v["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let altered = String::from_utf8(payload)
            .unwrap()
            .replace("\"model\"", "\"other\"");
        v["dsseEnvelope"]["payload"] = b64.encode(altered).into();
        std::fs::write(&sig, serde_json::to_vec(&v).unwrap()).unwrap();
        let l = failed(verify(
            &m,
            &sig,
            &Trust::Key(key.public()),
            &HashOptions::default(),
        ));
        assert!(l[0].contains("does not verify"), "{l:?}");
    }
}
