//! Reads one CSV file exactly as CONTRACT §3 says: UTF-8 (BOM or not) or Windows-1252, the
//! delimiter guessed from the header line, header aliases, custom-field codes, and the line on
//! which each record starts. Streams: memory does not grow with the file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::domain::ContactFields;
use crate::normalise::{self, DefaultRegion, RowIssue};

/// Why a file cannot be read as CSV at all (it goes to `failed/`).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is empty")]
    Empty,
    #[error("the file holds binary data, not CSV text")]
    Binary,
    #[error("no column names a phone (expected one of: {})", PHONE_ALIASES.join(", "))]
    NoPhoneColumn,
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed CSV: {0}")]
    Csv(String),
    /// Readable, but refused whole (the reason says why).
    #[error("{0}")]
    Refused(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Windows1252,
}

const PHONE_ALIASES: &[&str] = &[
    "phone",
    "phone_number",
    "mobile",
    "telefono",
    "cellulare",
    "numero",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Column {
    Phone,
    FirstName,
    LastName,
    Email,
    Language,
    Custom(String),
    Skip,
}

fn column_for(header: &str) -> Column {
    let name = header.trim().to_lowercase();
    match name.as_str() {
        n if PHONE_ALIASES.contains(&n) => Column::Phone,
        "first_name" | "firstname" | "nome" => Column::FirstName,
        "last_name" | "lastname" | "surname" | "cognome" => Column::LastName,
        "email" | "e-mail" | "mail" => Column::Email,
        "language" | "lang" | "lingua" => Column::Language,
        _ => {
            let code = normalise::custom_field_code(header);
            if code.is_empty() {
                Column::Skip
            } else {
                Column::Custom(code)
            }
        }
    }
}

/// One record, decoded but not yet judged.
#[derive(Clone, Debug)]
pub struct RawRow {
    /// The line of the file on which the record starts (the header is line 1).
    pub line: u64,
    pub phone: String,
    email: Option<String>,
    fields: ContactFields,
}

impl RawRow {
    /// Judges the row: a valid phone and, when given, a valid email.
    pub fn validate(&self, region: DefaultRegion) -> Result<crate::domain::Phone, RowIssue> {
        let phone = normalise::parse_phone(&self.phone, region)?;
        if let Some(e) = &self.email
            && normalise::normalise_email(e).is_none()
        {
            return Err(RowIssue::InvalidEmail);
        }
        normalise::check_sizes(&self.fields)?;
        if let Some(e) = &self.email
            && e.chars().count() > normalise::MAX_EMAIL_CHARS
        {
            return Err(RowIssue::TooLong {
                field: "email".into(),
                max: normalise::MAX_EMAIL_CHARS,
            });
        }
        Ok(phone)
    }

    /// The fields to write, once `validate` accepted the row.
    pub fn into_fields(self) -> ContactFields {
        let mut fields = self.fields;
        fields.email = self.email.as_deref().and_then(normalise::normalise_email);
        fields
    }
}

/// How a file is written: found once (it takes a read of the whole file), reused for later
/// passes over the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub encoding: Encoding,
    pub delimiter: u8,
}

impl Format {
    pub fn detect(path: &Path) -> Result<Format, FileError> {
        Ok(Format {
            encoding: sniff_encoding(path)?,
            delimiter: sniff_delimiter(path)?,
        })
    }
}

/// How a file's cells become a row: the column each cell feeds and the encoding. Cheap to
/// clone, so rows can be built on several threads.
#[derive(Clone, Debug)]
pub struct Layout {
    columns: Vec<Column>,
    encoding: Encoding,
}

impl Layout {
    /// `self.row(record).validate(region)`, without building the row when it is plainly
    /// within the size limits (every cell no longer in bytes than its limit in characters):
    /// the phone and the e-mail address are checked on the cells as they are. Any other row
    /// takes the full path, so verdicts and reasons are the same either way.
    pub fn validate(
        &self,
        record: &csv::ByteRecord,
        region: DefaultRegion,
    ) -> Result<crate::domain::Phone, Box<(RawRow, RowIssue)>> {
        let mut phone: std::borrow::Cow<'_, str> = "".into();
        let mut email: Option<std::borrow::Cow<'_, str>> = None;
        let mut plain = true;
        for (col, cell) in self.columns.iter().zip(record.iter()) {
            if cell.is_empty() {
                continue;
            }
            match col {
                Column::Skip => {}
                Column::Phone => phone = decode(cell, self.encoding),
                Column::Email => {
                    plain &= cell.len() <= normalise::MAX_EMAIL_CHARS;
                    let text = decode(cell, self.encoding);
                    email = (!text.trim().is_empty()).then_some(text);
                }
                Column::FirstName | Column::LastName | Column::Language => {
                    plain &= cell.len() <= normalise::MAX_NAME_CHARS;
                }
                Column::Custom(code) => {
                    plain &= cell.len() <= normalise::MAX_VALUE_CHARS
                        && code.len() <= normalise::MAX_CODE_CHARS;
                }
            }
        }
        if !plain {
            let row = self.row(record);
            return row.validate(region).map_err(|issue| Box::new((row, issue)));
        }
        let checked = normalise::parse_phone(phone.trim(), region).and_then(|p| match &email {
            Some(e) if !normalise::is_valid_email(e) => Err(RowIssue::InvalidEmail),
            _ => Ok(p),
        });
        checked.map_err(|issue| Box::new((self.row(record), issue)))
    }

