//! `probity.toml`: the user's policy. Unknown keys and bad values are errors
//! that name the key and line.
//!
//! ```toml
//! fail_on = "warning"          # critical | warning | info
//!
//! [[allow]]                    # exact module.qualname, with a reason
//! callable = "mypkg.models.Net"
//! reason = "our own model class, reviewed 2026-11"
//!
//! [[allow]]                    # or every callable of one of your modules
//! module = "mypkg.layers"
//! reason = "our layer library"
//!
//! [[ignore]]                   # silence a rule everywhere, with a reason
//! rule = "SCN001"
//! reason = "we only care about model files"
//!
//! [[override]]                 # silence rules for some paths only
//! paths = ["data/**/*.npy"]
//! ignore = ["NPY001"]
//! reason = "object arrays of our own preprocessing, reviewed"
//!
//! [deep]                       # defaults of `probity deep`
//! fail_on = "backdoor"         # suspicious | backdoor
//! require_sandbox = true
//! budget = 600                 # seconds
//! suspicious = 0.5             # verdict thresholds on the backdoor probability
//! backdoor = 0.8
//!
//! [provenance]                 # signatures (OpenSSF model signing), ledger
//! ledger = "probity-ledger.db" # append scan/deep/verify records
//! require_signature = true     # `probity scan` fails without a valid one
//! signature = "model.sig"      # its name inside each model folder
//!
//! [[provenance.signers]]       # accepted signers, any one suffices:
//! key = "keys/release.pub"     #   a public key (key mode), or
//! # certificate_chain = ["ca.pem"]        a trusted CA (certificate mode), or
//! # fingerprint = "3f1c…"                 a pinned certificate key, or
//! # identity = "ci@example.com"           a Sigstore identity (keyless)
//! # issuer = "https://accounts.google.com"
//!
//! # in [provenance]: who may publish new versions (`probity diff`)
//! # trusted_authors = ["alice", "ml-bot"]
//!
//! [server]                     # `probity serve` (its flags win)
//! bind = "127.0.0.1:8477"
//! data = "/var/lib/probity"    # database, ledger, uploads
//! allow_roots = ["/models"]    # local paths a caller may scan
//! max_upload_bytes = 21474836480
//! ```
//!
//! Relative paths in `[provenance]` are relative to the config file's folder.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use probity_report::Severity;
use probity_scan::pickle::machine::is_dotted_name;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub fail_on: Option<String>,
    #[serde(default)]
    pub allow: Vec<Allow>,
    #[serde(default)]
    pub ignore: Vec<Ignore>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<Override>,
    #[serde(default)]
    pub deep: Deep,
    #[serde(default)]
    pub provenance: Provenance,
    #[serde(default)]
    pub server: Server,
    /// The folder of the config file (relative paths in it are relative to
    /// this), or empty for the defaults.
    #[serde(skip)]
    pub dir: std::path::PathBuf,
}

/// `[provenance]`: signature requirements of `probity scan`, and the ledger.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// A valid signature by one of `signers` is required (SIG001/SIG002).
    #[serde(default)]
    pub require_signature: bool,
    /// The signature's file name inside a model folder (default `model.sig`).
    pub signature: Option<String>,
    #[serde(default)]
    pub signers: Vec<Signer>,
    /// The ledger file `scan`, `deep` and `verify` append to (relative to
    /// the config file's folder); `--ledger` and `PROBITY_LEDGER` win.
    pub ledger: Option<std::path::PathBuf>,
    /// Who may publish new versions of a model (Hugging Face user names,
    /// commit authors, and MLflow user IDs): `probity diff` flags an update
    /// by anyone else as unexpected.
    #[serde(default)]
    pub trusted_authors: Vec<String>,
}

/// `[server]`: settings of `probity serve` (flags win). Relative paths are
/// relative to the config file's folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub bind: Option<String>,
    pub data: Option<std::path::PathBuf>,
    #[serde(default)]
    pub allow_roots: Vec<std::path::PathBuf>,
    pub max_upload_bytes: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub static_workers: Option<usize>,
    pub static_timeout: Option<u64>,
    pub deep_budget: Option<u64>,
    pub min_watch_interval: Option<i64>,
    pub webhook_attempts: Option<i64>,
    pub public_url: Option<String>,
    pub io_timeout: Option<u64>,
}

/// One accepted signer: exactly one of `key`, `certificate_chain`,
/// `fingerprint`, or `identity` with `issuer`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    pub key: Option<std::path::PathBuf>,
    pub certificate_chain: Option<Vec<std::path::PathBuf>>,
    pub fingerprint: Option<String>,
    pub identity: Option<String>,
    pub issuer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// An exact `module.qualname`.
    pub callable: Option<String>,
    /// A module whose every callable is allowed (the denylist still wins).
    pub module: Option<String>,
    pub reason: String,
}

/// Rules silenced for some paths only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Glob patterns matched against each file's path relative to the
    /// current directory (`**` crosses folders) or its remote name.
    pub paths: Vec<String>,
    pub ignore: Vec<String>,
    pub reason: String,
}

