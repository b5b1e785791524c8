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

/// A progress bar on stderr when it is a terminal (`None` otherwise: callers print plain
/// lines), its message column `message_width` wide.
pub fn terminal_bar(message_width: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::stderr(),
        );
        let template = format!(
            "{{spinner}} {{msg:<{message_width}}} [{{bar:30}}] {{pos}}/{{len}} ({{percent}}%) {{elapsed}}"
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(&template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    })
}
