//! The Debian package and the container image, checked from the repository: every asset the
//! cargo-deb metadata names exists, the packaged unit is `systemd/spoki-sync.service` with the
//! binary in `/usr/bin`, the shipped man page and completions are what the binary prints, and
//! the Dockerfile keeps its promises. With cargo-deb installed, `cargo test --test package --
//! --ignored` builds the package and lists its contents with `dpkg-deb -c`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `[package.metadata.deb]` of Cargo.toml.
fn deb_metadata() -> config::Config {
    config::Config::builder()
        .add_source(config::File::from_str(
            &read("Cargo.toml"),
            config::FileFormat::Toml,
        ))
        .build()
        .expect("Cargo.toml parses")
}

fn assets() -> Vec<Vec<String>> {
    deb_metadata()
        .get::<Vec<Vec<String>>>("package.metadata.deb.assets")
        .expect("package.metadata.deb.assets")
}

#[test]
fn every_deb_asset_exists_and_the_unit_is_systemds() {
    let assets = assets();
    for asset in &assets {
        let [source, _, mode] = asset.as_slice() else {
            panic!("an asset is [source, destination, mode]: {asset:?}");
        };
        assert!(u32::from_str_radix(mode, 8).is_ok(), "mode {mode}");
        if source.starts_with("target/") {
            continue; // built by `cargo deb`
        }
        assert!(root().join(source).is_file(), "asset {source} is missing");
    }
    let dests: Vec<&str> = assets.iter().map(|a| a[1].as_str()).collect();
    for needed in [
        "usr/bin/",
        "etc/spoki-sync/config.toml",
        "usr/share/man/man1/spoki-sync.1",
        "usr/share/bash-completion/completions/spoki-sync",
    ] {
        assert!(dests.contains(&needed), "{needed} is not packaged");
    }
    let meta = deb_metadata();
    let conf: Vec<String> = meta
        .get("package.metadata.deb.conf-files")
        .expect("conf-files");
    assert_eq!(conf, ["/etc/spoki-sync/config.toml"]);
    let scripts: String = meta
        .get("package.metadata.deb.systemd-units.unit-scripts")
        .expect("unit-scripts");
    assert!(root().join(&scripts).join("spoki-sync.service").is_file());
    assert!(root().join(&scripts).join("postinst").is_file());

    // The packaged unit is systemd/'s, with the paths the package uses.
    let manual = read("systemd/spoki-sync.service");
    let packaged = read("debian/spoki-sync.service");
    let expected: Vec<String> = manual
        .lines()
        .skip(1)
        .map(|l| {
            l.replace("/usr/local/bin/spoki-sync", "/usr/bin/spoki-sync")
                .replace(
                    "Documentation=file:///usr/local/share/doc/spoki-sync/README.md",
                    "Documentation=file:///usr/share/doc/spoki-sync/README.md man:spoki-sync(1)",
                )
        })
        .collect();
    let got: Vec<&str> = packaged.lines().skip(1).collect();
    assert_eq!(
        got, expected,
        "debian/spoki-sync.service drifted from systemd/spoki-sync.service"
    );
    assert!(packaged.contains("DynamicUser=yes"));
    // The credentials folder is created 0700, as the manual install does.
    assert!(read("debian/postinst").contains("install -d -m 0700 /etc/spoki-sync/credentials"));
}

fn output(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spoki-sync"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn the_shipped_man_page_and_completions_are_what_the_binary_prints() {
    for (file, args) in [
        ("dist/spoki-sync.1", vec!["man"]),
        (
            "dist/completions/spoki-sync.bash",
            vec!["completions", "bash"],
        ),
        ("dist/completions/_spoki-sync", vec!["completions", "zsh"]),
        (
            "dist/completions/spoki-sync.fish",
            vec!["completions", "fish"],
        ),
    ] {
        assert!(
            read(file) == output(&args),
            "{file} is stale: regenerate it with `cargo run -- {} > {file}`",
            args.join(" ")
        );
    }
}

