//! The cluster backend: an integration's state of one kind (its ledger, its invitation
//! outbox, its convergence notes) in `IntegrationState` objects it owns, sized for 100,000
//! members within the API server's 1 MiB object limit.
//!
//! Entries (keyed by Employee ID) fall into 64 fixed buckets by a stable hash; the
//! buckets are spread over `n` objects (`n` a power of two up to 64): bucket `b` lives in
//! object `b mod n`. Object 0 is `<integration>-<kind>` and records `n`; object `j` is
//! `<integration>-<kind>-<j>`. A load keeps, from object `j`, only the entries whose
//! bucket maps to `j` under object 0's `n`.
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
//! - Upgrade: earlier versions kept the same layout in ConfigMaps of the same names. When
//!   a state has no IntegrationState yet, a load reads those ConfigMaps and writes their
//!   content into IntegrationStates before returning it, once; the ConfigMaps are left
//!   as they are (the operator may no longer update ConfigMaps; they go with the
//!   integration).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Kind, StateError, Store};
use crate::api::{IntegrationState, IntegrationStateSpec, StateKind};
use crate::ledger::ImportCursor;

/// Buckets entries are hashed into (also the most objects a state may use).
pub const BUCKETS: usize = 64;
/// An object grows the layout once its entries pass this many bytes of JSON: well
/// under the 1 MiB object limit, and small enough that a save stays cheap.
pub const OBJECT_TARGET: usize = 256 * 1024;
/// What one object may hold at most (data plus metadata stay under 1 MiB).
pub const OBJECT_MAX: usize = 900 * 1024;
/// Label on every state object: which kind of state it holds.
pub const STATE_LABEL: &str = "freshteam.provisioning.dev/state";

/// Keys of the ConfigMaps earlier versions kept the state in (read to migrate it).
const LEGACY_HEAD_KEY: &str = "state.json";
const LEGACY_ENTRIES_KEY: &str = "entries.json";
/// The outbox as stored before the layout had several objects.
const LEGACY_OUTBOX_KEY: &str = "outbox.json";
/// The convergence notes, one ConfigMap `<integration>-convergence`.
const LEGACY_NOTES_KEY: &str = "notes.json";

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

