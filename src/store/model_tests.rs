//! Model-based test of the outbox: random sequences of accepted changes, claims,
//! acknowledgements, failed requests and crashes run against the real SQLite outbox and a
//! simple in-memory model of what Spoki holds. After every step, and once drained, the
//! outbox must keep its invariants: one pending row per contact, one write in flight per
//! contact, Spoki never given an older value than it already had, and every accepted change
//! finally held by Spoki.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::diff;
use crate::domain::{ContactFields, ListId, Phone};
use crate::store::{OutboxRow, Release, Route, Store};

#[derive(Clone, Debug)]
enum Op {
    /// A change accepted for contact `phone`: its first name becomes the next version; its
    /// city changes too when `city` is set.
    Accept { phone: usize, city: bool },
    /// The batcher claims up to `n` rows into a request.
    Claim { n: usize },
    /// Spoki answers 2xx to the request at `index` (modulo the open ones).
    Ack { index: usize },
    /// The request at `index` fails (5xx, timeout): its rows go back.
    Fail { index: usize },
    /// The daemon dies and restarts: every request in flight is forgotten.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, any::<bool>()).prop_map(|(phone, city)| Op::Accept { phone, city }),
        2 => (1..4usize).prop_map(|n| Op::Claim { n }),
        2 => any::<usize>().prop_map(|index| Op::Ack { index }),
        1 => any::<usize>().prop_map(|index| Op::Fail { index }),
        1 => Just(Op::Crash),
    ]
}

fn phone(i: usize) -> Phone {
    Phone::from_e164(&format!("+39333000000{i}")).expect("phone")
}

/// The version a value was written with: `v12` → 12.
fn version(v: Option<&String>) -> Option<u32> {
    v.and_then(|s| s.trim_start_matches(['v', 'c']).parse().ok())
}

/// What Spoki holds in the model.
#[derive(Default)]
struct Spoki {
    held: HashMap<Phone, ContactFields>,
}

impl Spoki {
    /// Applies an acknowledged write; panics if any field goes back to an older version.
    fn apply(&mut self, row: &OutboxRow) {
        let now = self.held.entry(row.phone).or_default();
        for (old, new) in [
            (
                version(now.first_name.as_ref()),
                version(row.fields.first_name.as_ref()),
            ),
            (
                version(now.custom_fields.get("CITTA")),
                version(row.fields.custom_fields.get("CITTA")),
            ),
        ] {
            if let (Some(old), Some(new)) = (old, new) {
                assert!(new >= old, "{}: v{old} overwritten by v{new}", row.phone);
            }
        }
        now.overlay(&row.fields);
    }
}

async fn accept(store: &Store, phone: Phone, fields: &ContactFields) {
    let mut tx = store.begin().await.expect("tx");
    let known = Store::known(&mut tx, ListId::NONE, &[phone])
        .await
        .expect("known");
    let k = known.get(&phone).cloned().unwrap_or_default();
    let write = diff::changes(&k.effective, fields);
    if !write.is_empty() {
        Store::put_pending(
            &mut tx,
            phone,
            ListId::NONE,
            &write,
            k.pending_here.as_ref(),
            "model",
            "k",
        )
        .await
        .expect("queue");
    }
    tx.commit().await.expect("commit");
}

/// Spoki took a request: the model applies it (checking the order), then the store records it.
async fn answer(store: &Store, spoki: &mut Spoki, rows: &[OutboxRow]) {
    for r in rows {
        spoki.apply(r);
    }
    store.acknowledge(rows, &HashMap::new()).await.expect("ack");
}

async fn check_rows(store: &Store) {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT phone, state, COUNT(*) FROM outbox GROUP BY phone, state HAVING COUNT(*) > 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("rows");
    assert!(
        rows.is_empty(),
        "more than one row per contact and state: {rows:?}"
    );
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("m.db")).await.expect("db");
    let mut spoki = Spoki::default();
    let mut latest: HashMap<Phone, ContactFields> = HashMap::new();
    let mut open: Vec<Vec<OutboxRow>> = Vec::new();
    let mut next = 0u32;
    for op in ops {
        match op {
            Op::Accept { phone: p, city } => {
                next += 1;
                let mut fields = ContactFields {
                    first_name: Some(format!("v{next}")),
                    ..ContactFields::default()
                };
                if city {
                    fields
                        .custom_fields
                        .insert("CITTA".into(), format!("c{next}"));
                }
                accept(&store, phone(p), &fields).await;
                latest.entry(phone(p)).or_default().overlay(&fields);
            }
            Op::Claim { n } => {
                let rows = store
                    .claim(ListId::NONE, Route::Any, n as i64)
                    .await
                    .expect("claim");
                let mut seen = std::collections::HashSet::new();
                for r in &rows {
                    assert!(
                        seen.insert(r.phone),
                        "two rows of {} in one request",
                        r.phone
                    );
                    for other in open.iter().flatten() {
                        assert_ne!(other.phone, r.phone, "two writes of one contact in flight");
                    }
                }
                if !rows.is_empty() {
                    open.push(rows);
                }
            }
            Op::Ack { index } if !open.is_empty() => {
                let rows = open.remove(index % open.len());
                answer(&store, &mut spoki, &rows).await;
            }
            Op::Fail { index } if !open.is_empty() => {
                let rows = open.remove(index % open.len());
                store
                    .release(&rows, Release::now().because("503").failed_until(0))
                    .await
                    .expect("release");
            }
            Op::Crash => {
                open.clear();
                store.recover_inflight().await.expect("recover");
            }
            Op::Ack { .. } | Op::Fail { .. } => {}
        }
        check_rows(&store).await;
    }
    // Drain: whatever is left in flight is answered, then everything pending is sent.
    for rows in open.drain(..) {
        answer(&store, &mut spoki, &rows).await;
    }
    loop {
        let rows = store
            .claim(ListId::NONE, Route::Any, 500)
            .await
            .expect("claim");
        if rows.is_empty() {
            break;
        }
        answer(&store, &mut spoki, &rows).await;
    }
    assert_eq!(store.outbox_depth().await.expect("depth"), 0);
    for (p, fields) in &latest {
        assert_eq!(
            spoki.held.get(p),
            Some(fields),
            "{p}: Spoki lacks the newest values"
        );
        let state = store.acknowledged(*p).await.expect("state");
        assert_eq!(
            state.as_ref(),
            Some(fields),
            "{p}: the state is not what Spoki holds"
        );
    }
    store.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_outbox_delivers_every_change_in_order(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(ops));
    }
}
