//! A real SMTP server for tests: `aiosmtpd` (PyPI, in `.venv`, see scripts/setup-peers)
//! storing every message in a Maildir that the tests read back.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};

/// A scripted peer built on aiosmtpd's `Mailbox` handler: optional AUTH (`user:password`),
/// and recipients whose local part starts with `reject-` (RCPT 550), `defer-` (RCPT 451) or
/// `drop-` (stored, then the connection is closed before the reply to the content).
const SCRIPTED_PEER: &str = r#"
import sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir = int(sys.argv[1]), sys.argv[2]
user, _, password = (sys.argv[3] if len(sys.argv) > 3 else "").partition(":")

class Handler(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject-"):
            return "550 5.1.1 no such user"
        if address.startswith("defer-"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        if any(r.startswith("drop-") for r in envelope.rcpt_tos):
            server.transport.close()
        return reply

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == user and auth_data.password.decode() == password)
    return AuthResult(success=ok, handled=False)

kwargs = {}
if user:
    kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
controller = Controller(Handler(maildir), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
threading.Event().wait()
"#;

/// One stored message.
#[derive(Clone, Debug, Default)]
pub struct ParsedMail {
    pub from: String,
    /// `To:` addresses.
    pub to: Vec<String>,
    /// Envelope recipients (`X-RcptTo`, added by aiosmtpd).
    pub rcpt_to: Vec<String>,
    pub subject: String,
    pub message_id: Option<String>,
    pub auto_submitted: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// (file name, content)
    pub attachments: Vec<(String, Vec<u8>)>,
}

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

pub use super::free_port;

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup-peers",
        venv.display()
    );
    venv
}

impl SmtpServer {
    /// `python -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR` on a free
    /// port.
    pub fn start() -> SmtpServer {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> SmtpServer {
        Self::spawn(port, |cmd, maildir| {
            cmd.args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir);
        })
    }

    /// The scripted peer (see `SCRIPTED_PEER`), with AUTH when `auth` is `user:password`.
    pub fn start_scripted(auth: Option<&str>) -> SmtpServer {
        let port = free_port();
        Self::spawn(port, |cmd, maildir| {
            cmd.args(["-c", SCRIPTED_PEER])
                .arg(port.to_string())
                .arg(maildir);
            if let Some(a) = auth {
                cmd.arg(a);
            }
        })
    }

    fn spawn(port: u16, args: impl FnOnce(&mut Command, &Path)) -> SmtpServer {
        let dir = tempfile::tempdir().expect("tempdir");
        // aiosmtpd creates the Maildir only if it does not exist yet.
        let maildir = dir.path().join("maildir");
        let mut cmd = Command::new(python());
        args(&mut cmd, &maildir);
        let child = cmd
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let mut server = SmtpServer {
            child,
            port,
            maildir,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("aiosmtpd exited at start: {status}");
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                let mut greeting = String::new();
                if BufReader::new(&stream).read_line(&mut greeting).is_ok()
                    && greeting.starts_with("220")
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Files in the Maildir (`new` and `cur`).
    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                files.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
        files
    }

    pub fn count(&self) -> usize {
        self.files().len()
    }

    /// Every stored message (Maildir order is not arrival order).
    pub fn messages(&self) -> Vec<ParsedMail> {
        self.files()
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path).expect("read a stored message");
                parse(&bytes).unwrap_or_else(|| panic!("{} is not a message", path.display()))
            })
            .collect()
    }

    /// Waits until at least `n` messages are stored.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ParsedMail> {
        let deadline = Instant::now() + timeout;
        while self.count() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.messages()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(bytes: &[u8]) -> Option<ParsedMail> {
    let m = MessageParser::default().parse(bytes)?;
    let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    };
    let text = m
        .text_bodies()
        .find(|p| p.is_text() && !p.is_text_html())
        .and_then(|p| p.text_contents().map(str::to_string));
    let html = m
        .html_bodies()
        .find(|p| p.is_text_html())
        .and_then(|p| p.text_contents().map(str::to_string));
    let attachments = m
        .attachments()
        .map(|p| {
            (
                p.attachment_name().unwrap_or("").to_string(),
                p.contents().to_vec(),
            )
        })
        .collect();
    let rcpt_to = m
        .header_raw("X-RcptTo")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Some(ParsedMail {
        from: addresses(m.from()).join(","),
        to: addresses(m.to()),
        rcpt_to,
        subject: m.subject().unwrap_or("").to_string(),
        message_id: m.message_id().map(str::to_string),
        auto_submitted: m.header_raw("Auto-Submitted").map(|v| v.trim().to_string()),
        text,
        html,
        attachments,
    })
}
