//! The in-toto Statement v1 that model signing signs: one subject (the model
//! name and the root digest), predicate type
//! `https://model_signing/signature/v1.0`, and a predicate with the
//! serialization parameters and one resource per file.

use serde::Serialize;
use serde_json::Value;

use crate::manifest::{Entry, Manifest};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// How the model was turned into a manifest (the predicate's
/// `serialization`). Probity writes and reads the `files` method with
/// SHA-256, model signing's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    pub allow_symlinks: bool,
    /// Paths relative to the model folder, sorted.
    pub ignore_paths: Vec<String>,
}

#[derive(Serialize)]
struct StatementOut<'a> {
    #[serde(rename = "_type")]
    type_: &'a str,
    subject: [SubjectOut<'a>; 1],
    #[serde(rename = "predicateType")]
    predicate_type: &'a str,
    predicate: PredicateOut<'a>,
}

#[derive(Serialize)]
struct SubjectOut<'a> {
    name: &'a str,
    digest: DigestOut<'a>,
}

#[derive(Serialize)]
struct DigestOut<'a> {
    sha256: &'a str,
}

#[derive(Serialize)]
struct PredicateOut<'a> {
    serialization: SerializationOut<'a>,
    resources: Vec<ResourceOut<'a>>,
}

#[derive(Serialize)]
struct SerializationOut<'a> {
    method: &'a str,
    hash_type: &'a str,
    allow_symlinks: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignore_paths: &'a [String],
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    name: &'a str,
    algorithm: &'a str,
    digest: &'a str,
}

