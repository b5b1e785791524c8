//! The `freshteam-simulator` binary: the flags the operator's former `simulate`
//! subcommand took, and a running simulator answering them. (Being an integration test,
//! this file also makes `cargo test --workspace` build the binary before any test runs,
//! which the operator's e2e harness and demo test start.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_freshteam-simulator");

#[test]
fn help_lists_the_simulate_flags() {
    let out = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--port",
        "--bind",
        "--employees",
        "--page-size",
        "--api-key",
        "--seed",
        "--rate-limit",
        "--window-ms",
        "--fail-every",
        "--latency-ms",
        "--permissive-list",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(
        help.starts_with("Serve a Freshteam API simulator"),
        "{help}"
    );
}

/// Started as the demo starts it, it says where it listens (never the key) and serves the
/// generated employees to that key only.
#[test]
fn the_binary_serves_the_api_until_killed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = Command::new(BINARY)
        .args(["--port", &port.to_string(), "--employees", "7"])
        .env("SIM_API_KEY", "binary-test-key")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains(&format!(
            "Freshteam simulator: 7 employees at http://127.0.0.1:{port}/api"
        )),
        "{line}"
    );
    assert!(!line.contains("binary-test-key"), "{line}");
    let get = |key: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                write!(
                    s,
                    "GET /api/employees HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
                )
                .unwrap();
                let mut answer = String::new();
                s.read_to_string(&mut answer).unwrap();
                return answer;
            }
            assert!(Instant::now() < deadline, "the simulator never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let ok = get("binary-test-key");
    assert!(ok.starts_with("HTTP/1.0 200"), "{ok}");
    assert!(ok.to_ascii_lowercase().contains("total-objects: 7"), "{ok}");
    let refused = get("another-key");
    assert!(refused.starts_with("HTTP/1.0 401"), "{refused}");
    child.kill().unwrap();
    child.wait().unwrap();
}
