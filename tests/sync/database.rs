//! The database under attack: the file deleted under a running daemon, triggers or the mirror
//! table dropped by another program, bytes where text belongs, a path that is not a database
//! or whose folder is missing, file modes, pruning and the WAL's size.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use spoki_sync::config::Settings;
use spoki_sync::sim::{SimConfig, SimHandle};

use crate::helpers::{
    Daemon, TestApp, contacts_csv, free_port, start_sim, wait_report, wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_spoki-sync");
const WHSEC_KEY: &[u8] = b"database test webhook key";
const TOKEN: &str = "database-test-token";

fn tweak(s: &mut Settings) {
    s.mirror.poll_interval = Duration::from_millis(100);
    s.storage.check_interval = Duration::from_millis(200);
    s.webhooks.secret = Some(crate::helpers::whsec(WHSEC_KEY));
}

async fn app_with(extra: impl FnOnce(&mut Settings)) -> TestApp {
    crate::helpers::spawn_app_tweaked(|s| {
        tweak(s);
        extra(s);
    })
    .await
}

async fn exec(app: &TestApp, sql: &str) {
    let pool = app.other_program().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .expect(sql);
    pool.close().await;
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let pool = app.other_program().await;
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .expect(sql);
    pool.close().await;
    n
}

async fn spoki_name_is(app: &TestApp, phone: &str, name: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("Spoki to hold first_name={name} for {phone}"),
        || async {
            app.sim
                .contact_by_phone(phone)
                .is_some_and(|c| c["first_name"] == name)
        },
    )
    .await;
}

/// A signed contacts webhook; returns the status and the body.
async fn deliver(app: &TestApp, id: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    crate::helpers::deliver_contacts(app, WHSEC_KEY, id, body).await
}

/// A config file for the real binary on `db`, against `sim`.
fn write_config(dir: &Path, sim: &SimHandle, db: &Path, admin_port: u16) -> PathBuf {
    let path = dir.join("binary.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[spoki]
base_url = "{base}"
api_key = "sim-api-key"
[storage]
database = "{db}"
check_interval = "200ms"
[csv]
inbox = "{inbox}"
settle = "100ms"
[admin]
token = "{TOKEN}"
listen = "127.0.0.1:{admin_port}"
[webhooks]
listen = "127.0.0.1:0"
"#,
            base = sim.base_url(),
            db = db.display(),
            inbox = dir.join("binary-inbox").display(),
        ),
    )
    .expect("write config");
    path
}

/// `spoki-sync ARGS` under a umask of 022 (what most shells have), logging to `log`.
fn spawn_binary(args: &[&str], log: &Path) -> Daemon {
    let mut line = format!("umask 022; exec {BIN}");
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let child = Command::new("sh")
        .args(["-c", &line])
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start the binary");
    Daemon {
        child,
        log: log.to_path_buf(),
    }
}

/// Waits for the binary to exit; returns its exit code.
async fn exit_code(daemon: &mut Daemon) -> Option<i32> {
    let mut code = None;
    wait_until(Duration::from_secs(30), "the binary to exit", || {
        let done = daemon.child.try_wait().expect("wait");
        code = done.map(|s| s.code());
        async move { done.is_some() }
    })
    .await;
    code.flatten()
}

