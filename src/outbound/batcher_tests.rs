//! `Batcher::step` driven directly against the in-process simulator: each test launches what
//! one step decides, waits only for that request's answer, and reads the decision off the
//! simulator and the budgets. No daemon, no sleeps, no timing bounds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::batcher::{BULK, Batcher, BatcherSettings, SINGLE, Step};
use super::limits::Budgets;
use crate::domain::{ContactFields, ListId, Phone};
use crate::sim::SimHandle;
use crate::store::Store;

struct Rig {
    _dir: tempfile::TempDir,
    sim: SimHandle,
    store: Store,
    budgets: Budgets,
    batcher: Batcher,
}

/// A batcher on a fresh database, against a simulator whose minute lasts `window`, with the
/// daemon's limits scaled the same way.
async fn rig(window: Duration) -> Rig {
    rig_with(window, |_| {}).await
}

async fn rig_with(window: Duration, tweak: impl FnOnce(&mut crate::config::Settings)) -> Rig {
    let r = crate::sim_rig::sim_rig(window, tweak).await;
    let batcher = Batcher::new(
        r.store.clone(),
        r.client,
        r.budgets.clone(),
        BatcherSettings::from_settings(&r.settings),
        Arc::new(Notify::new()),
    );
    Rig {
        _dir: r.dir,
        sim: r.sim,
        store: r.store,
        budgets: r.budgets,
        batcher,
    }
}

async fn queue(store: &Store, n: u64) {
    let rows: Vec<(Phone, ContactFields, String)> = (0..n)
        .map(|i| {
            let phone = Phone::from_e164(&format!("+39333{:07}", 1_000_000 + i)).expect("phone");
            let fields = ContactFields {
                first_name: Some(format!("N{i}")),
                ..Default::default()
            };
            (phone, fields, format!("t.csv:{}", i + 2))
        })
        .collect();
    let mut tx = store.begin().await.expect("tx");
    Store::insert_pending_many(&mut tx, ListId::NONE, &rows, "csv")
        .await
        .expect("queue");
    tx.commit().await.expect("commit");
}

/// Runs one step and waits for the request it launched, if any.
async fn step(rig: &Rig) -> Step {
    let mut in_flight = JoinSet::new();
    let step = rig.batcher.step(&mut in_flight).await.expect("step");
    while in_flight.join_next().await.is_some() {}
    step
}

/// (path, contacts) of every contact write the simulator answered, 429s included.
fn writes(sim: &SimHandle) -> Vec<(String, u16, usize)> {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let n = r.body.as_array().map_or(1, Vec::len);
            (r.path.clone(), r.status, n)
        })
        .collect()
}

#[tokio::test]
async fn a_backlog_goes_500_at_a_time_and_then_waits_for_the_bulk_slot() {
    let rig = rig(Duration::from_secs(60)).await;
    queue(&rig.store, 1_234).await;
    assert_eq!(step(&rig).await, Step::Launched);
    assert_eq!(
        writes(&rig.sim),
        vec![("/api/1/contacts/sync_all/".to_owned(), 200, 500)]
    );
    // The next bulk slot is a minute away, and 734 contacts are too many to send singly.
    match step(&rig).await {
        Step::Wait(d) => assert!(d > Duration::from_secs(30), "{d:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(writes(&rig.sim).len(), 1);
    assert_eq!(rig.store.outbox_depth().await.expect("depth"), 734);
}

#[tokio::test]
async fn a_handful_goes_one_by_one_and_leaves_the_bulk_slot_free() {
    let rig = rig(Duration::from_secs(60)).await;
    queue(&rig.store, 3).await;
    assert_eq!(step(&rig).await, Step::Launched);
    assert_eq!(
        writes(&rig.sim),
        vec![("/api/1/contacts/sync/".to_owned(), 200, 1)]
    );
    assert!(
        rig.budgets.get(BULK).try_acquire().is_ok(),
        "the bulk slot is untouched"
    );
    // The single lane's budget (120/min) spaces the next one half a second later.
    match step(&rig).await {
        Step::Wait(d) => assert!(d <= rig.budgets.get(SINGLE).limit().interval() * 2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_429_holds_the_action_shut_and_puts_the_rows_back() {
    // Our bulk budget allows one a second; Spoki's Retry-After (a whole minute) must win.
    let rig = rig_with(Duration::from_secs(60), |s| {
        let fast = crate::config::RateLimit::parse("1/1s").expect("limit");
        s.spoki.rate_limits.insert(BULK.name().to_owned(), fast);
    })
    .await;
    rig.sim.set_limit("POST /contacts/sync_all/", 0);
    queue(&rig.store, 600).await;
    assert_eq!(step(&rig).await, Step::Launched);
    assert_eq!(
        writes(&rig.sim),
        vec![("/api/1/contacts/sync_all/".to_owned(), 429, 500)]
    );
    assert_eq!(rig.store.outbox_depth().await.expect("depth"), 600);
    let counts = rig.store.status_counts().await.expect("counts");
    assert_eq!(
        (counts.outbox_pending, counts.outbox_inflight),
        (600, 0),
        "rows go back to pending"
    );
    let held = rig
        .budgets
        .get(BULK)
        .try_acquire()
        .expect_err("held shut for Retry-After");
    assert!(held > Duration::from_secs(30), "{held:?}");
}

#[tokio::test]
async fn after_a_crash_every_action_waits_one_interval_first() {
    let rig = rig(Duration::from_secs(60)).await;
    rig.budgets.hold_all_one_interval();
    queue(&rig.store, 3).await;
    match step(&rig).await {
        Step::Wait(d) => assert!(d > Duration::ZERO),
        other => panic!("{other:?}"),
    }
    assert!(writes(&rig.sim).is_empty(), "nothing left before the hold");
}
