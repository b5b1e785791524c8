//! An integration's state (its ledger, its invitation outbox) in ConfigMaps it owns,
//! sized for 100,000 members within the API server's 1 MiB object limit.
//!
//! Entries (keyed by Employee ID) fall into 64 fixed buckets by a stable hash; the
//! buckets are spread over `n` ConfigMaps (`n` a power of two up to 64): bucket `b`
//! lives in object `b mod n`. Object 0 is `<integration>-<kind>` and records `n`;
//! object `j` is `<integration>-<kind>-<j>`. A load keeps, from object `j`, only the
//! entries whose bucket maps to `j` under object 0's `n`.
//!
//! - A save writes only the objects whose entries changed (an invitation sent rewrites
//!   one or two small objects, not the whole outbox), each with its resourceVersion, so
//!   a stale writer fails instead of overwriting. Every entry is in exactly one object:
//!   after a crash mid-save each entry is its old or its new self.
//! - An object past [`OBJECT_TARGET`] bytes doubles `n`: the new objects are written
//!   first, then object 0 (which switches the layout in one write), then the old
//!   objects are trimmed. A crash in between leaves the old layout or the new, whole.
//! - Past 64 objects a save fails with a message saying so: the caller then creates
//!   nobody in that run rather than lose an intent.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ledger::{Ledger, LedgerStore, Origin};
use crate::notify::{Outbox, OutboxEntry, OutboxStore};

/// Buckets entries are hashed into (also the most objects a state may use).
pub const BUCKETS: usize = 64;
/// An object grows the layout once its entries pass this many bytes of JSON: well
/// under the 1 MiB object limit, and small enough that a save stays cheap.
pub const OBJECT_TARGET: usize = 256 * 1024;
/// What one object may hold at most (data plus metadata stay under 1 MiB).
pub const OBJECT_MAX: usize = 900 * 1024;
/// Label on every state object: which kind of state it holds.
pub const STATE_LABEL: &str = "freshteam.provisioning.dev/state";

const HEAD_KEY: &str = "state.json";
const ENTRIES_KEY: &str = "entries.json";
/// The outbox as the operator stored it before the layout had several objects.
const LEGACY_OUTBOX_KEY: &str = "outbox.json";

/// FNV-1a: stable across processes and versions (std's hasher is not).
pub fn bucket(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % BUCKETS as u64) as usize
}

/// The object an entry lives in with `n` objects.
pub fn object_of(key: &str, n: usize) -> usize {
    bucket(key) % n
}

#[derive(Serialize, Deserialize)]
struct Head<T> {
    objects: usize,
    #[serde(default)]
    meta: Value,
    #[serde(default = "BTreeMap::new")]
    entries: BTreeMap<String, T>,
}

/// What the store last read or wrote.
struct Known<T> {
    objects: usize,
    versions: Vec<Option<String>>,
    entries: Vec<BTreeMap<String, T>>,
    meta: Value,
}

/// One kind of state of one integration, spread over ConfigMaps.
pub struct ShardedConfigMaps<T> {
    api: Api<ConfigMap>,
    base: String,
    kind: &'static str,
    integration: String,
    owner: Option<OwnerReference>,
    known: Mutex<Option<Known<T>>>,
    /// Sizes in bytes of the objects last written, by object index (for measurements).
    sizes: Mutex<Vec<usize>>,
}

