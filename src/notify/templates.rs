//! Invitation templates: built-in defaults, overridable by a directory (CLI) or a
//! ConfigMap's data (operator) holding `invitation.subject`, `invitation.txt` and
//! `invitation.html`.
//!
//! The syntax is a small subset of Mustache: `{{name}}` inserts a value (HTML-escaped in
//! the HTML body), `{{#name}}…{{/name}}` keeps its content only when the value is not
//! empty and `{{^name}}…{{/name}}` only when it is. A line holding nothing but a section
//! tag disappears entirely, so sections can sit on lines of their own. Placeholders:
//! `first_name`, `email`, `login_url`, `integration`.

use std::collections::BTreeMap;
use std::path::Path;

const SUBJECT_FILE: &str = "invitation.subject";
const TEXT_FILE: &str = "invitation.txt";
const HTML_FILE: &str = "invitation.html";
const KNOWN_FILES: [&str; 3] = [SUBJECT_FILE, TEXT_FILE, HTML_FILE];

const DEFAULT_SUBJECT: &str = include_str!("templates/invitation.subject");
const DEFAULT_TEXT: &str = include_str!("templates/invitation.txt");
const DEFAULT_HTML: &str = include_str!("templates/invitation.html");

/// The values an invitation is rendered with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvitationVars {
    /// Unknown or blank → the greeting reads "Hello," instead of "Hello Ann,".
    pub first_name: Option<String>,
    pub email: String,
    /// `spec.welcomeEmail.loginUrl`.
    pub login_url: Option<String>,
    /// The integration's name.
    pub integration: String,
}

impl InvitationVars {
    fn get(&self, var: Var) -> &str {
        match var {
            Var::FirstName => self.first_name.as_deref().map(str::trim).unwrap_or(""),
            Var::Email => self.email.trim(),
            Var::LoginUrl => self.login_url.as_deref().map(str::trim).unwrap_or(""),
            Var::Integration => self.integration.trim(),
        }
    }
}

/// A rendered invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// The invitation's subject, text body and (optional) HTML body.
#[derive(Clone, Debug, PartialEq)]
pub struct Templates {
    subject: Template,
    text: Template,
    html: Option<Template>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            subject: Template::parse(SUBJECT_FILE, DEFAULT_SUBJECT).expect("built-in subject"),
            text: Template::parse(TEXT_FILE, DEFAULT_TEXT).expect("built-in text"),
            html: Some(Template::parse(HTML_FILE, DEFAULT_HTML).expect("built-in HTML")),
        }
    }
}

/// Why custom invitation templates cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template directory {dir}: {reason}")]
    Dir { dir: String, reason: std::io::Error },
    #[error("{path}: {reason}")]
    Read {
        path: String,
        reason: std::io::Error,
    },
    #[error("{origin}/{file}: unknown template file (expected {})", KNOWN_FILES.join(", "))]
    UnknownFile { origin: String, file: String },
    #[error("{origin}/{file} is empty")]
    Empty { origin: String, file: &'static str },
    #[error("{origin}/{error}")]
    Syntax { origin: String, error: SyntaxError },
}

/// A template that does not parse: the file, the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line}: {problem}")]
pub struct SyntaxError {
    file: String,
    line: usize,
    problem: String,
}

