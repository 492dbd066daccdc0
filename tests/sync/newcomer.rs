//! What a newcomer meets first, through the real binary: the start-up line and the log
//! written to a file (plain, no colour codes), relative paths resolved against the
//! configuration file's folder, every named metric at zero right after start, the
//! configuration's messages (every problem, one per line; the file named once; which file was
//! read), the action catalogue with "did you mean", completions and the man page.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::helpers::{free_port, start_daemon};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spoki-sync"));
    cmd.env_remove("SPOKI_SYNC_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A runnable configuration in `dir`, with relative paths and `extra` appended.
fn write_config(dir: &Path, admin: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[spoki]\nbase_url = \"http://127.0.0.1:9/api/1/\"\napi_key = \"k\"\n\
             [storage]\ndatabase = \"./state/db.sqlite\"\n\
             [csv]\ninbox = \"./in\"\n\
             [mirror]\npull_interval = \"0s\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t0ken\"\n\
             [webhooks]\nlisten = \"127.0.0.1:0\"\n{extra}"
        ),
    )
    .expect("write config");
    path
}

#[test]
fn the_daemon_logs_plain_text_to_a_file_resolves_relative_paths_and_shows_every_metric_at_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let admin = free_port();
    let config = write_config(dir.path(), admin, "[log]\nformat = \"human\"\n");
    // The daemon's working directory is the crate's, not the configuration's folder.
    let mut daemon = start_daemon(&config, &[]);
    assert!(
        daemon.wait_healthy(admin, Duration::from_secs(60)),
        "the daemon did not come up:\n{}",
        daemon.log()
    );

    // Relative to the configuration file's folder, not to the working directory.
    assert!(
        dir.path().join("state/db.sqlite").is_file(),
        "database not beside the config"
    );
    assert!(
        dir.path().join("in").is_dir(),
        "inbox not beside the config"
    );

    // Every counter the README names is there at 0 before anything happened.
    let metrics = http_get::metrics(admin);
    for series in [
        "spoki_sync_spoki_throttled_total{action=\"bulk_sync_contacts\"} 0",
        "spoki_sync_merge_conflicts_total{winner=\"mirror\"} 0",
        "spoki_sync_merge_conflicts_total{winner=\"spoki\"} 0",
        "spoki_sync_webhook_refused_total{reason=\"bad_signature\"} 0",
        "spoki_sync_commands_finished_total{action=\"list_tags\",status=\"failed\"} 0",
        "spoki_sync_spoki_requests_total{action=\"list_contacts\",status=\"200\"} 0",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }

    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("spoki-sync is running"))
        .unwrap_or_else(|| panic!("no start-up line in:\n{log}"));
    assert!(line.contains(&format!("admin=127.0.0.1:{admin}")), "{line}");
    assert!(!line.contains("Some("), "{line}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log written to a file:\n{log}"
    );
}

/// A minimal HTTP GET of `/metrics` with the test token (std only, no runtime needed).
mod http_get {
    pub fn metrics(admin: u16) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text
    }
}

#[test]
fn every_configuration_problem_is_reported_one_per_line() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        free_port(),
        "[batch]\nmax_backof = \"1s\"\n[csv.extra]\nx = 1\n",
    );
    let mut text_cfg = std::fs::read_to_string(&config).expect("read");
    text_cfg = text_cfg.replace("[mirror]\n", "[mirror]\npoll_interval = \"soon\"\n");
    std::fs::write(&config, text_cfg).expect("write");
    let out = run(bin().arg("check-config").arg("--config").arg(&config));
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let line_with = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not reported:\n{err}"))
            .to_string()
    };
    // The unknown keys and the invalid value, together, each on its own line.
    let unknown = line_with("batch.max_backof");
    assert!(
        unknown.contains("did you mean batch.max_backoff"),
        "{unknown}"
    );
    assert!(
        !unknown.contains("mirror.poll_interval"),
        "one problem per line: {unknown}"
    );
    line_with("csv.extra");
    let invalid = line_with("mirror.poll_interval");
    assert!(
        !invalid.contains("batch."),
        "one problem per line: {invalid}"
    );
    assert_eq!(
        err.matches(&config.display().to_string()).count(),
        1,
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_named_once() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("nowhere.toml");
    let out = run(bin().arg("check-config").arg("--config").arg(&missing));
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        err.matches(&missing.display().to_string()).count(),
        1,
        "{err}"
    );
}

