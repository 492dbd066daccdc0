//! Rules review forgets, checked on the source tree: every file says what it owns, SQL stays in
//! the store, only the one sender paces requests to Spoki, the modules import one another in
//! one direction, the store knows nothing of Spoki's wire, and the simulator depends on neither the
//! daemon nor its Spoki client (read from `cargo metadata`, so a new dependency cannot sneak in).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files_under(rel: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for r in rel {
        rust_files(&root().join(r), &mut out);
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let missing: Vec<String> = files_under(&["src", "crates", "tests", "benches", "examples"])
        .into_iter()
        .filter(|p| !read(p).trim_start().starts_with("//!"))
        .map(|p| rel(&p))
        .collect();
    assert!(missing.is_empty(), "no `//!` module doc: {missing:?}");
}

#[test]
fn sql_lives_only_in_the_store() {
    const SQL: [&str; 7] = [
        "\"SELECT ",
        "\"INSERT ",
        "\"UPDATE ",
        "\"DELETE FROM",
        "\"CREATE ",
        "\"DROP ",
        "\"PRAGMA ",
    ];
    let mut found = Vec::new();
    for path in files_under(&["src"]) {
        if path.starts_with(root().join("src/store")) {
            continue;
        }
        for (n, line) in read(&path).lines().enumerate() {
            if SQL.iter().any(|k| line.contains(k)) {
                found.push(format!("{}:{}", rel(&path), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "SQL outside src/store/: {found:?}");
}

#[test]
fn every_request_to_spoki_goes_through_the_one_sender() {
    // Pacing and budget slots are taken only by the sender (and the budgets themselves).
    let mut found = Vec::new();
    for path in files_under(&["src"]) {
        let r = rel(&path);
        // Tests may look at the budgets.
        if r == "src/outbound/sender.rs" || r == "src/outbound/limits.rs" || r.ends_with("tests.rs")
        {
            continue;
        }
        for (n, line) in read(&path).lines().enumerate() {
            if line.contains(".pace()") || line.contains(".try_acquire()") {
                found.push(format!("{r}:{}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "budgets used outside the sender: {found:?}"
    );
}

/// The daemon's top-level modules (`src/<name>.rs` or `src/<name>/`) and the others each one
/// names as `crate::<other>`, test code left out.
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for path in files_under(&["src"]) {
        let r = rel(&path);
        if r.ends_with("tests.rs") {
            continue;
        }
        let inner = r.trim_start_matches("src/");
        let top = inner
            .split('/')
            .next()
            .unwrap_or(inner)
            .trim_end_matches(".rs")
            .to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = read(&path);
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let deps = graph.entry(top.clone()).or_default();
        for piece in code.split("crate::").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn the_daemons_modules_import_each_other_in_one_direction() {
    let graph = module_graph();
    let reaches = |from: &str, to: &str| {
        let mut stack = vec![from.to_owned()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(m) = stack.pop() {
            for d in graph.get(&m).into_iter().flatten() {
                if d == to {
                    return true;
                }
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        false
    };
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(m, deps)| deps.iter().map(move |d| (m, d)))
        .filter(|(m, d)| reaches(d, m))
        .map(|(m, d)| format!("{m} -> {d} -> ... -> {m}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
}

#[test]
fn the_store_knows_nothing_of_spokis_wire() {
    let mut found = Vec::new();
    for path in files_under(&["src/store"]) {
        for (n, line) in read(&path).lines().enumerate() {
            if line.contains("spoki_api") || line.contains("crate::spoki") {
                found.push(format!("{}:{}", rel(&path), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "src/store/ imports the Spoki client: {found:?}"
    );
}

#[test]
fn the_simulator_shares_no_code_with_the_client_or_the_daemon() {
    let mut found = Vec::new();
    for path in files_under(&["crates/spoki-sim"]) {
        for (n, line) in read(&path).lines().enumerate() {
            if line.contains("spoki_api") || line.contains("spoki_sync") {
                found.push(format!("{}:{}", rel(&path), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the simulator names the client: {found:?}"
    );

    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let deps_of = |name: &str| -> Vec<String> {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["dependencies"].as_array())
            .map(|d| {
                d.iter()
                    .filter_map(|d| d["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| panic!("{name} is not in the workspace"))
    };
    let sim = deps_of("spoki-sim");
    for forbidden in ["spoki-api", "spoki-sync"] {
        assert!(
            !sim.iter().any(|d| d == forbidden),
            "spoki-sim depends on {forbidden}"
        );
    }
    let api = deps_of("spoki-api");
    for forbidden in ["spoki-sim", "spoki-sync"] {
        assert!(
            !api.iter().any(|d| d == forbidden),
            "spoki-api depends on {forbidden}"
        );
    }
}

/// Text files a reader of the repository meets: sources, docs, configuration, packaging.
fn reader_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            // Build output, VCS data and the fuzzers' corpora are not read by people;
            // migrations are checksummed by the database and cannot be edited.
            if !name.starts_with('.')
                && !["target", "corpus", "artifacts", "migrations"].contains(&name.as_str())
            {
                reader_files(&path, out);
            }
        } else if ["rs", "md", "toml", "service", "sh"]
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
            || name == "Dockerfile"
        {
            out.push(path);
        }
    }
}

#[test]
fn the_repository_never_sends_the_reader_outside_it() {
    // Documents that live outside the repository, and the section sign that cited them.
    // Spelled in pieces so that this file does not trip its own check.
    let outside = [
        ["CONT", "RACT"].concat(),
        ["spoki-api", ".md"].concat(),
        ["../", "shared"].concat(),
        '\u{a7}'.to_string(),
    ];
    let mut files = Vec::new();
    reader_files(&root(), &mut files);
    files.sort();
    let mut found = Vec::new();
    for path in &files {
        for (n, line) in read(path).lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) {
                found.push(format!("{}:{}: {}", rel(path), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to documents outside the repository (say it here instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_http_client_in_shipped_code_installs_the_tls_provider_first() {
    // Release builds carry rustls' `ring` provider alone, with nothing installed by default:
    // a client built before `install_tls_provider()` would panic there, while test builds
    // (which also have reqwest's fallback) would not notice.
    let mut missing = Vec::new();
    for path in files_under(&["src", "crates/spoki-api/src", "crates/spoki-sim/src"]) {
        let name = rel(&path);
        if name.contains("tests") || name.ends_with("sim_rig.rs") {
            continue;
        }
        let text = read(&path);
        let builds =
            text.contains("reqwest::Client::builder()") || text.contains("reqwest::Client::new()");
        if builds && !text.contains("install_tls_provider()") {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "HTTP clients built without the TLS provider: {missing:?}"
    );
}
