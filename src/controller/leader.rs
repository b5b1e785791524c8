//! Leader election over a coordination.k8s.io Lease, written with optimistic concurrency:
//! every claim and renewal replaces the Lease at the resourceVersion it was read at, so
//! of two replicas that saw the same expired Lease only one can take it. Every call has a
//! deadline, and a leader that cannot renew within it stops leading before its Lease can
//! expire under another replica.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// What a look at the Lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// This replica holds the Lease (just claimed or renewed).
    Leading,
    /// Another replica holds it and it has not expired.
    HeldBy(String),
}

/// The Lease as last read, and when this process first saw that version of it.
#[derive(Clone, Debug)]
pub struct Observed {
    lease: Option<Lease>,
    seen_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Lease {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Lease {name}: no answer from the API server within {timeout:?}")]
    Timeout { name: String, timeout: Duration },
}

pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long the Lease lasts without renewal.
    pub ttl: Duration,
    /// Deadline of each API call.
    pub call_timeout: Duration,
    /// The Lease's `(holder, renewTime)` as last seen, and when it was first seen: a
    /// Lease counts as expired when it has not changed for `leaseDurationSeconds` by
    /// this process's clock, so clock skew between replicas does not matter.
    last_change: Mutex<Option<(String, Instant)>>,
}

impl LeaderLease {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, ttl: Duration) -> Self {
        LeaderLease {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            ttl,
            call_timeout: (ttl / 3).max(Duration::from_secs(1)),
            last_change: Mutex::new(None),
        }
    }

    /// How long a leader keeps leading without a successful renewal: two thirds of the
    /// Lease, so it has stopped before a standby may take the Lease over.
    pub fn renew_deadline(&self) -> Duration {
        self.ttl * 2 / 3
    }

    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.call_timeout, f).await {
            Ok(r) => r.map_err(|source| Error::Kube {
                name: self.name.clone(),
                source,
            }),
            Err(_) => Err(Error::Timeout {
                name: self.name.clone(),
                timeout: self.call_timeout,
            }),
        }
    }

    /// Reads the Lease.
    pub async fn observe(&self) -> Result<Observed, Error> {
        let lease = self.call(self.api.get_opt(&self.name)).await?;
        let key = lease.as_ref().map(|l| {
            let spec = l.spec.clone().unwrap_or_default();
            format!(
                "{}/{:?}",
                spec.holder_identity.unwrap_or_default(),
                spec.renew_time.map(|t| t.0)
            )
        });
        let mut last = self.last_change.lock().expect("lease lock");
        let seen_at = match (&*last, key) {
            (Some((k, at)), Some(key)) if *k == key => *at,
            (_, Some(key)) => {
                let now = Instant::now();
                *last = Some((key, now));
                now
            }
            (_, None) => Instant::now(),
        };
        Ok(Observed { lease, seen_at })
    }

    /// Claims or renews the Lease as observed. Loses (without error) when another
    /// replica wrote it since: the replace carries the resourceVersion that was read.
    pub async fn claim(&self, observed: &Observed) -> Result<Standing, Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(current) = &observed.lease else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.ttl.as_secs() as i32),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self
                .call(self.api.create(&PostParams::default(), &lease))
                .await
            {
                Ok(_) => Ok(Standing::Leading),
                Err(e) if is_code(&e, 409) => Ok(Standing::HeldBy(CHANGED.into())),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let ours = holder == self.identity;
        let expired = holder.is_empty() || observed.seen_at.elapsed() > duration;
        if !ours && !expired {
            return Ok(Standing::HeldBy(holder));
        }
        let mut next = current.clone();
        let s = next.spec.get_or_insert_with(LeaseSpec::default);
        if !ours {
            s.holder_identity = Some(self.identity.clone());
            s.acquire_time = Some(now.clone());
            s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        s.renew_time = Some(now);
        s.lease_duration_seconds = Some(self.ttl.as_secs() as i32);
        match self
            .call(self.api.replace(&self.name, &PostParams::default(), &next))
            .await
        {
            Ok(_) => Ok(Standing::Leading),
            // Written by someone else since it was read: theirs.
            Err(e) if is_code(&e, 409) => Ok(Standing::HeldBy(CHANGED.into())),
            Err(e) => Err(e),
        }
    }

    /// One round: read, then claim or renew.
    pub async fn try_acquire_or_renew(&self) -> Result<Standing, Error> {
        let observed = self.observe().await?;
        self.claim(&observed).await
    }

    /// Waits until this replica leads (or `stop` fires: `false`).
    pub async fn acquire(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            match self.try_acquire_or_renew().await {
                Ok(Standing::Leading) => return true,
                Ok(Standing::HeldBy(h)) => tracing::debug!(holder = %h, "standing by"),
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.ttl / 5) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Renews the Lease until leadership is lost: another replica took it, or no renewal
    /// succeeded within [`renew_deadline`](Self::renew_deadline). Returns why.
    pub async fn hold(&self) -> String {
        let deadline = self.renew_deadline();
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.ttl / 5).await;
            // No call may outlast the deadline: a hung renewal ends leadership in time.
            let remaining = deadline.saturating_sub(last_renewed.elapsed());
            let attempt = Instant::now();
            match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                Ok(Ok(Standing::Leading)) => last_renewed = attempt,
                Ok(Ok(Standing::HeldBy(h))) => return format!("the Lease is now held by {h}"),
                Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the leader Lease"),
                Err(_) => tracing::warn!(lease = %self.name, "renewing the leader Lease timed out"),
            }
            if last_renewed.elapsed() >= deadline {
                return format!("the Lease was not renewed for {:?}", last_renewed.elapsed());
            }
        }
    }

    /// Gives the Lease up (on shutdown) so a standby takes over at once.
    pub async fn release(&self) -> Result<(), Error> {
        let observed = self.observe().await?;
        let Some(mut lease) = observed.lease else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .call(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await
        {
            Err(e) if !is_code(&e, 409) => Err(e),
            _ => Ok(()),
        }
    }
}

/// Who holds a Lease that changed between read and write: someone else.
const CHANGED: &str = "another replica (the Lease changed since it was read)";

fn is_code(e: &Error, code: u16) -> bool {
    matches!(e, Error::Kube { source: kube::Error::Api(s), .. } if s.code == code)
}
