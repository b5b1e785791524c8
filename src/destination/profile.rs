//! Destination profiles (`spec.destination.scim.profile`): a service's published member
//! validation, checked before anything is sent. Pure: no I/O.
//!
//! `Generic` checks nothing beyond RFC 7643. `RewardGateway` applies Reward Gateway's
//! published rules (its "Membership Data Validation" article):
//! - first and last name: 1–50 characters, Unicode letters, white space, hyphens, dots
//!   and apostrophes (`'` and `’`) only. Their check is the PCRE
//!   `/[^\p{L}'’\-\s\.]/ui` matching any forbidden character; PHP's `u` also turns on
//!   Unicode `\s` (`\p{Z}`, `\h`, `\v`), and a combining accent (`\p{M}`) is not a letter.
//! - e-mail: 1–200 characters, no `<` or `>`, and an address PHP's
//!   `FILTER_VALIDATE_EMAIL` takes (without flags: ASCII only; a dot-atom or quoted local
//!   part of at most 64 characters; a host name of at least two labels whose last starts
//!   with a letter, or an address literal).
//!
//! Address lines have rules too (1–80 / 1–50 / 1–50 characters, no `<` or `>`), but no
//! member field maps to them.

use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use crate::api::ScimProfile;
use crate::member::{Attr, AttrSet, MemberFields};

/// Longest first or last name Reward Gateway takes.
const RG_NAME_MAX: usize = 50;
/// Longest e-mail address Reward Gateway takes.
const RG_EMAIL_MAX: usize = 200;

/// One characters Reward Gateway's name check refuses (see the module docs).
static RG_NAME_FORBIDDEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[^\p{L}'’\-\s.\x{180E}]").expect("a valid pattern"));

/// A member field the profile refuses, with the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldRefusal {
    pub(crate) attr: Attr,
    /// The rule and what in the value breaks it.
    pub(crate) message: String,
}

/// The fields of `member` (those in `managed`) that `profile` refuses, in field order.
pub(crate) fn check_member(
    profile: ScimProfile,
    member: &impl MemberFields,
    managed: AttrSet,
) -> Vec<FieldRefusal> {
    match profile {
        ScimProfile::Generic => Vec::new(),
        ScimProfile::RewardGateway => reward_gateway(member, managed),
    }
}

fn reward_gateway(member: &impl MemberFields, managed: AttrSet) -> Vec<FieldRefusal> {
    let mut refused = Vec::new();
    for attr in [Attr::FirstName, Attr::LastName, Attr::Email] {
        if !managed.contains(attr) {
            continue;
        }
        let Some(value) = member.field(attr).filter(|v| !v.is_empty()) else {
            continue;
        };
        let message = match attr {
            Attr::Email => rg_email(value),
            _ => rg_name(attr, value),
        };
        if let Some(message) = message {
            refused.push(FieldRefusal { attr, message });
        }
    }
    refused
}

/// Reward Gateway's rule for a first or last name; `None` when it takes it.
fn rg_name(attr: Attr, value: &str) -> Option<String> {
    let what = match attr {
        Attr::LastName => "last names",
        _ => "first names",
    };
    let mut bad: Vec<char> = RG_NAME_FORBIDDEN
        .find_iter(value)
        .flat_map(|m| m.as_str().chars())
        .collect();
    bad.dedup();
    let mut seen = Vec::new();
    bad.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    if !bad.is_empty() {
        let listed: Vec<String> = bad.iter().map(|c| show_char(*c)).collect();
        return Some(format!(
            "Reward Gateway refuses {what} with characters other than letters, spaces, hyphens, dots and apostrophes: \"{value}\" has {}",
            listed.join(", ")
        ));
    }
    let length = value.chars().count();
    (length > RG_NAME_MAX).then(|| {
        format!(
            "Reward Gateway refuses {what} longer than {RG_NAME_MAX} characters: \"{value}\" has {length}"
        )
    })
}

/// A character as a message shows it: quoted, or its code point when it cannot be seen
/// (a control, a format character, a combining mark on its own).
fn show_char(c: char) -> String {
    let invisible = c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
        || matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{20D0}'..='\u{20FF}');
    if invisible {
        let mut s = String::new();
        let _ = write!(s, "U+{:04X}", c as u32);
        s
    } else {
        format!("\"{c}\"")
    }
}

