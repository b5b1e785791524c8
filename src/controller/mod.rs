//! The Kubernetes controller: FreshteamIntegrations reconciled into scheduled imports.

pub mod conditions;
pub mod decide;
pub mod history;