#[test]
fn the_dockerfile_runs_the_daemon_as_pid_1_with_volumes_and_a_health_check() {
    let docker = read("Dockerfile");
    assert!(docker.matches("\nFROM ").count() + usize::from(docker.starts_with("FROM ")) >= 2);
    assert!(docker.contains("AS build"), "multi-stage");
    // Exec form: the daemon itself is PID 1 and receives SIGTERM.
    assert!(docker.contains("ENTRYPOINT [\"/usr/bin/spoki-sync\"]"));
    assert!(docker.contains("CMD [\"run\"]"));
    assert!(docker.contains("STOPSIGNAL SIGTERM"));
    assert!(docker.contains("VOLUME [\"/var/lib/spoki-sync/db\", \"/var/lib/spoki-sync/inbox\"]"));
    assert!(docker.contains("CMD [\"/usr/bin/spoki-sync\", \"check-config\"]"));
    assert!(docker.contains("SPOKI_SYNC__STORAGE__DATABASE=/var/lib/spoki-sync/db/"));
    assert!(docker.contains("SPOKI_SYNC__CSV__INBOX=/var/lib/spoki-sync/inbox"));
    assert!(docker.contains("USER spoki-sync"), "not as root");
}

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the package (cargo-deb; the release binary is built first if missing) and checks
/// its contents. Ignored by default: it needs cargo-deb and a release build.
#[test]
#[ignore = "needs cargo-deb (cargo install cargo-deb) and a release build"]
fn the_debian_package_holds_the_binary_unit_config_man_page_and_completions() {
    if !have("cargo", &["deb", "--version"]) || !have("dpkg-deb", &["--version"]) {
        eprintln!("cargo-deb or dpkg-deb missing: skipped");
        return;
    }
    let mut build = Command::new("cargo");
    build.arg("deb").current_dir(root());
    if Path::new(&root().join("target/release/spoki-sync")).is_file() {
        build.arg("--no-build");
    }
    let out = build.output().expect("cargo deb");
    assert!(
        out.status.success(),
        "cargo deb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| l.trim().to_owned())
        .expect("cargo deb prints the package's path");
    let listing = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .expect("dpkg-deb -c");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for path in [
        "./usr/bin/spoki-sync",
        "./etc/spoki-sync/config.toml",
        "lib/systemd/system/spoki-sync.service",
        "./usr/share/man/man1/spoki-sync.1",
        "./usr/share/bash-completion/completions/spoki-sync",
        "./usr/share/zsh/vendor-completions/_spoki-sync",
        "./usr/share/fish/vendor_completions.d/spoki-sync.fish",
        "./usr/share/doc/spoki-sync/README.md",
        "./usr/share/doc/spoki-sync/docs/configuration.md",
    ] {
        assert!(
            listing.lines().any(|l| l.contains(path)),
            "{path} not in the package:\n{listing}"
        );
    }
    let binary = listing
        .lines()
        .find(|l| l.ends_with("./usr/bin/spoki-sync"))
        .expect("binary listed");
    assert!(binary.starts_with("-rwxr-xr-x"), "{binary}");
    let control = Command::new("dpkg-deb")
        .args(["-I", &deb])
        .output()
        .expect("dpkg-deb -I");
    let control = String::from_utf8_lossy(&control.stdout).into_owned();
    assert!(control.contains("conffiles"), "{control}");
    assert!(control.contains("postinst"), "{control}");
}

/// `(mode, destination)` of every `install -m`/`install -d -m` and `chmod` step in `text`.
fn install_modes(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "install" || *w == "chmod") else {
            continue;
        };
        let args = &words[at + 1..];
        let mode = if words[at] == "chmod" {
            args.first().map(|m| (*m).to_owned())
        } else {
            args.iter()
                .position(|w| *w == "-m")
                .and_then(|i| args.get(i + 1))
                .map(|m| (*m).to_owned())
        };
        let (Some(mode), Some(last)) = (mode, args.last()) else {
            continue;
        };
        let dest = if last.ends_with('/') {
            let source = args[args.len() - 2];
            format!("{last}{}", source.rsplit('/').next().unwrap_or(source))
        } else {
            (*last).to_owned()
        };
        out.push((mode, dest));
    }
    out
}

#[test]
fn the_readmes_install_steps_use_the_modes_of_systemd_readme() {
    let readme = read("README.md");
    let by_hand = readme
        .split("**Or by hand**")
        .nth(1)
        .and_then(|rest| rest.split("```sh").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README's manual install steps");
    let steps = install_modes(by_hand);
    assert!(steps.len() >= 5, "{steps:?}");
    let reference = install_modes(&read("systemd/README.md"));
    for step in &steps {
        assert!(
            reference.contains(step),
            "README installs {} with mode {}, systemd/README.md does not: {reference:?}",
            step.1,
            step.0
        );
    }
    assert!(steps.contains(&("0700".to_owned(), "/etc/spoki-sync/credentials".to_owned())));
}
