//! Looking members up by key: what an incremental run reads instead of the whole list.
//!
//! Only where `/ServiceProviderConfig` announces `filter.supported`. Keys go out as
//! or-filters (`externalId eq "E1" or userName eq "a@x"`), at most [`MAX_CLAUSES`]
//! clauses and [`MAX_FILTER_BYTES`] of encoded filter a request (URLs stay well under
//! 8 KB), [`IN_FLIGHT`] requests at once, each followed through its pages.
//!
//! The answer is only trusted when the service demonstrably filters as RFC 7643 says:
//! - an `or` filter it refuses (400/501) is sent one clause per request for the rest
//!   of the run; a single clause it refuses means it cannot filter (`None`);
//! - a resource that matches none of the request's keys means it ignored the filter
//!   (`None`);
//! - `userName` is case-insensitive (`caseExact: false`), but some services compare it
//!   exactly (SCIMMY does). Before the first userName lookup one known account is asked
//!   for with its userName in swapped case; a service that does not find it cannot
//!   look e-mails up (`None`), since a differently cased account would be missed.
//!
//! `None` tells the caller to list every member instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::time::Instant;

use futures::stream::{self, FuturesUnordered, StreamExt};
use reqwest::{Method, StatusCode};

use super::config::MAX_PAGE;
use super::model::{ListPage, WireUser};
use super::pacer::Pacer;
use super::transport::CallKind;
use super::ScimClient;
use crate::destination::{DestinationError, DestinationMember, MemberKeys};

/// Clauses per request.
pub(super) const MAX_CLAUSES: usize = 50;
/// Percent-encoded bytes of one `filter` value: with the base URL and paging
/// parameters a request stays well under the 8 KB many servers take.
pub(super) const MAX_FILTER_BYTES: usize = 6000;
/// Lookup requests in flight at once (within the client's own limit), and the most
/// reads by id the pacer may try at once: each may be a new connection (a service that
/// closes them after each answer), and more at once than a small listen backlog holds
/// (5, Python's socketserver default) makes the service drop one, which costs the run a
/// one-second SYN retry.
const IN_FLIGHT: usize = 4;

// 0: not known yet.
const CASE_IGNORED: u8 = 1;
const CASE_EXACT: u8 = 2;

/// What the client learnt about the service's filtering during the run.
#[derive(Debug, Default)]
pub(super) struct LookupState {
    /// The service refused an `or` filter: one clause per request from now on.
    single_clause: AtomicBool,
    /// Whether `userName eq` ignores case (`CASE_*`, 0 until known).
    user_name_case: AtomicU8,
    /// Lookup requests sent (retries of one count once here, each in `reads`).
    pub(super) requests: AtomicU32,
}

/// One `attribute eq "value"` test.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Clause {
    ExternalId(String),
    UserName(String),
}

impl Clause {
    fn text(&self) -> String {
        let (attribute, value) = match self {
            Clause::ExternalId(v) => ("externalId", v),
            Clause::UserName(v) => ("userName", v),
        };
        format!("{attribute} eq \"{}\"", escape(value))
    }

    /// Whether `user` could be an answer to this clause (case aside: that is for
    /// [`wanted`] to judge).
    fn could_match(&self, user: &WireUser) -> bool {
        let (have, want) = match self {
            Clause::ExternalId(v) => (user.external_id.as_deref(), v),
            Clause::UserName(v) => (user.user_name.as_deref(), v),
        };
        have.is_some_and(|h| h.to_lowercase() == want.to_lowercase())
    }
}

/// A SCIM filter string literal's content (RFC 7644 §3.4.2.2: JSON string rules).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

fn encoded_len(text: &str) -> usize {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .map(str::len)
        .sum()
}

/// The keys as clauses, each once (userNames compared without case), empty ones left out.
fn clauses(keys: &MemberKeys) -> Vec<Clause> {
    let mut seen_ids = HashSet::new();
    let mut seen_names = HashSet::new();
    let ids = keys
        .external_ids
        .iter()
        .filter(|k| !k.is_empty() && seen_ids.insert(k.as_str()))
        .map(|k| Clause::ExternalId(k.clone()));
    let names = keys
        .user_names
        .iter()
        .filter(|k| !k.is_empty() && seen_names.insert(k.to_lowercase()))
        .map(|k| Clause::UserName(k.clone()));
    ids.chain(names).collect()
}