    /// The row a (non-blank) record holds.
    pub fn row(&self, record: &csv::ByteRecord) -> RawRow {
        let line = record.position().map_or(0, |p| p.line());
        let mut row = RawRow {
            line,
            phone: String::new(),
            email: None,
            fields: ContactFields::default(),
        };
        for (col, cell) in self.columns.iter().zip(record.iter()) {
            if cell.is_empty() || matches!(col, Column::Skip) {
                continue;
            }
            let text = decode(cell, self.encoding);
            if let Column::Phone = col {
                row.phone = text.trim().to_string();
                continue;
            }
            let value = normalise::clean_text(&text);
            match col {
                Column::FirstName => row.fields.first_name = value,
                Column::LastName => row.fields.last_name = value,
                Column::Email => row.email = value,
                Column::Language => row.fields.language = value,
                Column::Custom(code) => {
                    if let Some(v) = value {
                        row.fields.custom_fields.insert(code.clone(), v);
                    }
                }
                Column::Phone | Column::Skip => {}
            }
        }
        row
    }
}

/// An open CSV file positioned after its header.
pub struct CsvFile {
    reader: csv::Reader<BufReader<File>>,
    format: Format,
    layout: Layout,
    record: csv::ByteRecord,
    /// Custom-field codes, in column order.
    pub custom_codes: Vec<String>,
    /// The custom columns' headers as written, parallel to `custom_codes`.
    pub custom_headers: Vec<String>,
}

impl CsvFile {
    /// Detects the file's format and opens it.
    pub fn open(path: &Path) -> Result<CsvFile, FileError> {
        CsvFile::open_as(path, Format::detect(path)?)
    }

