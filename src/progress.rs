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
    /// The run waits for a destination's rate limit (`Some`), or no longer does (`None`).
    fn waiting(&self, _wait: Option<&Wait>) {}
}

/// A run waiting for a service's rate limit to reopen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The endpoint whose budget is spent (`/Users`, `/Users/{id}`).
    pub endpoint: String,
    /// When the wait ends.
    pub until: std::time::SystemTime,
}

impl Wait {
    /// What the run says while it waits.
    pub fn message(&self) -> String {
        let until: chrono::DateTime<chrono::Utc> = self.until.into();
        format!(
            "waiting for the destination's rate limit ({}) until {}",
            self.endpoint,
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

tokio::task_local! {
    static WAITS: tokio::sync::watch::Sender<Option<Wait>>;
}

/// Runs `work`, passing every [`report_wait`] made inside it (by the clients, however
/// deep) on to `sink` as it happens, and clearing any wait left when `work` ends.
pub async fn forward_waits<F: std::future::Future>(sink: &dyn ProgressSink, work: F) -> F::Output {
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let work = std::pin::pin!(WAITS.scope(tx, work));
    let mut work = work;
    let mut waiting = false;
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            Ok(()) = rx.changed() => {
                let wait = rx.borrow_and_update().clone();
                if let Some(w) = &wait {
                    tracing::info!(endpoint = %w.endpoint, "{}", w.message());
                }
                waiting = wait.is_some();
                sink.waiting(wait.as_ref());
            }
        }
    };
    if waiting {
        sink.waiting(None);
    }
    out
}

/// Tells whoever watches the current run that it waits (`Some`), or that the wait for
/// `endpoint` is over (`None`). Nothing happens outside [`forward_waits`].
pub fn report_wait(endpoint: &str, until: Option<std::time::SystemTime>) {
    let _ = WAITS.try_with(|tx| {
        tx.send_if_modified(|current| match until {
            Some(until) => {
                let wait = Wait {
                    endpoint: endpoint.to_string(),
                    until,
                };
                let changed = current.as_ref() != Some(&wait);
                *current = Some(wait);
                changed
            }
            // Another endpoint's wait stays.
            None if current.as_ref().is_some_and(|w| w.endpoint == endpoint) => {
                *current = None;
                true
            }
            None => false,
        });
    });
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
