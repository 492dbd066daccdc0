//! The floor `plan` is measured against: a CSV parse of the file plus libphonenumber's parse,
//! validation and E.164 formatting of every row's phone, on one thread, and nothing else (no
//! fields, no diff, no state). Prints rows, valid phones, wall time and rows/s.
//!
//! Run: `cargo run --release --example floor -- FILE.csv [REGION]` (`;`-separated files with
//! the phone in the column named `Cellulare`, `telefono`, `phone`... as `plan` reads them).

use std::time::Instant;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, Region};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: floor FILE.csv [REGION]"))?;
    let region: Region = args.next().unwrap_or_else(|| "IT".into()).parse()?;
    let _ = PHONE_NUMBER_UTIL.parse("+393331234567", None);
    let started = Instant::now();
    let head = std::fs::read(&path)?;
    let first_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let delimiter = [b';', b',', b'\t', b'|']
        .into_iter()
        .max_by_key(|d| first_line.iter().filter(|b| *b == d).count())
        .unwrap_or(b',');
    drop(head);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_path(&path)?;
    let headers = reader.byte_headers()?.clone();
    let names = [
        "phone",
        "phone_number",
        "mobile",
        "telefono",
        "cellulare",
        "numero",
    ];
    let column = headers
        .iter()
        .position(|h| names.contains(&String::from_utf8_lossy(h).trim().to_lowercase().as_str()))
        .ok_or_else(|| anyhow::anyhow!("no phone column"))?;
    let (mut rows, mut valid) = (0u64, 0u64);
    let mut record = csv::ByteRecord::new();
    let mut out = String::new();
    while reader.read_byte_record(&mut record)? {
        rows += 1;
        let raw = String::from_utf8_lossy(record.get(column).unwrap_or_default());
        if let Ok(number) = PHONE_NUMBER_UTIL.parse(raw.trim(), Some(region))
            && PHONE_NUMBER_UTIL.is_valid_number(&number)
        {
            let e164 = PHONE_NUMBER_UTIL.format(&number, PhoneNumberFormat::E164);
            out.clear();
            out.push_str(&e164);
            valid += 1;
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "floor: {rows} rows, {valid} valid phones in {took:.2} s ({:.0} rows/s, one thread)",
        rows as f64 / took
    );
    Ok(())
}
