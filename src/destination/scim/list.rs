//! Reading members: the whole `/Users` list, paged, and one member by id.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::{Method, StatusCode};
use tracing::debug;

use super::config::{ScimConfig, MAX_LISTED_WITHOUT_TOTAL, MAX_PAGE};
use super::model::{ListPage, WireUser};
use super::pacer::Pacer;
use super::transport::CallKind;
use super::ScimClient;
use crate::destination::{DestinationError, DestinationMember};

impl ScimClient {
    /// Reads one member (`None` when it does not exist).
    pub async fn get_member(
        &self,
        id: &str,
    ) -> Result<Option<DestinationMember>, DestinationError> {
        let url = self.url(&["Users", id]);
        let resp = self
            .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect_success(&url, resp)?;
        let user: WireUser =
            serde_json::from_slice(&resp.body).map_err(|e| self.bad_response(&url, e))?;
        Ok(Some(
            user.into_destination_with(resp.etag, self.config.extras),
        ))
    }

    pub(super) async fn fetch_page(
        &self,
        start: usize,
        count: usize,
    ) -> Result<ListPage, DestinationError> {
        let mut url = self.url(&["Users"]);
        url.query_pairs_mut()
            .append_pair("startIndex", &start.to_string())
            .append_pair("count", &count.to_string());
        let resp = self
            .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
            .await?;
        let resp = self.expect_success(&url, resp)?;
        serde_json::from_slice(&resp.body).map_err(|e| self.bad_response(&url, e))
    }

