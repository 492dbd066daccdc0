//! Reads from Spoki that survive every answer shape we only guess at: the daemon's pull and
//! custom-field listing end to end against each of the simulator's read variants (cursor and
//! limit/offset pagination, relative and foreign `next` links, odd records, a 404 on a later
//! page, bare arrays, HTTP-date `Retry-After`, empty write bodies).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use spoki_sync::config::Settings;
use spoki_sync::sim::{Pagination, ReadVariants, SimConfig};

use crate::helpers::{TestApp, spawn_app_with, start_sim, wait_until};

const WINDOW: Duration = Duration::from_millis(500);

/// The daemon against a simulator with `reads` in force and pages of at most 10 contacts
/// (so a few contacts make several pages in every style); deletions are never held.
async fn app_with(reads: ReadVariants, tweak: impl FnOnce(&mut SimConfig)) -> TestApp {
    let mut sim = SimConfig {
        window: WINDOW,
        page_size_max: 10,
        page_size_default: 10,
        reads,
        ..SimConfig::default()
    };
    tweak(&mut sim);
    spawn_app_with(sim, WINDOW, |s: &mut Settings| {
        s.mirror.max_delete_share = 1.0;
    })
    .await
}

/// `n` contacts made in Spoki's UI (no webhook: only a pull brings them).
fn seed(app: &TestApp, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let phone = format!("+39333{:07}", 4_000_000 + i);
            app.sim.ui_upsert_contact(
                &phone,
                json!({"first_name": format!("Nome{i}"), "custom_fields": {"CITTA": "Roma"}}),
            );
            phone
        })
        .collect()
}

async fn meta(app: &TestApp, key: &str) -> Option<String> {
    let pool = app.other_program().await;
    let v: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = ?")
        .bind(key)
        .fetch_optional(&pool)
        .await
        .expect("read meta");
    pool.close().await;
    v.map(|(v,)| v)
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let pool = app.other_program().await;
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .expect(sql);
    pool.close().await;
    n
}

async fn mirror_phones(app: &TestApp) -> HashSet<String> {
    let pool = app.other_program().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT phone FROM contacts")
        .fetch_all(&pool)
        .await
        .expect("read the mirror");
    pool.close().await;
    rows.into_iter().map(|(p,)| p).collect()
}

/// How a pull ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Complete,
    Incomplete,
}

/// Starts a pull and waits until it ends, complete or not.
async fn pull(app: &TestApp) -> Ended {
    let done = meta(app, "last_pull_at").await;
    let incomplete = meta(app, "last_pull_incomplete_at").await;
    let asked = app
        .admin_req(Method::POST, "/v1/sync/pull")
        .send()
        .await
        .expect("pull");
    assert_eq!(asked.status(), 202);
    wait_until(Duration::from_secs(60), "the pull to end", || async {
        meta(app, "last_pull_at").await != done
            || meta(app, "last_pull_incomplete_at").await != incomplete
    })
    .await;
    if meta(app, "last_pull_at").await != done {
        Ended::Complete
    } else {
        Ended::Incomplete
    }
}

