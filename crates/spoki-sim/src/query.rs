//! Query strings and DRF page-number pagination.
//!
//! Decoding follows Django's `QueryDict` (form encoding: `+` is a space, so an unencoded `+39…`
//! phone arrives as ` 39…`); `next`/`previous` links are rebuilt the way DRF's
//! `replace_query_param` does it: keys sorted, values re-encoded with Python's `quote_plus`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde_json::{Value, json};

/// A decoded query string, keeping every pair in order.
#[derive(Debug, Default)]
pub(super) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(super) fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        Self { pairs }
    }

    /// The last value given for `key`, as `QueryDict.get` returns it.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a filter parameter; django-filter ignores a filter whose value is empty.
    pub(super) fn filter(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|value| !value.is_empty())
    }

    /// DRF `SearchFilter` terms: commas count as spaces, split on whitespace.
    pub(super) fn search_terms(&self) -> Vec<String> {
        self.get("search")
            .unwrap_or("")
            .replace(['\0', ','], " ")
            .split_whitespace()
            .map(str::to_lowercase)
            .collect()
    }

    /// This query re-encoded with `page` set to `page`, or removed when `None`.
    fn with_page(&self, page: Option<usize>) -> String {
        self.with_params(&[("page", page.map(|p| p.to_string()))])
    }

    /// This query re-encoded with each `(key, value)` set, or removed when `None`.
    fn with_params(&self, params: &[(&str, Option<String>)]) -> String {
        let mut grouped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (key, value) in &self.pairs {
            grouped.entry(key).or_default().push(value.clone());
        }
        for (key, value) in params {
            match value {
                Some(value) => {
                    grouped.insert(key, vec![value.clone()]);
                }
                None => {
                    grouped.remove(key);
                }
            }
        }
        let mut out = String::new();
        for (key, values) in grouped {
            for value in values {
                if !out.is_empty() {
                    out.push('&');
                }
                quote_plus(key, &mut out);
                out.push('=');
                quote_plus(&value, &mut out);
            }
        }
        out
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Python's `urllib.parse.quote_plus`.
fn quote_plus(s: &str, out: &mut String) {
    for byte in s.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

/// Page sizes of `PageNumberPagination` with `page_size_query_param = "page_size"`.
#[derive(Clone, Copy, Debug)]
pub(super) struct PageSizes {
    pub default: usize,
    pub max: usize,
}

/// One page of a list: which items, and the links to the pages beside it.
#[derive(Debug)]
pub(super) struct Page {
    /// 1-based position of the page in the list.
    pub number: usize,
    pub range: Range<usize>,
    pub next: Option<String>,
    pub previous: Option<String>,
}

impl Page {
    /// Picks the page asked for in `query` out of `count` items; `None` is DRF's "Invalid page."
    /// `url` is the absolute URL of the request without its query string.
    pub(super) fn select(count: usize, query: &Query, sizes: PageSizes, url: &str) -> Option<Self> {
        Self::select_sized_by(count, query, sizes, url, "page_size")
    }

    /// Like [`Page::select`], with the page size read from `size_key` (tickets use `per_page`).
    pub(super) fn select_sized_by(
        count: usize,
        query: &Query,
        sizes: PageSizes,
        url: &str,
        size_key: &str,
    ) -> Option<Self> {
        let size = query
            .get(size_key)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|&n| n > 0)
            .map_or(sizes.default, |n| {
                usize::try_from(n).unwrap_or(usize::MAX).min(sizes.max)
            })
            .max(1);
        let pages = count.div_ceil(size).max(1);
        let number = match query.get("page").filter(|v| !v.is_empty()).unwrap_or("1") {
            "last" => pages,
            raw => {
                let n = raw.trim().parse::<i64>().ok()?;
                let n = usize::try_from(n).ok()?;
                if n == 0 || n > pages {
                    return None;
                }
                n
            }
        };
        let link = |query_string: String| {
            if query_string.is_empty() {
                url.to_owned()
            } else {
                format!("{url}?{query_string}")
            }
        };
        let start = (number - 1) * size;
        Some(Self {
            number,
            range: start..(start + size).min(count),
            next: (number < pages).then(|| link(query.with_page(Some(number + 1)))),
            previous: match number {
                1 => None,
                2 => Some(link(query.with_page(None))),
                n => Some(link(query.with_page(Some(n - 1)))),
            },
        })
    }

    /// DRF's `CursorPagination`: an opaque `cursor` (base64 of `o=<offset>`), a fixed page
    /// size (`page` and `page_size` are ignored), no `count`. A cursor that cannot be read is
    /// `None` (DRF: 404 "Invalid cursor").
    pub(super) fn select_cursor(
        count: usize,
        query: &Query,
        size: usize,
        url: &str,
    ) -> Option<Self> {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE;
        let start = match query.filter("cursor") {
            None => 0,
            Some(raw) => {
                let bytes = engine.decode(raw.trim()).ok()?;
                let text = String::from_utf8(bytes).ok()?;
                text.strip_prefix("o=")?.parse::<usize>().ok()?
            }
        };
        if start > count {
            return None;
        }
        let size = size.max(1);
        let end = (start + size).min(count);
        let link = |offset: Option<usize>| {
            let cursor = offset.map(|o| engine.encode(format!("o={o}")));
            let q = query.with_params(&[("cursor", cursor), ("page", None)]);
            if q.is_empty() {
                url.to_owned()
            } else {
                format!("{url}?{q}")
            }
        };
        Some(Self {
            number: start / size + 1,
            range: start..end,
            next: (end < count).then(|| link(Some(end))),
            previous: (start > 0).then(|| link(Some(start.saturating_sub(size)))),
        })
    }

    /// DRF's `LimitOffsetPagination`: `limit` (default and cap from `sizes`) and `offset`;
    /// `page` and `page_size` are ignored.
    pub(super) fn select_offset(
        count: usize,
        query: &Query,
        sizes: PageSizes,
        url: &str,
    ) -> Option<Self> {
        let limit = query
            .filter("limit")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .map_or(sizes.default, |n| n.min(sizes.max))
            .max(1);
        let offset = query
            .filter("offset")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let end = (offset + limit).min(count);
        let link = |offset: Option<usize>| {
            let q = query.with_params(&[
                ("limit", Some(limit.to_string())),
                ("offset", offset.filter(|&o| o > 0).map(|o| o.to_string())),
            ]);
            format!("{url}?{q}")
        };
        Some(Self {
            number: offset / limit + 1,
            range: offset.min(count)..end.max(offset.min(count)),
            next: (offset + limit < count).then(|| link(Some(offset + limit))),
            previous: (offset > 0).then(|| link(Some(offset.saturating_sub(limit)))),
        })
    }

    pub(super) fn envelope(self, count: usize, results: Vec<Value>) -> Value {
        json!({
            "count": count,
            "next": self.next,
            "previous": self.previous,
            "results": results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: PageSizes = PageSizes {
        default: 15,
        max: 200,
    };
    const URL: &str = "http://h/api/1/contacts/";

    #[test]
    fn decoding_treats_plus_as_space() {
        let q = Query::parse("phone=+39333&email=a%2Bb%40c.it&x&page=");
        assert_eq!(q.get("phone"), Some(" 39333"));
        assert_eq!(q.get("email"), Some("a+b@c.it"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.filter("page"), None);
        assert_eq!(Query::parse("a=%zz%4").get("a"), Some("%zz%4"));
    }

    #[test]
    fn links_are_rebuilt_sorted_and_quoted() {
        let q = Query::parse("search=a+b&phone=%2B39&page=2");
        let page = Page::select(40, &q, SIZES, URL).expect("valid page");
        assert_eq!(page.range, 15..30);
        assert_eq!(
            page.next.as_deref(),
            Some("http://h/api/1/contacts/?page=3&phone=%2B39&search=a+b")
        );
        assert_eq!(
            page.previous.as_deref(),
            Some("http://h/api/1/contacts/?phone=%2B39&search=a+b")
        );
    }

    #[test]
    fn page_numbers_and_sizes() {
        let page = |raw: &str, count| Page::select(count, &Query::parse(raw), SIZES, URL);
        assert_eq!(page("", 0).map(|p| p.range), Some(0..0));
        assert!(page("page=2", 0).is_none());
        assert!(page("page=0", 40).is_none());
        assert!(page("page=abc", 40).is_none());
        assert!(page("page=4", 40).is_none());
        assert_eq!(page("page=last", 40).map(|p| p.range), Some(30..40));
        assert_eq!(page("page_size=1000", 500).map(|p| p.range), Some(0..200));
        assert_eq!(page("page_size=-3", 40).map(|p| p.range), Some(0..15));
        let last = page("page=3&page_size=20", 60).expect("valid page");
        assert_eq!(last.next, None);
        assert_eq!(
            last.previous.as_deref(),
            Some("http://h/api/1/contacts/?page=2&page_size=20")
        );
        let first = page("page_size=20", 60).expect("valid page");
        assert_eq!(
            first.next.as_deref(),
            Some("http://h/api/1/contacts/?page=2&page_size=20")
        );
        assert_eq!(first.previous, None);
    }

    #[test]
    fn cursor_pages_ignore_page_numbers_and_link_by_cursor() {
        let first = Page::select_cursor(40, &Query::parse("page=3&page_size=200"), 15, URL)
            .expect("first page");
        assert_eq!(first.range, 0..15);
        let next = first.next.expect("a next link");
        assert!(next.contains("cursor="), "{next}");
        assert!(!next.contains("page=3"), "{next}");
        let raw = next.split_once('?').map(|(_, q)| q).unwrap_or("");
        let second = Page::select_cursor(40, &Query::parse(raw), 15, URL).expect("second");
        assert_eq!(second.range, 15..30);
        assert!(Page::select_cursor(40, &Query::parse("cursor=%%%"), 15, URL).is_none());
    }

    #[test]
    fn limit_offset_pages() {
        let first = Page::select_offset(40, &Query::parse("limit=15"), SIZES, URL).expect("first");
        assert_eq!(first.range, 0..15);
        assert_eq!(
            first.next.as_deref(),
            Some("http://h/api/1/contacts/?limit=15&offset=15")
        );
        let last =
            Page::select_offset(40, &Query::parse("limit=15&offset=30"), SIZES, URL).expect("last");
        assert_eq!((last.range, last.next), (30..40, None));
        let beyond =
            Page::select_offset(40, &Query::parse("offset=90"), SIZES, URL).expect("empty");
        assert!(beyond.range.is_empty());
    }
}