    /// Pages through `[start, start + count)` one request at a time, for the range a
    /// short page left out (a service may return fewer than asked).
    async fn fetch_range(
        &self,
        mut start: usize,
        mut count: usize,
        bounds: &mut ListBounds,
        out: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<usize, DestinationError> {
        let mut listed = 0;
        while count > 0 {
            bounds.request().map_err(|e| self.endless(e))?;
            let page = self.fetch_page(start, count).await?;
            let n = page.resources.len();
            if n == 0 {
                break;
            }
            bounds.page(start, n, count).map_err(|e| self.endless(e))?;
            out(convert(page.resources, self.config.extras));
            listed += n;
            start += n;
            count = count.saturating_sub(n);
        }
        Ok(listed)
    }

    /// Every member, each once.
    pub(super) async fn list_all(&self) -> Result<Vec<DestinationMember>, DestinationError> {
        let listed = std::sync::Mutex::new(Vec::new());
        self.list_paged(&|page| listed.lock().expect("list lock").extend(page))
            .await?;
        let mut members = listed.into_inner().expect("list lock");
        // A member created or deleted while paging shifts the pages: keep one of each.
        let duplicates: HashSet<usize> = {
            let mut seen = HashSet::with_capacity(members.len());
            (0..members.len())
                .filter(|&i| !seen.insert(members[i].id.as_str()))
                .collect()
        };
        if !duplicates.is_empty() {
            let mut i = 0;
            members.retain(|_| {
                i += 1;
                !duplicates.contains(&(i - 1))
            });
        }
        Ok(members)
    }

    /// Every member, handed to `out` page by page; pages go out in parallel, as many
    /// as the pacer allows. A list that cannot be what it claims ends early with an
    /// error (see [`ListBounds`]).
    pub(super) async fn list_paged(
        &self,
        out: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<(), DestinationError> {
        let started = Instant::now();
        let count = self
            .config
            .page_size
            .min(self.caps.filter_max_results.unwrap_or(MAX_PAGE))
            .clamp(1, MAX_PAGE);
        let first = self.fetch_page(1, count).await?;
        let total = first
            .total_results
            .map(|t| usize::try_from(t).unwrap_or(usize::MAX));
        if let Some(t) = total.filter(|t| *t > self.config.max_listed_users) {
            return Err(self.endless(format!(
                "the service says it holds {t} users (totalResults), more than the {} the operator reads; nothing was read past the first page",
                self.config.max_listed_users
            )));
        }
        let first_id = first.resources.first().map(|u| u.id.clone());
        // The service may cap pages below what was asked: step by what it returns.
        let step = first.resources.len();
        let mut bounds = ListBounds::new(&self.config, total, step, count);
        bounds.page(1, step, count).map_err(|e| self.endless(e))?;
        // Converted and handed over page by page: no page is held once read.
        out(convert(first.resources, self.config.extras));
        let mut read = ListRead {
            listed: step,
            window: 1,
        };
        if step > 0 {
            self.list_rest(total, step, first_id, &mut bounds, &mut read, out)
                .await?;
        }
        debug!(
            members = read.listed,
            pages = bounds.requests,
            window = read.window,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "listed SCIM users"
        );
        Ok(())
    }

    /// The pages after the first, `step` users each.
    async fn list_rest(
        &self,
        total: Option<usize>,
        step: usize,
        first_id: Option<String>,
        bounds: &mut ListBounds,
        read: &mut ListRead,
        out: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<(), DestinationError> {
        let mut walk = Walk::new(total, step);
        let mut pacer = Pacer::new(
            self.config.concurrency,
            Instant::now(),
            self.throttled.load(Ordering::Relaxed),
        );
        let mut in_flight = FuturesUnordered::new();
        loop {
            walk.follow_growth(read.listed)
                .map_err(|e| self.endless(e))?;
            while walk.more() && in_flight.len() < pacer.window() {
                bounds.request().map_err(|e| self.endless(e))?;
                let start = walk.advance();
                in_flight.push(async move { (start, self.fetch_page(start, step).await) });
            }
            read.window = read.window.max(pacer.window());
            let Some((start, page)) = in_flight.next().await else {
                return Ok(());
            };
            let page = page?;
            walk.claimed(page.total_results);
            let now = Instant::now();
            let throttled = self.throttled.load(Ordering::Relaxed);
            pacer.page_done(now, throttled, walk.remaining());
            let n = page.resources.len();
            if n == 0 {
                walk.ended = true; // the end, or members went away while listing
                continue;
            }
            if page.resources.first().map(|u| &u.id) == first_id.as_ref() {
                return Err(self.endless(format!(
                    "the page at startIndex {start} repeats the first page: the service ignores startIndex"
                )));
            }
            bounds
                .page(start, n, bounds.asked)
                .map_err(|e| self.endless(e))?;
            read.listed += n;
            out(convert(page.resources, self.config.extras));
            let expected = walk.expected(start);
            if n < expected && total.is_some() {
                let rest = expected - n;
                read.listed += self.fetch_range(start + n, rest, bounds, out).await?;
            } else if n < expected {
                walk.ended = true;
            }
            let cap = walk.cap(self.config.max_listed_users);
            if read.listed > cap {
                let without = if total.is_none() {
                    " without a totalResults"
                } else {
                    ""
                };
                return Err(self.endless(format!(
                    "the service listed more than {cap} users{without}, the most the operator reads"
                )));
            }
        }
    }
}

/// Where a list is: the next page to ask for and where it ends.
///
/// Without a total the list ends at its first short or empty page. With one it ends
/// there, or where later pages say when it grew while it was read (members created
/// meanwhile), within [`max_growth`].
struct Walk {
    /// The first page's `totalResults`.
    total: Option<usize>,
    step: usize,
    /// The last user to read.
    end: usize,
    /// The total the latest page announced.
    latest: usize,
    /// Where the next page starts.
    next: usize,
    ended: bool,
}

impl Walk {
    fn new(total: Option<usize>, step: usize) -> Self {
        let end = total.unwrap_or(usize::MAX);
        Walk {
            total,
            step,
            end,
            latest: end,
            next: step.saturating_add(1),
            ended: false,
        }
    }

    /// Whether another page is to be asked for.
    fn more(&self) -> bool {
        !self.ended && self.next <= self.end
    }

    /// The start of the next page, now asked for.
    fn advance(&mut self) -> usize {
        let start = self.next;
        self.next = self.next.saturating_add(self.step);
        start
    }

    /// A page's `totalResults` (followed only when the first page had one).
    fn claimed(&mut self, total: Option<u64>) {
        if let Some(t) = total.filter(|_| self.total.is_some()) {
            self.latest = usize::try_from(t).unwrap_or(usize::MAX);
        }
    }

    /// Once every page up to the end is asked for, a total that grew moves the end,
    /// within [`max_growth`]; beyond, the list does not end.
    fn follow_growth(&mut self, listed: usize) -> Result<(), ListBoundError> {
        let Some(first) = self.total else {
            return Ok(());
        };
        if self.ended || self.next <= self.end || self.latest <= self.end {
            return Ok(());
        }
        if self.latest > max_growth(first) {
            return Err(ListBoundError::Grew {
                first,
                latest: self.latest,
                listed,
            });
        }
        self.end = self.latest;
        Ok(())
    }

    /// Pages not yet asked for, when the service said its total.
    fn remaining(&self) -> Option<usize> {
        self.total.map(|_| match self.end.checked_sub(self.next) {
            Some(rest) => rest / self.step + 1,
            None => 0,
        })
    }

    /// Users the page at `start` should hold.
    fn expected(&self, start: usize) -> usize {
        match self.total {
            Some(_) => self
                .step
                .min(self.end.saturating_add(1).saturating_sub(start)),
            None => self.step,
        }
    }

    /// The most users this list may hold.
    fn cap(&self, max_listed_users: usize) -> usize {
        match self.total {
            Some(_) => max_listed_users,
            None => max_listed_users.min(MAX_LISTED_WITHOUT_TOTAL),
        }
    }
}

/// The most a list's `totalResults` may grow while it is read (members created
/// meanwhile, by other integrations too) before the list counts as one that never ends:
/// a tenth of the first page's total, and 1,000.
fn max_growth(first: usize) -> usize {
    first.saturating_add(first / 10).saturating_add(1_000)
}

/// What a list read so far.
struct ListRead {
    listed: usize,
    /// The widest the pacer opened.
    window: usize,
}

/// Pages with far fewer users than asked, while the list claims more, that one list may
/// meet: a legitimate service returns full pages but at the end (a page or two may come
/// short while members are deleted during the list).
pub(super) const MAX_SHORT_PAGES: usize = 100;
/// A page holding fewer users than this (or than asked, when asked for fewer) is short
/// whatever the service's own page size.
pub(super) const MIN_FULL_PAGE: usize = 10;

/// Bounds on one list, so that a hostile or broken service ends it in seconds to minutes
/// instead of hours, and a legitimate one is never stopped:
/// - requests: with a `totalResults`, the pages it takes at the service's page size
///   (the first page's length) plus a quarter and [`MAX_SHORT_PAGES`] refills; without,
///   `max_list_pages`; never more than `max_list_pages`;
/// - short pages: a page with fewer than half the service's page size (or fewer than
///   [`MIN_FULL_PAGE`]) while the list goes on, at most [`MAX_SHORT_PAGES`].
pub(super) struct ListBounds {
    max_requests: usize,
    requests: usize,
    short: usize,
    total: Option<usize>,
    /// A page holding fewer users than this, asked for at least this many, is short.
    full: usize,
    /// Users the list asks for per page.
    pub(super) asked: usize,
}

impl ListBounds {
    pub(super) fn new(
        config: &ScimConfig,
        total: Option<usize>,
        step: usize,
        asked: usize,
    ) -> Self {
        let cap = config.max_list_pages.max(1);
        let max_requests = match total {
            Some(t) if step > 0 => {
                let pages = t.div_ceil(step);
                pages
                    .saturating_add(pages / 4)
                    .saturating_add(MAX_SHORT_PAGES + 1)
                    .min(cap)
            }
            _ => cap,
        };
        ListBounds {
            max_requests,
            requests: 1, // the first page
            short: 0,
            total,
            full: (step / 2).max(MIN_FULL_PAGE.min(asked)),
            asked,
        }
    }

    /// One more list request, if the bounds allow it.
    pub(super) fn request(&mut self) -> Result<(), ListBoundError> {
        if self.requests >= self.max_requests {
            return Err(ListBoundError::TooManyPages {
                pages: self.requests,
                total: self.total,
            });
        }
        self.requests += 1;
        Ok(())
    }

    /// A page of `n` users (`n > 0`) from `start`, `asked` asked for (by the list: the
    /// page size it asks every page for, whatever the service's own).
    pub(super) fn page(
        &mut self,
        start: usize,
        n: usize,
        asked: usize,
    ) -> Result<(), ListBoundError> {
        // Without a total a page short of the service's own size ends the list: one.
        let more = self.total.is_none_or(|t| start.saturating_add(n) <= t);
        if n == 0 || !more || n >= self.full.min(asked) {
            return Ok(());
        }
        self.short += 1;
        if self.short < MAX_SHORT_PAGES {
            return Ok(());
        }
        Err(ListBoundError::ShortPages {
            pages: self.short,
            n,
            asked,
            start,
            total: self.total,
        })
    }
}

/// Why a user list is stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ListBoundError {
    #[error("the user list does not end: its totalResults grew from {first} to {latest} while it was read; stopped after {listed} users")]
    Grew {
        first: usize,
        latest: usize,
        listed: usize,
    },
    #[error("the user list did not end after {pages} pages{}, the most the operator reads",
        total.map(|t| format!(", more than its {t} users (totalResults) take")).unwrap_or_default())]
    TooManyPages { pages: usize, total: Option<usize> },
    #[error("the user list returned far fewer users than asked on {pages} pages ({n} of {asked} at startIndex {start}) while {}; stopped: the list cannot be read in a reasonable number of requests",
        total.map(|t| format!("its totalResults says {t}")).unwrap_or_else(|| "it does not end".into()))]
    ShortPages {
        pages: usize,
        n: usize,
        asked: usize,
        start: usize,
        total: Option<usize>,
    },
}

