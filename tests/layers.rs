//! The crate's layers import one way: every `crate::<module>` a file under `src/` names
//! must be of a lower layer than the file's own top-level module. Comments are ignored;
//! test modules count like the code they test. The workspace's crates too: the Freshteam
//! simulator (`simulator/`) and the operator do not depend on each other's code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may import only modules of a
/// lower layer (never one of its own layer but itself).
const LAYERS: &[&[&str]] = &[
    // Types and small tools everything may use.
    &[
        "member", "secret", "clock", "progress", "ledger", "egress", "schedule", "exit",
    ],
    // The one HTTP policy of both clients: answers classified, backoff, rate-limit
    // headers, the budgets requests wait on together.
    &["http_policy"],
    // CRD types.
    &["api"],
    // Documents into CRD types (`sync --file`).
    &["manifest"],
    // An integration's state between runs (ledger, outbox, notes): one store over the
    // kind, file, cluster and memory backends. Below the edges that keep state in it.
    &["state"],
    // Edges, behind traits.
    &["source", "destination", "notify"],
    // Pure: mapping, then the plan built from mapped members.
    &["mapping"],
    &["plan"],
    // Spec checks that need the mapping, the schedule and the source's rules.
    &["validate"],
    // The one client factory (spec and credentials into source and destination clients).
    &["connect"],
    // The one import path.
    &["sync"],
    // Beside the front ends: they record into it.
    &["telemetry"],
    // Front ends.
    &["controller", "plugin"],
    // The command line runs the operator.
    &["cli"],
    // Fuzzing harness (feature `fuzzing`: fuzz/ and the tests only): reaches into every
    // parser.
    &["fuzzing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line without its comment (a `//` at the start or after whitespace; a
/// `//` inside a URL follows a `:`).
fn code(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 0..bytes.len().saturating_sub(1) {
        if bytes[i] == b'/'
            && bytes[i + 1] == b'/'
            && (i == 0 || bytes[i - 1].is_ascii_whitespace())
        {
            return &line[..i];
        }
    }
    line
}

/// Top-level modules a file names through `crate::`, with a line number each.
fn imports(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut in_group = false;
    for (n, line) in text.lines().enumerate() {
        let line = code(line);
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c, ...}` (may go on over lines).
                in_group = !group.contains('}');
                for name in group.split('}').next().unwrap().split(',') {
                    push_name(name, n, &mut out);
                }
            } else {
                push_name(rest, n, &mut out);
            }
        }
        if in_group && !line.contains("crate::{") {
            for name in line.split('}').next().unwrap().split(',') {
                push_name(name, n, &mut out);
            }
            in_group = !line.contains('}');
        }
    }
    out
}

fn push_name(text: &str, line: usize, out: &mut Vec<(String, usize)>) {
    let name: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() && name.chars().next().unwrap().is_lowercase() {
        out.push((name, line + 1));
    }
}

#[test]
fn every_module_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut unknown = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(top.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        let Some(own) = layer_of(&top) else {
            unknown.insert(top.clone(), rel.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (name, line) in imports(&text) {
            if name == top {
                continue;
            }
            match layer_of(&name) {
                Some(l) if l < own => {}
                Some(_) => wrong.push(format!(
                    "src/{}:{line}: `{top}` imports `crate::{name}`, a layer not below it",
                    rel.display()
                )),
                None => {
                    unknown.insert(name, format!("src/{}:{line}", rel.display()));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS (add them where they belong): {unknown:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// A dependency section of a manifest: the `name = ...` lines between `[section]` and
/// the next header.
fn manifest_section(manifest: &str, section: &str) -> Vec<String> {
    let header = format!("[{section}]");
    manifest
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap().trim().to_string())
        .collect()
}

/// The workspace's second crate: the Freshteam simulator stands alone (it models
/// Freshteam's API; see its crate doc), and only the operator's tests, benchmarks and
/// the demo use it: never the operator's own code, so the release binary carries none of
/// it.
#[test]
fn the_simulator_crate_stands_alone_and_only_the_tests_use_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let simulator = read("simulator/Cargo.toml");
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let deps = manifest_section(&simulator, section);
        assert!(
            !deps.iter().any(|d| d == "freshteam-operator"),
            "simulator/Cargo.toml [{section}] names the operator: {deps:?}"
        );
    }
    let operator = read("Cargo.toml");
    assert!(manifest_section(&operator, "dev-dependencies").contains(&"freshteam-simulator".into()));
    assert!(!manifest_section(&operator, "dependencies").contains(&"freshteam-simulator".into()));
    for (dir, foreign) in [
        ("simulator/src", "freshteam_operator"),
        ("src", "freshteam_simulator"),
    ] {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "{dir}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                assert!(
                    !code(line).contains(foreign),
                    "{}:{}: names `{foreign}`",
                    file.display(),
                    n + 1
                );
            }
        }
    }
    assert!(
        !root.join("src/simulator").exists(),
        "src/simulator is back"
    );
}

#[test]
fn the_manifest_reader_sees_one_section_and_skips_comments() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\n# a = 1\nserde = \"1\"\n\
                    tokio = { version = \"1\" }\n\n[dev-dependencies]\nfoo = \"2\"\n";
    assert_eq!(
        manifest_section(manifest, "dependencies"),
        ["serde", "tokio"]
    );
    assert_eq!(manifest_section(manifest, "dev-dependencies"), ["foo"]);
}

#[test]
fn the_checker_sees_single_grouped_and_multiline_imports_and_skips_comments() {
    let text = "use crate::sync::ImportOutcome;\n\
                use crate::{member::Member, plan};\n\
                use crate::{\n    api::Spec,\n    mapping,\n};\n\
                // crate::cli is only mentioned here\n\
                let x = crate::notify::send(); // and crate::controller here\n";
    let names: Vec<String> = imports(text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["sync", "member", "plan", "api", "mapping", "notify"]
    );
}
