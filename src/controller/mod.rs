//! The Kubernetes controller: FreshteamIntegrations reconciled into scheduled imports.

pub mod decide;