fn convert(users: Vec<WireUser>, extras: &[&'static str]) -> Vec<DestinationMember> {
    users
        .into_iter()
        .map(|u| u.into_destination_with(None, extras))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    fn config() -> ScimConfig {
        ScimConfig::new("http://127.0.0.1:1/v2", SecretString::new("t")).unwrap()
    }

    /// Pages of `step` from a list of `total`, as the list asks them: how many requests
    /// the bounds allow, or the error.
    fn read_whole(total: usize, step: usize, asked: usize) -> Result<usize, ListBoundError> {
        let mut b = ListBounds::new(&config(), Some(total), step, asked);
        b.page(1, step.min(total), asked)?;
        let mut start = step + 1;
        while start <= total {
            b.request()?;
            b.page(start, step.min(total + 1 - start), asked)?;
            start += step;
        }
        Ok(b.requests)
    }

    #[test]
    fn a_legitimate_list_of_two_million_is_never_stopped() {
        // Reward Gateway's 100 a page, and the 1000 the client asks for.
        assert_eq!(read_whole(2_000_000, 100, 100), Ok(20_000));
        assert_eq!(read_whole(2_000_000, 1000, 1000), Ok(2_000));
        // A service that pages 50 at a time when asked for 1000.
        assert_eq!(read_whole(2_000_000, 50, 1000), Ok(40_000));
        // A small list with a short last page.
        assert_eq!(read_whole(25, 10, 1000), Ok(3));
    }

    #[test]
    fn short_pages_while_more_are_claimed_stop_the_list() {
        let mut b = ListBounds::new(&config(), Some(1_000_000), 100, 100);
        let mut start = 101;
        let err = loop {
            b.request().unwrap();
            if let Err(e) = b.page(start, 1, 100) {
                break e;
            }
            start += 1;
        };
        assert_eq!(b.short, MAX_SHORT_PAGES);
        assert!(
            err.to_string()
                .contains("far fewer users than asked on 100 pages"),
            "{err}"
        );
        // A page short of a service's own tiny size, with no total, is short too.
        let mut b = ListBounds::new(&config(), None, 1, 1000);
        assert!((0..MAX_SHORT_PAGES).any(|i| b.page(i + 2, 1, 1000).is_err()));
    }

    #[test]
    fn requests_are_bounded_by_what_the_total_takes() {
        let mut b = ListBounds::new(&config(), Some(1_000), 10, 10);
        let allowed = (0..10_000).take_while(|_| b.request().is_ok()).count();
        // 100 pages, a quarter more, and the refills of the short pages allowed.
        assert_eq!(allowed + 1, 100 + 25 + MAX_SHORT_PAGES + 1);
        let mut b = ListBounds::new(&config(), None, 10, 10);
        let allowed = (0..100_000).take_while(|_| b.request().is_ok()).count();
        assert_eq!(
            allowed + 1,
            crate::destination::scim::config::MAX_LIST_PAGES
        );
    }
}
