//! State in memory: the CLI's outbox without a state file (at most once across
//! processes), and every unit test's fake store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Kind, StateError, Store};

/// One kind of state in memory. Counts its saves, can keep every value saved, and can
/// be made to fail its saves (to test the failure paths).
#[derive(Debug, Default)]
pub struct MemoryStore<K> {
    value: Mutex<K>,
    /// Saves that succeeded.
    saves: AtomicU64,
    /// Saves fail with this message once `saves` reached the count.
    failing: Mutex<Option<(u64, String)>>,
    /// Every value saved, in order, when asked for ([`MemoryStore::recording`]).
    history: Option<Mutex<Vec<K>>>,
}

impl<K: Kind> MemoryStore<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that keeps every value saved ([`MemoryStore::saved`]).
    pub fn recording() -> Self {
        MemoryStore {
            history: Some(Mutex::default()),
            ..Self::default()
        }
    }

    /// The value as last saved (the default before the first save).
    pub fn snapshot(&self) -> K {
        self.value.lock().expect("state lock").clone()
    }

    /// Saves that succeeded so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }

    /// Every value saved, in order (empty unless [`MemoryStore::recording`]).
    pub fn saved(&self) -> Vec<K> {
        self.history
            .as_ref()
            .map(|h| h.lock().expect("state lock").clone())
            .unwrap_or_default()
    }

    /// Every save from now on fails with `reason`.
    pub fn fail_saves(&self, reason: impl Into<String>) {
        self.fail_saves_after(self.saves(), reason);
    }

    /// Saves fail with `reason` once `ok` saves succeeded.
    pub fn fail_saves_after(&self, ok: u64, reason: impl Into<String>) {
        *self.failing.lock().expect("state lock") = Some((ok, reason.into()));
    }
}

#[async_trait]
impl<K: Kind> Store<K> for MemoryStore<K> {
    async fn load(&self) -> Result<K, StateError> {
        Ok(self.snapshot())
    }

    async fn save(&self, value: &K) -> Result<(), StateError> {
        if let Some((ok, reason)) = &*self.failing.lock().expect("state lock") {
            if self.saves() >= *ok {
                return Err(StateError::write(Store::<K>::location(self), reason));
            }
        }
        if let Some(history) = &self.history {
            history.lock().expect("state lock").push(value.clone());
        }
        *self.value.lock().expect("state lock") = value.clone();
        self.saves.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Ledger, Origin};

    #[tokio::test]
    async fn saves_are_kept_counted_recorded_and_fail_when_told() {
        let store = MemoryStore::<Ledger>::recording();
        assert_eq!(store.load().await.unwrap(), Ledger::default());
        let mut ledger = Ledger::default();
        ledger.insert("E1", Origin::Created);
        store.save(&ledger).await.unwrap();
        store.fail_saves_after(2, "disk full");
        ledger.insert("E2", Origin::Adopted);
        store.save(&ledger).await.unwrap();
        let err = store.save(&Ledger::default()).await.unwrap_err();
        assert_eq!(err, StateError::write("memory", "disk full"));
        assert_eq!(store.saves(), 2);
        assert_eq!(
            store.load().await.unwrap(),
            ledger,
            "the failed save changed nothing"
        );
        let saved: Vec<usize> = store.saved().iter().map(Ledger::len).collect();
        assert_eq!(saved, [1, 2]);
        store.fail_saves("still full");
        assert!(store.save(&ledger).await.is_err());
        assert!(
            MemoryStore::<Ledger>::new().saved().is_empty(),
            "not recording"
        );
    }
}
