//! The client factory lives below the front ends (`crate::connect`); this path stays
//! for code that names it here.

pub use crate::connect::{account_key, ConnectError, Connector, HttpConnector};