/// Object 0 of the legacy ConfigMap layout.
#[derive(Serialize, Deserialize)]
struct LegacyHead<T> {
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

impl<T> Known<T> {
    fn empty() -> Self {
        Known {
            objects: 1,
            versions: vec![None],
            entries: vec![BTreeMap::new()],
            meta: Value::Null,
        }
    }
}

/// One kind of state of one integration, spread over IntegrationState objects.
pub struct ShardedState<T> {
    api: Api<IntegrationState>,
    /// Where an earlier version kept this state (read once, to migrate it).
    legacy: Api<ConfigMap>,
    base: String,
    kind: StateKind,
    integration: String,
    owner: Option<OwnerReference>,
    known: Mutex<Option<Known<T>>>,
    /// Sizes in bytes of the objects last written, by object index (for measurements).
    sizes: Mutex<Vec<usize>>,
}

impl<T> ShardedState<T>
where
    T: Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync,
{
    pub fn new(
        client: Client,
        namespace: &str,
        integration: &str,
        kind: StateKind,
        owner: Option<OwnerReference>,
    ) -> Self {
        ShardedState {
            api: Api::namespaced(client.clone(), namespace),
            legacy: Api::namespaced(client, namespace),
            base: format!("{integration}-{}", kind.name()),
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

    /// Bytes of data in each object as last written (object 0 first).
    pub fn object_sizes(&self) -> Vec<usize> {
        self.sizes.lock().expect("sizes lock").clone()
    }

    /// Object `j`, for messages.
    fn location(&self, j: usize) -> String {
        format!("IntegrationState {}", self.object_name(j))
    }

    fn legacy_location(&self, j: usize) -> String {
        format!(
            "ConfigMap {} (state of an earlier version, to migrate)",
            self.object_name(j)
        )
    }

    fn entries_of(&self, j: usize, text: &str) -> Result<BTreeMap<String, T>, StateError> {
        if text.is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_str(text)
            .map_err(|e| StateError::parse(self.location(j), format!("spec.entries: {e}")))
    }

    /// Reads the state: the metadata and every entry.
    pub async fn load(&self) -> Result<(StateMeta, BTreeMap<String, T>), StateError> {
        let head = self
            .api
            .get_opt(&self.base)
            .await
            .map_err(|e| StateError::read(self.location(0), e))?;
        let Some(head) = head else {
            return self.migrate().await;
        };
        let objects = (head.spec.parts.unwrap_or(1) as usize).clamp(1, BUCKETS);
        let meta = head.spec.meta.clone();
        let mut versions = vec![head.resource_version()];
        let mut parts = vec![self.entries_of(0, &head.spec.entries)?];
        let rest = futures::future::join_all(
            (1..objects).map(|j| async move { (j, self.api.get_opt(&self.object_name(j)).await) }),
        )
        .await;
        for (j, got) in rest {
            let obj = got.map_err(|e| StateError::read(self.location(j), e))?;
            versions.push(obj.as_ref().and_then(|o| o.resource_version()));
            parts.push(match &obj {
                Some(o) => self.entries_of(j, &o.spec.entries)?,
                None => BTreeMap::new(),
            });
        }
        Ok(self.keep(objects, versions, parts, meta))
    }

    /// Records what was read and returns it whole.
    fn keep(
        &self,
        objects: usize,
        versions: Vec<Option<String>>,
        mut parts: Vec<BTreeMap<String, T>>,
        meta: Value,
    ) -> (StateMeta, BTreeMap<String, T>) {
        let mut all = BTreeMap::new();
        for (j, part) in parts.iter_mut().enumerate() {
            // Entries of a bucket that moved away in a layout change are not this
            // object's any more.
            part.retain(|k, _| object_of(k, objects) == j);
            all.extend(part.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let typed = StateMeta::read(&meta);
        *self.known.lock().expect("state lock") = Some(Known {
            objects,
            versions,
            entries: parts,
            meta,
        });
        (typed, all)
    }

    /// No IntegrationState yet: the state an earlier version kept in ConfigMaps, written
    /// into IntegrationStates first (an empty state when there is none).
    async fn migrate(&self) -> Result<(StateMeta, BTreeMap<String, T>), StateError> {
        let Some((meta, entries)) = self.load_legacy().await? else {
            *self.known.lock().expect("state lock") = Some(Known::empty());
            return Ok((StateMeta::default(), BTreeMap::new()));
        };
        let known = self.write(Known::empty(), &meta, &entries).await?;
        tracing::info!(
            integration = %self.integration,
            state = self.kind.name(),
            entries = entries.len(),
            objects = known.objects,
            "state moved from ConfigMaps to IntegrationState objects"
        );
        *self.known.lock().expect("state lock") = Some(known);
        Ok((StateMeta::read(&meta), entries))
    }

    /// The state as an earlier version stored it in ConfigMaps, if it did.
    async fn load_legacy(&self) -> Result<Option<(Value, BTreeMap<String, T>)>, StateError> {
        let Some(head) = self
            .legacy
            .get_opt(&self.base)
            .await
            .map_err(|e| StateError::read(self.legacy_location(0), e))?
        else {
            return Ok(None);
        };
        let data = head.data.unwrap_or_default();
        let parse = |key: &str, json: &str| -> Result<Value, StateError> {
            serde_json::from_str(json)
                .map_err(|e| StateError::parse(self.legacy_location(0), format!("key {key}: {e}")))
        };
        let (objects, meta, first): (usize, Value, Value) = if let Some(json) =
            data.get(LEGACY_HEAD_KEY)
        {
            let h: LegacyHead<Value> = serde_json::from_value(parse(LEGACY_HEAD_KEY, json)?)
                .map_err(|e| {
                    StateError::parse(
                        self.legacy_location(0),
                        format!("key {LEGACY_HEAD_KEY}: {e}"),
                    )
                })?;
            (
                h.objects.clamp(1, BUCKETS),
                h.meta,
                serde_json::to_value(h.entries).expect("entries serialise"),
            )
        } else if let Some(json) = data.get(LEGACY_OUTBOX_KEY) {
            // {"generation": g, "entries": {...}}: one object, read as such.
            let mut v = parse(LEGACY_OUTBOX_KEY, json)?;
            let entries = v.get_mut("entries").map(Value::take).unwrap_or_default();
            let meta =
                serde_json::json!({"generation": v.get("generation").cloned().unwrap_or_default()});
            (1, meta, entries)
        } else if let Some(json) = data.get(LEGACY_NOTES_KEY) {
            (1, Value::Null, parse(LEGACY_NOTES_KEY, json)?)
        } else {
            (1, Value::Null, Value::Null)
        };
        let decode = |j: usize, v: Value| -> Result<BTreeMap<String, T>, StateError> {
            if v.is_null() {
                return Ok(BTreeMap::new());
            }
            serde_json::from_value(v)
                .map_err(|e| StateError::parse(self.legacy_location(j), format!("entries: {e}")))
        };
        let mut parts = vec![decode(0, first)?];
        for j in 1..objects {
            let cm = self
                .legacy
                .get_opt(&self.object_name(j))
                .await
                .map_err(|e| StateError::read(self.legacy_location(j), e))?;
            let part = match cm
                .as_ref()
                .and_then(|c| c.data.as_ref()?.get(LEGACY_ENTRIES_KEY))
            {
                Some(json) => decode(
                    j,
                    serde_json::from_str(json).map_err(|e| {
                        StateError::parse(
                            self.legacy_location(j),
                            format!("key {LEGACY_ENTRIES_KEY}: {e}"),
                        )
                    })?,
                )?,
                None => BTreeMap::new(),
            };
            parts.push(part);
        }
        let mut all = BTreeMap::new();
        for (j, mut part) in parts.into_iter().enumerate() {
            part.retain(|k, _| object_of(k, objects) == j);
            all.extend(part);
        }
        Ok(Some((meta, all)))
    }

    /// Writes what changed since the last load or save.
    pub async fn save(
        &self,
        meta: &StateMeta,
        entries: &BTreeMap<String, T>,
    ) -> Result<(), StateError> {
        let meta = meta.to_value();
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
        // On failure nothing is kept: the next save starts from what the server holds.
        let k = self.write(known, &meta, entries).await?;
        *self.known.lock().expect("state lock") = Some(k);
        Ok(())
    }

    async fn write(
        &self,
        known: Known<T>,
        meta: &Value,
        entries: &BTreeMap<String, T>,
    ) -> Result<Known<T>, StateError> {
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
                let text = serde_json::to_string(&parts[j])
                    .map_err(|e| StateError::write(self.location(j), e))?;
                let size = stored_size(&text) + if j == 0 { meta.to_string().len() } else { 0 };
                if size > OBJECT_TARGET && too_big.is_none() {
                    too_big = Some(size);
                }
                texts[j] = Some(text);
            }
            match too_big {
                Some(_) if n < BUCKETS => n *= 2,
                Some(size) if size > OBJECT_MAX => {
                    return Err(StateError::TooLarge {
                        state: format!("{} of {}", self.kind.name(), self.integration),
                        entries: entries.len(),
                        limit: format!(
                            "{BUCKETS} IntegrationState objects of {} KiB",
                            OBJECT_MAX / 1024
                        ),
                        size,
                    })
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
            sizes[j] = stored_size(&text);
            let spec = IntegrationStateSpec {
                integration: self.integration.clone(),
                state: self.kind,
                part: j as u32,
                parts: (j == 0).then_some(n as u32),
                meta: if j == 0 { meta.clone() } else { Value::Null },
                entry_count: parts[j].len() as u32,
                entries: text,
            };
            versions[j] = Some(self.put(j, versions[j].clone(), spec).await?);
        }
        *self.sizes.lock().expect("sizes lock") = sizes;
        Ok(Known {
            objects: n,
            versions,
            entries: parts,
            meta: meta.clone(),
        })
    }

    /// Creates or replaces object `j`; returns its new resourceVersion.
    async fn put(
        &self,
        j: usize,
        version: Option<String>,
        spec: IntegrationStateSpec,
    ) -> Result<String, StateError> {
        let name = self.object_name(j);
        let labels = BTreeMap::from([
            (STATE_LABEL.to_string(), self.kind.name().to_string()),
            (
                crate::api::INTEGRATION_LABEL.to_string(),
                self.integration.clone(),
            ),
        ]);
        let mut obj = IntegrationState {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                resource_version: version.clone(),
                labels: Some(labels),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec,
        };
        let saved = match version {
            Some(_) => self.api.replace(&name, &PostParams::default(), &obj).await,
            None => match self.api.create(&PostParams::default(), &obj).await {
                // Left over from a layout change that did not finish: ours to reuse.
                Err(kube::Error::Api(e)) if e.code == 409 && j > 0 => {
                    let existing = self
                        .api
                        .get(&name)
                        .await
                        .map_err(|e| StateError::read(self.location(j), e))?;
                    obj.metadata.resource_version = existing.resource_version();
                    self.api.replace(&name, &PostParams::default(), &obj).await
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    return Err(StateError::write(
                        self.location(j),
                        format!(
                            "the IntegrationState CRD is not installed (kubectl apply --server-side -f crds/freshteam.provisioning.dev.yaml): {e}"
                        ),
                    ))
                }
                other => other,
            },
        }
        .map_err(|e| match &e {
            // A stale resourceVersion, or object 0 created by someone else meanwhile.
            kube::Error::Api(a) if a.code == 409 => StateError::conflict(self.location(j), e),
            _ => StateError::write(self.location(j), e),
        })?;
        Ok(saved.resource_version().unwrap_or_default())
    }
}

/// Bytes `text` takes as a JSON string (quotes and escapes included): what the object
/// stores.
fn stored_size(text: &str) -> usize {
    let escapes = text
        .bytes()
        .filter(|b| matches!(b, b'"' | b'\\') || *b < 0x20)
        .count();
    text.len() + escapes + 2
}

/// The metadata beside a kind's entries (`spec.meta` of its first object): the outbox's
/// generation, the ledger's cursor, none for the notes. Stored as `{"generation": 3}`,
/// `{"cursor": {...}}`, or `null` when it holds nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMeta {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "readable"
    )]
    pub generation: Option<u64>,
    /// A cursor that cannot be read is no cursor: the next run is a full one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "readable"
    )]
    pub cursor: Option<ImportCursor>,
}

