//! The inbox against careless writers and odd entries: files still being written, files that
//! change while they are read, an idle folder, symlinks, stray folders, list folders that are
//! not list ids, FIFOs, names too long to move, unreadable files, and report permissions.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use spoki_sync::normalise::DefaultRegion;
use spoki_sync::sim::SimConfig;
use spoki_sync::sources::inbox::{Inbox, InboxSettings};
use spoki_sync::store::Store;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// Data rows (lines after the header) of a moved file.
fn data_rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .expect("read the moved file")
        .lines()
        .count()
        - 1
}

/// The moved file and its report in `folder`, for a file dropped as `name`.
fn moved(folder: &Path, name: &str) -> Option<(PathBuf, Value)> {
    let suffix = format!("-{name}");
    let entry = std::fs::read_dir(folder)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(&suffix))?;
    let report = PathBuf::from(format!("{}.report.json", entry.display()));
    let text = std::fs::read_to_string(report).ok()?;
    Some((entry, serde_json::from_str(&text).ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_with_pauses_longer_than_settle_is_read_once_its_writer_closes_it() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let settle = app.settings.csv.settle;
    // The writer creates the file in the inbox itself (no `.part`), keeps it open and
    // appends one row at a time, pausing six times as long as `csv.settle`.
    let path = app.inbox.join("slow.csv");
    let mut file = std::fs::File::create(&path).expect("create");
    writeln!(file, "phone;nome").expect("write");
    for i in 0..6u64 {
        writeln!(file, "+39 333 {:07};Slow{i}", 8_100_000 + i).expect("write");
        file.flush().expect("flush");
        tokio::time::sleep(settle * 6).await;
        assert!(
            path.exists(),
            "slow.csv was taken after {} of its 6 rows, while still being written",
            i + 1
        );
    }
    drop(file);

    let report = wait_report(&app.inbox, "processed", "slow.csv").await;
    assert_eq!(report["rows"], 6, "{report}");
    assert_eq!(report["accepted"], 6, "{report}");
    let (moved_file, _) = moved(&app.inbox.join("processed"), "slow.csv").expect("moved");
    assert_eq!(data_rows(&moved_file), 6);
    app.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(app.sim.contacts().len(), 6);
    app.stop().await;
}

/// Whether this process holds `path` open (the daemon runs in-process).
fn held_open(path: &Path) -> bool {
    std::fs::read_dir("/proc/self/fd").is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_while_it_is_read_is_rolled_back_and_read_again_in_full() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let rows = 5_000u64;
    app.drop_file("growing.csv", &contacts_csv(8_200_000, rows, ""));
    let path = app.inbox.join("growing.csv");
    // As soon as the daemon has the file open, another writer opens it too and appends a row
    // every 100 ms for 5 s. Should the file leave the inbox meanwhile, one more row goes to
    // it, after the daemon finished reading.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !held_open(&path) {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never opened growing.csv"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open for appending");
    let mut appended = 0u64;
    let append = |file: &mut std::fs::File, n: u64| {
        writeln!(file, "+39 333 {:07};Late{n};Writer", 8_300_000 + n).expect("append");
        file.flush().expect("flush");
    };
    for _ in 0..50 {
        append(&mut file, appended);
        appended += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !path.exists() {
            append(&mut file, appended);
            appended += 1;
            break;
        }
    }
    drop(file);

    let report = wait_report(&app.inbox, "processed", "growing.csv").await;
    // The report is written (and synced) just before the file is renamed beside it.
    let mut found = None;
    wait_until(Duration::from_secs(20), "growing.csv moved", || {
        found = moved(&app.inbox.join("processed"), "growing.csv");
        let done = found.is_some();
        async move { done }
    })
    .await;
    let (moved_file, _) = found.expect("moved");
    assert_eq!(
        report["rows"].as_u64(),
        Some(data_rows(&moved_file) as u64),
        "the report must count every row of the file that was moved"
    );
    assert_eq!(report["rows"], rows + appended);
    assert_eq!(report["accepted"], rows + appended);
    // Every contact reaches Spoki once: the rolled-back read queued nothing.
    app.wait_drained(Duration::from_secs(60)).await;
    let sent: usize = contact_writes(&app.sim.requests())
        .iter()
        .map(|w| w.1)
        .sum();
    assert_eq!(sent as u64, rows + appended);
    assert_eq!(app.sim.contacts().len() as u64, rows + appended);
    app.stop().await;
}

fn idle_settings(root: &Path) -> InboxSettings {
    InboxSettings {
        root: root.to_path_buf(),
        region: DefaultRegion::parse("IT").expect("IT"),
        settle: Duration::from_millis(100),
        create_custom_fields: true,
        rescan_interval: Duration::from_secs(60),
        max_new_custom_fields: 50,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_inbox_is_not_scanned_again_and_again() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("inbox");
    Inbox::prepare(&root).expect("inbox");
    std::fs::create_dir_all(root.join("lists/7")).expect("list folder");
    let store = Store::open(&dir.path().join("state.db"))
        .await
        .expect("store");
    let inbox = Inbox::new(
        idle_settings(&root),
        store,
        Arc::new(tokio::sync::Notify::new()),
    );
    let scans = inbox.scan_counter();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(inbox.run(cancel.clone()));
    wait_until(Duration::from_secs(10), "the first scan", || {
        let n = scans.load(Ordering::Relaxed);
        async move { n >= 1 }
    })
    .await;
    // The rescan interval is a minute: a few idle seconds need no scan at all.
    let before = scans.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = scans.load(Ordering::Relaxed) - before;
    println!("scans over 3 idle seconds: {idle}");
    assert!(idle <= 1, "{idle} scans over 3 idle seconds");

    // After a file has been handled, the folder goes quiet again.
    let part = root.join("lists/7/one.csv.part");
    std::fs::write(&part, b"phone\n+39 333 8400000\n").expect("write");
    std::fs::rename(&part, root.join("lists/7/one.csv")).expect("rename");
    wait_report(&root.join("lists/7"), "processed", "one.csv").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = scans.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = scans.load(Ordering::Relaxed) - before;
    println!("scans over 2 seconds after a file: {after}");
    assert!(
        after <= 1,
        "{after} scans over 2 quiet seconds after a file"
    );
    cancel.cancel();
    task.await.expect("inbox task");
}

/// A CSV with one valid row.
fn one_row(n: u64) -> Vec<u8> {
    format!("phone;nome\n+39 333 {:07};Row{n}\n", 8_500_000 + n).into_bytes()
}

/// Lines of the log that say `about` and name the path `what` (not a longer path that
/// starts with it: `lists/0` is not `lists/007`).
fn lines_with(log: &str, what: &str, about: &str) -> usize {
    let names = |line: &str| {
        line.match_indices(what).any(|(i, _)| {
            line[i + what.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || "/._+-".contains(c)))
        })
    };
    log.lines()
        .filter(|l| l.contains(about) && names(l))
        .count()
}

fn scans_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("spoki_sync_inbox_scans_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_entries_get_one_log_line_each_and_movable_files_go_to_failed() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let inbox = dir.path().join("inbox");
    let write = |rel: &str, bytes: &[u8]| {
        let p = inbox.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    };
    // Not followed: a symlink to a CSV outside the inbox, and one standing for a list folder.
    std::fs::write(dir.path().join("outside.csv"), one_row(1)).expect("outside");
    std::fs::create_dir_all(inbox.join("lists")).expect("lists");
    std::os::unix::fs::symlink(dir.path().join("outside.csv"), inbox.join("link.csv"))
        .expect("symlink");
    std::os::unix::fs::symlink(dir.path(), inbox.join("lists/12")).expect("symlink");
    // Folders that are not read.
    write("nested/n.csv", &one_row(2));
    write("lists/5/sub/s.csv", &one_row(3));
    // Folders under lists/ that are not list ids.
    let bad_lists = ["abc", "-1", "0", "99999999999999999999", "+5", "007"];
    for (i, name) in bad_lists.iter().enumerate() {
        write(&format!("lists/{name}/x.csv"), &one_row(10 + i as u64));
    }
    // A CSV directly in lists/.
    write("lists/loose.csv", &one_row(20));
    // A FIFO: opening it to read would block.
    let fifo = inbox.join("pipe.csv");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    // A name too long for `processed/<time>-<name>`.
    let long = format!("{}.csv", "l".repeat(236));
    write(&long, &one_row(30));
    // A good list file, to show the rest goes on.
    write("lists/8/ok.csv", &one_row(40));

    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[spoki]
base_url = "{base}"
api_key = "sim-api-key"
[storage]
database = "{db}"
[csv]
inbox = "{inbox}"
settle = "100ms"
rescan_interval = "200ms"
[admin]
token = "{ADMIN_TOKEN}"
listen = "127.0.0.1:{port}"
[webhooks]
listen = "127.0.0.1:0"
"#,
            base = sim.base_url(),
            db = dir.path().join("state.db").display(),
            inbox = inbox.display(),
        ),
    )
    .expect("config");
    let daemon = start_daemon(&config, &[]);

    for name in bad_lists {
        let r = wait_report(&inbox.join(format!("lists/{name}")), "failed", "x.csv").await;
        assert_eq!(r["file"], "x.csv");
        let error = r["error"].as_str().expect("error");
        assert!(error.contains("not a list folder"), "{error}");
    }
    let r = wait_report(&inbox.join("lists"), "failed", "loose.csv").await;
    assert!(
        r["error"].as_str().expect("error").contains("list folder"),
        "{r}"
    );
    let r = wait_report(&inbox, "failed", "pipe.csv").await;
    assert!(
        r["error"]
            .as_str()
            .expect("error")
            .contains("not a regular file"),
        "{r}"
    );
    let ok = wait_report(&inbox.join("lists/8"), "processed", "ok.csv").await;
    assert_eq!(ok["accepted"], 1);
    // The long name is shortened, keeps its extension, and the report keeps the name.
    let mut long_report = None;
    wait_until(
        Duration::from_secs(20),
        "the long-named file in processed/",
        || {
            long_report = std::fs::read_dir(inbox.join("processed"))
                .ok()
                .and_then(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .find(|p| p.to_string_lossy().ends_with(".report.json"))
                });
            let found = long_report.is_some();
            async move { found }
        },
    )
    .await;
    let report_path = long_report.expect("report");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("read")).expect("json");
    assert_eq!(report["file"], long.as_str());
    assert_eq!(report["accepted"], 1);
    let moved_name = report_path.to_string_lossy().replace(".report.json", "");
    assert!(moved_name.ends_with(".csv"), "{moved_name}");
    assert!(Path::new(&moved_name).exists(), "{moved_name}");
    assert!(
        !inbox.join(&long).exists(),
        "the long-named file left the inbox"
    );

    // Let the daemon look at the folder many more times.
    let metrics = || async {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let start = scans_total(&metrics().await);
    wait_until(Duration::from_secs(30), "ten more scans", || async {
        scans_total(&metrics().await) >= start + 10
    })
    .await;

    let log = daemon.log();
    assert_eq!(lines_with(&log, "link.csv", "symlinks"), 1, "{log}");
    assert_eq!(lines_with(&log, "lists/12", "symlinks"), 1, "{log}");
    assert_eq!(
        lines_with(&log, "nested", "folders are not read"),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, "lists/5/sub", "folders are not read"),
        1,
        "{log}"
    );
    for name in bad_lists {
        let folder = format!("lists/{name}");
        assert_eq!(
            lines_with(&log, &folder, "its CSV files go to"),
            1,
            "{folder}: {log}"
        );
        let file = format!("lists/{name}/x.csv");
        assert_eq!(
            lines_with(&log, &file, "cannot be processed"),
            1,
            "{file}: {log}"
        );
    }
    assert_eq!(
        log.lines().filter(|l| l.contains("pipe.csv")).count(),
        1,
        "{log}"
    );
    assert_eq!(lines_with(&log, &long, "cannot move"), 0, "{log}");
    // Left in place: the symlink and the files in folders that are not read.
    assert!(inbox.join("link.csv").exists());
    assert!(inbox.join("nested/n.csv").exists());
    assert!(inbox.join("lists/5/sub/s.csv").exists());
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_goes_to_failed_with_one_report() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let path = app.inbox.join("secret.csv.part");
    std::fs::write(&path, one_row(50)).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::File::open(&path).is_ok() {
        println!("SKIPPED: this process reads files whatever their mode (root)");
        app.stop().await;
        return;
    }
    std::fs::rename(&path, app.inbox.join("secret.csv")).expect("rename");
    let r = wait_report(&app.inbox, "failed", "secret.csv").await;
    assert!(
        r["error"].as_str().expect("error").contains("cannot read"),
        "{r}"
    );
    app.stop().await;
}

/// The process umask, from /proc (there is no std call for it).
fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_moved_files_are_not_readable_by_others() {
    println!("umask: {:?}", umask().map(|m| format!("{m:03o}")));
    let app = spawn_app(Duration::from_millis(500)).await;
    app.drop_file("private.csv", &one_row(60));
    app.drop_file("nothing.csv", b"");
    wait_report(&app.inbox, "processed", "private.csv").await;
    wait_report(&app.inbox, "failed", "nothing.csv").await;
    for folder in ["processed", "failed"] {
        let folder = app.inbox.join(folder);
        let mode = std::fs::metadata(&folder)
            .expect("folder")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o007,
            0,
            "{} is {:o}",
            folder.display(),
            mode & 0o777
        );
        for entry in std::fs::read_dir(&folder).expect("list").flatten() {
            let mode = entry.metadata().expect("meta").permissions().mode();
            assert_eq!(
                mode & 0o007,
                0,
                "{} is {:o}",
                entry.path().display(),
                mode & 0o777
            );
        }
    }
    app.stop().await;
}
