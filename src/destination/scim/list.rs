//! Reading members: the whole `/Users` list, paged, and one member by id.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::{Method, StatusCode};
use tracing::debug;

use super::config::MAX_PAGE;
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
        Ok(Some(user.into_destination(resp.etag)))
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
        out: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<usize, DestinationError> {
        let mut listed = 0;
        while count > 0 {
            let page = self.fetch_page(start, count).await?;
            let n = page.resources.len();
            if n == 0 {
                break;
            }
            out(convert(page.resources));
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
    /// as the pacer allows.
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
        let first_id = first.resources.first().map(|u| u.id.clone());
        // Converted and handed over page by page: no page is held once read.
        let step = first.resources.len();
        let mut listed = step;
        out(convert(first.resources));
        // The service may cap pages below what was asked: step by what it returns.
        let mut pages = 1usize;
        let mut window = 1;
        if step > 0 {
            // Without a total the list ends at its first short or empty page.
            let end = total.unwrap_or(usize::MAX);
            let mut pacer = Pacer::new(
                self.config.concurrency,
                Instant::now(),
                self.throttled.load(Ordering::Relaxed),
            );
            let mut next = step.saturating_add(1);
            let mut ended = false;
            let mut in_flight = FuturesUnordered::new();
            loop {
                while !ended && next <= end && in_flight.len() < pacer.window() {
                    if pages >= self.config.max_list_pages {
                        return Err(self.endless(format!(
                            "the user list did not end after {} pages, the most the operator reads",
                            self.config.max_list_pages
                        )));
                    }
                    let start = next;
                    next = next.saturating_add(step);
                    pages += 1;
                    in_flight.push(async move { (start, self.fetch_page(start, step).await) });
                }
                window = window.max(pacer.window());
                let Some((start, page)) = in_flight.next().await else {
                    break;
                };
                let page = page?;
                // Pages not yet requested, when the service said its total.
                let remaining = total.map(|t| match t.checked_sub(next) {
                    Some(rest) => rest / step + 1,
                    None => 0,
                });
                pacer.page_done(
                    Instant::now(),
                    self.throttled.load(Ordering::Relaxed),
                    remaining,
                );
                let n = page.resources.len();
                if n == 0 {
                    ended = true; // the end, or members went away while listing
                    continue;
                }
                if page.resources.first().map(|u| &u.id) == first_id.as_ref() {
                    return Err(self.endless(format!(
                        "the page at startIndex {start} repeats the first page: the service ignores startIndex"
                    )));
                }
                listed += n;
                out(convert(page.resources));
                let expected = match total {
                    Some(total) => step.min(total.saturating_add(1).saturating_sub(start)),
                    None => step,
                };
                if n < expected {
                    match total {
                        Some(_) => listed += self.fetch_range(start + n, expected - n, out).await?,
                        None => ended = true,
                    }
                }
                if listed > self.config.max_listed_users {
                    return Err(self.endless(format!(
                        "the service listed more than {} users, the most the operator reads",
                        self.config.max_listed_users
                    )));
                }
            }
        }
        debug!(
            members = listed,
            pages,
            window,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "listed SCIM users"
        );
        Ok(())
    }
}

fn convert(users: Vec<WireUser>) -> Vec<DestinationMember> {
    users
        .into_iter()
        .map(|u| u.into_destination(None))
        .collect()
}
