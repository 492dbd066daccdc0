//! One pass over a list endpoint, following Spoki's `next` links whatever the pagination style
//! (page numbers, a cursor, limit/offset; an absolute or a relative link). The pager only
//! decides which URL comes next; each request goes through the caller's sender (budget,
//! pacing, retries), and [`SpokiClient::fetch_page`](crate::SpokiClient::fetch_page) reads it.
//!
//! A pass ends *complete* when a page has no `next`, or is empty. It ends *incomplete*
//! (the caller must not conclude that what it did not see is gone) when a later page answers
//! 404, when a link points back to a page already read (a loop), when the same page comes
//! twice under different links, or when a link leads off Spoki's base URL: the API key is
//! never sent to another host, and the pass stops with [`SpokiError::Fatal`].

use std::collections::HashSet;
use std::marker::PhantomData;

use reqwest::Url;

use crate::actions::Action;
use crate::error::SpokiError;
use crate::wire::{Page, Record};

/// How a pass ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassEnd {
    /// Every page was read.
    Complete,
    /// The pass stopped before the end: what it did not see may still exist.
    Incomplete { reason: String },
}

/// The state of one pass; see the module documentation.
#[derive(Debug)]
pub struct Pager<T> {
    action: Action,
    /// Spoki's base URL: every link must stay under it.
    base: Url,
    /// The next request's URL; `None` once the pass has ended.
    current: Option<Url>,
    fetched: HashSet<String>,
    fingerprints: HashSet<u64>,
    pages: u32,
    end: Option<PassEnd>,
    records: PhantomData<fn() -> T>,
}

impl<T: Record> Pager<T> {
    pub(crate) fn new(action: Action, base: Url, first: Url) -> Pager<T> {
        let mut fetched = HashSet::new();
        fetched.insert(first.as_str().to_owned());
        Pager {
            action,
            base,
            current: Some(first),
            fetched,
            fingerprints: HashSet::new(),
            pages: 0,
            end: None,
            records: PhantomData,
        }
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The URL to fetch next, or `None` when the pass has ended.
    pub fn next_url(&self) -> Option<&Url> {
        self.current.as_ref()
    }

    /// Pages read so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// How the pass ended; `None` while it goes on.
    pub fn end(&self) -> Option<&PassEnd> {
        self.end.as_ref()
    }

    fn finish(&mut self, end: PassEnd) {
        self.current = None;
        self.end = Some(end);
    }

    /// Ends the pass as incomplete (the caller gave up on a page).
    pub fn give_up(&mut self, reason: impl Into<String>) {
        self.finish(PassEnd::Incomplete {
            reason: reason.into(),
        });
    }

    /// A request of this pass was refused with `status`. A 404 on a later page (DRF's
    /// "Invalid page.", e.g. contacts deleted while the pass ran) ends the pass as
    /// incomplete and returns true; anything else is for the caller to judge.
    pub fn refused(&mut self, status: u16) -> bool {
        if status == 404 && self.pages > 0 {
            self.give_up(format!(
                "page {} answered 404 (the list shrank while it was read)",
                self.pages + 1
            ));
            return true;
        }
        false
    }

    /// Takes in the page read from [`Pager::next_url`] and works out the next URL.
    ///
    /// # Errors
    /// [`SpokiError::Fatal`] when `next` leads off Spoki's base URL; the pass has then ended
    /// as incomplete.
    pub fn advance(&mut self, page: &Page<T>) -> Result<(), SpokiError> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        self.pages += 1;
        let Some(next) = page.next.as_deref() else {
            self.finish(PassEnd::Complete);
            return Ok(());
        };
        if page.items == 0 {
            self.give_up("an empty page that links to another");
            return Ok(());
        }
        if !self.fingerprints.insert(page.fingerprint) {
            self.give_up("the same page came twice under different links");
            return Ok(());
        }
        let url = match current.join(next) {
            Ok(url) => url,
            Err(e) => {
                self.give_up(format!("a next link that is not a URL ({e})"));
                return Ok(());
            }
        };
        if !under(&self.base, &url) {
            let reason = format!(
                "Spoki's next link leads to {}, outside {}; the API key is not sent there and \
                 the pass stops",
                origin(&url),
                self.base
            );
            self.give_up(reason.clone());
            return Err(SpokiError::Fatal { reason });
        }
        if !self.fetched.insert(url.as_str().to_owned()) {
            self.give_up("a next link to a page already read (a loop)");
            return Ok(());
        }
        self.current = Some(url);
        Ok(())
    }
}

/// Whether `url` has `base`'s scheme, host and port and lies under its path.
pub(crate) fn under(base: &Url, url: &Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str().map(str::to_ascii_lowercase)
            == base.host_str().map(str::to_ascii_lowercase)
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path().starts_with(base.path())
}

