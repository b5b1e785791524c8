//! Progress of a run, reported to whoever is watching (a terminal bar, an ImportRun).

/// Receives progress from the source, the engine and the destination.
pub trait ProgressSink: Send + Sync {
    /// A new phase begins ("Reading Freshteam employees", "Applying changes").
    fn phase(&self, _message: &str) {}
    /// The number of employee records the run handles, once known.
    fn set_total(&self, _total: u64) {}
    /// `n` more records are done.
    fn advance(&self, _n: u64) {}
    /// Something worth a line on stderr / an Event, without failing the run.
    fn warn(&self, _message: &str) {}
}

/// Discards progress.
pub struct NoProgress;

impl ProgressSink for NoProgress {}