impl<T> ShardedConfigMaps<T>
where
    T: Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync,
{
    pub fn new(
        api: Api<ConfigMap>,
        integration: &str,
        kind: &'static str,
        owner: Option<OwnerReference>,
    ) -> Self {
        ShardedConfigMaps {
            api,
            base: format!("{integration}-{kind}"),
            kind,
            integration: integration.to_string(),
            owner,
            known: Mutex::new(None),
            sizes: Mutex::new(Vec::new()),
        }
    }

    /// `<integration>-<kind>`: object 0.
    pub fn name(&self) -> &str {
        &self.base
    }

    fn object_name(&self, j: usize) -> String {
        if j == 0 {
            self.base.clone()
        } else {
            format!("{}-{j}", self.base)
        }
    }

    /// Bytes of data in each object as last written or read (object 0 first).
    pub fn object_sizes(&self) -> Vec<usize> {
        self.sizes.lock().expect("sizes lock").clone()
    }

    fn fail(&self, j: usize, e: impl std::fmt::Display) -> String {
        format!("ConfigMap {}: {e}", self.object_name(j))
    }

    /// Reads the state: the metadata and every entry.
    pub async fn load(&self) -> Result<(Value, BTreeMap<String, T>), String> {
        let head = self
            .api
            .get_opt(&self.base)
            .await
            .map_err(|e| self.fail(0, e))?;
        let Some(head) = head else {
            *self.known.lock().expect("state lock") = Some(Known {
                objects: 1,
                versions: vec![None],
                entries: vec![BTreeMap::new()],
                meta: Value::Null,
            });
            return Ok((Value::Null, BTreeMap::new()));
        };
        let data = head.data.clone().unwrap_or_default();
        let (objects, meta, first): (usize, Value, BTreeMap<String, T>) = if let Some(json) =
            data.get(HEAD_KEY)
        {
            let h: Head<T> = serde_json::from_str(json)
                .map_err(|e| self.fail(0, format!("key {HEAD_KEY}: {e}")))?;
            (h.objects.clamp(1, BUCKETS), h.meta, h.entries)
        } else if let Some(json) = data.get(LEGACY_OUTBOX_KEY) {
            // {"generation": g, "entries": {...}}: one object, read as such.
            let mut v: Value = serde_json::from_str(json)
                .map_err(|e| self.fail(0, format!("key {LEGACY_OUTBOX_KEY}: {e}")))?;
            let entries = v.get_mut("entries").map(Value::take).unwrap_or_default();
            let entries = serde_json::from_value(entries)
                .map_err(|e| self.fail(0, format!("key {LEGACY_OUTBOX_KEY}: {e}")))?;
            let meta =
                serde_json::json!({"generation": v.get("generation").cloned().unwrap_or_default()});
            (1, meta, entries)
        } else {
            (1, Value::Null, BTreeMap::new())
        };
        let mut versions = vec![head.resource_version()];
        let mut parts = vec![first];
        let rest = futures::future::join_all(
            (1..objects).map(|j| async move { (j, self.api.get_opt(&self.object_name(j)).await) }),
        )
        .await;
        for (j, got) in rest {
            let cm = got.map_err(|e| self.fail(j, e))?;
            versions.push(cm.as_ref().and_then(|c| c.resource_version()));
            let entries = match cm.as_ref().and_then(|c| c.data.as_ref()?.get(ENTRIES_KEY)) {
                Some(json) => serde_json::from_str(json)
                    .map_err(|e| self.fail(j, format!("key {ENTRIES_KEY}: {e}")))?,
                None => BTreeMap::new(),
            };
            parts.push(entries);
        }
        let mut all = BTreeMap::new();
        for (j, part) in parts.iter_mut().enumerate() {
            // Entries of a bucket that moved away in a layout change are not this
            // object's any more.
            part.retain(|k, _| object_of(k, objects) == j);
            all.extend(part.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        *self.known.lock().expect("state lock") = Some(Known {
            objects,
            versions,
            entries: parts,
            meta: meta.clone(),
        });
        Ok((meta, all))
    }

    /// Writes what changed since the last load or save.
    pub async fn save(&self, meta: &Value, entries: &BTreeMap<String, T>) -> Result<(), String> {
        let known = self.known.lock().expect("state lock").take();
        let known = match known {
            Some(k) => k,
            None => {
                self.load().await?;
                self.known
                    .lock()
                    .expect("state lock")
                    .take()
                    .expect("load sets it")
            }
        };
        let result = self.write(known, meta, entries).await;
        match result {
            Ok(k) => {
                *self.known.lock().expect("state lock") = Some(k);
                Ok(())
            }
            // The next save starts from what the server holds.
            Err(e) => Err(e),
        }
    }

    async fn write(
        &self,
        known: Known<T>,
        meta: &Value,
        entries: &BTreeMap<String, T>,
    ) -> Result<Known<T>, String> {
        let old_n = known.objects;
        // Which objects differ, under the current layout.
        let mut dirty = vec![false; old_n];
        let mut counts = vec![0usize; old_n];
        for (k, v) in entries {
            let j = object_of(k, old_n);
            counts[j] += 1;
            if known.entries[j].get(k) != Some(v) {
                dirty[j] = true;
            }
        }
        for j in 0..old_n {
            if counts[j] != known.entries[j].len() {
                dirty[j] = true;
            }
        }
        if *meta != known.meta {
            dirty[0] = true;
        }
        // Serialise the dirty ones; grow the layout while one is too big.
        let mut n = old_n;
        let mut parts: Vec<BTreeMap<String, T>>;
        let mut texts: Vec<Option<String>>;
        loop {
            parts = vec![BTreeMap::new(); n];
            for (k, v) in entries {
                parts[object_of(k, n)].insert(k.clone(), v.clone());
            }
            texts = vec![None; n];
            let mut too_big = None;
            for j in 0..n {
                let must = j >= old_n || n != old_n || dirty[j];
                if !must {
                    continue;
                }
                let text = self.text(j, n, meta, &parts[j])?;
                if text.len() > OBJECT_TARGET && too_big.is_none() {
                    too_big = Some(text.len());
                }
                texts[j] = Some(text);
            }
            match too_big {
                Some(_) if n < BUCKETS => n *= 2,
                Some(size) if size > OBJECT_MAX => {
                    return Err(format!(
                        "the {} of {} ({} entries) does not fit in {BUCKETS} ConfigMaps of {} KiB (one would hold {size} bytes)",
                        self.kind,
                        self.integration,
                        entries.len(),
                        OBJECT_MAX / 1024
                    ))
                }
                _ => break,
            }
        }
        let mut versions = known.versions.clone();
        versions.resize(n, None);
        let mut sizes = self.sizes.lock().expect("sizes lock").clone();
        sizes.resize(n, 0);
        // New objects first, then object 0 (switches the layout), then the rest.
        let order: Vec<usize> = (old_n..n)
            .chain(std::iter::once(0))
            .chain(1..old_n.min(n))
            .collect();
        for j in order {
            let Some(text) = texts[j].take() else {
                continue;
            };
            sizes[j] = text.len();
            versions[j] = Some(self.put(j, versions[j].clone(), text).await?);
        }
        *self.sizes.lock().expect("sizes lock") = sizes;
        Ok(Known {
            objects: n,
            versions,
            entries: parts,
            meta: meta.clone(),
        })
    }

    fn text(
        &self,
        j: usize,
        n: usize,
        meta: &Value,
        part: &BTreeMap<String, T>,
    ) -> Result<String, String> {
        let out = if j == 0 {
            serde_json::to_string(&Head {
                objects: n,
                meta: meta.clone(),
                entries: part.clone(),
            })
        } else {
            serde_json::to_string(part)
        };
        out.map_err(|e| self.fail(j, e))
    }

    /// Creates or replaces object `j`; returns its new resourceVersion.
    async fn put(&self, j: usize, version: Option<String>, text: String) -> Result<String, String> {
        let name = self.object_name(j);
        let key = if j == 0 { HEAD_KEY } else { ENTRIES_KEY };
        let labels = BTreeMap::from([
            (STATE_LABEL.to_string(), self.kind.to_string()),
            (
                crate::controller::INTEGRATION_LABEL.to_string(),
                self.integration.clone(),
            ),
        ]);
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                resource_version: version.clone(),
                labels: Some(labels),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(key.to_string(), text)])),
            ..ConfigMap::default()
        };
        let saved = match version {
            Some(_) => self.api.replace(&name, &PostParams::default(), &cm).await,
            None => match self.api.create(&PostParams::default(), &cm).await {
                // Left over from a layout change that did not finish: ours to reuse.
                Err(kube::Error::Api(e)) if e.code == 409 && j > 0 => {
                    let existing = self.api.get(&name).await.map_err(|e| self.fail(j, e))?;
                    cm.metadata.resource_version = existing.resource_version();
                    self.api.replace(&name, &PostParams::default(), &cm).await
                }
                other => other,
            },
        }
        .map_err(|e| self.fail(j, e))?;
        Ok(saved.resource_version().unwrap_or_default())
    }
}

