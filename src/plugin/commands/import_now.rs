//! `import-now`: request an import and follow its run.

use std::collections::HashSet;
use std::time::Duration;

use chrono::SecondsFormat;
use kube::api::{Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::{condition, counts, show_timeout, Fail, Output, Plugin};
use crate::api::{ImportPhase, ImportSummary, ImportTrigger, APPROVE_LEAVERS, IMPORT_REQUESTED_AT};
use crate::clock::rfc3339;
use crate::exit;
use crate::plugin::view::FollowView;

/// `import-now` options.
#[derive(Clone, Debug)]
pub struct ImportNowOptions {
    /// Give up following after this long (the run itself goes on in the cluster).
    pub timeout: Duration,
    /// Wait for the run and report its outcome; false only requests the import.
    pub follow: bool,
}

impl Default for ImportNowOptions {
    fn default() -> Self {
        ImportNowOptions {
            timeout: Duration::from_secs(30 * 60),
            follow: true,
        }
    }
}

impl Plugin {
    /// Sets `import-requested-at`, finds the run the operator starts for it and follows
    /// it to its end. Exit codes as `sync`: 0 Succeeded, 3 PartiallySucceeded, 1 Failed,
    /// Interrupted, Blocked or timed out, 2 unknown integration.
    pub async fn import_now(
        &self,
        name: &str,
        options: &ImportNowOptions,
        view: &dyn FollowView,
    ) -> Output {
        let result = self.import_now_inner(name, options, view).await;
        view.finish();
        result.unwrap_or_else(Output::from)
    }

    async fn import_now_inner(
        &self,
        name: &str,
        options: &ImportNowOptions,
        view: &dyn FollowView,
    ) -> Result<Output, Fail> {
        let fti = self.integration(name).await?;
        if fti.spec.suspend {
            return Err(Fail::Failed(format!(
                "{name} is suspended (spec.suspend: true): the operator starts no import. Resume it with:\n  \
                 kubectl patch fti {name} {} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}'",
                self.ns_flag()
            )));
        }
        // Runs that exist before the request are not the one it starts.
        let before: HashSet<String> = self
            .runs_of(name)
            .await?
            .iter()
            .map(|r| r.name_any())
            .collect();

        let now = self.clock.now();
        let mut value = rfc3339(now);
        if fti.annotations().get(IMPORT_REQUESTED_AT) == Some(&value) {
            // The same value twice is no new request: a second within one second needs
            // a finer time.
            value = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        }
        self.integrations()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {IMPORT_REQUESTED_AT: value}}})),
            )
            .await
            .map_err(|e| Fail::Failed(format!("cannot annotate {name}: {e}")))?;

        if !options.follow {
            return Ok(Output::ok(format!(
                "import of {name} requested ({IMPORT_REQUESTED_AT}={value})\n"
            ))
            .with_stderr(format!(
                "follow it with: kubectl freshteam history {name} {}\n",
                self.ns_flag()
            )));
        }

        let deadline = tokio::time::Instant::now() + options.timeout;
        view.phase(&format!(
            "waiting for the operator to start an ImportRun for {name}"
        ));
        let run_name = self
            .wait_for_run(name, &value, &before, deadline, options.timeout, view)
            .await?;
        self.follow_run(name, &run_name, deadline, options.timeout, view)
            .await
    }

    async fn wait_for_run(
        &self,
        name: &str,
        request: &str,
        before: &HashSet<String>,
        deadline: tokio::time::Instant,
        timeout: Duration,
        view: &dyn FollowView,
    ) -> Result<String, Fail> {
        let mut noted: Option<String> = None;
        loop {
            let runs = self.runs_of(name).await?;
            // A scheduled or on-demand run that happens to start now is not the requested one.
            if let Some(run) = runs.iter().find(|r| {
                !before.contains(&r.name_any())
                    && !matches!(
                        r.spec.trigger,
                        ImportTrigger::Scheduled | ImportTrigger::OnDemand
                    )
            }) {
                return Ok(run.name_any());
            }
            let status = self.integration(name).await?.status.unwrap_or_default();
            if status.last_handled_import_request.as_deref() == Some(request) {
                // Handled, but the run is gone already (a history limit of 0): lastImport
                // still names it.
                if let Some(last) = status
                    .last_import
                    .as_ref()
                    .filter(|l| !before.contains(&l.run_name))
                {
                    return Ok(last.run_name.clone());
                }
            }
            // The operator starts nothing for an integration that is not Ready; say why
            // instead of waiting silently.
            if let Some(c) = condition(&status.conditions, "Ready").filter(|c| c.status == "False")
            {
                let note = format!("{name} is not Ready ({}): {}", c.reason, c.message);
                if noted.as_ref() != Some(&note) {
                    view.note(&note);
                    noted = Some(note);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let mut message = format!(
                    "timed out after {}: the operator started no ImportRun for {name}",
                    show_timeout(timeout)
                );
                match noted {
                    Some(n) => message.push_str(&format!(" ({n})")),
                    None => message.push_str(&format!(
                        "; is it running? See: kubectl freshteam status {name} {}",
                        self.ns_flag()
                    )),
                }
                return Err(Fail::Failed(message));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    pub(super) async fn follow_run(
        &self,
        name: &str,
        run_name: &str,
        deadline: tokio::time::Instant,
        timeout: Duration,
        view: &dyn FollowView,
    ) -> Result<Output, Fail> {
        let mut last_phase = None;
        loop {
            let run =
                self.runs().get_opt(run_name).await.map_err(|e| {
                    Fail::Failed(format!("cannot read importrun \"{run_name}\": {e}"))
                })?;
            let Some(run) = run else {
                // Pruned right after it ended: the integration's lastImport keeps the outcome.
                let fti = self.integration(name).await?;
                let last = fti
                    .status
                    .and_then(|s| s.last_import)
                    .filter(|l| l.run_name == run_name && l.phase.is_final());
                return match last {
                    Some(l) => Ok(self.outcome(name, run_name, false, l.phase, &l.summary, None)),
                    None => Err(Fail::Failed(format!(
                        "ImportRun {run_name} was deleted before it ended"
                    ))),
                };
            };
            let status = run.status.clone().unwrap_or_default();
            if last_phase != Some(status.phase) {
                view.phase(&format!("ImportRun {run_name}: {}", status.phase));
                last_phase = Some(status.phase);
            }
            if let Some(p) = &status.progress {
                view.progress(p.processed, p.total);
            }
            if status.phase.is_final() {
                return Ok(self.outcome(
                    name,
                    run_name,
                    run.spec.dry_run,
                    status.phase,
                    &status.summary,
                    status.message.as_deref(),
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                let progress = status
                    .progress
                    .as_ref()
                    .map(|p| format!(", {}/{} records", p.processed, p.total))
                    .unwrap_or_default();
                return Err(Fail::Failed(format!(
                    "timed out after {} waiting for ImportRun {run_name} to end (phase {}{progress}); \
                     it goes on in the cluster: kubectl freshteam history {name} {}",
                    show_timeout(timeout),
                    status.phase,
                    self.ns_flag()
                )));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// The one-line summary on stdout, hints on stderr, and the exit code of a run.
    fn outcome(
        &self,
        name: &str,
        run_name: &str,
        dry_run: bool,
        phase: ImportPhase,
        s: &ImportSummary,
        message: Option<&str>,
    ) -> Output {
        // The counts once: the message of a run that went through (or was stopped) is its
        // counts already; a Blocked or Failed run's message says why instead.
        let message = message.filter(|m| !m.is_empty());
        let says_counts = matches!(
            phase,
            ImportPhase::Succeeded | ImportPhase::PartiallySucceeded | ImportPhase::Interrupted
        );
        let mut line = match message {
            Some(m) if says_counts => format!("ImportRun {run_name} {phase}: {m}"),
            Some(m) => format!("ImportRun {run_name} {phase}: {} - {m}", counts(s)),
            None => format!("ImportRun {run_name} {phase}: {}", counts(s)),
        };
        if message.is_none() && dry_run {
            line.push_str(" - preview: nothing was written");
        }
        line.push('\n');
        let mut hints = String::new();
        if s.errors + s.warnings > 0 {
            hints.push_str(&format!(
                "the report: kubectl freshteam errors {run_name} {} -o {run_name}-errors.csv\n",
                self.ns_flag()
            ));
        }
        if phase == ImportPhase::Blocked {
            hints.push_str(&format!(
                "nothing was deactivated; to approve this run's leavers:\n  \
                 kubectl annotate fti {name} {} --overwrite {APPROVE_LEAVERS}={run_name}\n",
                self.ns_flag()
            ));
        }
        Output {
            code: match phase {
                ImportPhase::Succeeded => exit::SUCCEEDED,
                ImportPhase::PartiallySucceeded => exit::PARTIALLY_SUCCEEDED,
                _ => exit::FAILED,
            },
            stdout: line,
            stderr: hints,
        }
    }
}