async fn healthz(port: u16) -> Option<u16> {
    reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_stops_input_and_a_restart_refuses_to_start_empty() {
    let mut app = app_with(|_| {}).await;
    app.drop_file("first.csv", &contacts_csv(4_100_000, 3, ""));
    wait_report(&app.inbox, "processed", "first.csv").await;
    app.wait_drained(Duration::from_secs(30)).await;
    let db = app.settings.storage.database.clone();
    std::fs::remove_file(&db).expect("delete the database");

    wait_until(Duration::from_secs(20), "healthz to tell", || async {
        healthz(app.admin.port()).await == Some(503)
    })
    .await;
    let status: serde_json::Value = app
        .admin_req(reqwest::Method::GET, "/v1/status")
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["accepting"], false, "{status}");
    assert!(
        status["halted_reason"]
            .as_str()
            .is_some_and(|r| r.contains("deleted")),
        "{status}"
    );
    let (code, body) = deliver(
        &app,
        "msg_after_delete",
        &json!({"contacts": [{"phone": "+393334100009", "first_name": "Lost"}]}),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("deleted")),
        "{body}"
    );
    let (code, body) = app.submit("list_tags", json!({})).await;
    assert_eq!(code, 503, "{body}");
    // A file dropped now stays in the inbox: many rescans and settle times later it is there.
    app.drop_file("second.csv", &contacts_csv(4_100_010, 2, ""));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(app.inbox.join("second.csv").exists(), "left in the inbox");
    assert!(!db.exists(), "no new database created at the path");
    assert!(
        app.sim.contact_by_phone("+393334100009").is_none(),
        "nothing accepted"
    );
    app.halt().await;

    // The real binary refuses to start over the missing database, naming it and the flag.
    let port = free_port();
    let config = write_config(app.dir(), &app.sim, &db, port);
    let log = app.dir().join("refused.log");
    let config_arg = config.display().to_string();
    let mut refused = spawn_binary(&["run", "--config", &config_arg], &log);
    assert_eq!(exit_code(&mut refused).await, Some(78), "{}", refused.log());
    let text = refused.log();
    assert!(text.contains(&db.display().to_string()), "{text}");
    assert!(text.contains("--allow-new-database"), "{text}");
    assert!(!db.exists(), "a refused start creates nothing");

    let log = app.dir().join("allowed.log");
    let mut allowed = spawn_binary(
        &["run", "--config", &config_arg, "--allow-new-database"],
        &log,
    );
    wait_until(Duration::from_secs(30), "the daemon to start", || async {
        healthz(port).await == Some(200)
    })
    .await;
    allowed.signal("TERM");
    assert_eq!(exit_code(&mut allowed).await, Some(0), "{}", allowed.log());
    // And from now on that new database is the one expected: a plain restart starts.
    let log = app.dir().join("again.log");
    let again = spawn_binary(&["run", "--config", &config_arg], &log);
    wait_until(
        Duration::from_secs(30),
        "the daemon to start again",
        || async { healthz(port).await == Some(200) },
    )
    .await;
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_triggers_come_back_and_edits_made_meanwhile_reach_spoki() {
    let app = app_with(|_| {}).await;
    exec(
        &app,
        "INSERT INTO contacts (phone, first_name) VALUES ('+393334200001', 'Uno')",
    )
    .await;
    spoki_name_is(&app, "+393334200001", "Uno").await;
    // Dropped and an edit made at once, in one transaction: no check can come in between.
    exec(
        &app,
        "BEGIN; DROP TRIGGER mirror_journal_update; DROP TRIGGER mirror_journal_insert; \
         DROP TRIGGER contacts_touch_updated_at; \
         UPDATE contacts SET first_name = 'Due' WHERE phone = '+393334200001'; \
         INSERT INTO contacts (phone, first_name) VALUES ('+393334200002', 'Tre'); COMMIT;",
    )
    .await;
    spoki_name_is(&app, "+393334200001", "Due").await;
    spoki_name_is(&app, "+393334200002", "Tre").await;
    let triggers = count(
        &app,
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN \
         ('mirror_journal_insert', 'mirror_journal_update', 'mirror_journal_delete', \
          'contacts_touch_updated_at')",
    )
    .await;
    assert_eq!(triggers, 4);
    // And they work again: a later edit arrives as usual.
    exec(
        &app,
        "UPDATE contacts SET first_name = 'Quattro' WHERE phone = '+393334200002'",
    )
    .await;
    spoki_name_is(&app, "+393334200002", "Quattro").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_mirror_table_is_rebuilt_from_what_spoki_acknowledged() {
    let app = app_with(|_| {}).await;
    app.drop_file("base.csv", &contacts_csv(4_300_000, 5, ""));
    wait_report(&app.inbox, "processed", "base.csv").await;
    app.wait_drained(Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(20), "the mirror to fill", || async {
        count(&app, "SELECT COUNT(*) FROM contacts").await == 5
    })
    .await;
    exec(&app, "DROP TABLE contacts").await;
    wait_until(
        Duration::from_secs(20),
        "the mirror to come back",
        || async {
            count(
                &app,
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'contacts'",
            )
            .await
                == 1
        },
    )
    .await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM contacts").await, 5);
    // Acknowledgements are recorded again (into the mirror too), and edits travel.
    app.drop_file("changed.csv", &contacts_csv(4_300_000, 1, "bis"));
    spoki_name_is(&app, "+393334300000", "Nome4300000bis").await;
    wait_until(Duration::from_secs(20), "the ack in the mirror", || async {
        count(
            &app,
            "SELECT COUNT(*) FROM contacts WHERE first_name = 'Nome4300000bis'",
        )
        .await
            == 1
    })
    .await;
    app.wait_drained(Duration::from_secs(30)).await;
    exec(
        &app,
        "UPDATE contacts SET first_name = 'Edited' WHERE phone = '+393334300001'",
    )
    .await;
    spoki_name_is(&app, "+393334300001", "Edited").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_the_mirror_are_rejects_and_later_edits_go_on() {
    let app = app_with(|_| {}).await;
    // "+393334400001" as bytes, in the phone column; then bytes in a name and in custom_fields.
    exec(
        &app,
        "INSERT INTO contacts (phone, first_name) VALUES (X'2B333933333434303030303031', 'x')",
    )
    .await;
    exec(
        &app,
        "INSERT INTO contacts (phone, first_name) VALUES ('+393334400002', X'416E6E61')",
    )
    .await;
    exec(
        &app,
        "INSERT INTO contacts (phone, custom_fields) VALUES ('+393334400003', X'7B7D')",
    )
    .await;
    exec(
        &app,
        "INSERT INTO contacts (phone, first_name) VALUES ('+393334400004', 'Buono')",
    )
    .await;
    spoki_name_is(&app, "+393334400004", "Buono").await;
    let rejects: serde_json::Value = app
        .admin_req(reqwest::Method::GET, "/v1/rejects?source=mirror")
        .send()
        .await
        .expect("rejects")
        .json()
        .await
        .expect("json");
    let list = rejects["rejects"].as_array().expect("list");
    let reason_for = |key: &str| {
        list.iter()
            .find(|r| r["key"] == key)
            .and_then(|r| r["reason"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        reason_for("X'2B333933333434303030303031'").contains("BLOB"),
        "{rejects}"
    );
    assert!(
        reason_for("+393334400002").contains("first_name"),
        "{rejects}"
    );
    assert!(
        reason_for("+393334400003").contains("custom_fields"),
        "{rejects}"
    );
    assert_eq!(list.len(), 3, "one reject each: {rejects}");
    assert!(app.sim.contact_by_phone("+393334400001").is_none());
    // Fixed by its writer, the row goes through.
    exec(
        &app,
        "UPDATE contacts SET first_name = 'Anna' WHERE phone = '+393334400002'",
    )
    .await;
    spoki_name_is(&app, "+393334400002", "Anna").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_is_not_a_database_is_named_and_a_missing_folder_is_created() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let not_db = dir.path().join("contacts.csv");
    std::fs::write(&not_db, "phone\n+393331234567\n").expect("write");
    let port = free_port();
    let config = write_config(dir.path(), &sim, &not_db, port);
    let config_arg = config.display().to_string();
    let out = Command::new(BIN)
        .args(["check-config", "--config", &config_arg])
        .output()
        .expect("check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("storage.database"), "{stderr}");
    assert!(stderr.contains("not a SQLite database"), "{stderr}");
    let log = dir.path().join("not-db.log");
    let mut run = spawn_binary(&["run", "--config", &config_arg], &log);
    assert_eq!(exit_code(&mut run).await, Some(78), "{}", run.log());
    let text = run.log();
    assert_eq!(
        text.matches("not a SQLite database").count(),
        1,
        "one clear message: {text}"
    );
    assert_eq!(
        std::fs::read_to_string(&not_db).expect("read"),
        "phone\n+393331234567\n",
        "left alone"
    );

    // A database in folders that do not exist yet: check-config passes, run creates them,
    // and under a umask of 022 the database, its WAL and its -shm are not readable by others.
    let db = dir.path().join("var/lib/spoki/state.db");
    let config = write_config(dir.path(), &sim, &db, port);
    let out = Command::new(BIN)
        .args(["check-config", "--config", &config_arg])
        .output()
        .expect("check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dir.path().join("new-folder.log");
    let daemon = spawn_binary(&["run", "--config", &config.display().to_string()], &log);
    wait_until(Duration::from_secs(30), "the daemon to start", || async {
        healthz(port).await == Some(200)
    })
    .await;
    for suffix in ["", "-wal", "-shm", ".id"] {
        let path = PathBuf::from(format!("{}{suffix}", db.display()));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), daemon.log()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", path.display(), mode & 0o777);
    }
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_are_pruned_by_their_retention_and_new_ones_kept() {
    let app = app_with(|_| {}).await;
    let old = "2000-01-01T00:00:00.000Z";
    let new = spoki_sync::store::now_rfc3339();
    for at in [old, new.as_str()] {
        exec(
            &app,
            &format!(
                "INSERT INTO rejects (source, key, phone, reason, created_at) \
                 VALUES ('csv', 'f:{at}', '1', 'bad', '{at}'); \
                 INSERT INTO webhook_seen (source, id, received_at) VALUES ('contacts', 'id-{at}', '{at}'); \
                 INSERT INTO inbox_files (path, sha256, outcome, report, committed_at, moved) \
                 VALUES ('moved-{at}', 'x', 'processed', '{{}}', '{at}', 1), \
                        ('unmoved-{at}', 'x', 'processed', '{{}}', '{at}', 0); \
                 INSERT INTO commands (id, action, params, request, status, next_attempt_ms, \
                   created_at, updated_at, finished_at) VALUES \
                   ('done-{at}', 'list_tags', '{{}}', '{{}}', 'succeeded', 0, '{at}', '{at}', '{at}'), \
                   ('failed-{at}', 'list_tags', '{{}}', '{{}}', 'failed', 0, '{at}', '{at}', '{at}')"
            ),
        )
        .await;
    }
    // A command still queued, however old, is kept (the worker may be waiting to send it).
    let mut app = app;
    app.halt().await;
    exec(
        &app,
        &format!(
            "INSERT INTO commands (id, action, params, request, status, next_attempt_ms, \
             created_at, updated_at) VALUES ('queued-old', 'list_tags', '{{}}', \
             '{{\"method\":\"GET\",\"path\":\"tags/\",\"query\":{{}},\"body\":null}}', \
             'queued', {far}, '{old}', '{old}')",
            far = i64::MAX / 2
        ),
    )
    .await;
    let app = app.relaunch().await;
    wait_until(Duration::from_secs(20), "the old rows to go", || async {
        count(
            &app,
            &format!(
                "SELECT (SELECT COUNT(*) FROM rejects WHERE created_at = '{old}') + \
                 (SELECT COUNT(*) FROM webhook_seen WHERE received_at = '{old}') + \
                 (SELECT COUNT(*) FROM inbox_files WHERE path = 'moved-{old}') + \
                 (SELECT COUNT(*) FROM commands WHERE id IN ('done-{old}', 'failed-{old}'))"
            ),
        )
        .await
            == 0
    })
    .await;
    let kept = count(
        &app,
        &format!(
            "SELECT (SELECT COUNT(*) FROM rejects WHERE created_at = '{new}') + \
             (SELECT COUNT(*) FROM webhook_seen WHERE received_at = '{new}') + \
             (SELECT COUNT(*) FROM inbox_files WHERE path IN ('moved-{new}', 'unmoved-{new}', \
               'unmoved-{old}')) + \
             (SELECT COUNT(*) FROM commands WHERE id IN ('done-{new}', 'failed-{new}', 'queued-old'))"
        ),
    )
    .await;
    assert_eq!(
        kept,
        2 + 3 + 3,
        "new rows, unmoved files and queued commands stay"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_wal_is_truncated() {
    let app = app_with(|s| s.storage.wal_max_size = 1 << 20).await;
    let wal = PathBuf::from(format!("{}-wal", app.settings.storage.database.display()));
    // One big transaction, as a big file's commit is: it leaves a WAL of about 2 MB.
    exec(
        &app,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO rejects (source, key, phone, reason, created_at) \
         SELECT 'csv', 'big:' || i, '1', printf('%.400c', 'x'), '2100-01-01T00:00:00.000Z' FROM n",
    )
    .await;
    wait_until(Duration::from_secs(20), "the WAL to shrink", || {
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        async move { size < 1 << 20 }
    })
    .await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM rejects").await, 20000);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_table_without_its_columns_refuses_the_start() {
    let mut app = app_with(|_| {}).await;
    app.halt().await;
    exec(
        &app,
        "DROP TABLE contacts; CREATE TABLE contacts (phone TEXT PRIMARY KEY, first_name TEXT)",
    )
    .await;
    let error = match spoki_sync::app::App::build(app.settings.clone()).await {
        Ok(_) => panic!("started over a damaged mirror table"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("storage.database"), "{error}");
    assert!(error.contains("lacks the column(s) spoki_id"), "{error}");
}
