//! The webhook receiver's checks and body reading on arbitrary requests:
//! - `webhooks::verify_standard` and `webhooks::verify_spoki` with arbitrary header values,
//!   keys and bodies; with `fuzz-sign`, a correctly signed, fresh request, which must pass
//!   (and fail once its body changes);
//! - `webhooks::decode_whsec` on arbitrary secrets;
//! - the bodies as the handlers read them: the contacts delivery (its body types are private,
//!   so they are mirrored here with the same serde attributes, and each contact goes through
//!   the same normalisation as `queue_contacts`), and the Spoki event, whose `data` becomes a
//!   public `spoki::ContactRecord` and then `mirror::spoki_contact`.
//!
//! Nothing may panic.
//!
//! The input reads like an HTTP request without its request line, so seeds can be written by
//! hand: `Name: value` lines up to the first empty line, then the body. Leading blanks of a
//! value are dropped, as an HTTP parser does. `{now}` in a value becomes the current Unix time.
//! Lines named `fuzz-*` are settings, not headers:
//! - `fuzz-key: BYTES`: the HMAC key of both checks (default: empty);
//! - `fuzz-whsec: TEXT`: a secret for `decode_whsec`, whose key is also tried;
//! - `fuzz-sign: SECONDS`: sign the request correctly, stamped now + SECONDS % 290;
//! - `fuzz-region: US`: the default region for phones (else IT).

#![no_main]


use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;
use spoki_sync::config::Secret;
use spoki_sync::reverse::spoki_contact;
use spoki_sync::normalise::{self, DefaultRegion};
use spoki_sync::spoki::ContactRecord;
use spoki_sync::sources::webhooks;

type HmacSha256 = Hmac<Sha256>;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn bodies(body: &[u8], region: DefaultRegion) {
    let _ = serde_json::from_slice::<Value>(body);

    // The contacts webhook's own parser.
    if let Ok(delivery) = webhooks::parse_contacts(body, region) {
        assert!(!delivery.list.0.is_negative(), "list ids are positive or none");
        for (phone, fields, _) in &delivery.contacts {
            let text = phone.to_string();
            assert!(
                spoki_sync::domain::Phone::from_e164(&text) == Some(*phone),
                "a parsed phone reads back from its E.164 text: {text}"
            );
            if let Some(e) = &fields.email {
                assert_eq!(normalise::normalise_email(e).as_ref(), Some(e), "emails are kept normalised");
            }
        }
    }

    // Spoki's event envelope, as the handler reads it.
    if let Ok(event) = webhooks::parse_spoki_event(body) {
        let _ = (&event.event, &event.event_uuid);
        if let Ok(record) = serde_json::from_value::<ContactRecord>(event.data.clone()) {
            let _ = spoki_contact(&record);
        }
    }

    // A contact record on its own, as Spoki's API answers carry them.
    if let Ok(record) = serde_json::from_slice::<ContactRecord>(body) {
        let fields = record.fields();
        if let Some(c) = spoki_contact(&record) {
            assert_eq!(c.fields, fields);
            assert_eq!(c.spoki_id, Some(record.id));
        }
    }
}

/// One fuzz input, split into its parts.
#[derive(Default)]
struct Request<'a> {
    headers: HeaderMap,
    key: &'a [u8],
    whsec: Option<String>,
    sign: Option<i64>,
    region_us: bool,
    body: &'a [u8],
}

fn split(data: &[u8]) -> Request<'_> {
    let mut req = Request::default();
    let now = now().to_string();
    let mut rest = data;
    loop {
        let (line, after) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let mut value = &line[colon + 1..];
        while let [b' ' | b'\t', tail @ ..] = value {
            value = tail;
        }
        match name {
            b"fuzz-key" => req.key = value,
            b"fuzz-whsec" => req.whsec = Some(String::from_utf8_lossy(value).into_owned()),
            b"fuzz-sign" => {
                req.sign = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(0),
                );
            }
            b"fuzz-region" => req.region_us = value == b"US",
            _ => {
                let value = replace(value, b"{now}", now.as_bytes());
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name),
                    HeaderValue::from_bytes(&value),
                ) {
                    req.headers.append(n, v);
                }
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    req.body = rest;
    req
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// A sender that signs correctly, within the tolerance: both checks must pass, and fail once
/// the body changes.
fn signed(req: &Request<'_>, skew: i64) {
    let ts = now() + skew % 290;
    let id: String = req
        .headers
        .get("webhook-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let id = if id.is_empty() { "msg".to_owned() } else { id };
    let key = req.key;
    let body = req.body;

    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let sig = B64.encode(mac.finalize().into_bytes());
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        h.insert(name, HeaderValue::from_str(&value).expect("ASCII header"));
    };
    put("webhook-id", id.clone());
    put("webhook-timestamp", ts.to_string());
    put("webhook-signature", format!("v1,bogus v1,{sig}"));
    put(
        "x-spoki-signature",
        format!("t={ts},v2=00,v2={}", hex.to_ascii_uppercase()),
    );
    assert_eq!(webhooks::verify_standard(key, &h, body), Ok(id));
    assert_eq!(webhooks::verify_spoki(key, &h, body), Ok(()));
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    assert!(webhooks::verify_standard(key, &h, &tampered).is_err());
    assert!(webhooks::verify_spoki(key, &h, &tampered).is_err());
}

fuzz_target!(|data: &[u8]| {
    let req = split(data);

    let _ = webhooks::verify_standard(req.key, &req.headers, req.body);
    let _ = webhooks::verify_spoki(req.key, &req.headers, req.body);
    let _ = webhooks::decode_whsec(&Secret::new(String::from_utf8_lossy(req.key)));
    if let Some(whsec) = &req.whsec
        && let Ok(key) = webhooks::decode_whsec(&Secret::new(whsec.clone()))
    {
        let _ = webhooks::verify_standard(&key, &req.headers, req.body);
    }
    if let Some(skew) = req.sign {
        signed(&req, skew);
    }

    let region = DefaultRegion::parse(if req.region_us { "US" } else { "IT" }).expect("region");
    bodies(req.body, region);
});
