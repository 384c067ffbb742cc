//! The CI integration: `scripts/ci/probity-action.sh` run with the real
//! binary (exit code, GITHUB_OUTPUT, SARIF file, job summary), and
//! consistency checks of `action.yml` and `.pre-commit-hooks.yaml`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(rel: &str) -> String {
    repo()
        .join("fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// What one run of the script left behind.
struct ScriptRun {
    code: i32,
    /// Its stdout and stderr, for failure messages.
    log: String,
    github_output: String,
    summary: String,
    exit_code_file: Option<String>,
    sarif: Option<serde_json::Value>,
}

/// Runs the script in an empty temporary directory with PROBITY_PATHS set to
/// `paths` and every other input at its default.
fn run_script(paths: &str) -> ScriptRun {
    let dir = tempfile::tempdir().unwrap();
    let github_output = dir.path().join("github_output");
    let summary = dir.path().join("step_summary");
    let exit_code_file = dir.path().join("exit-code");
    fs::write(&github_output, "").unwrap();
    fs::write(&summary, "").unwrap();

    let out = Command::new("bash")
        .arg(repo().join("scripts/ci/probity-action.sh"))
        .current_dir(dir.path())
        .env("PROBITY_BIN", env!("CARGO_BIN_EXE_probity"))
        .env("PROBITY_PATHS", paths)
        .env_remove("PROBITY_FAIL_ON")
        .env_remove("PROBITY_CONFIG")
        .env_remove("PROBITY_SARIF")
        .env_remove("PROBITY_EXTRA_ARGS")
        .env("PROBITY_EXIT_CODE_FILE", &exit_code_file)
        .env("GITHUB_OUTPUT", &github_output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("bash runs");

    let sarif = fs::read(dir.path().join("probity.sarif"))
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).expect("the SARIF file is JSON"));
    ScriptRun {
        code: out.status.code().expect("the script exited normally"),
        log: format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        github_output: fs::read_to_string(&github_output).unwrap(),
        summary: fs::read_to_string(&summary).unwrap(),
        exit_code_file: fs::read_to_string(&exit_code_file).ok(),
        sarif,
    }
}

/// The summary is built with python3; without it the script skips it.
fn have_python3() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn results(sarif: &serde_json::Value) -> &Vec<serde_json::Value> {
    sarif["runs"][0]["results"]
        .as_array()
        .expect("runs[0].results is an array")
}

#[test]
fn clean_directory_exits_0_with_sarif_and_summary() {
    let run = run_script(&fixture("benign/pickle"));
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(
        run.github_output.lines().any(|l| l == "exit-code=0"),
        "GITHUB_OUTPUT: {:?}\n{}",
        run.github_output,
        run.log
    );
    assert!(
        run.github_output
            .lines()
            .any(|l| l == "sarif=probity.sarif"),
        "GITHUB_OUTPUT: {:?}",
        run.github_output
    );
    assert_eq!(run.exit_code_file.as_deref(), Some("0\n"));

    let sarif = run.sarif.expect("probity.sarif was written");
    assert_eq!(sarif["version"], "2.1.0");
    assert!(results(&sarif).is_empty(), "{sarif:#}");

    if have_python3() {
        assert!(
            run.summary.to_lowercase().contains("clean"),
            "summary: {:?}\n{}",
            run.summary,
            run.log
        );
    } else {
        eprintln!("python3 not found: the job summary is not checked");
    }
}

#[test]
fn malicious_file_exits_1_with_pkl001_in_sarif() {
    // Two inputs with uneven whitespace: both must reach probity as separate
    // paths (one bad path would make the exit code 2).
    let paths = format!(
        "  {}   {} ",
        fixture("benign/pickle"),
        fixture("malicious/pytorch/zip_datapkl_os_system.pt")
    );
    let run = run_script(&paths);
    assert_eq!(run.code, 1, "{}", run.log);
    assert!(
        run.github_output.lines().any(|l| l == "exit-code=1"),
        "GITHUB_OUTPUT: {:?}\n{}",
        run.github_output,
        run.log
    );
    assert_eq!(run.exit_code_file.as_deref(), Some("1\n"));

    let sarif = run.sarif.expect("probity.sarif was written");
    assert_eq!(sarif["version"], "2.1.0");
    assert!(
        results(&sarif).iter().any(|r| r["ruleId"] == "PKL001"),
        "no PKL001 result: {sarif:#}"
    );

    if have_python3() {
        assert!(run.summary.contains("PKL001"), "summary: {:?}", run.summary);
    }
}

#[test]
fn missing_path_exits_2() {
    let run = run_script("no-such-model.pt");
    assert_eq!(run.code, 2, "{}", run.log);
    assert!(
        run.github_output.lines().any(|l| l == "exit-code=2"),
        "GITHUB_OUTPUT: {:?}\n{}",
        run.github_output,
        run.log
    );
    assert_eq!(run.exit_code_file.as_deref(), Some("2\n"));
}

/// The names that follow `prefix` in `text` (`inputs.` → `fail-on`, ...).
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The keys of a top-level mapping of the YAML file: the lines indented by
/// exactly two spaces, from `section:` to the next top-level line.
fn top_level_keys(yaml: &str, section: &str) -> Vec<String> {
    let header = format!("{section}:");
    let mut keys = Vec::new();
    let mut inside = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            inside = line.trim_end() == header;
            continue;
        }
        if inside && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some(key) = line.trim().strip_suffix(':') {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

#[test]
fn action_yml_is_consistent() {
    let action = fs::read_to_string(repo().join("action.yml")).unwrap();
    assert!(action.contains("scripts/ci/probity-action.sh"));
    assert!(action.contains("github/codeql-action/upload-sarif@v3"));
    assert!(action.contains("using: composite"));
    assert!(repo().join("scripts/ci/probity-action.sh").is_file());

    let declared = top_level_keys(&action, "inputs");
    for expected in [
        "paths",
        "fail-on",
        "config",
        "sarif",
        "upload-sarif",
        "version",
        "extra-args",
    ] {
        assert!(
            declared.iter().any(|d| d == expected),
            "input {expected} is not declared: {declared:?}"
        );
    }
    let used = names_after(&action, "inputs.");
    assert!(!used.is_empty());
    for name in &used {
        assert!(
            declared.contains(name),
            "inputs.{name} is used but not declared (declared: {declared:?})"
        );
    }

    let outputs = top_level_keys(&action, "outputs");
    assert!(outputs.iter().any(|o| o == "exit-code"), "{outputs:?}");
    assert!(outputs.iter().any(|o| o == "sarif"), "{outputs:?}");

    // Every `steps.X` refers to a step with `id: X`.
    for step in names_after(&action, "steps.") {
        assert!(
            action.contains(&format!("id: {step}\n")),
            "steps.{step} is used but no step has that id"
        );
    }
}

#[test]
fn pre_commit_hook_is_declared() {
    let hooks = fs::read_to_string(repo().join(".pre-commit-hooks.yaml")).unwrap();
    assert!(hooks.contains("id: probity-scan"), "{hooks}");
    assert!(hooks.contains("entry: probity scan"), "{hooks}");
    assert!(hooks.contains("language: system"), "{hooks}");
}
