//! Big files: read in short transactions with a checkpoint, so a kill -9 in the middle of one
//! loses nothing and queues nothing twice, and other writers (a contacts webhook) are not held
//! up until the file is done; the counts of the report match an independent count.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use spoki_sync::sim::SimConfig;

use crate::helpers::*;

const WHSEC_KEY: &[u8] = b"big files webhook key";

/// Writes a config for the real binary: Spoki's minute lasts `window_ms`, bulk only.
fn write_config(dir: &Path, base: &str, admin: u16, hooks: u16, window_ms: u128) -> PathBuf {
    ScaledConfig {
        base,
        admin,
        hooks,
        window_ms,
        token: "big-files-token",
        webhook_key: WHSEC_KEY,
        webhooks_extra: "",
    }
    .write(dir)
}

/// How many contacts of `file` the daemon has committed so far, by its checkpoint.
async fn checkpoint(db: &Path, file: &str) -> Option<u64> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .ok()?;
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = ?")
        .bind(format!("inbox_progress:{file}"))
        .fetch_optional(&pool)
        .await
        .ok()?;
    pool.close().await;
    let value: Value = serde_json::from_str(&row?.0).ok()?;
    value["contacts"].as_u64()
}

fn processed(inbox: &Path, name: &str) -> bool {
    std::fs::read_dir(inbox.join("processed"))
        .map(|d| {
            d.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{name}"))
            })
        })
        .unwrap_or(false)
}