/// `scheme://host:port` of a URL, for messages (never its query, which may be long).
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ContactRecord;
    use serde_json::json;

    fn base() -> Url {
        Url::parse("https://api.spoki.com/api/1/").expect("url")
    }

    fn pager() -> Pager<ContactRecord> {
        let first = base().join("contacts/?page_size=200").expect("url");
        Pager::new(Action::ListContacts, base(), first)
    }

    fn page(phones: &[&str], next: Option<&str>) -> Page<ContactRecord> {
        let results: Vec<_> = phones.iter().map(|p| json!({"phone": p})).collect();
        Page::from_json(json!({"results": results, "next": next})).expect("page")
    }

    #[test]
    fn follows_cursor_relative_and_offset_links_until_there_is_no_next() {
        let mut p = pager();
        p.advance(&page(
            &["+391"],
            Some("https://api.spoki.com/api/1/contacts/?cursor=cD0x"),
        ))
        .expect("same host");
        assert_eq!(
            p.next_url().map(Url::as_str),
            Some("https://api.spoki.com/api/1/contacts/?cursor=cD0x")
        );
        p.advance(&page(&["+392"], Some("/api/1/contacts/?limit=1&offset=2")))
            .expect("relative to the host");
        assert_eq!(
            p.next_url().map(Url::as_str),
            Some("https://api.spoki.com/api/1/contacts/?limit=1&offset=2")
        );
        p.advance(&page(&["+393"], Some("?page=4")))
            .expect("query only");
        assert_eq!(
            p.next_url().map(Url::as_str),
            Some("https://api.spoki.com/api/1/contacts/?page=4")
        );
        p.advance(&page(&["+394"], None)).expect("last page");
        assert_eq!(p.next_url(), None);
        assert_eq!(p.end(), Some(&PassEnd::Complete));
        assert_eq!(p.pages(), 4);
    }

    #[test]
    fn an_empty_page_ends_the_pass() {
        let mut p = pager();
        p.advance(&page(&[], None)).expect("ok");
        assert_eq!(p.end(), Some(&PassEnd::Complete));
        let mut p = pager();
        p.advance(&page(&[], Some("?page=2"))).expect("ok");
        assert!(matches!(p.end(), Some(PassEnd::Incomplete { .. })));
    }

    #[test]
    fn a_link_back_to_a_page_already_read_ends_the_pass_incomplete() {
        let mut p = pager();
        p.advance(&page(&["+391"], Some("?page=2"))).expect("ok");
        p.advance(&page(&["+392"], Some("/api/1/contacts/?page_size=200")))
            .expect("ok");
        assert_eq!(p.next_url(), None);
        assert!(matches!(p.end(), Some(PassEnd::Incomplete { reason }) if reason.contains("loop")));
    }

    #[test]
    fn the_same_page_under_a_new_link_ends_the_pass_incomplete() {
        // A server that ignores `page` but keeps counting it up in `next`.
        let mut p = pager();
        p.advance(&page(&["+391"], Some("?page=2"))).expect("ok");
        p.advance(&page(&["+391"], Some("?page=3"))).expect("ok");
        assert!(matches!(p.end(), Some(PassEnd::Incomplete { .. })));
    }

    #[test]
    fn a_link_to_another_host_is_refused() {
        for link in [
            "https://evil.example/api/1/contacts/?page=2",
            "http://api.spoki.com/api/1/contacts/?page=2",
            "https://api.spoki.com:8443/api/1/contacts/?page=2",
            "//evil.example/api/1/contacts/",
            "https://user@api.spoki.com/api/1/contacts/",
            "/admin/contacts/?page=2",
            "https://app.spoki.it/api/1/contacts/?page=2",
        ] {
            let mut p = pager();
            let err = p.advance(&page(&["+391"], Some(link))).expect_err(link);
            assert!(matches!(err, SpokiError::Fatal { .. }), "{link}");
            assert!(!err.to_string().contains("page=2"), "{err}");
            assert_eq!(p.next_url(), None, "{link}");
            assert!(matches!(p.end(), Some(PassEnd::Incomplete { .. })));
        }
    }

    #[test]
    fn a_404_ends_a_later_page_only() {
        let mut p = pager();
        assert!(
            !p.refused(404),
            "the first page's 404 is the caller's to judge"
        );
        p.advance(&page(&["+391"], Some("?page=2"))).expect("ok");
        assert!(!p.refused(400));
        assert!(p.refused(404));
        assert!(matches!(p.end(), Some(PassEnd::Incomplete { .. })));
        assert_eq!(p.next_url(), None);
    }
}
