//! `probity scan --require-signature`: each scanned model must carry an
//! OpenSSF model signing signature, made by one of the accepted signers,
//! over exactly its files. The result is a finding on the model (SIG001
//! missing, SIG002 not verified, SIG003 verified), so it gates CI like any
//! other.

use std::path::{Path, PathBuf};

use probity_provenance::{HashOptions, Trust};
use probity_report::{FileReport, Finding};
use probity_scan::rules::{SIG001, SIG002, SIG003};

use crate::config::Signer;

/// The report entry format of a model's signature result.
pub const FORMAT: &str = probity_report::MODEL_SIGNATURE_FORMAT;

/// A signature result as the ledger records it: `verified` with the
/// signer, `failed` with the reasons, or `missing`.
pub fn ledger_status(r: &FileReport) -> serde_json::Value {
    let Some(f) = r.findings.first() else {
        return serde_json::json!({"status": "not checked"});
    };
    match f.rule.as_str() {
        "SIG003" => {
            // "signed by SIGNER: N files, root digest sha256:D" (see `check`)
            let (signer, rest) = f.message.rsplit_once(": ").unwrap_or((&f.message, ""));
            let signer = signer.strip_prefix("signed by ").unwrap_or(signer);
            let root = rest
                .rsplit_once("sha256:")
                .map(|(_, d)| d)
                .unwrap_or_default();
            serde_json::json!({"status": "verified", "signer": signer, "signed_root_digest": root, "signature": f.evidence})
        }
        "SIG002" => {
            serde_json::json!({"status": "failed", "reasons": [f.message], "signature": f.evidence})
        }
        _ => serde_json::json!({"status": "missing", "reason": f.message}),
    }
}

/// One accepted signer, ready to check: what to trust, and how to name it.
pub struct Accepted {
    pub trust: Trust,
    pub name: String,
}

/// Reads the accepted signers: key and certificate files are read now, so
/// an unreadable one is an input error (exit 2), not a finding. Relative
/// paths are taken relative to `dir` (the config file's folder; empty for
/// command-line flags).
pub fn accepted(signers: &[Signer], dir: &Path) -> Result<Vec<Accepted>, String> {
    let at = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let mut out = Vec::new();
    for s in signers {
        let line = |e: probity_provenance::Error| e.lines().join("; ");
        if let Some(k) = &s.key {
            let key = probity_provenance::read_public_key(&at(k)).map_err(line)?;
            out.push(Accepted {
                name: format!("key sha256:{}", key.fingerprint()),
                trust: Trust::Key(key),
            });
        } else if let Some(chain) = &s.certificate_chain {
            let paths: Vec<PathBuf> = chain.iter().map(|p| at(p)).collect();
            let certs = probity_provenance::read_certificates(&paths).map_err(line)?;
            out.push(Accepted {
                name: format!(
                    "certificates {}",
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                trust: Trust::Certificates(certs),
            });
        } else if let Some(f) = &s.fingerprint {
            let hex = f.trim_start_matches("sha256:").to_ascii_lowercase();
            out.push(Accepted {
                name: format!("pinned key sha256:{hex}"),
                trust: Trust::Fingerprint(hex),
            });
        } else if let (Some(identity), Some(issuer)) = (&s.identity, &s.issuer) {
            out.push(Accepted {
                name: format!("Sigstore identity {identity} ({issuer})"),
                trust: Trust::Keyless {
                    identity: identity.clone(),
                    issuer: issuer.clone(),
                },
            });
        }
    }
    Ok(out)
}

/// Where a model's signature is looked for: `explicit` when given, else
/// `name` inside a folder, else `FILE.sig` beside a single file.
pub fn signature_path(model: &Path, name: &str, explicit: Option<&Path>) -> PathBuf {
    if let Some(e) = explicit {
        return e.to_path_buf();
    }
    if model.is_dir() {
        model.join(name)
    } else {
        let mut s = model.as_os_str().to_owned();
        s.push(".sig");
        PathBuf::from(s)
    }
}

/// Checks one model (`root`, shown as `display`) against the accepted
/// signers and returns its signature result as a report entry with one
/// finding.
pub fn check(display: &str, root: &Path, signature: &Path, signers: &[Accepted]) -> FileReport {
    let mut r = FileReport::new(display.to_string());
    r.format = FORMAT.into();
    let sig_name = signature.display();
    if !signature.is_file() {
        r.findings.push(Finding::new(
            &SIG001,
            format!("no signature: {sig_name} does not exist"),
        ));
        return r;
    }
    let mut reasons = Vec::new();
    for s in signers {
        match probity_provenance::verify(root, signature, &s.trust, &HashOptions::default()) {
            Ok(v) => {
                r.findings.push(
                    Finding::new(
                        &SIG003,
                        format!(
                            "signed by {}: {} files, root digest sha256:{}",
                            v.signer, v.files, v.root_digest
                        ),
                    )
                    .evidence(sig_name.to_string()),
                );
                return r;
            }
            Err(e) => reasons.push(format!("{}: {}", s.name, e.lines().join("; "))),
        }
    }
    r.findings.push(
        Finding::new(
            &SIG002,
            format!(
                "{sig_name} does not verify against any accepted signer — {}",
                reasons.join(" | ")
            ),
        )
        .evidence(sig_name.to_string()),
    );
    r
}
