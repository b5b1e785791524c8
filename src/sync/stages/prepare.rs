//! Prepare: the ledger of managed members, and whether the run is full or incremental.

use chrono::{DateTime, Utc};

use super::RunEnd;
use crate::api::ImportMode;
use crate::ledger::{ImportCursor, Ledger};
use crate::sync::mode::{self, ModeChoice, RequestedMode};
use crate::sync::{ImportJob, ImportOptions};

/// What the run starts from.
pub(super) struct Prepared {
    pub started: DateTime<Utc>,
    /// The ledger as loaded (none without a ledger store); the commit stage takes it.
    pub ledger: Option<Ledger>,
    /// The ledger's cursor at the start.
    pub cursor: Option<ImportCursor>,
    /// Full or incremental, and why; none when the options ask for no mode (always full,
    /// no cursor kept).
    pub choice: Option<ModeChoice>,
}

impl Prepared {
    pub(super) fn mode(&self) -> ImportMode {
        self.choice.as_ref().map_or(ImportMode::Full, |c| c.mode)
    }

    /// Where an incremental run reads from; none: a full run.
    pub(super) fn since(&self) -> Option<DateTime<Utc>> {
        self.choice.as_ref().and_then(|c| c.since)
    }
}

/// Loads the ledger (a run that cannot read it fails: it changed nothing) and chooses
/// the mode.
pub(super) async fn prepare(
    job: &ImportJob<'_>,
    started: DateTime<Utc>,
) -> Result<Prepared, RunEnd> {
    let ledger = match job.stores.ledger {
        Some(store) => Some(store.load().await.map_err(|e| {
            RunEnd::failed(format!(
                "the ledger of managed members could not be read ({}): {e}; nothing was changed",
                store.location()
            ))
        })?),
        None => None,
    };
    let cursor = ledger.as_ref().and_then(|l| l.cursor.clone());
    let choice = choose(
        job.options,
        job.stores.ledger.is_some(),
        cursor.as_ref(),
        started,
    );
    Ok(Prepared {
        started,
        ledger,
        cursor,
        choice,
    })
}

fn choose(
    options: &ImportOptions,
    has_state: bool,
    cursor: Option<&ImportCursor>,
    started: DateTime<Utc>,
) -> Option<ModeChoice> {
    let policy = options.mode.as_ref()?;
    Some(if has_state {
        mode::choose_mode(policy, cursor, options.dry_run, started)
    } else if policy.requested == RequestedMode::Full {
        mode::choose_mode(policy, None, options.dry_run, started)
    } else {
        ModeChoice {
            mode: ImportMode::Full,
            reason: "no state to keep an incremental cursor in (sync without --state-file)".into(),
            since: None,
        }
    })
}
