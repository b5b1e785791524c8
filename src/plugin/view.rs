//! What `import-now` shows on stderr while it follows a run: a live bar on a terminal,
//! plain lines (phase changes and notes) otherwise, so logs and CI output stay readable.

use indicatif::ProgressBar;

use crate::progress::terminal_bar;

/// Receives a followed run's events. The binary uses [`TerminalView`]; tests record.
pub trait FollowView: Send + Sync {
    /// A message always worth a line (waiting for the operator, a warning).
    fn note(&self, text: &str);
    /// The run changed phase; `text` describes it.
    fn phase(&self, text: &str);
    /// Records handled so far.
    fn progress(&self, processed: u64, total: u64);
    /// The run ended (or following stopped): clear the bar.
    fn finish(&self);
}

/// Progress on stderr: an indicatif bar on a terminal, lines otherwise.
pub struct TerminalView {
    bar: Option<ProgressBar>,
}

impl TerminalView {
    pub fn new() -> Self {
        let bar = terminal_bar(40);
        TerminalView { bar }
    }
}

impl Default for TerminalView {
    fn default() -> Self {
        Self::new()
    }
}

impl FollowView for TerminalView {
    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
    fn phase(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_string()),
            None => eprintln!("{text}"),
        }
    }
    fn progress(&self, processed: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(processed.min(total));
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Shows nothing (`--no-follow`, and callers that only want the outcome).
pub struct SilentView;

impl FollowView for SilentView {
    fn note(&self, _: &str) {}
    fn phase(&self, _: &str) {}
    fn progress(&self, _: u64, _: u64) {}
    fn finish(&self) {}
}