/// Reward Gateway's rule for an e-mail address; `None` when it takes it.
fn rg_email(value: &str) -> Option<String> {
    let length = value.chars().count();
    let why = if length > RG_EMAIL_MAX {
        format!("longer than {RG_EMAIL_MAX} characters ({length})")
    } else if value.contains(['<', '>']) {
        "has < or >".to_string()
    } else if let Some(c) = value.chars().find(|c| !c.is_ascii()) {
        format!(
            "has {}: their check (PHP FILTER_VALIDATE_EMAIL) takes ASCII addresses only",
            show_char(c)
        )
    } else {
        php_email_problem(value)?.to_string()
    };
    Some(format!(
        "Reward Gateway refuses this e-mail address: \"{value}\" {why}"
    ))
}

/// Characters of an unquoted local part (RFC 5322 `atext`).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Why PHP's `FILTER_VALIDATE_EMAIL` (no flags) refuses an ASCII address; `None` when
/// it takes it.
fn php_email_problem(email: &str) -> Option<&'static str> {
    let bytes = email.as_bytes();
    if bytes.len() > 254 {
        return Some("is not a valid address (longer than 254 characters)");
    }
    let Some(at) = local_part_end(bytes) else {
        return Some(
            "is not a valid address (the part before @ is not a valid dot-atom or quoted string)",
        );
    };
    if at > 64 {
        return Some("is not a valid address (the part before @ is longer than 64 characters)");
    }
    if bytes.get(at) != Some(&b'@') {
        return Some("is not a valid address (no @ after the part before it)");
    }
    let domain = &email[at + 1..];
    if domain.starts_with('[') {
        return (!address_literal(domain)).then_some(
            "is not a valid address (the address literal after @ is not an IP address)",
        );
    }
    domain_problem(domain)
}

/// The end of a valid local part (dot-separated atoms or quoted strings), if it is one.
fn local_part_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match *b.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        if !b.get(i + 1)?.is_ascii() {
                            return None;
                        }
                        i += 2;
                    }
                    0x01..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F | 0x21 | 0x23..=0x5B | 0x5D..=0x7F => {
                        i += 1
                    }
                    _ => return None,
                }
            }
            i += 1;
        } else {
            let start = i;
            while b.get(i).is_some_and(|c| is_atext(*c)) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some(i);
        }
    }
}

