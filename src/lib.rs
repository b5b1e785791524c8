//! freshteam-operator: provisions and de-provisions the members of a SCIM 2.0 rewards
//! platform from a Freshteam HR directory.
//!
//! Data flows one way: [`source`] records → [`mapping`] members → [`plan`] against the
//! [`destination`] → [`sync`] applies it → an ImportRun report ([`api`]). Modules import
//! only lower layers (the order is in `tests/layers.rs`, which checks it).

// What nothing outside the crate uses is `pub(crate)`, so that dead code is reported.
#![warn(unreachable_pub)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod connect;
pub mod controller;
pub mod destination;
pub mod egress;
pub(crate) mod exit;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http_policy;
pub mod ledger;
pub mod manifest;
pub mod mapping;
pub mod member;
pub mod notify;
pub mod plan;
pub mod plugin;
pub mod progress;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod state;
pub mod sync;
pub(crate) mod telemetry;
pub mod validate;
