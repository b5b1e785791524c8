//! Asking a running import to stop (suspend, a deleted Secret, a deleted integration).
//!
//! The import checks at its safe points: reads (Freshteam, the destination list) are
//! abandoned at once, since nothing they did needs undoing; writes stop between
//! batches, so every write sent is tallied, and the invitation outbox is confirmed for
//! what was created.

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A stop request shared by whoever may ask (the controller) and the import. Clones share
/// one signal; the first reason given wins.
#[derive(Clone, Default)]
pub struct StopSignal(Arc<Inner>);

#[derive(Default)]
struct Inner {
    reason: Mutex<Option<String>>,
    changed: Notify,
}

impl fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StopSignal").field(&self.reason()).finish()
    }
}

impl StopSignal {
    /// Asks the import to stop; `reason` ends up in the run's message. True when this
    /// request is the one that stops it (no earlier one was given).
    pub fn stop(&self, reason: impl Into<String>) -> bool {
        let mut r = self.0.reason.lock().expect("stop signal lock");
        let first = r.is_none();
        if first {
            *r = Some(reason.into());
        }
        drop(r);
        self.0.changed.notify_waiters();
        first
    }

    /// Whether two signals are one (clones of each other).
    pub fn same(&self, other: &StopSignal) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Why the import was asked to stop, once it has been.
    pub fn reason(&self) -> Option<String> {
        self.0.reason.lock().expect("stop signal lock").clone()
    }

    /// Resolves when a stop is asked for, with the reason.
    pub async fn stopped(&self) -> String {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(r) = self.reason() {
                return r;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_wake() {
        let signal = StopSignal::default();
        assert_eq!(signal.reason(), None);
        let waiter = tokio::spawn({
            let s = signal.clone();
            async move { s.stopped().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        signal.stop("spec.suspend was set");
        signal.stop("later");
        assert_eq!(waiter.await.unwrap(), "spec.suspend was set");
        assert_eq!(signal.stopped().await, "spec.suspend was set");
    }
}
