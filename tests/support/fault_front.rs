//! A TCP front for `scim2-server` (HTTP/1.0: one request per connection) that injects
//! faults, then passes traffic through: scripted faults for the next requests of any
//! kind or for the next writes only, and writes held back until released.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use super::ScimServer;

/// What the front does to one request.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// 503 without passing the request on.
    Unavailable,
    /// Passes the request on, then closes the connection without the answer: the write
    /// happened, the client cannot know.
    LoseAnswer,
}

#[derive(Default)]
pub struct FrontState {
    /// Faults for the next requests, whatever they are, in order.
    next: Mutex<VecDeque<Fault>>,
    /// Faults for the next write requests (POST, PATCH, PUT, DELETE), in order.
    writes_script: Mutex<VecDeque<Fault>>,
    /// With [`Front::script_writes_once_each`]: the bodies already given a fault.
    faulted: Mutex<Option<HashSet<Vec<u8>>>>,
    /// Write requests seen so far.
    pub writes: AtomicUsize,
    /// Writes with an index at or past this are held until [`Front::release`].
    hold_from: AtomicUsize,
    pub held: AtomicUsize,
    pub in_flight: AtomicUsize,
    changed: Notify,
}

impl FrontState {
    /// False for a body already given a fault, when faults go once to each body.
    fn fault_this_body(&self, request: &[u8]) -> bool {
        let mut faulted = self.faulted.lock().unwrap();
        let Some(seen) = faulted.as_mut() else {
            return true;
        };
        let body = match request.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => &request[at + 4..],
            None => request,
        };
        let scripted = !self.writes_script.lock().unwrap().is_empty();
        !scripted || seen.insert(body.to_vec())
    }
}

pub struct Front {
    pub url: String,
    state: Arc<FrontState>,
    gate: watch::Sender<bool>,
}

impl Front {
    pub async fn start(server: &ScimServer) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2", listener.local_addr().unwrap());
        let state = Arc::new(FrontState {
            hold_from: AtomicUsize::new(usize::MAX),
            ..FrontState::default()
        });
        let (gate, open) = watch::channel(true);
        let (shared, port) = (state.clone(), server.port);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (state, mut open) = (shared.clone(), open.clone());
                tokio::spawn(async move {
                    state.in_flight.fetch_add(1, Ordering::SeqCst);
                    serve(inbound, port, &state, &mut open).await;
                    state.in_flight.fetch_sub(1, Ordering::SeqCst);
                    state.changed.notify_waiters();
                });
            }
        });
        Front { url, state, gate }
    }

    /// Faults for the next requests, reads included.
    pub fn inject(&self, faults: &[Fault]) {
        self.state.next.lock().unwrap().extend(faults);
    }

    /// Faults for the next write requests; reads pass.
    pub fn script_writes(&self, faults: &[Fault]) {
        self.state.writes_script.lock().unwrap().extend(faults);
    }

    /// Faults for the next writes, never two for one body: a write retried after its
    /// fault passes, whatever else is in flight (the client's retry may come back first).
    pub fn script_writes_once_each(&self, faults: &[Fault]) {
        *self.state.faulted.lock().unwrap() = Some(HashSet::new());
        self.script_writes(faults);
    }

    /// Holds every write from the `n`-th (0-based) on.
    pub fn hold_writes_from(&self, n: usize) {
        let _ = self.gate.send(false);
        self.state.hold_from.store(n, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.state.hold_from.store(usize::MAX, Ordering::SeqCst);
        let _ = self.gate.send(true);
    }

    pub fn writes(&self) -> usize {
        self.state.writes.load(Ordering::SeqCst)
    }

    pub async fn wait_until(&self, what: &str, f: impl Fn(&FrontState) -> bool) {
        let wait = async {
            loop {
                let changed = self.state.changed.notified();
                if f(&self.state) {
                    return;
                }
                // Notify is edge-triggered: poll as well, cheaply.
                let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    pub async fn wait_held(&self, n: usize) {
        self.wait_until("writes are held", |s| s.held.load(Ordering::SeqCst) >= n)
            .await
    }

    /// Waits until no request is passing through.
    pub async fn wait_idle(&self) {
        self.wait_until("the front is idle", |s| {
            s.in_flight.load(Ordering::SeqCst) == 0
        })
        .await
    }
}

async fn serve(
    mut inbound: TcpStream,
    port: u16,
    state: &FrontState,
    open: &mut watch::Receiver<bool>,
) {
    let Some(request) = read_request(&mut inbound).await else {
        return;
    };
    let method = request.split(|b| *b == b' ').next().unwrap_or_default();
    let mut fault = state.next.lock().unwrap().pop_front();
    if matches!(method, b"POST" | b"PATCH" | b"PUT" | b"DELETE") {
        let index = state.writes.fetch_add(1, Ordering::SeqCst);
        if fault.is_none() && state.fault_this_body(&request) {
            fault = state.writes_script.lock().unwrap().pop_front();
        }
        if index >= state.hold_from.load(Ordering::SeqCst) {
            state.held.fetch_add(1, Ordering::SeqCst);
            state.changed.notify_waiters();
            let _ = open.wait_for(|open| *open).await;
            state.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
    if let Some(Fault::Unavailable) = fault {
        let _ = inbound
            .write_all(
                b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    if outbound.write_all(&request).await.is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = outbound.read_to_end(&mut answer).await;
    if fault.is_none() {
        // The client may be gone (killed): the write happened all the same.
        let _ = inbound.write_all(&answer).await;
    }
}

/// Reads one HTTP request (head and `Content-Length` body).
pub async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
    }
}
