//! The command worker's step (`launch_due`) driven directly against the in-process simulator:
//! each test launches what one step decides, waits for that request's answer, and reads the
//! outcome off the command queue, the simulator and the budgets. No daemon, no sleeps.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{CommandWorker, WorkerSettings};
use crate::commands::Commands;
use crate::live::Live;
use crate::outbound::limits::Budgets;
use crate::sim::{Faults, SimHandle};
use crate::spoki::actions::Action;
use crate::store::{CommandRecord, Store};

struct Rig {
    _dir: tempfile::TempDir,
    sim: SimHandle,
    store: Store,
    budgets: Budgets,
    commands: Commands,
    worker: CommandWorker,
}

async fn rig() -> Rig {
    let r = crate::sim_rig::sim_rig(Duration::from_secs(60), |_| {}).await;
    let wake = Arc::new(Notify::new());
    let worker = CommandWorker::new(
        r.store.clone(),
        r.client,
        r.budgets.clone(),
        Live::new(WorkerSettings {
            max_attempts: 10,
            max_backoff: Duration::from_secs(60),
        }),
        wake.clone(),
    );
    let commands = Commands::new(r.store.clone(), wake);
    Rig {
        _dir: r.dir,
        sim: r.sim,
        store: r.store,
        budgets: r.budgets,
        commands,
        worker,
    }
}

impl Rig {
    /// Queues one command, runs one step of the worker and waits for what it launched.
    async fn step(&self, action: &str, params: Value) -> CommandRecord {
        let id = self.commands.submit(action, params).await.expect("queued");
        let mut in_flight = JoinSet::new();
        let mut busy = HashSet::new();
        self.worker
            .launch_due(&mut in_flight, &mut busy)
            .await
            .expect("step");
        while in_flight.join_next().await.is_some() {}
        self.store
            .command(&id)
            .await
            .expect("read")
            .expect("the command")
    }

    fn calls(&self, method: &str, path_part: &str) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .count()
    }
}

#[tokio::test]
async fn a_throttled_command_waits_for_its_budget_and_is_no_failure() {
    let rig = rig().await;
    rig.sim.set_limit("GET /tags/", 0);
    let cmd = rig.step("list_tags", json!({})).await;
    assert_eq!(cmd.status, "queued", "{cmd:?}");
    assert_eq!(cmd.http_status, Some(429));
    let held = rig
        .budgets
        .get(Action::ListTags)
        .try_acquire()
        .expect_err("held shut for Retry-After");
    assert!(held > Duration::from_secs(30), "{held:?}");
}

#[tokio::test]
async fn a_create_that_may_have_applied_is_failed_not_repeated() {
    let rig = rig().await;
    rig.sim.set_faults(Faults {
        error_503_rate: 1.0,
        ..Faults::default()
    });
    let cmd = rig
        .step("create_contact_list", json!({"name": "VIP"}))
        .await;
    assert_eq!(cmd.status, "failed", "{cmd:?}");
    assert!(
        cmd.error.to_string().contains("was not repeated"),
        "{}",
        cmd.error
    );
    assert_eq!(rig.calls("POST", "/lists/"), 1);
}

#[tokio::test]
async fn a_read_after_a_5xx_is_queued_again_with_a_backoff() {
    let rig = rig().await;
    rig.sim.set_faults(Faults {
        error_503_rate: 1.0,
        ..Faults::default()
    });
    let cmd = rig.step("list_tags", json!({})).await;
    assert_eq!(cmd.status, "queued", "{cmd:?}");
    assert_eq!(cmd.http_status, Some(503));
    assert!(
        cmd.next_attempt_ms
            .is_some_and(|ms| ms > crate::store::now_ms())
    );
}

#[tokio::test]
async fn a_throttled_automation_lookup_holds_the_lookups_budget_and_starts_nothing() {
    let rig = rig().await;
    let automation = rig.sim.fixtures().automation_id;
    rig.sim.set_limit("GET /automations/{id}/", 0);
    let cmd = rig
        .step(
            "start_automation",
            json!({"automation": automation, "phone": "+393331234567"}),
        )
        .await;
    assert_eq!(cmd.status, "queued", "{cmd:?}");
    assert!(rig.sim.automation_runs().is_empty(), "nothing started");
    let held = rig
        .budgets
        .get(Action::RetrieveAutomation)
        .try_acquire()
        .expect_err("the lookup's budget is held");
    assert!(held > Duration::from_secs(30), "{held:?}");
}

#[tokio::test]
async fn a_throttled_lookup_leaves_the_start_budget_untouched() {
    let rig = rig().await;
    let automation = rig.sim.fixtures().automation_id;
    rig.sim.set_limit("GET /automations/{id}/", 0);
    let cmd = rig
        .step(
            "start_automation",
            json!({"automation": automation, "phone": "+393331234567"}),
        )
        .await;
    assert_eq!(cmd.status, "queued", "{cmd:?}");
    assert!(
        rig.budgets
            .get(Action::StartAutomation)
            .try_acquire()
            .is_ok(),
        "no slot of the start's budget was spent on the lookup"
    );
}

#[tokio::test]
async fn a_5xx_on_the_lookup_is_retried_not_a_failure() {
    let rig = rig().await;
    let automation = rig.sim.fixtures().automation_id;
    rig.sim.set_faults(Faults {
        error_503_rate: 1.0,
        ..Faults::default()
    });
    let cmd = rig
        .step(
            "start_automation",
            json!({"automation": automation, "phone": "+393331234567"}),
        )
        .await;
    assert_eq!(cmd.status, "queued", "{cmd:?}");
    assert_eq!(cmd.http_status, Some(503));
    assert!(rig.sim.automation_runs().is_empty());
}

#[tokio::test]
async fn a_kept_trigger_that_answers_404_is_looked_up_again() {
    let rig = rig().await;
    let automation = rig.sim.fixtures().automation_id;
    let params = json!({"automation": automation, "phone": "+393331234567"});
    let first = rig.step("start_automation", params.clone()).await;
    assert_eq!(first.status, "succeeded", "{first:?}");
    let (uuid, _) = rig.sim.replace_trigger(automation).expect("replaced");
    // The kept trigger's URL answers 404: the start is put back, not failed.
    let second = rig.step("start_automation", params.clone()).await;
    assert_eq!(second.status, "queued", "{second:?}");
    let mut rounds = 0;
    let third = loop {
        rounds += 1;
        assert!(rounds < 400, "the start never ended");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut in_flight = JoinSet::new();
        let mut busy = HashSet::new();
        rig.worker
            .launch_due(&mut in_flight, &mut busy)
            .await
            .expect("step");
        while in_flight.join_next().await.is_some() {}
        let cmd = rig
            .store
            .command(&second.id)
            .await
            .expect("read")
            .expect("the command");
        if cmd.status != "queued" {
            break cmd;
        }
    };
    assert_eq!(third.status, "succeeded", "{third:?}");
    let runs = rig.sim.automation_runs();
    assert_eq!(runs.last().map(|(u, _)| u.as_str()), Some(uuid.as_str()));
    assert_eq!(rig.calls("GET", &format!("/automations/{automation}/")), 2);
}
