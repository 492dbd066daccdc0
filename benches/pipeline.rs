//! Criterion benchmarks of the hot paths: phone and e-mail normalisation, the field diff and
//! merge, and `plan` on a generated file (empty state and a state that knows every contact).
//!
//! Run: `cargo bench --bench pipeline` (the end-to-end million-row figures come from
//! `cargo run --release --example perf`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spoki_sync::config::{ConflictWinner, Settings};
use spoki_sync::diff;
use spoki_sync::domain::ContactFields;
use spoki_sync::merge;
use spoki_sync::normalise::{self, DefaultRegion};
use spoki_sync::store::Store;

const MESSY: [&str; 8] = [
    "333 123 4567",
    "+39 347.765.4321",
    "0039 (320) 555-0101",
    "3921234567",
    "+1 202 555 0143",
    "06 6982 1234",
    "+44 7911 123456",
    "not a phone",
];

fn normalise_bench(c: &mut Criterion) {
    normalise::warm_up();
    let region = DefaultRegion::parse("IT").expect("IT");
    let mut g = c.benchmark_group("normalise");
    g.throughput(Throughput::Elements(MESSY.len() as u64));
    g.bench_function("parse_phone x8", |b| {
        b.iter(|| {
            for raw in MESSY {
                let _ = black_box(normalise::parse_phone(black_box(raw), region));
            }
        });
    });
    g.bench_function("normalise_email", |b| {
        b.iter(|| normalise::normalise_email(black_box("Mario.Rossi+promo@Example.IT")));
    });
    g.bench_function("custom_field_code", |b| {
        b.iter(|| normalise::custom_field_code(black_box("Città di nascita")));
    });
    g.finish();
}

fn contact(first: &str, city: &str) -> ContactFields {
    ContactFields {
        first_name: Some(first.to_owned()),
        last_name: Some("Rossi".to_owned()),
        email: Some("mario.rossi@example.it".to_owned()),
        language: Some("it".to_owned()),
        custom_fields: BTreeMap::from([
            ("CITTA".to_owned(), city.to_owned()),
            ("ORDER_ID".to_owned(), "A-17".to_owned()),
        ]),
    }
}

fn diff_bench(c: &mut Criterion) {
    let known = contact("Mario", "Roma");
    let same = contact("Mario", "Roma");
    let changed = contact("Mario", "Milano");
    let mut g = c.benchmark_group("diff");
    g.bench_function("unchanged", |b| {
        b.iter(|| diff::changes(black_box(&known), black_box(&same)));
    });
    g.bench_function("one field changed", |b| {
        b.iter(|| diff::changes(black_box(&known), black_box(&changed)));
    });
    let mirror = contact("Mario Luigi", "Roma");
    g.bench_function("three-way merge", |b| {
        b.iter(|| {
            merge::three_way(
                black_box(&known),
                black_box(&mirror),
                black_box(&changed),
                ConflictWinner::Mirror,
            )
        });
    });
    g.finish();
}

/// A `;`-separated Windows-1252 file of `n` Italian mobiles, with a custom column.
fn write_csv(path: &Path, n: u64) {
    let mut s = String::from("telefono;nome;cognome;Città\n");
    for i in 0..n {
        s.push_str(&format!("+39 333 {i:07};Nome{i};Cognome{i};Roma\n"));
    }
    std::fs::write(path, s).expect("write csv");
}

fn plan_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let n = 20_000u64;
    let csv = dir.path().join("contacts.csv");
    write_csv(&csv, n);
    let empty_db = dir.path().join("empty.db");
    let known_db = dir.path().join("known.db");
    rt.block_on(async {
        let store = Store::open(&known_db).await.expect("db");
        let mut tx = store.begin().await.expect("tx");
        for i in 0..n {
            sqlx::query(
                "INSERT INTO contact_state (phone, first_name, last_name, custom_fields, acked_at) \
                 VALUES (?, ?, ?, '{\"CITTA\":\"Roma\"}', '2026-01-01T00:00:00Z')",
            )
            .bind(format!("+39333{i:07}"))
            .bind(format!("Nome{i}"))
            .bind(format!("Cognome{i}"))
            .execute(&mut *tx)
            .await
            .expect("insert");
        }
        tx.commit().await.expect("commit");
        store.close().await;
    });
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    for (label, db) in [("empty state", &empty_db), ("all known", &known_db)] {
        let settings =
            Settings::from_toml(&format!("[storage]\ndatabase = \"{}\"\n", db.display()))
                .expect("settings");
        g.bench_with_input(BenchmarkId::new("20k rows", label), &settings, |b, s| {
            b.iter(|| {
                rt.block_on(spoki_sync::cli::plan::plan(s, &csv, None))
                    .expect("plan")
            });
        });
    }
    g.finish();
}

criterion_group!(benches, normalise_bench, diff_bench, plan_bench);
criterion_main!(benches);
