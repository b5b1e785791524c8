//! The invitation outbox of an integration, kept in a ConfigMap it owns, so that a new
//! leader after a crash knows which invitations were sent, pending or in doubt.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use crate::notify::{Outbox, OutboxStore};

const KEY: &str = "outbox.json";

pub struct ConfigMapOutboxStore {
    api: Api<ConfigMap>,
    name: String,
    owner: Option<OwnerReference>,
    /// resourceVersion last read or written: a save against a stale version fails
    /// instead of overwriting another writer's state.
    version: Mutex<Option<String>>,
}

impl ConfigMapOutboxStore {
    pub fn new(api: Api<ConfigMap>, integration: &str, owner: Option<OwnerReference>) -> Self {
        ConfigMapOutboxStore {
            api,
            name: format!("{integration}-invitations"),
            owner,
            version: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[async_trait]
impl OutboxStore for ConfigMapOutboxStore {
    async fn load(&self) -> Result<Outbox, String> {
        let cm = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| format!("ConfigMap {}: {e}", self.name))?;
        let Some(cm) = cm else {
            *self.version.lock().expect("version lock") = None;
            return Ok(Outbox::default());
        };
        *self.version.lock().expect("version lock") = cm.resource_version();
        match cm.data.as_ref().and_then(|d| d.get(KEY)) {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| format!("ConfigMap {} key {KEY}: {e}", self.name)),
            None => Ok(Outbox::default()),
        }
    }

    async fn save(&self, outbox: &Outbox) -> Result<(), String> {
        let json = serde_json::to_string(outbox).map_err(|e| e.to_string())?;
        let version = self.version.lock().expect("version lock").clone();
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: version.clone(),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(KEY.to_string(), json)])),
            ..ConfigMap::default()
        };
        let saved = match version {
            None => self.api.create(&PostParams::default(), &cm).await,
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &cm)
                    .await
            }
        }
        .map_err(|e| format!("ConfigMap {}: {e}", self.name))?;
        *self.version.lock().expect("version lock") = saved.resource_version();
        Ok(())
    }
}
