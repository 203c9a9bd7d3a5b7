//! Data-driven scenario tests: every `scenarios/*.jsonl` script is run
//! in-process through `bourse::script::run_script` and its output compared,
//! line by line as JSON values, with `scenarios/<name>.expected`; every
//! `scenarios/bad/*.jsonl` must fail with exactly the message in its
//! `.expected` file.
//!
//! Invariants: each expected file was derived by hand from the spec
//! (`shared/spec/semantics.md`, `script.md`) and ARCHITECTURE.md, never by
//! blessing the engine's output; `scenarios/README.md` names the rule each
//! file pins. A failure reports every failing file, each with its first
//! differing line.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("scenarios")
        .join(sub)
}

fn scripts(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    out.sort();
    out
}

fn run(path: &Path) -> (String, Result<(), bourse::script::ScriptError>) {
    let input = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut output = Vec::new();
    let result = bourse::script::run_script(&input[..], &mut output);
    (String::from_utf8(output).expect("output is UTF-8"), result)
}

fn non_blank(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Compares actual and expected output; `None` when they agree.
fn diff(name: &str, actual: &str, expected: &str) -> Option<String> {
    let a = non_blank(actual);
    let e = non_blank(expected);
    for i in 0..a.len().max(e.len()) {
        let (al, el) = (a.get(i).copied(), e.get(i).copied());
        let same = match (al, el) {
            (Some(x), Some(y)) => {
                let xv: Result<Value, _> = serde_json::from_str(x);
                let yv: Result<Value, _> = serde_json::from_str(y);
                match (xv, yv) {
                    (Ok(xv), Ok(yv)) => xv == yv,
                    (_, Err(err)) => {
                        return Some(format!("{name}.expected line {}: not JSON: {err}", i + 1))
                    }
                    (Err(err), _) => {
                        return Some(format!("{name}: output line {} not JSON: {err}", i + 1))
                    }
                }
            }
            _ => false,
        };
        if !same {
            return Some(format!(
                "{name}: first difference at event line {}\n  expected: {}\n  actual:   {}\n--- full actual output ---\n{}",
                i + 1,
                el.unwrap_or("<end of output>"),
                al.unwrap_or("<end of output>"),
                actual
            ));
        }
    }
    None
}

#[test]
fn scenarios_match_expected() {
    let files = scripts(&dir(""));
    assert!(!files.is_empty(), "no scenarios found");
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let expected_path = path.with_extension("expected");
        let Ok(expected) = fs::read_to_string(&expected_path) else {
            failures.push(format!("{name}: missing {}", expected_path.display()));
            continue;
        };
        let (actual, result) = run(path);
        if let Err(e) = result {
            failures.push(format!("{name}: script failed: {e}"));
            continue;
        }
        if let Some(d) = diff(&name, &actual, &expected) {
            failures.push(d);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn bad_scripts_fail_with_expected_message() {
    let files = scripts(&dir("bad"));
    assert!(!files.is_empty(), "no bad scripts found");
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let expected_path = path.with_extension("expected");
        let Ok(expected) = fs::read_to_string(&expected_path) else {
            failures.push(format!("bad/{name}: missing {}", expected_path.display()));
            continue;
        };
        let (_, result) = run(path);
        match result {
            Ok(()) => failures.push(format!("bad/{name}: ran without error")),
            Err(e) if e.to_string() == expected.trim_end() => {}
            Err(e) => failures.push(format!(
                "bad/{name}:\n  expected error: {}\n  actual error:   {e}",
                expected.trim_end()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad scripts failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_scenario_is_documented() {
    let readme = fs::read_to_string(dir("README.md")).expect("scenarios/README.md");
    let mut missing = Vec::new();
    let good = scripts(&dir("")).into_iter().map(|p| (p, ""));
    let bad = scripts(&dir("bad")).into_iter().map(|p| (p, "bad/"));
    for (path, prefix) in good.chain(bad) {
        let file = path.file_name().and_then(|s| s.to_str()).unwrap_or("?");
        let name = format!("{prefix}{file}");
        if !readme.contains(&format!("`{name}`")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not in scenarios/README.md: {missing:?}"
    );
}
