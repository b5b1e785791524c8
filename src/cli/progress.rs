//! Progress on stderr: a bar on a terminal, plain lines otherwise.

use indicatif::ProgressBar;

use crate::progress::{terminal_bar, ProgressSink};

pub(super) struct TerminalProgress {
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    pub(super) fn new() -> Self {
        let bar = terminal_bar(34);
        TerminalProgress { bar }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ProgressSink for TerminalProgress {
    fn phase(&self, message: &str) {
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
    fn waiting(&self, wait: Option<&crate::progress::Wait>) {
        let Some(wait) = wait else { return };
        match &self.bar {
            Some(bar) => bar.set_message(wait.message()),
            None => eprintln!("{}", wait.message()),
        }
    }
    fn warn(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}
