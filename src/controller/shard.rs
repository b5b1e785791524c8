//! Sharding: an operator Deployment serves only the integrations matching its label
//! selector (`--shard-selector`), the way Flux shards with `sharding.fluxcd.io/key`.

use std::collections::BTreeMap;

use kube::core::{Expression, Selector, SelectorExt};

/// The label that names an integration's shard.
pub const SHARD_LABEL: &str = "sharding.freshteam.provisioning.dev/key";

/// Why `--shard-selector` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardSelectorError {
    #[error("--shard-selector is empty")]
    Empty,
    #[error("--shard-selector '{text}': empty term")]
    EmptyTerm { text: String },
    #[error("--shard-selector '{text}': {problem}")]
    Term { text: String, problem: TermError },
}

/// What is wrong with one term of a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    #[error("'{0}' is not a label key")]
    NotAKey(String),
    #[error("'{0}' must be a list in parentheses, e.g. (s1,s2)")]
    NotAList(String),
}

/// A parsed label selector, kept with its text (sent to the API server as the watch's
/// `labelSelector`).
#[derive(Clone, Debug)]
pub struct ShardSelector {
    pub text: String,
    selector: Selector,
}

impl ShardSelector {
    /// Parses the Kubernetes label-selector syntax: `k=v`, `k==v`, `k!=v`,
    /// `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas.
    pub fn parse(text: &str) -> Result<ShardSelector, ShardSelectorError> {
        let mut expressions = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                return Err(ShardSelectorError::EmptyTerm { text: text.into() });
            }
            expressions.push(
                parse_term(term).map_err(|problem| ShardSelectorError::Term {
                    text: text.into(),
                    problem,
                })?,
            );
        }
        if expressions.is_empty() {
            return Err(ShardSelectorError::Empty);
        }
        Ok(ShardSelector {
            text: text.trim().to_string(),
            selector: expressions.into_iter().collect(),
        })
    }

    /// True when the labels are in this shard.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    terms.push(cur);
    terms
}

fn valid_key(k: &str) -> Result<String, TermError> {
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(TermError::NotAKey(k.to_string()))
    }
}

fn values(list: &str) -> Result<std::collections::BTreeSet<String>, TermError> {
    let inner = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| TermError::NotAList(list.to_string()))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_term(term: &str) -> Result<Expression, TermError> {
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Expression::NotEqual(
            valid_key(k.trim())?,
            v.trim().to_string(),
        ));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Expression::Equal(
            valid_key(k.trim())?,
            v.trim().to_string(),
        ));
    }
    let words: Vec<&str> = term.splitn(3, char::is_whitespace).collect();
    if words.len() >= 2 && (words[1] == "in" || words[1] == "notin") {
        let key = valid_key(words[0])?;
        let vals = values(words.get(2).copied().unwrap_or(""))?;
        return Ok(if words[1] == "in" {
            Expression::In(key, vals)
        } else {
            Expression::NotIn(key, vals)
        });
    }
    match term.strip_prefix('!') {
        Some(k) => Ok(Expression::DoesNotExist(valid_key(k.trim())?)),
        None => Ok(Expression::Exists(valid_key(term)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn named_and_default_shards_are_disjoint_and_cover_everything() {
        let s1 = ShardSelector::parse("sharding.freshteam.provisioning.dev/key=s1").unwrap();
        let default =
            ShardSelector::parse("sharding.freshteam.provisioning.dev/key notin (s1, s2)").unwrap();
        let cases = [
            (labels(&[(SHARD_LABEL, "s1")]), true, false),
            (labels(&[(SHARD_LABEL, "s2")]), false, false),
            (labels(&[(SHARD_LABEL, "other")]), false, true),
            (labels(&[]), false, true),
        ];
        for (l, in_s1, in_default) in cases {
            assert_eq!(s1.matches(&l), in_s1, "{l:?}");
            assert_eq!(default.matches(&l), in_default, "{l:?}");
        }
    }

    #[test]
    fn every_operator_parses() {
        let s = ShardSelector::parse("team in (a,b), env!=prod, tier, !legacy").unwrap();
        assert!(s.matches(&labels(&[("team", "a"), ("env", "dev"), ("tier", "x")])));
        assert!(!s.matches(&labels(&[("team", "a"), ("env", "prod"), ("tier", "x")])));
        assert!(!s.matches(&labels(&[("team", "a"), ("tier", "x"), ("legacy", "1")])));
        assert!(!s.matches(&labels(&[("team", "c"), ("tier", "x")])));
    }

    #[test]
    fn bad_selectors_name_the_flag() {
        for bad in ["", "a in b", "a b c", "=x", "k@y=1"] {
            let e = ShardSelector::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--shard-selector"), "{bad}: {e}");
        }
    }
}
