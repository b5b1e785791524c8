//! Exit codes of `sync` and the plugin's commands (a stable contract).

pub const SUCCEEDED: u8 = 0;
pub const FAILED: u8 = 1;
pub const INVALID_INPUT: u8 = 2;
pub const PARTIALLY_SUCCEEDED: u8 = 3;
