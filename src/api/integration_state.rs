//! `IntegrationState`: what the operator remembers about one integration between runs
//! (its ledger, its invitation outbox, its convergence notes), in objects of its own API
//! group so that RBAC can give it write access to these and nothing else.

// kube's printcolumn syntax repeats `type_` and `json_path` by design.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One part of one kind of an integration's state, written and read only by the operator.
///
/// A state is spread over up to 64 parts (`<integration>-<state>`, `<integration>-<state>-1`,
/// …); part 0 records how many there are. Owned by the integration, so deleting the
/// integration deletes its state.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "freshteam.provisioning.dev",
    version = "v1alpha1",
    kind = "IntegrationState",
    doc = "Operator-internal state of a FreshteamIntegration (ledger, invitation outbox, convergence notes); not for editing.",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    printcolumn(
        name = "Integration",
        type_ = "string",
        json_path = ".spec.integration"
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".spec.state"),
    printcolumn(name = "Part", type_ = "integer", json_path = ".spec.part"),
    printcolumn(name = "Entries", type_ = "integer", json_path = ".spec.entryCount"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationStateSpec {
    /// Name of the FreshteamIntegration (same namespace) this state belongs to.
    pub integration: String,
    /// Which state this object holds part of.
    pub state: StateKind,
    /// Index of this part (0: the one that records the layout).
    #[serde(default)]
    pub part: u32,
    /// Part 0 only: how many parts the state is spread over (a power of two up to 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// Part 0 only: what the state records besides its entries (the outbox's generation).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schemars(schema_with = "any_object")]
    pub meta: Value,
    /// How many entries this part holds (for `kubectl get integrationstates`).
    #[serde(default)]
    pub entry_count: u32,
    /// JSON text: Employee ID → entry, for the Employee IDs whose bucket is in this part.
    /// Text rather than an object, so the server's field management records one field,
    /// not one per member (which would double the object's size).
    #[serde(default)]
    pub entries: String,
}

/// The kinds of state an integration has.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StateKind {
    /// Members the integration created or adopted (the ledger of managed members).
    #[default]
    Ledger,
    /// Invitations intended, sent and confirmed (the invitation outbox).
    Invitations,
    /// Values written that the destination did not keep (convergence notes).
    Convergence,
}

impl StateKind {
    /// The name part of its objects: `<integration>-<name>`.
    pub fn name(self) -> &'static str {
        match self {
            StateKind::Ledger => "ledger",
            StateKind::Invitations => "invitations",
            StateKind::Convergence => "convergence",
        }
    }
}

/// An object whose fields the server keeps as they are (the entries' own shape is the
/// operator's, versioned with it).
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
