//! A credential that never prints itself.

use std::fmt;

/// An API key, token or password. `Debug` and `Display` print `[redacted]`, so a secret
/// can't leak through a log line, an error or a report by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }
    /// The value itself, for the one place that needs it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Secrets shorter than this are replaced only where they stand alone (not inside a
/// word): a one-letter token would otherwise turn "Not Implemented" into noise.
pub const SHORT_SECRET: usize = 8;

impl SecretString {
    /// `text` with every occurrence of the secret replaced by `[redacted]`. Call it before
    /// cutting text short, so that a secret straddling the cut is still caught whole.
    pub fn scrub(&self, text: &str) -> String {
        let secret = self.0.trim();
        if secret.is_empty() {
            return text.to_string();
        }
        if secret.chars().count() >= SHORT_SECRET {
            return text.replace(secret, "[redacted]");
        }
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut before: Option<char> = None;
        while let Some(at) = rest.find(secret) {
            let head = &rest[..at];
            let prev = head.chars().next_back().or(before);
            let tail = &rest[at + secret.len()..];
            out.push_str(head);
            if word(prev) || word(tail.chars().next()) {
                out.push_str(secret);
            } else {
                out.push_str("[redacted]");
            }
            before = secret.chars().next_back();
            rest = tail;
        }
        out.push_str(rest);
        out
    }
}

/// [`SecretString::scrub`] for a secret that may be absent (an SMTP relay without a login).
pub fn scrub_optional(secret: Option<&SecretString>, text: &str) -> String {
    match secret {
        Some(secret) => secret.scrub(text),
        None => text.to_string(),
    }
}

/// [`SecretString::scrub`], then cut to at most `max_bytes` bytes on a character boundary,
/// with `…` when something was cut: the scrubbing comes first so that a secret straddling
/// the cut is still caught whole.
pub fn scrub_within(secret: &SecretString, text: &str, max_bytes: usize) -> String {
    let mut text = secret.scrub(text);
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `text` cut to at most `max` characters, with `…` when something was cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn scrubbing_catches_long_secrets_anywhere_and_short_ones_only_alone() {
        let long = SecretString::new(" k3y-0123456789 ");
        assert_eq!(
            long.scrub("bad key k3y-0123456789, again:k3y-0123456789"),
            "bad key [redacted], again:[redacted]"
        );
        let short = SecretString::new("t");
        assert_eq!(
            short.scrub("Not Implemented: token t was refused (t)"),
            "Not Implemented: token [redacted] was refused ([redacted])"
        );
        let short = SecretString::new("ab1");
        assert_eq!(short.scrub("ab1ab1 x ab1"), "ab1ab1 x [redacted]");
        assert_eq!(SecretString::new("").scrub("as is"), "as is");
    }

    #[test]
    fn redaction_comes_before_truncation() {
        let key = SecretString::new("ft-secret-key-123456");
        let text = format!("{}{}", "x".repeat(495), key.expose());
        // Cut first, the key's first five characters would survive.
        let shown = truncate_chars(&key.scrub(&text), 500);
        assert!(!shown.contains("ft-se"), "{shown}");
        assert_eq!(truncate_chars("héllo", 3), "hél…");
        assert_eq!(truncate_chars("hé", 3), "hé");
    }

    #[test]
    fn scrubbing_within_a_limit_scrubs_before_cutting_on_a_character_boundary() {
        let key = SecretString::new("k3y-0123456789");
        assert_eq!(scrub_within(&key, "xxk3y-0123456789", 5), "xx[re…");
        assert_eq!(scrub_within(&key, "ééé", 3), "é…");
        assert_eq!(scrub_within(&key, "short", 400), "short");
        assert_eq!(scrub_optional(None, "k3y-0123456789"), "k3y-0123456789");
        assert_eq!(scrub_optional(Some(&key), "k3y-0123456789"), "[redacted]");
    }
}
