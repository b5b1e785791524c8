//! Exit codes of `sync` and the plugin's commands (a stable contract).

pub(crate) const SUCCEEDED: u8 = 0;
pub(crate) const FAILED: u8 = 1;
pub(crate) const INVALID_INPUT: u8 = 2;
pub(crate) const PARTIALLY_SUCCEEDED: u8 = 3;