/// The invitation outbox (`<integration>-invitations`).
pub struct ConfigMapOutboxStore(ShardedConfigMaps<OutboxEntry>);

impl ConfigMapOutboxStore {
    pub fn new(api: Api<ConfigMap>, integration: &str, owner: Option<OwnerReference>) -> Self {
        ConfigMapOutboxStore(ShardedConfigMaps::new(
            api,
            integration,
            "invitations",
            owner,
        ))
    }
    pub fn name(&self) -> &str {
        self.0.name()
    }
    pub fn object_sizes(&self) -> Vec<usize> {
        self.0.object_sizes()
    }
}

#[async_trait]
impl OutboxStore for ConfigMapOutboxStore {
    async fn load(&self) -> Result<Outbox, String> {
        let (meta, entries) = self.0.load().await?;
        let generation = meta.get("generation").and_then(Value::as_u64).unwrap_or(0);
        Ok(Outbox {
            generation,
            entries,
        })
    }
    async fn save(&self, outbox: &Outbox) -> Result<(), String> {
        let meta = serde_json::json!({ "generation": outbox.generation });
        self.0.save(&meta, &outbox.entries).await
    }
}

/// The ledger of managed members (`<integration>-ledger`).
pub struct ConfigMapLedgerStore(ShardedConfigMaps<Origin>);

impl ConfigMapLedgerStore {
    pub fn new(api: Api<ConfigMap>, integration: &str, owner: Option<OwnerReference>) -> Self {
        ConfigMapLedgerStore(ShardedConfigMaps::new(api, integration, "ledger", owner))
    }
    pub fn name(&self) -> &str {
        self.0.name()
    }
    pub fn object_sizes(&self) -> Vec<usize> {
        self.0.object_sizes()
    }
}

#[async_trait]
impl LedgerStore for ConfigMapLedgerStore {
    async fn load_ledger(&self) -> Result<Ledger, String> {
        let (_, members) = self.0.load().await?;
        Ok(Ledger { members })
    }
    async fn save_ledger(&self, ledger: &Ledger) -> Result<(), String> {
        self.0.save(&Value::Null, &ledger.members).await
    }
    fn ledger_location(&self) -> String {
        format!("ConfigMap {}", self.0.name())
    }
}