/// The `GET contacts/` answered 200 so far: (query, count) of each distinct query.
fn contact_pages(app: &TestApp) -> HashMap<String, usize> {
    let mut pages = HashMap::new();
    for r in app.sim.requests() {
        if r.method == "GET" && r.path == "/api/1/contacts/" && r.status == 200 {
            *pages.entry(r.query.clone()).or_default() += 1;
        }
    }
    pages
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_cursor_paged_pull_with_odd_records_mirrors_every_readable_contact_and_notices_a_deletion()
 {
    let reads = ReadVariants {
        pagination: Pagination::Cursor,
        odd_records: true,
        ..ReadVariants::default()
    };
    let app = app_with(reads, |_| {}).await;
    let phones = seed(&app, 25);
    assert_eq!(pull(&app).await, Ended::Complete);
    assert_eq!(mirror_phones(&app).await, phones.iter().cloned().collect());
    // The quirky rendering (unknown keys, null sets, wrong types) kept the fields readable.
    let first = scalar(
        &app,
        "SELECT count(*) FROM contacts WHERE first_name LIKE 'Nome%' \
         AND custom_fields LIKE '%Roma%'",
    )
    .await;
    assert_eq!(first, 25);
    // 25 contacts at 10 a page: 3 pages, each fetched once, and no fourth request.
    let pages = contact_pages(&app);
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages.values().all(|&n| n == 1), "{pages:?}");
    assert!(pages.keys().filter(|q| q.contains("cursor=")).count() == 2);
    let skipped = metric(
        &app.metrics_text().await,
        "spoki_sync_skipped_records_total{action=\"list_contacts\"}",
    );
    assert!(
        skipped >= 5.0,
        "the five odd records are counted: {skipped}"
    );

    // A contact deleted in Spoki is noticed by the next complete pull.
    assert!(app.sim.ui_delete_contact(&phones[3]));
    assert_eq!(pull(&app).await, Ended::Complete);
    wait_until(
        Duration::from_secs(30),
        "the deletion in the mirror",
        || async { !mirror_phones(&app).await.contains(&phones[3]) },
    )
    .await;
    assert_eq!(mirror_phones(&app).await.len(), 24);
    app.stop().await;
}

