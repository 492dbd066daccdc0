//! The CSV inbox end to end: the shared samples, repeats that send nothing, big files, `plan`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

fn rejected_lines(report: &Value) -> Vec<u64> {
    report["rejected"]
        .as_array()
        .expect("rejected list")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_samples_give_the_documented_results() {
    let app = spawn_app(Duration::from_millis(500)).await;
    for name in [
        "contacts-it-excel.csv",
        "contacts-utf8-bom.csv",
        "header-only.csv",
        "no-phone-column.csv",
        "empty.csv",
        "binary-garbage.csv",
    ] {
        app.drop_file(name, &shared_data(name));
    }

    let it = wait_report(&app.inbox, "processed", "contacts-it-excel.csv").await;
    assert_eq!(it["accepted"], 56);
    assert_eq!(it["duplicates"], 1);
    assert_eq!(rejected_lines(&it), vec![2, 26, 50]);
    assert_eq!(it["rows"], 60);

    let bom = wait_report(&app.inbox, "processed", "contacts-utf8-bom.csv").await;
    assert_eq!(bom["accepted"], 9);
    assert_eq!(bom["duplicates"], 1);
    assert_eq!(rejected_lines(&bom), vec![12, 14, 15]);

    let header = wait_report(&app.inbox, "processed", "header-only.csv").await;
    assert_eq!(header["rows"], 0);
    for name in ["no-phone-column.csv", "empty.csv", "binary-garbage.csv"] {
        let r = wait_report(&app.inbox, "failed", name).await;
        assert_eq!(r["file"], name);
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }

    app.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(app.sim.contacts().len(), 56 + 9);
    let codes = app.sim.custom_field_codes();
    for code in ["CODICE_CLIENTE", "CITTA", "ORDER_ID", "NOTES"] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
    // The repeated phone merged with the later row winning; the quoted newline survived.
    let anna = app.sim.contact_by_phone("+393475550101").expect("Anna");
    assert_eq!(anna["last_name"], "Verdi-Rossi");
    let oliver = app.sim.contact_by_phone("+447911123456").expect("Oliver");
    let notes: Vec<&Value> = oliver["contactfield_set"]
        .as_array()
        .expect("fields")
        .iter()
        .filter(|f| f["visual_code"] == "%%NOTES%%")
        .collect();
    assert_eq!(notes[0]["value"], "line one\nline two");
    // Rejected rows are kept with their reason.
    let rejects = app.store.rejects(100).await.expect("rejects");
    assert_eq!(rejects.len(), 6);
    // The reason names the address refused, not only the phone.
    assert!(
        rejects
            .iter()
            .any(|r| r.reason == "invalid email address \"not-an-email\""),
        "{rejects:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_content_again_sends_nothing_and_three_changed_rows_send_three() {
    let app = spawn_app(Duration::from_millis(500)).await;
    let original = contacts_csv(1_000_000, 60, "");
    app.drop_file("first.csv", &original);
    wait_report(&app.inbox, "processed", "first.csv").await;
    app.wait_drained(Duration::from_secs(20)).await;
    let sent: usize = contact_writes(&app.sim.requests())
        .iter()
        .map(|w| w.1)
        .sum();
    assert_eq!(sent, 60);

    app.drop_file("again.csv", &original);
    let again = wait_report(&app.inbox, "processed", "again.csv").await;
    assert_eq!(again["unchanged"], 60);
    app.wait_drained(Duration::from_secs(20)).await;
    let after: usize = contact_writes(&app.sim.requests())
        .iter()
        .map(|w| w.1)
        .sum();
    assert_eq!(after, 60, "the same content must send nothing");

    let text = String::from_utf8(original).expect("utf8");
    let changed: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if [5, 20, 40].contains(&i) {
                l.replacen(";Nome", ";Altro", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    app.drop_file("changed.csv", changed.as_bytes());
    let report = wait_report(&app.inbox, "processed", "changed.csv").await;
    assert_eq!(report["unchanged"], 57);
    app.wait_drained(Duration::from_secs(20)).await;
    let writes = contact_writes(&app.sim.requests());
    let total: usize = writes.iter().map(|w| w.1).sum();
    assert_eq!(total, 63, "exactly the 3 changed contacts are sent");
    let last = &app.sim.requests();
    let names: Vec<String> = last
        .iter()
        .filter(|r| r.status == 200 && r.path.ends_with("/contacts/sync/"))
        .map(|r| {
            r.body["first_name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(names.iter().all(|n| n.starts_with("Altro")), "{names:?}");
    // Only the changed field travels.
    let bodies: Vec<&Value> = last
        .iter()
        .filter(|r| r.path.ends_with("/contacts/sync/"))
        .map(|r| &r.body)
        .collect();
    assert!(
        bodies.iter().all(|b| b.get("last_name").is_none()),
        "{bodies:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_1234_goes_out_as_500_500_234_spaced_by_the_limit() {
    let window = Duration::from_secs(1);
    let app = spawn_app(window).await;
    app.drop_file("big.csv", &contacts_csv(2_000_000, 1234, ""));
    wait_report(&app.inbox, "processed", "big.csv").await;
    app.wait_drained(Duration::from_secs(30)).await;
    let requests = app.sim.requests();
    let bulks: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/contacts/sync_all/"))
        .collect();
    let sizes: Vec<usize> = bulks
        .iter()
        .map(|r| r.body.as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![500, 500, 234]);
    for pair in bulks.windows(2) {
        let gap = pair[1].at_ms - pair[0].at_ms;
        assert!(
            gap >= 1000,
            "bulk requests {gap} ms apart, the limit is 1 per 1000 ms"
        );
    }
    assert!(requests.iter().all(|r| r.status != 429), "no 429 expected");
    assert_eq!(app.sim.contacts().len(), 1234);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_change_takes_the_single_path_while_the_bulk_slot_is_busy() {
    // A real minute: after one bulk request the bulk slot stays busy for the whole test.
    let app = spawn_app(Duration::from_secs(60)).await;
    app.drop_file("five-hundred.csv", &contacts_csv(3_000_000, 500, ""));
    wait_report(&app.inbox, "processed", "five-hundred.csv").await;
    app.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(
        contact_writes(&app.sim.requests()),
        vec![("/api/1/contacts/sync_all/".to_string(), 500)]
    );

    app.drop_file("one.csv", b"telefono,nome\n+39 333 9999999,Solo\n");
    let start = std::time::Instant::now();
    wait_until(Duration::from_secs(10), "the single contact", || {
        let found = app.sim.contact_by_phone("+393339999999").is_some();
        async move { found }
    })
    .await;
    let writes = contact_writes(&app.sim.requests());
    assert_eq!(
        writes.last().map(|w| w.0.as_str()),
        Some("/api/1/contacts/sync/")
    );
    assert_eq!(writes.len(), 2);
    println!(
        "single change reached the simulator {:?} after the drop",
        start.elapsed()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_400_rejects_exactly_the_rows_spoki_named() {
    let app = spawn_app(Duration::from_millis(500)).await;
    // `x@localhost` passes the HTML email rule but Spoki's (the simulator's) check refuses it.
    let mut csv = String::from_utf8(contacts_csv(6_000_000, 30, "")).expect("utf8");
    csv = csv.replace("phone;nome;cognome", "phone;nome;cognome;email");
    let csv: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => l.to_string(),
            7 => format!("{l};x@localhost"),
            _ => format!("{l};"),
        })
        .collect::<Vec<_>>()
        .join("\n");
    app.drop_file("one-bad.csv", csv.as_bytes());
    wait_report(&app.inbox, "processed", "one-bad.csv").await;
    app.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(app.sim.contacts().len(), 29);
    let requests = app.sim.requests();
    assert!(
        requests.iter().any(|r| r.status == 400),
        "Spoki refused the first batch"
    );
    let rejects = app.store.rejects(10).await.expect("rejects");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].phone, "+393336000006");
    assert!(rejects[0].reason.contains("email"), "{}", rejects[0].reason);
    assert_eq!(rejects[0].key, "one-bad.csv:8");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reports_the_shared_sample_without_writing() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("contacts-it-excel.csv");
    std::fs::write(&path, shared_data("contacts-it-excel.csv")).expect("write");
    let settings = spoki_sync::config::Settings::from_toml(&format!(
        "[storage]\ndatabase = \"{}\"\n",
        dir.path().join("none.db").display()
    ))
    .expect("settings");
    let plan = spoki_sync::cli::plan::plan(&settings, &path, None)
        .await
        .expect("plan");
    let json = serde_json::to_value(&plan).expect("json");
    assert_eq!(json["rows"], 60);
    assert_eq!(json["invalid"], 3);
    assert_eq!(json["valid"], 57);
    assert_eq!(json["duplicates"], 1);
    assert_eq!(json["creates"], 56);
    assert_eq!(json["updates"], 0);
    assert_eq!(json["unchanged"], 0);
    assert_eq!(json["requests"], 1);
    assert!(
        !dir.path().join("none.db").exists(),
        "plan must not create the database"
    );
}
