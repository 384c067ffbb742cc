//! Every rule in the catalogue is asserted by at least one test: either a
//! labelled file must report it (the expected-rules maps of the fixtures,
//! the format fixtures and the public corpus), or a test names its ID in an
//! assertion (a rule ID literal inside a `#[cfg(test)]` module or an
//! integration test).

mod expected;

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Rule IDs quoted in test code: integration tests whole, and the part of
/// each source file from its `#[cfg(test)]` module on.
fn quoted_in_tests(ids: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["tests", "crates", "src"] {
        for e in walkdir::WalkDir::new(root().join(dir)).sort_by_file_name() {
            let e = e.unwrap();
            let p = e.path();
            if p.extension().is_some_and(|x| x == "rs") && !p.starts_with(root().join("tests/data"))
            {
                files.push(p.to_path_buf());
            }
        }
    }
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let test_part = if f.starts_with(root().join("tests")) {
            text.as_str()
        } else {
            match text.find("#[cfg(test)]") {
                Some(i) => &text[i..],
                None => continue,
            }
        };
        for id in ids {
            if test_part.contains(&format!("\"{id}\"")) && !f.ends_with(file!()) {
                found.push(id.to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_rule_is_asserted_by_a_test() {
    let ids: Vec<&str> = probity_scan::catalogue::all()
        .iter()
        .map(|r| r.id)
        .collect();
    let mut covered: Vec<String> = Vec::new();
    for f in [
        "fixtures/expected-rules.json",
        "fixtures/formats/expected-rules.json",
        "fixtures/frameworks/expected-rules.json",
        "tests/data/corpus-rules.json",
    ] {
        covered.extend(expected::Expected::all_rules(root().join(f)));
    }
    covered.extend(quoted_in_tests(&ids));
    let missing: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !covered.iter().any(|c| c == id))
        .collect();
    assert!(
        missing.is_empty(),
        "rules no test asserts: {missing:?} (add a fixture with an expected-rules entry, or a test that checks the ID)"
    );
}
