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
//! [[ignore]]                   # silence a rule everywhere, with a reason
//! rule = "SCN001"
//! reason = "we only care about model files"
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::finding::Severity;
use crate::scan::pickle::machine::is_dotted_name;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub fail_on: Option<String>,
    #[serde(default)]
    pub allow: Vec<Allow>,
    #[serde(default)]
    pub ignore: Vec<Ignore>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    pub callable: String,
    pub reason: String,
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
        Self::parse(&text, &p)
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
            if !is_dotted_name(&a.callable) || !a.callable.contains('.') {
                return Err(invalid(format!(
                    "allow[{i}].callable: '{}' is not an exact module.qualname",
                    a.callable
                )));
            }
            if a.reason.trim().is_empty() {
                return Err(invalid(format!(
                    "allow[{i}].reason: give a reason for allowing '{}'",
                    a.callable
                )));
            }
        }
        for (i, ig) in cfg.ignore.iter().enumerate() {
            if crate::rules::find(&ig.rule).is_none() {
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

    pub fn allowed(&self) -> HashSet<String> {
        self.allow.iter().map(|a| a.callable.clone()).collect()
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
        let e = Config::parse("[[allow]]\ncallable = \"a.b\"\nreason = \" \"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reason"), "{e}");
    }
}
