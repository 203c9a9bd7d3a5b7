//! No function in any workspace crate's `src/` is longer than
//! `LINES_MAX` lines, counted from its `fn` line to its closing brace at
//! the same indent (a long function is split into named steps instead).
//! There are no exceptions: the test names every function over the bound.

use std::path::{Path, PathBuf};

/// The longest a function may be, lines.
const LINES_MAX: usize = 150;

/// A function found too long: where, which, how long.
#[derive(Debug, PartialEq, Eq)]
struct Long {
    line: usize,
    name: String,
    lines: usize,
}

/// The name of the function a line opens, if it opens one (`fn` after
/// optional visibility and qualifiers).
fn fn_name(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w {
            "fn" => {
                let rest = words.next()?;
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                return (end > 0).then(|| &rest[..end]);
            }
            "pub" | "const" | "async" | "unsafe" | "extern" | "default" => {}
            w if w.starts_with("pub(") || w.starts_with('"') => {}
            _ => return None,
        }
    }
    None
}

/// Every function of `text` longer than `max` lines.
fn long_functions(text: &str, max: usize) -> Vec<Long> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let indent = &line[..line.len() - line.trim_start().len()];
        // The signature ends at the first line ending in `{` (a body) or
        // `;` (a declaration without one).
        let Some(open) = (i..lines.len()).find(|&j| {
            let t = lines[j].trim_end();
            t.ends_with('{') || t.ends_with(';') || t.ends_with('}')
        }) else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue; // a declaration, or a body on one line
        }
        let closing = format!("{indent}}}");
        let Some(close) = (open + 1..lines.len()).find(|&j| lines[j].trim_end() == closing) else {
            continue;
        };
        let n = close - i + 1;
        if n > max {
            out.push(Long {
                line: i + 1,
                name: name.to_string(),
                lines: n,
            });
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The workspace's member crates, from the root `Cargo.toml`.
fn members(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let doc: toml::Table = toml::from_str(&text).expect("root Cargo.toml parses");
    doc["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .map(|m| m.as_str().expect("member path").to_string())
        .collect()
}

#[test]
fn the_counter_measures_from_fn_to_its_closing_brace() {
    let body = |n: usize| "    x();\n".repeat(n);
    let text = format!(
        "pub(crate) async fn big(\n    a: u8,\n) -> u8 {{\n{}}}\n\
         fn small() {{\n{}}}\n\
         trait T {{\n    fn decl(&self);\n    fn one(&self) -> u8 {{ 1 }}\n    fn inner(&self) {{\n{}    }}\n}}\n",
        body(9),
        body(2),
        body(10)
    );
    assert_eq!(
        long_functions(&text, 5),
        vec![
            Long {
                line: 1,
                name: "big".into(),
                lines: 13
            },
            Long {
                line: 21,
                name: "inner".into(),
                lines: 12
            },
        ]
    );
    assert_eq!(fn_name("let f = fn_name(x);"), None);
    assert_eq!(fn_name("    pub fn new() -> Self {"), Some("new"));
}

#[test]
fn no_function_in_the_workspace_is_longer_than_the_bound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut found = Vec::new();
    let mut scanned = 0;
    for m in members(root) {
        let mut files = Vec::new();
        rust_files(&root.join(&m).join("src"), &mut files);
        files.sort();
        for f in files {
            let rel = f
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&f).expect("read source");
            scanned += 1;
            for l in long_functions(&text, LINES_MAX) {
                found.push(format!(
                    "{rel}:{} fn {} is {} lines",
                    l.line, l.name, l.lines
                ));
            }
        }
    }
    assert!(scanned > 50, "only {scanned} files scanned");
    assert!(
        found.is_empty(),
        "functions over {LINES_MAX} lines (split them into named steps):\n{}",
        found.join("\n")
    );
}