/// Phones written to Spoki by accepted requests, with how many times each was written.
fn writes_per_phone(sim: &spoki_sync::sim::SimHandle) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for r in sim.requests() {
        if r.status != 200 || r.method != "POST" || !r.path.ends_with("/contacts/sync_all/") {
            continue;
        }
        for c in r.body.as_array().into_iter().flatten() {
            if let Some(p) = c["phone"].as_str() {
                *out.entry(p.to_string()).or_default() += 1;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_file_resumes_from_the_checkpoint_and_sends_every_row_once() {
    // A short Spoki minute, so the whole file is sent within the test's waits.
    let window = Duration::from_millis(50);
    let sim = start_sim(SimConfig {
        window,
        ..SimConfig::default()
    })
    .await;
    // Nothing leaves before the kill: every write Spoki takes is counted after the restart.
    sim.set_limit("POST /contacts/sync_all/", 0);
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        &sim.base_url(),
        free_port(),
        free_port(),
        window.as_millis(),
    );
    let inbox = dir.path().join("inbox");
    let db = dir.path().join("state.db");
    let mut daemon = start_daemon(&config, &[]);
    wait_until(Duration::from_secs(20), "the inbox", || {
        let ok = inbox.exists();
        async move { ok }
    })
    .await;

    const ROWS: u64 = 60_000;
    let name = "big.csv";
    std::fs::write(inbox.join("big.part"), contacts_csv(0, ROWS, "")).expect("csv");
    std::fs::rename(inbox.join("big.part"), inbox.join(name)).expect("rename");
    let mut at_kill = 0;
    wait_until(Duration::from_secs(120), "a first chunk committed", || {
        let db = db.clone();
        let done = processed(&inbox, name);
        async move {
            assert!(!done, "the file was done before it could be interrupted");
            checkpoint(&db, name).await.is_some_and(|n| n > 0)
        }
    })
    .await;
    daemon.signal("KILL");
    let _ = tokio::task::block_in_place(|| daemon.child.wait());
    if let Some(n) = checkpoint(&db, name).await {
        at_kill = n;
    }
    assert!(
        at_kill > 0 && at_kill < ROWS,
        "killed mid-file, after {at_kill} contacts"
    );
    assert!(!processed(&inbox, name), "killed before the file was done");

    let _daemon = start_daemon(&config, &[]);
    let report = wait_report(&inbox, "processed", name).await;
    assert_eq!(report["rows"], ROWS, "{report}");
    assert_eq!(report["accepted"], ROWS, "{report}");
    assert_eq!(
        report["unchanged"], 0,
        "contacts committed before the kill are counted as the first read judged them: {report}"
    );
    assert!(
        checkpoint(&db, name).await.is_none(),
        "the checkpoint ends with the file"
    );

    sim.set_limit("POST /contacts/sync_all/", 1);
    wait_until(Duration::from_secs(120), "every row in Spoki", || async {
        writes_per_phone(&sim).len() as u64 == ROWS
    })
    .await;
    // Give a second write, if one were queued, time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = writes_per_phone(&sim);
    assert_eq!(writes.len() as u64, ROWS);
    let twice: Vec<_> = writes.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_during_a_big_ingest_is_queued_before_the_file_finishes() {
    let app = spawn_app_tweaked(|s| {
        s.webhooks.secret = Some(whsec(WHSEC_KEY));
    })
    .await;
    // Nothing leaves, so the outbox keeps the order rows were queued in.
    app.sim.set_limit("POST /contacts/sync_all/", 0);
    app.sim.set_limit("POST /contacts/sync/", 0);
    let db = app.settings.storage.database.clone();
    const ROWS: u64 = 100_000;
    app.drop_file("big.csv", &contacts_csv(0, ROWS, ""));
    wait_until(Duration::from_secs(120), "the file half read", || {
        let db = db.clone();
        async move { checkpoint(&db, "big.csv").await.is_some() }
    })
    .await;
    let (status, answer) = deliver_contacts(
        &app,
        WHSEC_KEY,
        "msg_during_big_file",
        &json!({"contacts": [{"phone": "+393899000001", "first_name": "Ugo"}]}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["queued"], 1, "{answer}");
    let report = wait_report(&app.inbox, "processed", "big.csv").await;
    assert_eq!(report["accepted"], ROWS, "{report}");

    // The webhook's row was queued between the file's rows: some of them came after it.
    let pool = app.other_program().await;
    let (hook_id,): (i64,) = sqlx::query_as("SELECT id FROM outbox WHERE phone = '+393899000001'")
        .fetch_one(&pool)
        .await
        .expect("the webhook's row is queued");
    let (after, total): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(id > ?), 0), COUNT(*) FROM outbox WHERE source = 'csv'",
    )
    .bind(hook_id)
    .fetch_one(&pool)
    .await
    .expect("count");
    pool.close().await;
    assert_eq!(total as u64, ROWS);
    assert!(
        after > 0 && (after as u64) < ROWS,
        "{after} of the file's rows were queued after the webhook's"
    );
    app.stop().await;
}

/// An independent count of a generated file: every rule applied by hand, not by the daemon.
struct Expected {
    rows: u64,
    invalid: u64,
    duplicates: u64,
    distinct: u64,
}

/// Rows of `n` contacts: a phone in one of a few spellings, every 17th row invalid, every 13th
/// a repeat of an earlier phone.
fn messy_csv(n: u64) -> (Vec<u8>, Expected) {
    let mut s = String::from("Cellulare;Nome;E-mail\n");
    let mut seen: HashSet<u64> = HashSet::new();
    let mut e = Expected {
        rows: 0,
        invalid: 0,
        duplicates: 0,
        distinct: 0,
    };
    for i in 0..n {
        e.rows += 1;
        if i % 17 == 5 {
            s.push_str(&format!("x{i};Bad{i};\n"));
            e.invalid += 1;
            continue;
        }
        let number = if i % 13 == 7 { i / 2 } else { i };
        let national = format!("333{number:07}");
        let spelled = match i % 4 {
            0 => format!("+39 {national}"),
            1 => format!("0039{national}"),
            2 => format!("{} {} {}", &national[..3], &national[3..6], &national[6..]),
            _ => national.clone(),
        };
        s.push_str(&format!("{spelled};Nome{i};n{i}@example.it\n"));
        if seen.insert(number) {
            e.distinct += 1;
        } else {
            e.duplicates += 1;
        }
    }
    (s.into_bytes(), e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_an_independent_count_with_and_without_known_state() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let (csv, want) = messy_csv(30_000);
    let path = app.dir().join("messy.csv");
    std::fs::write(&path, &csv).expect("csv");
    let settings = app.settings.clone();

    // plan against the empty state: every distinct phone is new.
    let plan = spoki_sync::cli::plan::plan(&settings, &path, None)
        .await
        .expect("plan");
    assert_eq!(plan.rows, want.rows);
    assert_eq!(plan.invalid, want.invalid);
    assert_eq!(plan.valid, want.rows - want.invalid);
    assert_eq!(plan.duplicates, want.duplicates);
    assert_eq!(plan.creates, want.distinct);
    assert_eq!((plan.updates, plan.unchanged), (0, 0));

    // The daemon's report of the same file.
    app.drop_file("messy.csv", &csv);
    let report = wait_report(&app.inbox, "processed", "messy.csv").await;
    assert_eq!(report["rows"], want.rows, "{report}");
    assert_eq!(report["accepted"], want.distinct, "{report}");
    assert_eq!(report["duplicates"], want.duplicates, "{report}");
    assert_eq!(
        report["rejected"].as_array().map(Vec::len),
        Some(want.invalid as usize)
    );
    assert_eq!(report["unchanged"], 0, "{report}");
    app.wait_drained(Duration::from_secs(60)).await;

    // Once Spoki holds them: the same file is all unchanged, and one changed name is an update.
    let plan = spoki_sync::cli::plan::plan(&settings, &path, None)
        .await
        .expect("plan");
    assert_eq!(plan.unchanged, want.distinct);
    assert_eq!((plan.creates, plan.updates), (0, 0));
    let changed = String::from_utf8(csv.clone())
        .expect("utf-8")
        .replacen(";Nome0;", ";Nuovo;", 1);
    std::fs::write(&path, changed).expect("csv");
    let plan = spoki_sync::cli::plan::plan(&settings, &path, None)
        .await
        .expect("plan");
    assert_eq!(plan.updates, 1);
    assert_eq!(plan.unchanged, want.distinct - 1);
    let writes = contact_writes(&app.sim.requests()).len();
    app.drop_file("messy-again.csv", &csv);
    let again = wait_report(&app.inbox, "processed", "messy-again.csv").await;
    assert_eq!(again["unchanged"], want.distinct, "{again}");
    assert_eq!(app.store.outbox_depth().await.expect("depth"), 0);
    assert_eq!(contact_writes(&app.sim.requests()).len(), writes);
    app.stop().await;
}