impl StateMeta {
    /// What can be read of the stored metadata; a field that cannot be read is none.
    fn read(meta: &Value) -> Self {
        Option::<StateMeta>::deserialize(meta)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn to_value(&self) -> Value {
        if *self == StateMeta::default() {
            return Value::Null;
        }
        serde_json::to_value(self).expect("state metadata serializes")
    }
}

/// A field's value, or none when it is missing, null or not what it should be.
fn readable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// One integration's state of kind `K` in the cluster: a [`ShardedState`] of its
/// entries in the `IntegrationState` objects of that kind (`<integration>-ledger`,
/// `<integration>-invitations`, `<integration>-convergence`).
pub struct ClusterStore<K: Kind>(ShardedState<K::Entry>);

impl<K: Kind> ClusterStore<K> {
    pub fn new(
        client: Client,
        namespace: &str,
        integration: &str,
        owner: Option<OwnerReference>,
    ) -> Self {
        ClusterStore(ShardedState::new(
            client,
            namespace,
            integration,
            K::KIND,
            owner,
        ))
    }

    /// `<integration>-<kind>`: its first object.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Bytes of data in each object as last written (object 0 first).
    pub fn object_sizes(&self) -> Vec<usize> {
        self.0.object_sizes()
    }
}

#[async_trait]
impl<K: Kind> Store<K> for ClusterStore<K> {
    async fn load(&self) -> Result<K, StateError> {
        let (meta, entries) = self.0.load().await?;
        K::join(meta, entries).map_err(|e| StateError::parse(self.0.location(0), e))
    }