/// Groups clauses into requests of at most `max_clauses` clauses and `max_bytes` of
/// encoded filter (a clause longer than that on its own still gets a request).
fn batches(clauses: Vec<Clause>, max_clauses: usize, max_bytes: usize) -> Vec<Vec<Clause>> {
    const OR: usize = " or ".len() + 2; // spaces encode as `+`, counted generously
    let mut out: Vec<Vec<Clause>> = Vec::new();
    let mut bytes = 0;
    for clause in clauses {
        let len = encoded_len(&clause.text());
        match out.last_mut() {
            Some(batch) if batch.len() < max_clauses && bytes + OR + len <= max_bytes => {
                bytes += OR + len;
                batch.push(clause);
            }
            _ => {
                bytes = len;
                out.push(vec![clause]);
            }
        }
    }
    out
}

fn filter_of(batch: &[Clause]) -> String {
    batch
        .iter()
        .map(Clause::text)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// What one filtered read found.
enum Answer {
    Found(Vec<WireUser>),
    /// The service refused the filter (400 or 501).
    Refused,
    /// It returned accounts the filter cannot have selected.
    Ignored,
}

/// Whether a found account is one the keys asked for: externalId exactly (it is
/// `caseExact`), userName without case.
fn wanted(user: &WireUser, ids: &HashSet<&str>, names: &HashSet<String>) -> bool {
    user.external_id.as_deref().is_some_and(|e| ids.contains(e))
        || user
            .user_name
            .as_deref()
            .is_some_and(|n| names.contains(&n.to_lowercase()))
}

/// `name` with the case of every letter swapped (`Ada@X.org` → `aDA@x.ORG`).
fn swap_case(name: &str) -> String {
    name.chars()
        .flat_map(|c| -> Box<dyn Iterator<Item = char>> {
            if c.is_lowercase() {
                Box::new(c.to_uppercase())
            } else {
                Box::new(c.to_lowercase())
            }
        })
        .collect()
}

impl ScimClient {
    /// [`crate::destination::MemberDirectory::get_members`]: `GET /Users/{id}` each, as
    /// many at once as the list's pacer finds pays off (a single-threaded service answers
    /// one at a time fastest, a scaling one many); an id that is gone (404) is left out.
    pub(super) async fn get_by_ids(
        &self,
        ids: &[String],
    ) -> Result<Vec<DestinationMember>, DestinationError> {
        let mut wanted = ids.iter().filter(|id| !id.is_empty());
        let mut left = wanted.clone().count();
        let mut pacer = Pacer::new(
            self.config.concurrency.min(IN_FLIGHT),
            Instant::now(),
            self.throttled.load(Ordering::Relaxed),
        );
        let mut in_flight = FuturesUnordered::new();
        let mut found = Vec::with_capacity(left);
        loop {
            while in_flight.len() < pacer.window() {
                let Some(id) = wanted.next() else { break };
                left -= 1;
                self.lookup.requests.fetch_add(1, Ordering::Relaxed);
                in_flight.push(self.get_member(id));
            }
            let Some(read) = in_flight.next().await else {
                break;
            };
            if let Some(member) = read? {
                found.push(member);
            }
            pacer.page_done(
                Instant::now(),
                self.throttled.load(Ordering::Relaxed),
                Some(left),
            );
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    /// [`crate::destination::MemberDirectory::find_members`] through filtered reads.
    pub(super) async fn find_by_filter(
        &self,
        keys: &MemberKeys,
    ) -> Result<Option<Vec<DestinationMember>>, DestinationError> {
        if !self.caps.filter {
            return Ok(None);
        }
        let clauses = clauses(keys);
        if clauses.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let by_name = clauses.iter().any(|c| matches!(c, Clause::UserName(_)));
        if by_name && !self.user_name_ignores_case().await? {
            return Ok(None);
        }
        let batches = if self.lookup.single_clause.load(Ordering::Relaxed) {
            batches(clauses, 1, MAX_FILTER_BYTES)
        } else {
            batches(clauses, MAX_CLAUSES, MAX_FILTER_BYTES)
        };
        let mut answers = stream::iter(batches)
            .map(|batch| self.lookup_batch(batch))
            .buffer_unordered(IN_FLIGHT.min(self.config.concurrency.max(1)));
        let mut found = Vec::new();
        while let Some(answer) = answers.next().await {
            match answer? {
                Answer::Found(users) => found.extend(users),
                Answer::Refused | Answer::Ignored => return Ok(None),
            }
        }
        let ids: HashSet<&str> = keys
            .external_ids
            .iter()
            .filter(|k| !k.is_empty())
            .map(String::as_str)
            .collect();
        let names: HashSet<String> = keys
            .user_names
            .iter()
            .filter(|k| !k.is_empty())
            .map(|n| n.to_lowercase())
            .collect();
        let mut seen = HashSet::new();
        found.retain(|u| wanted(u, &ids, &names) && seen.insert(u.id.clone()));
        let mut members: Vec<DestinationMember> = Vec::with_capacity(found.len());
        members.extend(
            found
                .into_iter()
                .map(|u| u.into_destination_with(None, self.config.extras)),
        );
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Some(members))
    }

    /// One batch; when the service refuses it as an `or` filter, its clauses one by
    /// one (and every later batch too).
    async fn lookup_batch(&self, batch: Vec<Clause>) -> Result<Answer, DestinationError> {
        match self.filtered(&batch).await? {
            Answer::Refused if batch.len() > 1 => {
                if !self.lookup.single_clause.swap(true, Ordering::Relaxed) {
                    tracing::warn!("the SCIM service refuses `or` filters; looking members up one key per request for the rest of the run");
                }
                let mut users = Vec::new();
                for clause in batch {
                    match self.filtered(std::slice::from_ref(&clause)).await? {
                        Answer::Found(found) => users.extend(found),
                        other => return Ok(other),
                    }
                }
                Ok(Answer::Found(users))
            }
            other => Ok(other),
        }
    }

    /// Every page of `GET /Users?filter=<batch>`.
    async fn filtered(&self, batch: &[Clause]) -> Result<Answer, DestinationError> {
        let filter = filter_of(batch);
        let count = self
            .config
            .page_size
            .min(self.caps.filter_max_results.unwrap_or(MAX_PAGE))
            .clamp(1, MAX_PAGE);
        let mut users: Vec<WireUser> = Vec::new();
        let mut start = 1usize;
        for _ in 0..self.config.max_list_pages {
            let mut url = self.url(&["Users"]);
            url.query_pairs_mut()
                .append_pair("filter", &filter)
                .append_pair("startIndex", &start.to_string())
                .append_pair("count", &count.to_string());
            self.lookup.requests.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
                .await?;
            if matches!(
                resp.status,
                StatusCode::BAD_REQUEST | StatusCode::NOT_IMPLEMENTED
            ) {
                tracing::debug!(status = resp.status.as_u16(), scim_type = ?resp.error().scim_type, clauses = batch.len(), "the SCIM service refused a filter");
                return Ok(Answer::Refused);
            }
            let resp = self.expect_success(&url, resp)?;
            let page: ListPage =
                serde_json::from_slice(&resp.body).map_err(|e| self.bad_response(&url, e))?;
            let n = page.resources.len();
            if page
                .resources
                .iter()
                .any(|u| !batch.iter().any(|c| c.could_match(u)))
            {
                return Ok(Answer::Ignored);
            }
            users.extend(page.resources);
            let more = match page.total_results {
                Some(total) => ((start - 1 + n) as u64) < total,
                None => n >= count,
            };
            if n == 0 || !more {
                return Ok(Answer::Found(users));
            }
            start += n;
        }
        Err(self.endless(format!(
            "a filtered user list did not end after {} pages",
            self.config.max_list_pages
        )))
    }

    /// Whether `userName eq` ignores case here, learnt once by asking for a known
    /// account's userName in swapped case.
    async fn user_name_ignores_case(&self) -> Result<bool, DestinationError> {
        match self.lookup.user_name_case.load(Ordering::Relaxed) {
            CASE_IGNORED => return Ok(true),
            CASE_EXACT => return Ok(false),
            _ => {}
        }
        self.lookup.requests.fetch_add(1, Ordering::Relaxed);
        let sample = self.fetch_page(1, 10).await?;
        let probe = sample.resources.into_iter().find_map(|u| {
            let name = u.user_name.as_deref()?;
            let swapped = swap_case(name);
            (swapped != name && !name.contains(['"', '\\'])).then_some((u.id, swapped))
        });
        // No account to try it on: none can be missed either.
        let Some((id, swapped)) = probe else {
            return Ok(true);
        };
        let ignores = match self.filtered(&[Clause::UserName(swapped)]).await? {
            Answer::Found(users) => users.iter().any(|u| u.id == id),
            Answer::Refused | Answer::Ignored => false,
        };
        if !ignores {
            tracing::warn!("the SCIM service compares userName with case (RFC 7643 says it must not): members are listed in full instead of looked up by e-mail");
        }
        let state = if ignores { CASE_IGNORED } else { CASE_EXACT };
        self.lookup.user_name_case.store(state, Ordering::Relaxed);
        Ok(ignores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[&str], names: &[&str]) -> MemberKeys {
        MemberKeys {
            external_ids: ids.iter().map(|s| s.to_string()).collect(),
            user_names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn clauses_escape_quotes_and_backslashes_and_repeat_no_key() {
        let c = clauses(&keys(
            &["E1", "E1", "", r#"E"2\x"#],
            &["Ada@X.org", "ada@x.org", "b@x.org"],
        ));
        let texts: Vec<String> = c.iter().map(Clause::text).collect();
        assert_eq!(
            texts,
            [
                r#"externalId eq "E1""#,
                r#"externalId eq "E\"2\\x""#,
                r#"userName eq "Ada@X.org""#,
                r#"userName eq "b@x.org""#,
            ]
        );
        assert_eq!(
            filter_of(&c[..2]),
            r#"externalId eq "E1" or externalId eq "E\"2\\x""#
        );
    }

    #[test]
    fn batches_hold_at_most_fifty_clauses_and_six_kilobytes() {
        let ids: Vec<String> = (0..120).map(|i| format!("E-{i:05}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let sizes: Vec<usize> = batches(clauses(&keys(&ids, &[])), MAX_CLAUSES, MAX_FILTER_BYTES)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [50, 50, 20]);

        // Long e-mails: the byte budget cuts first, and every request's URL stays short.
        let long: Vec<String> = (0..60)
            .map(|i| format!("{}.{i}@example.com", "a\"b c".repeat(40)))
            .collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        let all = batches(clauses(&keys(&[], &long)), MAX_CLAUSES, MAX_FILTER_BYTES);
        assert!(all.len() > 2, "{}", all.len());
        assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 60);
        for batch in &all {
            let encoded = encoded_len(&filter_of(batch));
            assert!(encoded <= MAX_FILTER_BYTES, "{encoded}");
            let url = format!(
                "https://members.example.com/scim/v2/Users?filter={}&startIndex=1&count=1000",
                url::form_urlencoded::byte_serialize(filter_of(batch).as_bytes())
                    .collect::<String>()
            );
            assert!(url.len() < 8 * 1024, "{}", url.len());
        }
        // One clause that alone exceeds the budget still gets its own request.
        let huge = "x".repeat(7000);
        let one = batches(
            clauses(&keys(&["E1", &huge, "E2"], &[])),
            MAX_CLAUSES,
            MAX_FILTER_BYTES,
        );
        assert_eq!(one.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(batches(Vec::new(), MAX_CLAUSES, MAX_FILTER_BYTES).is_empty());
    }

    #[test]
    fn swapped_case_differs_only_in_case() {
        assert_eq!(
            swap_case("Ada.Lovelace@X.example"),
            "aDA.lOVELACE@x.EXAMPLE"
        );
        assert_eq!(swap_case("12345"), "12345");
        assert_eq!(swap_case("zoë"), "ZOË");
    }
}
