//! The `BOURSE_*` environment namespace is the server's configuration: every
//! `BOURSE_…` variable any source file of the repository reads must be a
//! configuration key or reserved (`ENV_RESERVED`, `ENV_RESERVED_PREFIXES`),
//! so that `BOURSE_X=… bourse serve` never means two things.

use bourse::config::{env_key, is_config_key, ENV_RESERVED, ENV_RESERVED_PREFIXES};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// `BOURSE_…` names read through `env::var("…")` / `env::var_os("…")`.
fn env_reads(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for call in ["var(\"", "var_os(\""] {
        let needle = format!("{call}BOURSE_");
        let mut rest = text;
        while let Some(i) = rest.find(&needle) {
            let from = &rest[i + call.len()..];
            let end = from.find('"').unwrap_or(from.len());
            names.push(from[..end].to_string());
            rest = &from[end..];
        }
    }
    names
}

#[test]
fn every_bourse_variable_read_is_a_key_or_reserved() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 20, "the sources were found: {}", files.len());
    let mut bad = Vec::new();
    let mut seen = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for name in env_reads(&text) {
            seen += 1;
            let reserved = ENV_RESERVED.contains(&name.as_str())
                || ENV_RESERVED_PREFIXES.iter().any(|p| name.starts_with(p));
            let key = env_key(&name).is_some_and(|k| is_config_key(&k));
            if !(reserved || key) {
                bad.push(format!("{} reads {name}", f.display()));
            }
        }
    }
    assert!(
        seen > 0,
        "no BOURSE_ variable read found: the scan is broken"
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_scan_sees_reads_and_tells_keys_from_strangers() {
    let src = "let a = std::env::var(\"BOURSE_LOG\"); let b = env::var_os(\"BOURSE_SEED\");";
    assert_eq!(env_reads(src), vec!["BOURSE_LOG", "BOURSE_SEED"]);
    assert!(is_config_key("server.listen"));
    assert!(!is_config_key("seed"));
    assert!(!is_config_key("server"), "a section is not a key");
}
