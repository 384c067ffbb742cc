//! Certificate mode: an X.509 signing certificate (and the chain above it)
//! in the bundle, checked against trusted certificates given by the user.
//! Parsing is `x509-cert`'s; path building, signatures, validity periods and
//! extended key usage are checked by `rustls-webpki`.

use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage as X509KeyUsage};
use x509_cert::Certificate;

use crate::keys::{hex, PublicKey};

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER value bytes, for webpki.
const CODE_SIGNING_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";

/// The algorithms a certificate in the chain may be signed with.
static ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The certificates (DER) in a PEM text, in order.
pub fn pem_certificates(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs = Certificate::load_pem_chain(text)
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| e.to_string()))
        .collect()
}

/// Who signed: the signing certificate's subject and SHA-256 fingerprint.
#[derive(Debug, Clone)]
pub struct CertSigner {
    pub subject: String,
    pub fingerprint: String,
    pub public: PublicKey,
}

/// Why a certificate chain was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// The bundle's certificate cannot be parsed (exit 2).
    Malformed(String),
    /// Parsed, but not trusted for signing now (exit 1).
    Untrusted(String),
}

/// The signing certificate's public key and identity, read without checking
/// any trust (used when signing, to match the private key).
pub fn signer_of(leaf_der: &[u8]) -> Result<CertSigner, String> {
    let cert = Certificate::from_der(leaf_der).map_err(|e| format!("not a certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let public =
        PublicKey::from_spki_der(&spki).map_err(|e| format!("the certificate's key: {e}"))?;
    Ok(CertSigner {
        subject: cert.tbs_certificate().subject().to_string(),
        fingerprint: hex(&Sha256::digest(leaf_der)),
        public,
    })
}

/// Checks that `leaf` chains to one of `anchors` (through `intermediates`),
/// is valid at `now`, may sign code (key usage digitalSignature or extended
/// key usage codeSigning, as model signing requires; an extended key usage
/// without codeSigning is refused), and holds a P-256 or P-384 key.
pub fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    anchors: &[Vec<u8>],
    now: std::time::SystemTime,
) -> Result<CertSigner, ChainError> {
    let signer = signer_of(leaf).map_err(ChainError::Malformed)?;
    let cert = Certificate::from_der(leaf).map_err(|e| ChainError::Malformed(e.to_string()))?;
    let leaf_der = CertificateDer::from(leaf);
    let ee = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| ChainError::Malformed(format!("signing certificate: {e}")))?;
    let anchor_ders: Vec<CertificateDer> = anchors
        .iter()
        .map(|a| CertificateDer::from(a.as_slice()))
        .collect();
    let mut trust = Vec::new();
    for a in &anchor_ders {
        trust.push(
            webpki::anchor_from_trusted_cert(a)
                .map_err(|e| ChainError::Malformed(format!("trusted certificate: {e}")))?,
        );
    }
    let inter: Vec<CertificateDer> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ee.verify_for_usage(
        ALGS,
        &trust,
        &inter,
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
        KeyUsage::required_if_present(CODE_SIGNING_DER),
        None,
        None,
    )
    .map_err(|e| ChainError::Untrusted(describe(&e)))?;
    let ku = cert
        .tbs_certificate()
        .get_extension::<X509KeyUsage>()
        .ok()
        .flatten()
        .is_some_and(|(_, k)| k.digital_signature());
    let eku = cert
        .tbs_certificate()
        .get_extension::<ExtendedKeyUsage>()
        .ok()
        .flatten()
        .is_some_and(|(_, e)| e.0.iter().any(|o| o.to_string() == CODE_SIGNING));
    if !ku && !eku {
        return Err(ChainError::Untrusted(
            "the signing certificate may not sign (neither key usage digitalSignature nor extended key usage codeSigning)".into(),
        ));
    }
    Ok(signer)
}

fn describe(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => "the signing certificate (or one above it) has expired".into(),
        E::CertNotValidYet { .. } => {
            "the signing certificate (or one above it) is not valid yet".into()
        }
        E::UnknownIssuer => {
            "the signing certificate does not chain to a trusted certificate (--certificate-chain)"
                .into()
        }
        E::RequiredEkuNotFoundContext(_) => {
            "the signing certificate's extended key usage does not allow code signing".into()
        }
        E::CaUsedAsEndEntity => {
            "the signing certificate is a CA certificate (basic constraints CA:TRUE), which Probity does not accept as a signing certificate".into()
        }
        E::InvalidSignatureForPublicKey => {
            "a certificate in the chain has an invalid signature".into()
        }
        other => format!("the certificate chain is not valid: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const CA: &str = include_str!("testdata/ca.crt");
    const OTHER_CA: &str = include_str!("testdata/other-ca.crt");
    const SIGNER: &str = include_str!("testdata/signer.crt");
    const SERVER: &str = include_str!("testdata/server.crt");
    const SIGNER_KEY: &str = include_str!("testdata/signer.pem");

    fn der(pem: &str) -> Vec<u8> {
        pem_certificates(pem.as_bytes()).unwrap().remove(0)
    }

    /// 2030-01-01, inside the certificates' validity (2025-2035).
    fn in_2030() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_893_456_000)
    }

    #[test]
    fn chain_checks() {
        let (ca, signer) = (der(CA), der(SIGNER));
        let ok = verify_chain(&signer, &[], std::slice::from_ref(&ca), in_2030()).unwrap();
        assert_eq!(ok.subject, "CN=unit test signer");
        assert_eq!(ok.fingerprint, hex(&Sha256::digest(&signer)));
        // the certificate's key is the signing key's
        let key = crate::PrivateKey::from_pem(SIGNER_KEY).unwrap();
        assert_eq!(ok.public.fingerprint(), key.public().fingerprint());
        let reason = |r: Result<CertSigner, ChainError>| match r {
            Err(ChainError::Untrusted(m)) => m,
            other => panic!("expected an untrusted chain, got {other:?}"),
        };
        // expired, not yet valid
        let m = reason(verify_chain(
            &signer,
            &[],
            std::slice::from_ref(&ca),
            UNIX_EPOCH + Duration::from_secs(2_209_000_000), // 2040
        ));
        assert!(m.contains("has expired"), "{m}");
        let m = reason(verify_chain(
            &signer,
            &[],
            std::slice::from_ref(&ca),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000), // 2023
        ));
        assert!(m.contains("not valid yet"), "{m}");
        // another CA
        let m = reason(verify_chain(&signer, &[], &[der(OTHER_CA)], in_2030()));
        assert!(m.contains("does not chain"), "{m}");
        // a certificate for TLS servers only
        let m = reason(verify_chain(&der(SERVER), &[], &[ca], in_2030()));
        assert!(m.contains("code signing"), "{m}");
        // garbage
        assert!(matches!(
            verify_chain(b"\x30\x03\x02\x01\x00", &[], &[], in_2030()),
            Err(ChainError::Malformed(_))
        ));
        assert!(pem_certificates(b"no certificate here").is_err());
        assert!(pem_certificates(SIGNER_KEY.as_bytes()).is_err());
    }
}
