//! Tidy checks on the workspace itself: every module says what it is for, no source file grows
//! past the size a reader can hold, and the crate edges keep the layering of docs/ARCHITECTURE.md
//! (each outside world is used by exactly one crate; the kernels crate links none of them).

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MAX_LINES: usize = 800;

/// Outside-world crates and the one workspace crate allowed to depend on each.
const OWNERS: &[(&str, &str)] = &[
    ("mpi", "embsolve-comm"),
    ("hdf5-metno", "embsolve-io"),
    ("parquet", "embsolve-io"),
    ("arrow-array", "embsolve-io"),
    ("arrow-schema", "embsolve-io"),
    ("arrow-buffer", "embsolve-io"),
    ("cudarc", "embsolve-cuda"),
    ("plotters", "embsolve-report"),
];

/// Workspace crates each crate may depend on (the layering).
const EDGES: &[(&str, &[&str])] = &[
    ("embsolve-kernels", &[]),
    ("embsolve-cuda", &[]),
    ("embsolve-comm", &["embsolve-kernels"]),
    ("embsolve-io", &["embsolve-kernels"]),
    ("embsolve-report", &["embsolve-kernels", "embsolve-io"]),
    (
        "embsolve",
        &[
            "embsolve-kernels",
            "embsolve-comm",
            "embsolve-io",
            "embsolve-report",
            "embsolve-cuda",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    for dir in ["src", "examples", "tests", "crates"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    assert!(files.len() > 20, "found only {} sources", files.len());
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let missing: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|p| relative(&p))
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` line: {missing:?}"
    );
}

#[test]
fn no_source_file_is_too_long() {
    let long: Vec<String> = workspace_sources()
        .into_iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", relative(&path)))
        })
        .collect();
    assert!(long.is_empty(), "files above {MAX_LINES} lines: {long:?}");
}

/// (crate name, its direct normal dependencies) for every workspace member.
fn manifests() -> Vec<(String, Vec<String>)> {
    let root = Path::new(ROOT);
    let mut paths = vec![root.join("Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        if manifest.exists() {
            paths.push(manifest);
        }
    }
    paths
        .into_iter()
        .map(|path| {
            let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            let name = table["package"]["name"].as_str().unwrap().to_string();
            let deps = table
                .get("dependencies")
                .and_then(|d| d.as_table())
                .map(|d| {
                    d.iter()
                        .map(|(key, value)| {
                            value
                                .get("package")
                                .and_then(|p| p.as_str())
                                .unwrap_or(key)
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_default();
            (name, deps)
        })
        .collect()
}

#[test]
fn each_outside_world_has_one_crate_and_the_layers_point_down() {
    let manifests = manifests();
    assert_eq!(
        manifests.len(),
        EDGES.len(),
        "workspace members: {manifests:?}"
    );
    for (name, deps) in &manifests {
        let allowed = EDGES
            .iter()
            .find(|(crate_name, _)| crate_name == name)
            .unwrap_or_else(|| panic!("{name} is not in the layering table"))
            .1;
        for dep in deps {
            if let Some((_, owner)) = OWNERS.iter().find(|(world, _)| world == dep) {
                assert_eq!(
                    owner, name,
                    "{name} depends on {dep}, which only {owner} may use"
                );
            }
            if dep.starts_with("embsolve") {
                assert!(
                    allowed.contains(&dep.as_str()),
                    "{name} must not depend on {dep}"
                );
            }
        }
    }
}

#[test]
fn the_kernels_crate_links_no_outside_world() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "embsolve-kernels",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(ROOT)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let forbidden = OWNERS.iter().any(|(world, _)| *world == name)
            || name.starts_with("mpi")
            || name.starts_with("hdf5")
            || name.starts_with("arrow")
            || name.starts_with("embsolve-");
        assert!(
            !forbidden || name == "embsolve-kernels",
            "embsolve-kernels pulls in {name}"
        );
    }
}

#[test]
fn outside_world_paths_appear_only_in_their_crate() {
    let patterns: &[(&str, &str)] = &[
        ("mpi::", "crates/embsolve-comm/"),
        ("hdf5::", "crates/embsolve-io/"),
        ("parquet::", "crates/embsolve-io/"),
        ("arrow_array::", "crates/embsolve-io/"),
        ("cudarc::", "crates/embsolve-cuda/"),
        ("plotters::", "crates/embsolve-report/"),
    ];
    for path in workspace_sources() {
        let name = relative(&path);
        if name == "tests/tidy.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (pattern, home) in patterns {
            let used = text.match_indices(pattern).any(|(at, _)| {
                let before = text[..at].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            assert!(
                !used || name.starts_with(home),
                "{name} uses `{pattern}` outside {home}"
            );
        }
    }
}