impl Templates {
    /// Reads overrides from a directory (the CLI's template directory, or a mounted
    /// ConfigMap: hidden entries such as `..data` are ignored).
    pub fn load_dir(dir: &Path) -> Result<Templates, TemplateError> {
        let dir_err = |reason| TemplateError::Dir {
            dir: dir.display().to_string(),
            reason,
        };
        let entries = std::fs::read_dir(dir).map_err(dir_err)?;
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            // `metadata` follows symlinks, as a mounted ConfigMap consists of them.
            if !std::fs::metadata(&path)
                .map(|m| m.is_file())
                .unwrap_or(false)
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|reason| TemplateError::Read {
                path: path.display().to_string(),
                reason,
            })?;
            files.insert(name, text);
        }
        Templates::from_files(&files, &dir.display().to_string())
    }

    /// Overrides from file name → content (a ConfigMap's `data`). `origin` names the
    /// directory or ConfigMap in error messages. Missing files keep the defaults, except
    /// that a custom `invitation.txt` without an `invitation.html` sends text only (a
    /// default HTML body would hide the custom text in most mail clients); an empty
    /// `invitation.html` also means text only.
    pub fn from_files(
        files: &BTreeMap<String, String>,
        origin: &str,
    ) -> Result<Templates, TemplateError> {
        if let Some(unknown) = files.keys().find(|k| !KNOWN_FILES.contains(&k.as_str())) {
            return Err(TemplateError::UnknownFile {
                origin: origin.into(),
                file: unknown.clone(),
            });
        }
        let mut templates = Templates::default();
        let parse = |name: &str, text: &str| {
            Template::parse(name, text).map_err(|error| TemplateError::Syntax {
                origin: origin.into(),
                error,
            })
        };
        let empty = |file| TemplateError::Empty {
            origin: origin.into(),
            file,
        };
        if let Some(text) = files.get(SUBJECT_FILE) {
            if text.trim().is_empty() {
                return Err(empty(SUBJECT_FILE));
            }
            templates.subject = parse(SUBJECT_FILE, text)?;
        }
        if let Some(text) = files.get(TEXT_FILE) {
            if text.trim().is_empty() {
                return Err(empty(TEXT_FILE));
            }
            templates.text = parse(TEXT_FILE, text)?;
            templates.html = None;
        }
        if let Some(text) = files.get(HTML_FILE) {
            templates.html = if text.trim().is_empty() {
                None
            } else {
                Some(parse(HTML_FILE, text)?)
            };
        }
        Ok(templates)
    }

    /// Renders one invitation.
    pub fn invitation(&self, vars: &InvitationVars) -> RenderedMail {
        let subject = self.subject.render(vars, Escape::Header);
        RenderedMail {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: self.text.render(vars, Escape::None),
            html: self.html.as_ref().map(|h| h.render(vars, Escape::Html)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    FirstName,
    Email,
    LoginUrl,
    Integration,
}

impl Var {
    const NAMES: &'static str = "first_name, email, login_url, integration";

    fn from_name(name: &str) -> Option<Var> {
        match name {
            "first_name" => Some(Var::FirstName),
            "email" => Some(Var::Email),
            "login_url" => Some(Var::LoginUrl),
            "integration" => Some(Var::Integration),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Var(Var),
    Section {
        var: Var,
        inverted: bool,
        body: Vec<Node>,
    },
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    Html,
    /// Header values: no line breaks (no header injection).
    Header,
}

#[derive(Clone, Debug, PartialEq)]
struct Template {
    nodes: Vec<Node>,
}

enum Tag {
    Var(Var),
    Open(Var, bool),
    Close(Var),
}

/// An open section while parsing: (var, inverted, line, nodes before it).
type Frame = (Var, bool, usize, Vec<Node>);

impl Template {
    /// Parses `source`; errors start with `name` and give the line.
    fn parse(name: &str, source: &str) -> Result<Template, SyntaxError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        for (i, line) in source.split_inclusive('\n').enumerate() {
            let line_no = i + 1;
            let err = |problem: String| SyntaxError {
                file: name.into(),
                line: line_no,
                problem,
            };
            let tag_of = |inner: &str| -> Result<Tag, SyntaxError> {
                let inner = inner.trim();
                let (kind, var_name) = match inner.chars().next() {
                    Some(c @ ('#' | '^' | '/')) => (Some(c), inner[1..].trim()),
                    _ => (None, inner),
                };
                let var = Var::from_name(var_name).ok_or_else(|| {
                    err(format!(
                        "unknown placeholder {{{{{inner}}}}} (known: {})",
                        Var::NAMES
                    ))
                })?;
                Ok(match kind {
                    Some('#') => Tag::Open(var, false),
                    Some('^') => Tag::Open(var, true),
                    Some(_) => Tag::Close(var),
                    None => Tag::Var(var),
                })
            };
            let apply = |tag: Tag,
                         nodes: &mut Vec<Node>,
                         stack: &mut Vec<Frame>|
             -> Result<(), SyntaxError> {
                match tag {
                    Tag::Var(v) => nodes.push(Node::Var(v)),
                    Tag::Open(v, inverted) => {
                        stack.push((v, inverted, line_no, std::mem::take(nodes)));
                    }
                    Tag::Close(v) => match stack.pop() {
                        Some((open, inverted, _, outer)) if open == v => {
                            let body = std::mem::replace(nodes, outer);
                            nodes.push(Node::Section {
                                var: v,
                                inverted,
                                body,
                            });
                        }
                        _ => return Err(err("a section is closed that was not opened".into())),
                    },
                }
                Ok(())
            };

            // A line that is only a section tag vanishes with its line break.
            let trimmed = line.trim();
            if trimmed.starts_with("{{")
                && trimmed.ends_with("}}")
                && trimmed.matches("{{").count() == 1
                && matches!(
                    trimmed[2..].trim_start().chars().next(),
                    Some('#' | '^' | '/')
                )
            {
                let tag = tag_of(&trimmed[2..trimmed.len() - 2])?;
                apply(tag, &mut nodes, &mut stack)?;
                continue;
            }

            let mut rest = line;
            while let Some(start) = rest.find("{{") {
                if start > 0 {
                    nodes.push(Node::Text(rest[..start].to_string()));
                }
                let after = &rest[start + 2..];
                let end = after
                    .find("}}")
                    .ok_or_else(|| err("'{{' without a closing '}}'".into()))?;
                let tag = tag_of(&after[..end])?;
                apply(tag, &mut nodes, &mut stack)?;
                rest = &after[end + 2..];
            }
            if !rest.is_empty() {
                nodes.push(Node::Text(rest.to_string()));
            }
        }
        if let Some((_, _, line, _)) = stack.last() {
            return Err(SyntaxError {
                file: name.into(),
                line: *line,
                problem: "a section is opened and never closed".into(),
            });
        }
        Ok(Template { nodes })
    }

    fn render(&self, vars: &InvitationVars, escape: Escape) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, vars, escape, &mut out);
        out
    }
}

fn render_nodes(nodes: &[Node], vars: &InvitationVars, escape: Escape, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Var(v) => {
                let value = vars.get(*v);
                match escape {
                    Escape::None => out.push_str(value),
                    Escape::Html => out.push_str(&html_escape(value)),
                    Escape::Header => out.push_str(&value.replace(['\r', '\n'], " ")),
                }
            }
            Node::Section {
                var,
                inverted,
                body,
            } => {
                if vars.get(*var).is_empty() == *inverted {
                    render_nodes(body, vars, escape, out);
                }
            }
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(first: Option<&str>, url: Option<&str>) -> InvitationVars {
        InvitationVars {
            first_name: first.map(str::to_string),
            email: "ann@acme.example".into(),
            login_url: url.map(str::to_string),
            integration: "acme".into(),
        }
    }

    #[test]
    fn the_default_greets_by_first_name_and_carries_the_login_url() {
        let m = Templates::default().invitation(&vars(
            Some("Ann"),
            Some("https://rewards.example.com/activate?a=1&b=2"),
        ));
        assert_eq!(m.subject, "Your rewards account is ready");
        assert!(m.text.starts_with("Hello Ann,\n\n"), "{}", m.text);
        assert!(m
            .text
            .contains("\n    https://rewards.example.com/activate?a=1&b=2\n"));
        assert!(!m.text.contains("HR team"), "{}", m.text);
        assert!(!m.text.contains("{{"));
        let html = m.html.unwrap();
        assert!(html.contains("<p>Hello Ann,</p>"));
        assert!(html.contains(r#"href="https://rewards.example.com/activate?a=1&amp;b=2""#));
        assert!(!html.contains("{{"));
    }

    #[test]
    fn the_greeting_reads_well_without_a_first_name_or_login_url() {
        for first in [None, Some(""), Some("  ")] {
            let m = Templates::default().invitation(&vars(first, None));
            assert!(m.text.starts_with("Hello,\n\n"), "{}", m.text);
            assert!(m
                .text
                .contains("Your HR team will tell you how to sign in."));
            assert!(!m.text.contains("Activate it here"));
            assert!(m.html.unwrap().contains("<p>Hello,</p>"));
        }
    }

    #[test]
    fn values_are_escaped_in_html_and_kept_on_one_line_in_the_subject() {
        let t = Templates::from_files(
            &BTreeMap::from([
                (
                    "invitation.subject".to_string(),
                    "Hi {{first_name}}".to_string(),
                ),
                (
                    "invitation.html".to_string(),
                    "<b>{{first_name}}</b>".to_string(),
                ),
            ]),
            "cm",
        )
        .unwrap();
        let m = t.invitation(&vars(Some("<Zoë & \"Bo\">\r\nBcc: x@evil"), None));
        assert_eq!(m.subject, "Hi <Zoë & \"Bo\"> Bcc: x@evil");
        assert_eq!(
            m.html.unwrap(),
            "<b>&lt;Zoë &amp; &quot;Bo&quot;&gt;\r\nBcc: x@evil</b>"
        );
        // The default text body is kept for a custom HTML body.
        assert!(m.text.starts_with("Hello <Zoë"));
    }

    #[test]
    fn sections_on_their_own_lines_leave_no_blank_lines() {
        let t = Template::parse(
            "t",
            "a\n{{#login_url}}\nurl: {{login_url}}\n{{/login_url}}\nb\n",
        )
        .unwrap();
        assert_eq!(
            t.render(&vars(None, Some("U")), Escape::None),
            "a\nurl: U\nb\n"
        );
        assert_eq!(t.render(&vars(None, None), Escape::None), "a\nb\n");
        let t = Template::parse("t", "x{{^first_name}}-{{/first_name}}y").unwrap();
        assert_eq!(t.render(&vars(None, None), Escape::None), "x-y");
        assert_eq!(t.render(&vars(Some("A"), None), Escape::None), "xy");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            (
                "invitation.txt",
                "Hi\n{{frist_name}}",
                "cm/invitation.txt: line 2: unknown placeholder {{frist_name}}",
            ),
            (
                "invitation.html",
                "{{#email}}x",
                "cm/invitation.html: line 1: a section is opened and never closed",
            ),
            (
                "invitation.html",
                "{{/email}}",
                "cm/invitation.html: line 1: a section is closed",
            ),
            (
                "invitation.subject",
                "Hi {{email",
                "cm/invitation.subject: line 1: '{{' without",
            ),
            (
                "invitation.subject",
                " \n",
                "cm/invitation.subject is empty",
            ),
            (
                "invitation.htm",
                "x",
                "cm/invitation.htm: unknown template file",
            ),
        ];
        for (file, text, expected) in cases {
            let err = Templates::from_files(
                &BTreeMap::from([(file.to_string(), text.to_string())]),
                "cm",
            )
            .unwrap_err()
            .to_string();
            assert!(err.starts_with(expected), "{file}: {err}");
        }
    }

    #[test]
    fn a_custom_text_alone_sends_text_only_and_missing_files_keep_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("invitation.txt"),
            "Welcome {{first_name}}!\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden"), "ignored").unwrap();
        let t = Templates::load_dir(dir.path()).unwrap();
        let m = t.invitation(&vars(Some("Ann"), None));
        assert_eq!(m.text, "Welcome Ann!\n");
        assert_eq!(m.html, None);
        assert_eq!(m.subject, "Your rewards account is ready");

        let err = Templates::load_dir(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