    /// Writes what changed (creates the objects on first use).
    async fn save(&self, value: &K) -> Result<(), StateError> {
        let entries = value
            .entries()
            .map_err(|e| StateError::write(self.0.location(0), e))?;
        self.0.save(&value.meta(), &entries).await
    }

    fn location(&self) -> String {
        self.0.location(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_metadata_is_stored_as_before_and_read_leniently() {
        let cursor: ImportCursor = serde_json::from_value(serde_json::json!({
            "since": "2026-12-01T00:00:00Z",
            "lastFull": "2026-11-30T00:00:00Z",
            "spec": "abc",
        }))
        .unwrap();
        let outbox = StateMeta {
            generation: Some(0),
            ..StateMeta::default()
        };
        assert_eq!(outbox.to_value().to_string(), r#"{"generation":0}"#);
        let ledger = StateMeta {
            cursor: Some(cursor.clone()),
            ..StateMeta::default()
        };
        assert_eq!(
            ledger.to_value(),
            serde_json::json!({ "cursor": cursor.clone() })
        );
        assert_eq!(StateMeta::default().to_value(), Value::Null);

        assert_eq!(StateMeta::read(&ledger.to_value()).cursor, Some(cursor));
        assert_eq!(StateMeta::read(&Value::Null), StateMeta::default());
        // What cannot be read is none: no cursor (a full run), generation 0.
        let odd = serde_json::json!({ "cursor": "yesterday", "generation": null });
        assert_eq!(StateMeta::read(&odd), StateMeta::default());
        assert_eq!(StateMeta::read(&serde_json::json!(7)), StateMeta::default());
    }
}
