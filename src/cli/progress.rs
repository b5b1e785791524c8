//! Progress on stderr: a bar on a terminal, plain lines otherwise.

use indicatif::ProgressBar;

use crate::progress::{terminal_bar, ProgressSink};

pub(super) struct TerminalProgress {
    bar: Option<ProgressBar>,
    /// The phase shown, put back when a wait for the rate limit is over.
    phase: std::sync::Mutex<String>,
}

impl TerminalProgress {
    pub(super) fn new() -> Self {
        let bar = terminal_bar(34);
        TerminalProgress {
            bar,
            phase: Default::default(),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ProgressSink for TerminalProgress {
    fn phase(&self, message: &str) {
        *self.phase.lock().expect("phase lock") = message.to_string();
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => eprintln!("{message}"),
        }
    }
    fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }
    fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }
    /// A wait is a line of its own (or the bar's message until it is over).
    fn waiting(&self, wait: Option<&crate::progress::Wait>) {
        match (&self.bar, wait) {
            (Some(bar), Some(wait)) => bar.set_message(wait.message()),
            (Some(bar), None) => bar.set_message(self.phase.lock().expect("phase lock").clone()),
            (None, Some(wait)) => eprintln!("{}", wait.message()),
            (None, None) => {}
        }
    }
    fn warn(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}
