//! A free local port, shared by the tests and the benches (which include this file by
//! path).

use std::net::TcpListener;

/// A port nothing listens on (at the time of the call).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}
