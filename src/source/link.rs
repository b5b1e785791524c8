//! RFC 8288 `Link` header parsing, enough to find `rel="next"` however the server
//! spells it: several links per header or several headers, quoted or bare `rel`, several
//! relation types in one `rel`, commas and semicolons inside `<…>` or quoted values.

use std::collections::HashSet;

use http::header::{HeaderMap, LINK};
use url::Url;

use crate::egress::MAX_HEADER_BYTES;

/// Most list pages one pass reads: 20,000 pages of 50 is a million employees, far more
/// than any directory, and a chain that is still going by then is not going to end.
pub(crate) const MAX_LIST_PAGES: u64 = 20_000;

/// Whether the list may go on to `next` after `pages_read` pages: never back to a page
/// already read (a loop would repeat forever, and the pages past it would be missed, their
/// employees taken for leavers), never past [`MAX_LIST_PAGES`].
pub(crate) fn check_next(
    visited: &mut HashSet<Url>,
    pages_read: u64,
    next: &Url,
) -> Result<(), ChainError> {
    if pages_read >= MAX_LIST_PAGES {
        return Err(ChainError::TooLong);
    }
    if !visited.insert(next.clone()) {
        return Err(ChainError::Loops { pages_read });
    }
    Ok(())
}

/// Why a list's `next` link is not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChainError {
    #[error("the employee list still links to a next page after {MAX_LIST_PAGES} pages; stopped there rather than read for ever")]
    TooLong,
    #[error("the `link` header after page {pages_read} points back to a page already read; the list loops, so stopped rather than miss the employees past the loop")]
    Loops { pages_read: u64 },
}

/// One link-value: its target (still unresolved) and relation types (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub target: String,
    pub rels: Vec<String>,
}

/// The `rel="next"` target of a response, resolved against the request URL.
pub(crate) fn next_link(headers: &HeaderMap, request_url: &Url) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        // A header longer than any real link list is not parsed at all.
        .filter(|v| v.len() <= MAX_HEADER_BYTES)
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse)
        .find(|l| l.rels.iter().any(|r| r == "next"))
        .and_then(|l| request_url.join(l.target.trim()).ok())
}