    /// Opens a file whose format is already known (a second pass).
    pub fn open_as(path: &Path, format: Format) -> Result<CsvFile, FileError> {
        let encoding = format.encoding;
        let file = File::open(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(format.delimiter)
            .has_headers(false)
            .flexible(true)
            // `\n` alone ends a record so that line numbers stay right in CRLF files (the csv
            // crate counts a CRLF record's start on the line before); cells are trimmed, which
            // drops the `\r`.
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(BufReader::with_capacity(256 * 1024, file));
        let mut header = csv::ByteRecord::new();
        if !reader
            .read_byte_record(&mut header)
            .map_err(|e| FileError::Csv(e.to_string()))?
        {
            return Err(FileError::Empty);
        }
        let mut columns = Vec::with_capacity(header.len());
        let mut custom_codes = Vec::new();
        let mut custom_headers = Vec::new();
        for (i, cell) in header.iter().enumerate() {
            let decoded = decode(cell, encoding);
            let text = if i == 0 {
                decoded.trim_start_matches('\u{feff}')
            } else {
                &decoded
            };
            let col = column_for(text);
            if let Column::Custom(code) = &col {
                custom_codes.push(code.clone());
                custom_headers.push(text.trim().to_string());
            }
            columns.push(col);
        }
        if !columns.contains(&Column::Phone) {
            return Err(FileError::NoPhoneColumn);
        }
        Ok(CsvFile {
            reader,
            format,
            layout: Layout { columns, encoding },
            record: csv::ByteRecord::new(),
            custom_codes,
            custom_headers,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// How this file's records become rows (after `drop_custom_codes`, if called).
    pub fn layout(&self) -> Layout {
        self.layout.clone()
    }

    /// Leaves the given custom-field codes out of every row from now on.
    pub fn drop_custom_codes(&mut self) {
        for col in &mut self.layout.columns {
            if matches!(col, Column::Custom(_)) {
                *col = Column::Skip;
            }
        }
    }

    /// Reads the next non-blank record into `record` (reusing its buffers); false at the end
    /// of the file.
    pub fn read_record(&mut self, record: &mut csv::ByteRecord) -> Result<bool, FileError> {
        loop {
            let more = self
                .reader
                .read_byte_record(record)
                .map_err(|e| FileError::Csv(e.to_string()))?;
            if !more {
                return Ok(false);
            }
            if !record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
                return Ok(true);
            }
        }
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> Result<Option<RawRow>, FileError> {
        let mut record = std::mem::take(&mut self.record);
        let more = self.read_record(&mut record);
        let row = match more {
            Ok(true) => Ok(Some(self.layout.row(&record))),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        self.record = record;
        row
    }
}

fn decode(bytes: &[u8], encoding: Encoding) -> std::borrow::Cow<'_, str> {
    match encoding {
        Encoding::Utf8 => String::from_utf8_lossy(bytes),
        Encoding::Windows1252 => {
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
        }
    }
}

/// UTF-8 when every byte sequence is valid UTF-8, else Windows-1252. A NUL byte, or a file
/// with no bytes, is not CSV text.
fn sniff_encoding(path: &Path) -> Result<Encoding, FileError> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry = 0usize;
    let mut total = 0u64;
    let mut utf8 = true;
    loop {
        let n = file.read(&mut buf[carry..])?;
        if n == 0 {
            if carry > 0 {
                utf8 = false;
            }
            break;
        }
        total += n as u64;
        let filled = carry + n;
        let chunk = &buf[..filled];
        if chunk[carry..].contains(&0) {
            return Err(FileError::Binary);
        }
        carry = 0;
        if utf8 {
            match std::str::from_utf8(chunk) {
                Ok(_) => {}
                Err(e) if e.error_len().is_none() => {
                    // A character cut by the chunk boundary: keep its start for the next read.
                    let valid = e.valid_up_to();
                    carry = filled - valid;
                    buf.copy_within(valid..filled, 0);
                }
                Err(_) => utf8 = false,
            }
        }
    }
    if total == 0 {
        return Err(FileError::Empty);
    }
    Ok(if utf8 {
        Encoding::Utf8
    } else {
        Encoding::Windows1252
    })
}

/// The delimiter is whichever of `,` `;` tab `|` occurs most in the header line (outside
/// quotes); `,` when none does.
fn sniff_delimiter(path: &Path) -> Result<u8, FileError> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = file.read(&mut buf)?;
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for &b in &buf[..n] {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = candidates.iter().position(|c| *c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let best = (0..4)
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    Ok(if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f
    }

    fn it() -> DefaultRegion {
        DefaultRegion::parse("IT").expect("region")
    }

    #[test]
    fn windows_1252_semicolons_and_aliases() {
        let f = file_with(
            b"Nome;Cognome;Cellulare;Citt\xe0\r\nNiccol\xf2;Rossi;333 123 4567;Forl\xec\r\n;;;\r\nA;\"B\";3331234568;\"x\"\r\n",
        );
        let mut csv = CsvFile::open(f.path()).expect("opens");
        assert_eq!(csv.format().encoding, Encoding::Windows1252);
        assert_eq!(csv.custom_codes, vec!["CITTA"]);
        let row = csv.next_row().expect("reads").expect("one row");
        assert_eq!(row.line, 2);
        assert_eq!(
            row.validate(it()).map(|p| p.to_string()),
            Ok("+393331234567".into())
        );
        let fields = row.into_fields();
        assert_eq!(fields.first_name.as_deref(), Some("Niccolò"));
        assert_eq!(fields.custom_fields["CITTA"], "Forlì");
        let row = csv
            .next_row()
            .expect("reads")
            .expect("blank line skipped, then a row");
        assert_eq!(row.line, 4);
        assert_eq!(row.into_fields().custom_fields["CITTA"], "x");
        assert!(csv.next_row().expect("reads").is_none());
    }

    #[test]
    fn quoted_newlines_keep_the_starting_line() {
        let f = file_with(
            "\u{feff}phone,note\n+393331234567,\"a, b\nc\"\n+393331234568,x\n".as_bytes(),
        );
        let mut csv = CsvFile::open(f.path()).expect("opens");
        assert_eq!(csv.format().encoding, Encoding::Utf8);
        assert_eq!(csv.next_row().expect("row").expect("some").line, 2);
        assert_eq!(csv.next_row().expect("row").expect("some").line, 4);
    }

    #[test]
    fn unreadable_files_say_why() {
        assert!(matches!(
            CsvFile::open(file_with(b"").path()),
            Err(FileError::Empty)
        ));
        assert!(matches!(
            CsvFile::open(file_with(b"name,city\nA,B\n").path()),
            Err(FileError::NoPhoneColumn)
        ));
        assert!(matches!(
            CsvFile::open(file_with(b"phone\x00\x01\x02").path()),
            Err(FileError::Binary)
        ));
    }

    #[test]
    fn delimiter_comes_from_the_header() {
        for (text, want) in [
            ("phone|name\n", b'|'),
            ("phone\tname\n", b'\t'),
            ("\"a;b\",phone\n", b','),
            ("phone\n", b','),
        ] {
            let f = file_with(text.as_bytes());
            assert_eq!(sniff_delimiter(f.path()).expect("reads"), want, "{text:?}");
        }
    }
}
