//! ECDSA keys in PEM files (P-256 and P-384, the curves of OpenSSF model
//! signing's key mode), their fingerprints, and signing and verifying of DSSE
//! envelopes with them (RustCrypto's `p256` / `p384`).

use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

/// The curves model signing accepts that Probity supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
}

/// A private signing key.
#[derive(Debug)]
pub enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// A public verifying key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

/// The base64 body of the first PEM block whose label is `label`, with its
/// delimiters, so that a file holding several blocks (`openssl ecparam
/// -genkey` writes the curve parameters before the key) can be read.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

impl PrivateKey {
    /// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1
    /// (`BEGIN EC PRIVATE KEY`), on P-256 or P-384. Errors are one-line
    /// reasons.
    pub fn from_pem(text: &str) -> Result<PrivateKey, String> {
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || (text.contains("Proc-Type: 4,ENCRYPTED"))
        {
            return Err("encrypted private keys are not supported; decrypt it first (openssl pkey -in KEY -out PLAIN.pem)".into());
        }
        if let Some(block) = pem_block(text, "PRIVATE KEY") {
            if let Ok(k) = p256::SecretKey::from_pkcs8_pem(block) {
                return Ok(PrivateKey::P256(k.into()));
            }
            if let Ok(k) = p384::SecretKey::from_pkcs8_pem(block) {
                return Ok(PrivateKey::P384(k.into()));
            }
            return Err("not an ECDSA P-256 or P-384 private key (PKCS#8)".into());
        }
        if let Some(block) = pem_block(text, "EC PRIVATE KEY") {
            if let Ok(k) = p256::SecretKey::from_sec1_pem(block) {
                return Ok(PrivateKey::P256(k.into()));
            }
            if let Ok(k) = p384::SecretKey::from_sec1_pem(block) {
                return Ok(PrivateKey::P384(k.into()));
            }
            return Err("not an ECDSA P-256 or P-384 private key (SEC1)".into());
        }
        Err("no PEM private key (expected BEGIN PRIVATE KEY or BEGIN EC PRIVATE KEY)".into())
    }

    pub fn public(&self) -> PublicKey {
        match self {
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
        }
    }

    /// ECDSA signature, DER-encoded, over `msg` hashed with the curve's hash
    /// (SHA-256 for P-256, SHA-384 for P-384), as model signing does. RFC 6979
    /// nonces: the same key and message give the same signature.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            PrivateKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_der().to_bytes().to_vec()
            }
            PrivateKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(msg);
                s.to_der().to_bytes().to_vec()
            }
        }
    }
}

impl PublicKey {
    /// Reads a PEM public key (SubjectPublicKeyInfo, `BEGIN PUBLIC KEY`).
    pub fn from_pem(text: &str) -> Result<PublicKey, String> {
        let Some(block) = pem_block(text, "PUBLIC KEY") else {
            return Err("no PEM public key (expected BEGIN PUBLIC KEY)".into());
        };
        if let Ok(k) = p256::PublicKey::from_public_key_pem(block) {
            return Ok(PublicKey::P256(k.into()));
        }
        if let Ok(k) = p384::PublicKey::from_public_key_pem(block) {
            return Ok(PublicKey::P384(k.into()));
        }
        Err("not an ECDSA P-256 or P-384 public key".into())
    }

    /// From a DER SubjectPublicKeyInfo (as found in a certificate).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
            return Ok(PublicKey::P256(k.into()));
        }
        if let Ok(k) = p384::PublicKey::from_public_key_der(der) {
            return Ok(PublicKey::P384(k.into()));
        }
        Err("not an ECDSA P-256 or P-384 public key".into())
    }

    pub fn curve(&self) -> Curve {
        match self {
            PublicKey::P256(_) => Curve::P256,
            PublicKey::P384(_) => Curve::P384,
        }
    }

    fn spki_der(&self) -> Vec<u8> {
        let doc = match self {
            PublicKey::P256(k) => p256::PublicKey::from(k).to_public_key_der(),
            PublicKey::P384(k) => p384::PublicKey::from(k).to_public_key_der(),
        };
        // encoding a valid key cannot fail
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    fn spki_pem(&self) -> String {
        let pem = match self {
            PublicKey::P256(k) => p256::PublicKey::from(k).to_public_key_pem(LineEnding::LF),
            PublicKey::P384(k) => p384::PublicKey::from(k).to_public_key_pem(LineEnding::LF),
        };
        pem.unwrap_or_default()
    }

    /// The key's fingerprint: SHA-256 of its DER SubjectPublicKeyInfo, hex
    /// (the same as `openssl pkey -pubin -in PUB.pem -outform DER | sha256sum`).
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.spki_der()))
    }

    /// The key hint model signing writes in a key-mode bundle
    /// (`verificationMaterial.publicKey.hint`): SHA-256, hex, of the PEM text
    /// of the public key (64-column base64, LF line ends).
    pub fn model_signing_hint(&self) -> String {
        hex(&Sha256::digest(self.spki_pem().as_bytes()))
    }

    /// Checks a DER-encoded ECDSA signature over `msg`.
    pub fn verify(&self, msg: &[u8], der_sig: &[u8]) -> bool {
        match self {
            PublicKey::P256(k) => p256::ecdsa::DerSignature::try_from(der_sig)
                .ok()
                .and_then(|s| p256::ecdsa::Signature::try_from(s).ok())
                .is_some_and(|s| k.verify(msg, &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::DerSignature::try_from(der_sig)
                .ok()
                .and_then(|s| p384::ecdsa::Signature::try_from(s).ok())
                .is_some_and(|s| k.verify(msg, &s).is_ok()),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl ecparam -name prime256v1 -genkey` (with its parameters block)
    const SEC1_P256: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEILMwDyD2wfGaWBx8sgp8d87/+XqrOMn1/GOweEEjDML5oAoGCCqGSM49
AwEHoUQDQgAEZjuLQLdwd6lYd+bhSFJLm9EODXgapdy7o9au05Haw+Ur3z5MNBvY
RTTYIsZETtS8ZaJcHRHqPWRqCai3LvkJcw==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn sec1_key_after_parameters_signs_and_verifies() {
        let k = PrivateKey::from_pem(SEC1_P256).unwrap();
        let p = k.public();
        assert_eq!(p.curve(), Curve::P256);
        let sig = k.sign(b"payload");
        assert!(p.verify(b"payload", &sig));
        assert!(!p.verify(b"payloaD", &sig));
        assert!(!p.verify(b"payload", b"\x30\x00"));
        // deterministic (RFC 6979)
        assert_eq!(sig, k.sign(b"payload"));
        // the public PEM round-trips and keeps the fingerprint
        let again = PublicKey::from_pem(&p.spki_pem()).unwrap();
        assert_eq!(again.fingerprint(), p.fingerprint());
        assert_eq!(p.fingerprint().len(), 64);
        assert_ne!(p.fingerprint(), p.model_signing_hint());
    }

    #[test]
    fn garbage_keys_are_errors() {
        assert!(PrivateKey::from_pem("").is_err());
        assert!(PrivateKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(PrivateKey::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        )
        .unwrap_err()
        .contains("encrypted"));
        assert!(
            PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
        assert!(PublicKey::from_pem(SEC1_P256).is_err());
    }
}