/// Parses one `Link` header value. Malformed link-values are skipped, not fatal: a
/// server's odd extra link must not hide a well-formed `next`.
pub(crate) fn parse(value: &str) -> Vec<Link> {
    let mut c = Cursor { s: value, pos: 0 };
    let mut links = Vec::new();
    loop {
        c.skip(|ch| ch == ',' || ch.is_whitespace());
        let Some(ch) = c.peek() else { break };
        if ch != '<' {
            c.skip_to_next_link();
            continue;
        }
        c.bump();
        let Some(end) = c.rest().find('>') else { break };
        let target = c.rest()[..end].to_string();
        c.pos += end + 1;
        let mut rels: Option<Vec<String>> = None;
        loop {
            c.skip(char::is_whitespace);
            match c.peek() {
                None | Some(',') => break,
                Some(';') => {
                    c.bump();
                }
                Some(_) => {
                    // Junk between parameters: resynchronise on the next `;` or `,`.
                    c.skip_until(|ch| ch == ';' || ch == ',');
                    continue;
                }
            }
            c.skip(char::is_whitespace);
            let name = c.take_while(|ch| !(ch.is_whitespace() || "=;,".contains(ch)));
            c.skip(char::is_whitespace);
            let mut param_value = String::new();
            if c.peek() == Some('=') {
                c.bump();
                c.skip(char::is_whitespace);
                param_value = if c.peek() == Some('"') {
                    c.quoted()
                } else {
                    c.take_while(|ch| !(ch.is_whitespace() || ";,".contains(ch)))
                        .to_string()
                };
            }
            // RFC 8288 §3.3: only the first `rel` parameter counts.
            if name.eq_ignore_ascii_case("rel") && rels.is_none() {
                rels = Some(
                    param_value
                        .split_whitespace()
                        .map(str::to_ascii_lowercase)
                        .collect(),
                );
            }
        }
        links.push(Link {
            target,
            rels: rels.unwrap_or_default(),
        });
    }
    links
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn bump(&mut self) {
        if let Some(ch) = self.peek() {
            self.pos += ch.len_utf8();
        }
    }
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let end = rest.find(|ch| !f(ch)).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }
    fn skip(&mut self, f: impl Fn(char) -> bool) {
        self.take_while(f);
    }
    /// Skips to (not past) the next unquoted character matching `stop`.
    fn skip_until(&mut self, stop: impl Fn(char) -> bool) {
        while let Some(ch) = self.peek() {
            if stop(ch) {
                return;
            }
            if ch == '"' {
                self.quoted();
            } else {
                self.bump();
            }
        }
    }
    fn skip_to_next_link(&mut self) {
        self.skip_until(|ch| ch == ',');
    }
    /// A quoted-string starting at the opening quote, with `\` escapes undone.
    fn quoted(&mut self) -> String {
        self.bump();
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            self.bump();
            match ch {
                '"' => break,
                '\\' => {
                    if let Some(escaped) = self.peek() {
                        self.bump();
                        out.push(escaped);
                    }
                }
                _ => out.push(ch),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rels(l: &Link) -> Vec<&str> {
        l.rels.iter().map(String::as_str).collect()
    }

    #[test]
    fn parses_several_links_with_quoted_and_bare_rels() {
        let links = parse(
            r#"<https://a.example/api/employees?page=1>; rel="first", <https://a.example/api/employees?page=3> ;rel=next,<https://a.example/api/employees?page=9>;   rel = "last""#,
        );
        assert_eq!(links.len(), 3);
        assert_eq!(links[1].target, "https://a.example/api/employees?page=3");
        assert_eq!(rels(&links[0]), ["first"]);
        assert_eq!(rels(&links[1]), ["next"]);
        assert_eq!(rels(&links[2]), ["last"]);
    }

    #[test]
    fn handles_commas_and_semicolons_inside_targets_and_quotes() {
        let links = parse(
            r#"<https://a.example/x?a=1,2;b>; title="a, b; \"c\""; rel="prev", </x?page=2&f=a,b>; REL="Next Last""#,
        );
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].target, "https://a.example/x?a=1,2;b");
        assert_eq!(rels(&links[0]), ["prev"]);
        assert_eq!(links[1].target, "/x?page=2&f=a,b");
        assert_eq!(rels(&links[1]), ["next", "last"]);
    }

    #[test]
    fn first_rel_wins_and_junk_is_skipped() {
        let links = parse(r#"garbage, <a>; rel="prev"; rel="next", <b> junk; rel="next""#);
        assert_eq!(links.len(), 2);
        assert_eq!(rels(&links[0]), ["prev"]);
        assert_eq!(links[1].target, "b");
        assert_eq!(rels(&links[1]), ["next"]);
    }

    #[test]
    fn a_chain_may_not_loop_or_run_past_the_page_cap() {
        let page =
            |n: u64| Url::parse(&format!("https://a.example/api/employees?page={n}")).unwrap();
        let mut visited = HashSet::from([page(1)]);
        assert_eq!(check_next(&mut visited, 1, &page(2)), Ok(()));
        let e = check_next(&mut visited, 2, &page(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("after page 2 points back"), "{e}");
        let e = check_next(&mut visited, MAX_LIST_PAGES, &page(99_999))
            .unwrap_err()
            .to_string();
        assert!(e.contains("after 20000 pages"), "{e}");
    }

    #[test]
    fn next_link_resolves_relative_targets_across_headers() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(r#"</api/employees?page=1>; rel="prev""#),
        );
        h.append(
            LINK,
            HeaderValue::from_static(r#"<employees?page=3>; rel="next""#),
        );
        let base = Url::parse("https://acme.freshteam.com/api/employees?page=2").unwrap();
        assert_eq!(
            next_link(&h, &base).unwrap().as_str(),
            "https://acme.freshteam.com/api/employees?page=3"
        );
        let mut none = HeaderMap::new();
        none.append(LINK, HeaderValue::from_static(r#"</x>; rel="prev""#));
        assert!(next_link(&none, &base).is_none());
        assert!(next_link(&HeaderMap::new(), &base).is_none());
    }
}