#[test]
fn check_config_says_which_file_it_read_or_that_none_was() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), free_port(), "");
    let out = run(bin().arg("check-config").arg("--config").arg(&config));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("read {}", config.display())),
        "{said}"
    );

    if !Path::new("/etc/spoki-sync/config.toml").exists() {
        let out = run(bin()
            .arg("check-config")
            .current_dir(dir.path())
            .env("SPOKI_SYNC__SPOKI__API_KEY", "k")
            .env("SPOKI_SYNC__ADMIN__TOKEN", "t"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let said = text(&out.stdout);
        assert!(said.contains("no file read"), "{said}");
        assert!(said.contains("/etc/spoki-sync/config.toml"), "{said}");
    }
}

#[test]
fn actions_lists_the_catalogue_and_an_unknown_one_names_the_closest() {
    let out = run(bin().args(["actions", "--json"]));
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names.len(), 58, "{names:?}");
    assert!(names.contains(&"start_automation") && names.contains(&"list_tags"));

    let one = run(bin().args(["actions", "update_contact"]));
    assert!(one.status.success());
    let shown = text(&one.stdout);
    assert!(
        shown.starts_with("update_contact: PATCH contacts/{id}/"),
        "{shown}"
    );
    assert!(shown.contains("custom_fields"), "{shown}");

    for args in [vec!["cmd", "list_tagz"], vec!["actions", "list_tagz"]] {
        let out = run(bin().args(&args));
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("did you mean list_tags"), "{err}");
        assert!(err.contains("spoki-sync actions"), "{err}");
    }
}

#[test]
fn completions_and_the_man_page_name_the_subcommands() {
    let subcommands = [
        "run",
        "check-config",
        "plan",
        "cmd",
        "status",
        "actions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let out = run(bin().args(["completions", shell]));
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let out = run(bin().arg("man"));
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "{}",
        &page[..80.min(page.len())]
    );
    assert!(page.contains(".TH spoki-sync 1"), "no title header");
    for sub in subcommands {
        // roff writes a hyphen as `\-`.
        let roff = sub.replace('-', "\\-");
        assert!(page.contains(&roff), "the man page lacks {sub}");
    }
}

#[test]
fn the_demo_piped_lists_rejects_with_the_rest_counted_and_requests_in_time_order() {
    let out = run(bin().arg("demo"));
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}\n{}", text(&out.stderr));
    let lines: Vec<&str> = said.lines().collect();
    // Piped: no bar, so no blank line where it would have been, and never two in a row.
    let dropped = lines
        .iter()
        .position(|l| l.contains("into the inbox"))
        .expect("the drop is announced");
    assert!(!lines[dropped + 1].trim().is_empty(), "{said}");
    assert!(
        !lines
            .windows(2)
            .any(|w| w[0].trim().is_empty() && w[1].trim().is_empty()),
        "{said}"
    );
    assert!(
        !said.contains('\r') && !said.contains('\u{1b}'),
        "bar output when piped"
    );
    // The working folder's fate is said.
    assert!(
        said.contains("removed at exit") && said.contains("--keep"),
        "{said}"
    );
    // Five rejects listed, the rest counted.
    let listed = lines.iter().filter(|l| l.contains("rejected line")).count();
    let total: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("file report: "))
        .and_then(|r| r.split(", ").last())
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the report line counts rejected rows");
    assert_eq!(listed, total.min(5), "{said}");
    if total > 5 {
        assert!(said.contains(&format!("and {} more", total - 5)), "{said}");
    }
    // In time order: the custom fields are created before the contacts that use them.
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not shown:\n{said}"))
    };
    assert!(at("custom-fields/") < at("contacts/sync_all/"), "{said}");
}

#[test]
fn demo_keep_leaves_the_working_folder_with_the_report() {
    let out = run(bin().args(["demo", "--keep"]));
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}\n{}", text(&out.stderr));
    let kept = said
        .lines()
        .find_map(|l| l.strip_prefix("kept "))
        .and_then(|l| l.split(": ").next())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no `kept` line:\n{said}"));
    let processed = kept.join("inbox/processed");
    let reports = std::fs::read_dir(&processed)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".report.json"))
                .count()
        })
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&kept);
    assert_eq!(
        reports,
        1,
        "the report is gone from {}",
        processed.display()
    );
}