/// The statement's JSON (the DSSE payload), deterministic for a given
/// manifest: resources in canonical order, ignore paths sorted.
pub fn build(model_name: &str, manifest: &Manifest, ser: &Serialization) -> Vec<u8> {
    let root = Manifest::root_digest(&manifest.entries);
    let st = StatementOut {
        type_: STATEMENT_TYPE,
        subject: [SubjectOut {
            name: model_name,
            digest: DigestOut { sha256: &root },
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: PredicateOut {
            serialization: SerializationOut {
                method: "files",
                hash_type: "sha256",
                allow_symlinks: ser.allow_symlinks,
                ignore_paths: &ser.ignore_paths,
            },
            resources: manifest
                .entries
                .iter()
                .map(|e| ResourceOut {
                    name: &e.name,
                    algorithm: "sha256",
                    digest: &e.sha256,
                })
                .collect(),
        },
    };
    let mut out = serde_json::to_vec_pretty(&st).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A statement read back from a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub model_name: String,
    pub root_digest: String,
    /// In the order the statement lists them.
    pub resources: Vec<Entry>,
    pub serialization: Serialization,
}

/// Why a payload is not a model signing statement Probity can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not the expected shape (exit 2).
    Malformed(String),
    /// Well-formed, but its root digest is not the digest of its resources
    /// (exit 1: the signed statement contradicts itself).
    Inconsistent { subject: String, computed: String },
}

fn malformed(s: impl Into<String>) -> ParseError {
    ParseError::Malformed(s.into())
}

fn str_at<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, ParseError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("{what}: no string `{key}`")))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a statement and checks that it is self-consistent.
pub fn parse(payload: &[u8]) -> Result<Parsed, ParseError> {
    let v: Value = serde_json::from_slice(payload)
        .map_err(|e| malformed(format!("the signed payload is not JSON: {e}")))?;
    let t = str_at(&v, "_type", "statement")?;
    if t != STATEMENT_TYPE {
        return Err(malformed(format!(
            "statement type is {t}, expected {STATEMENT_TYPE}"
        )));
    }
    let pt = str_at(&v, "predicateType", "statement")?;
    if pt != PREDICATE_TYPE {
        return Err(malformed(format!(
            "predicate type is {pt}, expected {PREDICATE_TYPE} (model signing 1.x)"
        )));
    }
    let subjects = v
        .get("subject")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("statement has no subject list"))?;
    let [subject] = subjects.as_slice() else {
        return Err(malformed(format!(
            "expected exactly one subject, found {}",
            subjects.len()
        )));
    };
    let model_name = str_at(subject, "name", "subject")?.to_string();
    let root_digest = subject
        .get("digest")
        .and_then(|d| d.get("sha256"))
        .and_then(Value::as_str)
        .filter(|d| is_sha256_hex(d))
        .ok_or_else(|| malformed("subject has no sha256 digest"))?
        .to_ascii_lowercase();
    let predicate = v
        .get("predicate")
        .filter(|p| p.is_object())
        .ok_or_else(|| malformed("statement has no predicate"))?;
    let ser = predicate
        .get("serialization")
        .filter(|p| p.is_object())
        .ok_or_else(|| malformed("predicate has no serialization"))?;
    let method = str_at(ser, "method", "serialization")?;
    if method != "files" {
        return Err(malformed(format!(
            "serialization method `{method}` is not supported (Probity reads `files`)"
        )));
    }
    let hash_type = str_at(ser, "hash_type", "serialization")?;
    if hash_type != "sha256" {
        return Err(malformed(format!(
            "hash type `{hash_type}` is not supported (Probity reads sha256)"
        )));
    }
    let allow_symlinks = ser
        .get("allow_symlinks")
        .and_then(Value::as_bool)
        .ok_or_else(|| malformed("serialization: no boolean `allow_symlinks`"))?;
    let mut ignore_paths = Vec::new();
    if let Some(list) = ser.get("ignore_paths") {
        let list = list
            .as_array()
            .ok_or_else(|| malformed("serialization: `ignore_paths` is not a list"))?;
        for p in list {
            ignore_paths.push(
                p.as_str()
                    .ok_or_else(|| malformed("serialization: an ignore path is not a string"))?
                    .to_string(),
            );
        }
    }
    ignore_paths.sort();
    let list = predicate
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("predicate has no resources list"))?;
    let mut resources = Vec::with_capacity(list.len());
    let mut names = std::collections::HashSet::new();
    for r in list {
        let name = str_at(r, "name", "resource")?;
        let algorithm = str_at(r, "algorithm", "resource")?;
        if algorithm != "sha256" {
            return Err(malformed(format!(
                "resource {name}: algorithm `{algorithm}` is not supported"
            )));
        }
        let digest = str_at(r, "digest", "resource")?;
        if !is_sha256_hex(digest) {
            return Err(malformed(format!(
                "resource {name}: digest is not a SHA-256 in hex"
            )));
        }
        if !names.insert(name) {
            return Err(malformed(format!("resource {name} is listed twice")));
        }
        resources.push(Entry {
            name: name.to_string(),
            sha256: digest.to_ascii_lowercase(),
        });
    }
    let computed = Manifest::root_digest(&resources);
    if computed != root_digest {
        return Err(ParseError::Inconsistent {
            subject: root_digest,
            computed,
        });
    }
    Ok(Parsed {
        model_name,
        root_digest,
        resources,
        serialization: Serialization {
            allow_symlinks,
            ignore_paths,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::new(vec![
            Entry {
                name: "sub/weights.bin".into(),
                sha256: "8ee3b52d5edad10faab9471685b10b016e1a4e63aecf5e09a2621545cd7d5f79".into(),
            },
            Entry {
                name: "config.json".into(),
                sha256: "e346432021b04179518d9614f3560ccd71354a4ee101ddcb893d6959a9d6301c".into(),
            },
        ])
    }

    #[test]
    fn round_trip_and_known_root() {
        let ser = Serialization {
            allow_symlinks: false,
            ignore_paths: vec![".git".into(), "model.sig".into()],
        };
        let payload = build("m", &manifest(), &ser);
        let p = parse(&payload).unwrap();
        // the root digest model_signing 1.1.1 wrote for these two files
        assert_eq!(
            p.root_digest,
            "c6b6c4b59c1b66ea8261713ce25b6fca76bb4cd903ff87dc8a966f20e4c1ad6f"
        );
        assert_eq!(p.model_name, "m");
        assert_eq!(p.resources, manifest().entries);
        assert_eq!(p.serialization, ser);
        // deterministic
        assert_eq!(payload, build("m", &manifest(), &ser));
    }

    #[test]
    fn rejects_bad_statements() {
        let ser = Serialization {
            allow_symlinks: false,
            ignore_paths: vec![],
        };
        let good: Value = serde_json::from_slice(&build("m", &manifest(), &ser)).unwrap();
        let mutate = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            parse(&serde_json::to_vec(&v).unwrap())
        };
        assert!(matches!(
            mutate(&|v| v["predicateType"] = "x".into()),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            mutate(&|v| v["predicate"]["serialization"]["method"] = "shards".into()),
            Err(ParseError::Malformed(m)) if m.contains("shards")
        ));
        assert!(matches!(
            mutate(&|v| v["predicate"]["resources"][0]["digest"] = "00".repeat(32).into()),
            Err(ParseError::Inconsistent { .. })
        ));
        assert!(matches!(
            mutate(&|v| v["subject"] = Value::Array(vec![])),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            mutate(&|v| v["predicate"]["resources"][1] = v["predicate"]["resources"][0].clone()),
            Err(ParseError::Malformed(m)) if m.contains("twice")
        ));
        assert!(matches!(
            parse(b"\x00garbage"),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(parse(b"[]"), Err(ParseError::Malformed(_))));
    }
}