#[tokio::test]
async fn a_404_on_a_later_page_ends_the_pull_incomplete_and_infers_no_deletion() {
    let app = app_with(ReadVariants::default(), |_| {}).await;
    let phones = seed(&app, 25);
    assert_eq!(pull(&app).await, Ended::Complete);
    assert_eq!(mirror_phones(&app).await.len(), 25);

    // Contacts go in Spoki while the next pass runs: page 2 is no longer there.
    let last = phones.last().expect("a phone").clone();
    assert!(app.sim.ui_delete_contact(&last));
    app.sim.set_read_variants(ReadVariants {
        invalid_page_from: Some(2),
        ..ReadVariants::default()
    });
    app.sim
        .ui_upsert_contact(&phones[0], json!({"first_name": "Changed"}));
    assert_eq!(pull(&app).await, Ended::Incomplete);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM deletes").await,
        0,
        "an incomplete pass inferred a deletion"
    );
    assert!(mirror_phones(&app).await.contains(&last));
    // What the first page brought is merged all the same.
    assert_eq!(
        scalar(
            &app,
            &format!(
                "SELECT count(*) FROM contacts WHERE phone = '{}' AND first_name = 'Changed'",
                phones[0]
            ),
        )
        .await,
        1
    );

    // Once the pages are whole again, the deletion is noticed.
    app.sim.set_read_variants(ReadVariants::default());
    assert_eq!(pull(&app).await, Ended::Complete);
    wait_until(
        Duration::from_secs(30),
        "the deletion in the mirror",
        || async { !mirror_phones(&app).await.contains(&last) },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed_with_the_key() {
    let other = start_sim(SimConfig::default()).await;
    let reads = ReadVariants {
        next_origin: Some(format!("http://{}", other.addr())),
        ..ReadVariants::default()
    };
    let app = app_with(reads, |_| {}).await;
    let phones = seed(&app, 15);
    // The contacts the pass did read are mirrored; nothing is inferred from it.
    let ended = pull(&app).await;
    assert_eq!(ended, Ended::Incomplete);
    assert_eq!(mirror_phones(&app).await.len(), 10);
    assert!(other.requests().is_empty(), "the other host was called");
    assert_eq!(scalar(&app, "SELECT count(*) FROM deletes").await, 0);
    drop(phones);
    app.stop().await;
}

#[tokio::test]
async fn every_pagination_style_and_envelope_reads_the_whole_list() {
    let variants = [
        ReadVariants {
            pagination: Pagination::LimitOffset,
            ..ReadVariants::default()
        },
        ReadVariants {
            relative_next: true,
            ..ReadVariants::default()
        },
        ReadVariants {
            pagination: Pagination::Cursor,
            relative_next: true,
            null_empty_results: true,
            ..ReadVariants::default()
        },
        ReadVariants {
            bare_arrays: true,
            ..ReadVariants::default()
        },
    ];
    for reads in variants {
        let app = app_with(reads.clone(), |_| {}).await;
        let phones = seed(&app, 23);
        assert_eq!(pull(&app).await, Ended::Complete, "{reads:?}");
        assert_eq!(
            mirror_phones(&app).await,
            phones.iter().cloned().collect(),
            "{reads:?}"
        );
        let pages = contact_pages(&app);
        let expected = if reads.bare_arrays { 1 } else { 3 };
        assert_eq!(pages.len(), expected, "{reads:?}: {pages:?}");
        assert!(pages.values().all(|&n| n == 1), "{reads:?}: {pages:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_http_date_retry_after_is_waited_for() {
    // Spoki allows one contacts page per 2 s; the daemon's own budget would allow far more.
    // Read as a date, each 429 holds the pull until the slot frees, so each page is refused
    // at most about once; ignored, the daemon would ask again every few milliseconds.
    let reads = ReadVariants {
        retry_after_http_date: true,
        ..ReadVariants::default()
    };
    let app = app_with(reads, |sim| {
        sim.window = Duration::from_secs(2);
        sim.limit_overrides.insert("GET /contacts/".to_owned(), 1);
    })
    .await;
    let phones = seed(&app, 25);
    assert_eq!(pull(&app).await, Ended::Complete);
    assert_eq!(mirror_phones(&app).await.len(), phones.len());
    let throttled = app.sim.throttled_count();
    assert!(throttled >= 1, "the limit was never hit");
    assert!(
        throttled <= 6,
        "{throttled} 429s for 3 pages: the HTTP-date was not waited for"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_custom_field_listing_with_odd_records_does_not_stall_contact_writes() {
    let reads = ReadVariants {
        odd_records: true,
        empty_write_bodies: true,
        ..ReadVariants::default()
    };
    let app = app_with(reads, |_| {}).await;
    app.sim.create_custom_field("CITTA");
    app.drop_file(
        "fields.csv",
        b"phone;nome;citta\n+39 333 5000001;Anna;Roma\n+39 333 5000002;Bruno;Bari\n",
    );
    for (phone, city) in [("+393335000001", "Roma"), ("+393335000002", "Bari")] {
        wait_until(
            Duration::from_secs(60),
            &format!("{phone} with its city in Spoki"),
            || async {
                app.sim.contact_by_phone(phone).is_some_and(|c| {
                    c["contactfield_set"].as_array().is_some_and(|set| {
                        set.iter()
                            .any(|f| f["visual_code"] == "%%CITTA%%" && f["value"] == city)
                    })
                })
            },
        )
        .await;
    }
    app.wait_drained(Duration::from_secs(30)).await;
    // The field existed: it was listed (past the odd records), not created again.
    let creates = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/1/custom-fields/")
        .count();
    assert_eq!(creates, 0);
    let skipped = metric(
        &app.metrics_text().await,
        "spoki_sync_skipped_records_total{action=\"list_custom_fields\"}",
    );
    assert!(skipped >= 3.0, "{skipped}");
    app.stop().await;
}

#[tokio::test]
async fn an_empty_list_sent_as_results_null_is_an_empty_complete_pass() {
    let reads = ReadVariants {
        null_empty_results: true,
        ..ReadVariants::default()
    };
    let app = app_with(reads, |_| {}).await;
    assert_eq!(pull(&app).await, Ended::Complete);
    let answered: Vec<_> = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/1/contacts/" && r.status == 200)
        .collect();
    assert_eq!(answered.len(), 1, "one empty page, then the pass ends");
    assert!(mirror_phones(&app).await.is_empty());
    app.stop().await;
}