/// Defaults of `probity deep`; command-line flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "deep"), allow(dead_code))]
pub struct Deep {
    pub fail_on: Option<String>,
    pub require_sandbox: Option<bool>,
    pub budget: Option<u64>,
    pub suspicious: Option<f64>,
    pub backdoor: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignore {
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: p.clone(),
            source,
        })?;
        let mut cfg = Self::parse(&text, &p)?;
        cfg.dir = path.parent().map(|d| d.to_path_buf()).unwrap_or_default();
        if let Some(dir) = path.parent() {
            if let Some(d) = &mut cfg.server.data {
                if d.is_relative() {
                    *d = dir.join(&*d);
                }
            }
            for r in &mut cfg.server.allow_roots {
                if r.is_relative() {
                    *r = dir.join(&*r);
                }
            }
        }
        if let Some(l) = &mut cfg.provenance.ledger {
            if l.is_relative() {
                if let Some(dir) = path.parent() {
                    *l = dir.join(&*l);
                }
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            message,
        };
        let cfg: Config =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().replace('\n', " ")))?;
        if let Some(f) = &cfg.fail_on {
            f.parse::<Severity>()
                .map_err(|e| invalid(format!("key `fail_on`: {e}")))?;
        }
        for (i, a) in cfg.allow.iter().enumerate() {
            let what = match (&a.callable, &a.module) {
                (Some(c), None) => {
                    if !is_dotted_name(c) || !c.contains('.') {
                        return Err(invalid(format!(
                            "allow[{i}].callable: '{c}' is not an exact module.qualname"
                        )));
                    }
                    c.clone()
                }
                (None, Some(m)) => {
                    if !is_dotted_name(m) {
                        return Err(invalid(format!(
                            "allow[{i}].module: '{m}' is not a module name"
                        )));
                    }
                    if probity_scan::pickle::callables::module_is_denied(m) {
                        return Err(invalid(format!(
                            "allow[{i}].module: '{m}' holds dangerous callables and cannot be allowed as a whole"
                        )));
                    }
                    m.clone()
                }
                _ => {
                    return Err(invalid(format!(
                        "allow[{i}]: give exactly one of `callable` or `module`"
                    )))
                }
            };
            if a.reason.trim().is_empty() {
                return Err(invalid(format!(
                    "allow[{i}].reason: give a reason for allowing '{what}'"
                )));
            }
        }
        for (i, o) in cfg.overrides.iter().enumerate() {
            if o.paths.is_empty() || o.ignore.is_empty() {
                return Err(invalid(format!(
                    "override[{i}]: give `paths` and the rule IDs to `ignore`"
                )));
            }
            for p in &o.paths {
                globset::Glob::new(p).map_err(|e| {
                    invalid(format!("override[{i}].paths: '{p}' is not a glob: {e}"))
                })?;
            }
            for r in &o.ignore {
                if probity_scan::catalogue::find(r).is_none() {
                    return Err(invalid(format!(
                        "override[{i}].ignore: unknown rule ID '{r}' (see `probity rules`)"
                    )));
                }
            }
            if o.reason.trim().is_empty() {
                return Err(invalid(format!("override[{i}].reason: give a reason")));
            }
        }
        if let Some(f) = &cfg.deep.fail_on {
            if f != "suspicious" && f != "backdoor" && f != "never" {
                return Err(invalid(format!(
                    "key `deep.fail_on`: '{f}' is not suspicious, backdoor or never"
                )));
            }
        }
        let (s, b) = (
            cfg.deep.suspicious.unwrap_or(0.5),
            cfg.deep.backdoor.unwrap_or(0.8),
        );
        if !(0.0 < s && s < b && b <= 1.0) {
            return Err(invalid(format!(
                "keys `deep.suspicious` and `deep.backdoor`: need 0 < suspicious ({s}) < backdoor ({b}) <= 1"
            )));
        }
        if cfg.deep.budget == Some(0) {
            return Err(invalid(
                "key `deep.budget`: must be at least 1 second".into(),
            ));
        }
        if let Some(name) = &cfg.provenance.signature {
            if name.is_empty() || name.contains('/') || name.contains('\\') || name == ".." {
                return Err(invalid(format!(
                    "key `provenance.signature`: '{name}' is not a file name"
                )));
            }
        }
        for (i, sg) in cfg.provenance.signers.iter().enumerate() {
            let kinds = [
                sg.key.is_some(),
                sg.certificate_chain.is_some(),
                sg.fingerprint.is_some(),
                sg.identity.is_some() || sg.issuer.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(invalid(format!(
                    "provenance.signers[{i}]: give exactly one of `key`, `certificate_chain`, `fingerprint`, or `identity` with `issuer`"
                )));
            }
            if sg.identity.is_some() != sg.issuer.is_some() {
                return Err(invalid(format!(
                    "provenance.signers[{i}]: `identity` and `issuer` go together"
                )));
            }
            if let Some(f) = &sg.fingerprint {
                let hex = f.strip_prefix("sha256:").unwrap_or(f);
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(format!(
                        "provenance.signers[{i}].fingerprint: '{f}' is not a SHA-256 fingerprint (64 hex digits)"
                    )));
                }
            }
            if sg.certificate_chain.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(invalid(format!(
                    "provenance.signers[{i}].certificate_chain: list at least one PEM file"
                )));
            }
        }
        if cfg.provenance.require_signature && cfg.provenance.signers.is_empty() {
            return Err(invalid(
                "key `provenance.require_signature`: list the accepted signers in [[provenance.signers]]".into(),
            ));
        }
        for (i, ig) in cfg.ignore.iter().enumerate() {
            if probity_scan::catalogue::find(&ig.rule).is_none() {
                return Err(invalid(format!(
                    "ignore[{i}].rule: unknown rule ID '{}' (see `probity rules`)",
                    ig.rule
                )));
            }
            if ig.reason.trim().is_empty() {
                return Err(invalid(format!(
                    "ignore[{i}].reason: give a reason for ignoring {}",
                    ig.rule
                )));
            }
        }
        Ok(cfg)
    }

    /// Allowlist entries: exact `module.qualname`s, and `module.*` for
    /// allowed modules.
    pub fn allowed(&self) -> HashSet<String> {
        self.allow
            .iter()
            .filter_map(|a| {
                a.callable
                    .clone()
                    .or_else(|| a.module.as_ref().map(|m| format!("{m}.*")))
            })
            .collect()
    }

    /// Per-path rule overrides, compiled: (matcher, rule IDs).
    pub fn path_overrides(&self) -> Vec<(globset::GlobSet, HashSet<String>)> {
        self.overrides
            .iter()
            .filter_map(|o| {
                let mut b = globset::GlobSetBuilder::new();
                for p in &o.paths {
                    b.add(globset::Glob::new(p).ok()?);
                }
                Some((
                    b.build().ok()?,
                    o.ignore.iter().map(|r| r.to_ascii_uppercase()).collect(),
                ))
            })
            .collect()
    }

    pub fn ignored(&self) -> HashSet<String> {
        self.ignore
            .iter()
            .map(|i| i.rule.to_ascii_uppercase())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_config() {
        let c = Config::parse(
            "fail_on = \"critical\"\n[[allow]]\ncallable = \"mypkg.Net\"\nreason = \"ours\"\n[[ignore]]\nrule = \"scn001\"\nreason = \"noise\"\n",
            "p.toml",
        )
        .unwrap();
        assert!(c.allowed().contains("mypkg.Net"));
        assert!(c.ignored().contains("SCN001"));
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = Config::parse("fail_onn = \"warning\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fail_onn") && e.contains("line 1"), "{e}");
        let e = Config::parse("\n\nfail_on = \"loud\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fail_on"), "{e}");
        let e = Config::parse("[[allow]]\ncallable = \"os\"\nreason = \"x\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("allow[0].callable"), "{e}");
        let e = Config::parse("[[ignore]]\nrule = \"XYZ999\"\nreason = \"x\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("XYZ999"), "{e}");
        for (bad, key) in [
            ("[deep]\nfail_on = \"loud\"\n", "deep.fail_on"),
            (
                "[deep]\nsuspicious = 0.9\nbackdoor = 0.5\n",
                "deep.suspicious",
            ),
            ("[deep]\nbudgett = 3\n", "budgett"),
            ("[provenance]\nledgr = \"x\"\n", "ledgr"),
            (
                "[[override]]\npaths = [\"a[\"]\nignore = [\"PKL002\"]\nreason = \"x\"\n",
                "override[0].paths",
            ),
            (
                "[[override]]\npaths = [\"a\"]\nignore = [\"NOPE01\"]\nreason = \"x\"\n",
                "NOPE01",
            ),
            (
                "[[allow]]\ncallable = \"a.b\"\nmodule = \"a\"\nreason = \"x\"\n",
                "exactly one",
            ),
        ] {
            let e = Config::parse(bad, "p.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
        let c = Config::parse(
            "[deep]\nfail_on = \"backdoor\"\nrequire_sandbox = true\nbudget = 60\nsuspicious = 0.6\nbackdoor = 0.9\n[[allow]]\nmodule = \"mylab.layers\"\nreason = \"ours\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.deep.budget, Some(60));
        assert_eq!(c.provenance.ledger, None);
        assert!(c.allowed().contains("mylab.layers.*"));
        let l = Config::parse(
            "[provenance]\nledger = \"l.db\"\ntrusted_authors = [\"alice\"]\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(l.provenance.ledger, Some("l.db".into()));
        assert_eq!(l.provenance.trusted_authors, vec!["alice".to_string()]);
        let e = Config::parse("[[allow]]\ncallable = \"a.b\"\nreason = \" \"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reason"), "{e}");
    }
}