/// PHP's host-name rule: labels of letters and digits with inner hyphens (an `xn--`
/// prefix allowed), at least two, none of 64 characters or more, the last starting
/// with a letter (or an `xn--` label).
fn domain_problem(domain: &str) -> Option<&'static str> {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Some("is not a valid address (the domain after @ needs a dot)");
    }
    if labels.iter().any(|l| l.len() >= 64) {
        return Some("is not a valid address (a domain label is 64 characters or longer)");
    }
    let label_ok = |l: &str| {
        let l = l.to_ascii_lowercase();
        let body = l.strip_prefix("xn--").unwrap_or(&l);
        !body.is_empty()
            && !body.starts_with('-')
            && !body.ends_with('-')
            && body.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    };
    if !labels.iter().all(|l| label_ok(l)) {
        return Some("is not a valid address (the domain after @ is not a valid host name)");
    }
    let last = labels[labels.len() - 1].to_ascii_lowercase();
    if !(last.starts_with("xn--") || last.starts_with(|c: char| c.is_ascii_alphabetic())) {
        return Some(
            "is not a valid address (the last part of the domain must start with a letter)",
        );
    }
    None
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn address_literal(domain: &str) -> bool {
    let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Member;

    fn name(v: &str) -> Option<String> {
        rg_name(Attr::FirstName, v)
    }

    #[test]
    fn names_reward_gateway_takes() {
        for ok in [
            "Anne-Marie",
            "O’Brien",
            "O'Brien",
            "St. John",
            "Van der Berg",
            "François",
            "Łukasz",
            "Zoë",
            "José",
            "Bjørn",
            "王小明",
            "さくら",
            "Ølga\u{00A0}Nansen",
            "Ab",
            &"a".repeat(50),
        ] {
            assert_eq!(name(ok), None, "{ok}");
        }
    }

    #[test]
    fn names_reward_gateway_refuses_name_the_rule_and_the_characters() {
        assert_eq!(
            name("R2-D2").unwrap(),
            "Reward Gateway refuses first names with characters other than letters, spaces, hyphens, dots and apostrophes: \"R2-D2\" has \"2\""
        );
        assert!(rg_name(Attr::LastName, "<b>Bob</b>")
            .unwrap()
            .starts_with("Reward Gateway refuses last names with characters"));
        assert!(name("<b>Bob</b>")
            .unwrap()
            .ends_with("has \"<\", \">\", \"/\""));
        assert!(name("Ann 😀").unwrap().ends_with("has \"😀\""));
        assert!(name("Ann_Lee").unwrap().ends_with("has \"_\""));
        assert!(name("Ann, Lee").unwrap().ends_with("has \",\""));
        assert!(name("Ann\u{200B}").unwrap().ends_with("has U+200B"));
        // A decomposed accent is a mark, not a letter: their check refuses it too.
        assert!(name("Jose\u{0301}").unwrap().ends_with("has U+0301"));
        let long = "a".repeat(51);
        assert_eq!(
            name(&long).unwrap(),
            format!(
                "Reward Gateway refuses first names longer than 50 characters: \"{long}\" has 51"
            )
        );
        // Characters, not bytes: 50 two-byte letters pass.
        assert_eq!(name(&"é".repeat(50)), None);
    }

    #[test]
    fn emails_as_php_filter_validate_email_takes_them() {
        for ok in [
            "ada@example.com",
            "ada.lovelace+tag@mail.example.co.uk",
            "o'brien@example.com",
            "\"ada@home\"@example.com",
            "ada@[192.0.2.1]",
            "ada@[IPv6:2001:db8::1]",
            "ada@xn--bcher-kva.example",
            "a-b@ex-ample.com",
        ] {
            assert_eq!(rg_email(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("ada@localhost", "needs a dot"),
            ("ada..l@example.com", "dot-atom"),
            (".ada@example.com", "dot-atom"),
            ("ada@example.123", "start with a letter"),
            ("ada@-example.com", "host name"),
            ("ada@exa_mple.com", "host name"),
            ("ada lovelace@example.com", "no @"),
            // PHP's quoted strings take no unescaped space.
            ("\"ada lovelace\"@example.com", "quoted string"),
            ("josé@example.com", "ASCII addresses only"),
            ("ada@exämple.com", "ASCII addresses only"),
            ("<ada@example.com>", "has < or >"),
            ("ada@[300.1.1.1]", "address literal"),
        ] {
            let message = rg_email(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(message.contains(why), "{bad}: {message}");
            assert!(message.starts_with("Reward Gateway refuses this e-mail address: \""));
        }
        let local = "a".repeat(65);
        assert!(rg_email(&format!("{local}@example.com"))
            .unwrap()
            .contains("longer than 64"));
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(140));
        assert_eq!(long.len(), 205);
        assert!(rg_email(&long)
            .unwrap()
            .contains("longer than 200 characters (205)"));
    }

    #[test]
    fn only_managed_fields_are_checked_and_generic_checks_nothing() {
        let m = Member {
            employee_id: "E1".into(),
            email: "ada@example.com".into(),
            first_name: Some("R2-D2".into()),
            last_name: Some("C-3PO".into()),
            job_title: Some("Droid #1".into()),
            active: true,
            ..Member::default()
        };
        let all: AttrSet = Attr::ALL.into_iter().collect();
        let refused = check_member(ScimProfile::RewardGateway, &m, all);
        let attrs: Vec<Attr> = refused.iter().map(|r| r.attr).collect();
        assert_eq!(attrs, vec![Attr::FirstName, Attr::LastName]);
        let only_email: AttrSet = [Attr::Email].into_iter().collect();
        assert!(check_member(ScimProfile::RewardGateway, &m, only_email).is_empty());
        assert!(check_member(ScimProfile::Generic, &m, all).is_empty());
    }
}
