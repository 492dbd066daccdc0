//! Configuration parsing on arbitrary text: `config::Settings::from_toml` (the `config` crate's
//! TOML reading, then every key's check), and `config::RateLimit::parse` and
//! `config::parse_duration` on the whole text and on each of its lines. Nothing may panic.
//! Settings that parse are used the way the daemon uses them (limits, intervals, printing).
//!
//! Invalid UTF-8 is read lossily so that every input reaches the parsers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spoki_sync::config::{self, RateLimit, Settings};
use spoki_sync::spoki::actions;

fn small(text: &str) {
    if let Ok(d) = config::parse_duration(text) {
        let _ = d.as_secs_f64();
    }
    if let Ok(limit) = RateLimit::parse(text) {
        assert!(limit.count > 0 && !limit.per.is_zero());
        let _ = limit.interval();
        let _ = limit.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    small(&text);
    for line in text.lines().take(64) {
        small(line);
        if let Some((_, value)) = line.split_once('=') {
            small(value.trim().trim_matches('"'));
        }
    }

    match Settings::from_toml(&text) {
        Ok(s) => {
            for a in actions::all() {
                let limit = s.limit(a.name);
                let _ = limit.interval();
                let _ = limit.to_string();
            }
            let _ = format!("{s:?}");
            let _ = s.check_runnable();
            assert!(s.spoki.base_url.path().ends_with('/'));
            assert!((0.0..=1.0).contains(&s.mirror.max_delete_share));
            assert!(s.commands.max_attempts >= 1);
            assert!(!s.csv.rescan_interval.is_zero());
            if let Some(secret) = &s.webhooks.secret {
                assert!(
                    spoki_sync::sources::webhooks::decode_whsec(secret).is_ok_and(|k| !k.is_empty()),
                    "a webhooks.secret that passed the check decodes"
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
