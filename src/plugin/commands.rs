//! The plugin's commands. Each takes a `kube::Client` (a real one, or an in-process fake
//! in tests) and returns an [`Output`]: the text for stdout and stderr and the exit code,
//! which the binary prints and returns.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::format::{human_duration, parse_time, table};
use super::view::FollowView;
use crate::api::INTEGRATION_LABEL;
use crate::api::{
    FreshteamIntegration, ImportPhase, ImportRun, ImportRunStatus, ImportSummary, ImportTrigger,
    APPROVE_LEAVERS, IMPORT_REQUESTED_AT,
};
use crate::clock::{rfc3339, Clock, SystemClock};
use crate::exit;
use crate::sync::{errors_csv, report_part_name};

/// What a command prints and how the process exits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn ok(stdout: impl Into<String>) -> Self {
        Output {
            code: exit::SUCCEEDED,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn with_stderr(mut self, stderr: impl Into<String>) -> Self {
        self.stderr = stderr.into();
        self
    }
}

/// Why a command stopped early.
enum Fail {
    /// Bad input: an unknown integration or run (exit 2).
    Usage(String),
    /// Anything else: the API refused, a run never ended in time (exit 1).
    Failed(String),
}

impl From<Fail> for Output {
    fn from(f: Fail) -> Self {
        let (code, message) = match f {
            Fail::Usage(m) => (exit::INVALID_INPUT, m),
            Fail::Failed(m) => (exit::FAILED, m),
        };
        Output {
            code,
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
        }
    }
}

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

/// `history -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HistoryFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

/// The commands, bound to one client and namespace.
pub struct Plugin {
    client: Client,
    namespace: String,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
}

impl Plugin {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Plugin {
            client,
            namespace: namespace.into(),
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// The clock behind the request annotation's value, ages and running durations.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often `import-now` reads the run while following it.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn integrations(&self) -> Api<FreshteamIntegration> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn runs(&self) -> Api<ImportRun> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn integration(&self, name: &str) -> Result<FreshteamIntegration, Fail> {
        match self.integrations().get_opt(name).await {
            Ok(Some(fti)) => Ok(fti),
            Ok(None) => Err(Fail::Usage(format!(
                "freshteamintegration \"{name}\" not found in namespace \"{}\"",
                self.namespace
            ))),
            Err(e) => Err(Fail::Failed(format!(
                "cannot read freshteamintegration \"{name}\": {e}"
            ))),
        }
    }

    /// The integration's runs, newest first.
    async fn runs_of(&self, name: &str) -> Result<Vec<ImportRun>, Fail> {
        let selector = format!("{INTEGRATION_LABEL}={name}");
        let mut runs = self
            .runs()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Fail::Failed(format!("cannot list the importruns of {name}: {e}")))?
            .items;
        runs.sort_by_cached_key(|r| std::cmp::Reverse((created(r), r.name_any())));
        Ok(runs)
    }

    fn ns_flag(&self) -> String {
        format!("-n {}", self.namespace)
    }

    // ---------------------------------------------------------------- import-now

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
            // A scheduled run that happens to start now is not the requested one.
            if let Some(run) = runs.iter().find(|r| {
                !before.contains(&r.name_any()) && r.spec.trigger != ImportTrigger::Scheduled
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

    async fn follow_run(
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
        let mut line = format!("ImportRun {run_name} {phase}: {}", counts(s));
        if let Some(m) = message.filter(|m| !m.is_empty()) {
            line.push_str(" - ");
            line.push_str(m);
        } else if dry_run {
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

    // ---------------------------------------------------------------- history

    /// The integration's ImportRuns, newest first.
    pub async fn history(&self, name: &str, format: HistoryFormat) -> Output {
        self.history_inner(name, format)
            .await
            .unwrap_or_else(Output::from)
    }

    async fn history_inner(&self, name: &str, format: HistoryFormat) -> Result<Output, Fail> {
        self.integration(name).await?;
        let runs = self.runs_of(name).await?;
        match format {
            HistoryFormat::Json | HistoryFormat::Yaml => {
                let list = json!({"apiVersion": "v1", "kind": "List", "items": runs});
                let text = if format == HistoryFormat::Json {
                    serde_json::to_string_pretty(&list).expect("a list serialises") + "\n"
                } else {
                    serde_yaml::to_string(&list).expect("a list serialises")
                };
                Ok(Output::ok(text))
            }
            HistoryFormat::Table if runs.is_empty() => Ok(Output::default().with_stderr(format!(
                "No ImportRuns found for {name} in namespace {}.\n",
                self.namespace
            ))),
            HistoryFormat::Table => {
                let now = self.clock.now();
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        let st = r.status.clone().unwrap_or_default();
                        vec![
                            r.name_any(),
                            format!("{:?}", r.spec.trigger),
                            st.phase.to_string(),
                            st.start_time.clone().unwrap_or_else(|| "-".into()),
                            run_duration(&st, now),
                            st.summary.created.to_string(),
                            st.summary.updated.to_string(),
                            st.summary.leavers.to_string(),
                            st.summary.errors.to_string(),
                        ]
                    })
                    .collect();
                Ok(Output::ok(table(
                    &[
                        "NAME", "TRIGGER", "PHASE", "STARTED", "DURATION", "CREATED", "UPDATED",
                        "LEAVERS", "ERRORS",
                    ],
                    &rows,
                )))
            }
        }
    }

    // ---------------------------------------------------------------- errors

    /// Writes a run's CSV report (`status.errorReport` → its ConfigMap) to `file`, or to
    /// stdout. A run without errors or warnings has no report: a note on stderr, nothing
    /// written (an existing `file` is left as it is), exit 0.
    pub async fn errors(&self, run_name: &str, file: Option<&Path>) -> Output {
        self.errors_inner(run_name, file)
            .await
            .unwrap_or_else(Output::from)
    }

    async fn errors_inner(&self, run_name: &str, file: Option<&Path>) -> Result<Output, Fail> {
        let run = match self.runs().get_opt(run_name).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(Fail::Usage(format!(
                    "importrun \"{run_name}\" not found in namespace \"{}\"",
                    self.namespace
                )))
            }
            Err(e) => {
                return Err(Fail::Failed(format!(
                    "cannot read importrun \"{run_name}\": {e}"
                )))
            }
        };
        let status = run.status.clone().unwrap_or_default();
        let mut note = String::new();
        let csv = match &status.error_report {
            Some(report) => {
                let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                let cm = cms
                    .get_opt(&report.config_map_name)
                    .await
                    .map_err(|e| {
                        Fail::Failed(format!(
                            "cannot read configmap \"{}\": {e}",
                            report.config_map_name
                        ))
                    })?
                    .ok_or_else(|| {
                        Fail::Failed(format!(
                            "the report of ImportRun {run_name} (configmap \"{}\") no longer exists",
                            report.config_map_name
                        ))
                    })?;
                let mut csv = cm
                    .data
                    .and_then(|mut d| d.remove(&report.key))
                    .ok_or_else(|| {
                        Fail::Failed(format!(
                            "configmap \"{}\" has no key \"{}\"",
                            report.config_map_name, report.key
                        ))
                    })?;
                // A large report is split over several ConfigMaps, each with the header.
                for i in 1..report.parts.unwrap_or(1) as usize {
                    let name = report_part_name(&report.config_map_name, i);
                    let part = cms
                        .get_opt(&name)
                        .await
                        .map_err(|e| {
                            Fail::Failed(format!("cannot read configmap \"{name}\": {e}"))
                        })?
                        .and_then(|cm| cm.data?.remove(&report.key))
                        .ok_or_else(|| {
                            Fail::Failed(format!(
                                "part {} of the report of ImportRun {run_name} (configmap \"{name}\") is missing",
                                i + 1
                            ))
                        })?;
                    let body = part.split_once('\n').map_or("", |(_, rest)| rest);
                    csv.push_str(body);
                }
                csv
            }
            None if !status.phase.is_final() => {
                return Err(Fail::Failed(format!(
                    "ImportRun {run_name} is {}: its report is stored when it ends",
                    status.phase
                )))
            }
            None if !status.errors.is_empty() => {
                // The report could not be stored; the rows kept in the status are better
                // than nothing.
                note = format!(
                    "the full report of ImportRun {run_name} was not stored; these are the {} rows kept in its status\n",
                    status.errors.len()
                );
                errors_csv(&status.errors)
            }
            None => {
                return Ok(Output::default().with_stderr(format!(
                    "ImportRun {run_name} has no errors or warnings: nothing written\n"
                )))
            }
        };
        match file {
            None => Ok(Output::ok(csv).with_stderr(note)),
            Some(path) => {
                std::fs::write(path, &csv)
                    .map_err(|e| Fail::Failed(format!("cannot write {}: {e}", path.display())))?;
                note.push_str(&format!(
                    "{} rows of ImportRun {run_name}'s report written to {}\n",
                    csv_rows(&csv),
                    path.display()
                ));
                Ok(Output::default().with_stderr(note))
            }
        }
    }

    // ---------------------------------------------------------------- preview

    /// What an import would do (`status.preview`), and how to publish.
    pub async fn preview(&self, name: &str) -> Output {
        self.preview_inner(name).await.unwrap_or_else(Output::from)
    }

    async fn preview_inner(&self, name: &str) -> Result<Output, Fail> {
        let fti = self.integration(name).await?;
        let status = fti.status.clone().unwrap_or_default();
        let mut out = String::new();
        let finished = status
            .preview
            .as_ref()
            .filter(|p| p.computed_at.is_some() && p.would_create.is_some());
        let under_way = status.preview.as_ref().filter(|p| p.computed_at.is_none());
        if let Some(p) = under_way.filter(|p| p.phase == Some(ImportPhase::Running)) {
            out.push_str(&format!(
                "A preview of {name} is running (ImportRun {}): follow it with\n  \
                 kubectl get importrun {} {} -w\n",
                p.run_name,
                p.run_name,
                self.ns_flag()
            ));
        } else if let Some(p) = status
            .preview
            .as_ref()
            .filter(|p| p.phase == Some(ImportPhase::Failed))
        {
            out.push_str(&format!(
                "The last preview of {name} (ImportRun {}) failed: kubectl freshteam describe {name} {}\n",
                p.run_name,
                self.ns_flag()
            ));
        }
        match finished {
            None if under_way.is_some_and(|p| p.phase == Some(ImportPhase::Running)) => {}
            None => {
                out.push_str(&format!("No preview of {name} yet.\n"));
                if let Some(c) =
                    condition(&status.conditions, "Importing").filter(|c| c.status == "True")
                {
                    out.push_str(&format!("{}.\n", c.message));
                } else if !fti.spec.published {
                    out.push_str(&format!(
                        "The operator computes one when the spec changes; to compute one now:\n  \
                         kubectl freshteam import-now {name} {}\n",
                        self.ns_flag()
                    ));
                }
            }
            Some(p) => {
                out.push_str(&format!(
                    "Preview of {name} (ImportRun {}, computed {})\n",
                    p.run_name,
                    p.computed_at.as_deref().unwrap_or("-")
                ));
                let rows = [
                    ("Would create:", p.would_create.unwrap_or(0)),
                    ("Would update:", p.would_update.unwrap_or(0)),
                    (
                        "Would mark as leavers:",
                        p.would_mark_as_leavers.unwrap_or(0),
                    ),
                    ("Would re-activate:", p.would_reactivate.unwrap_or(0)),
                    ("Errors:", p.errors.unwrap_or(0)),
                ];
                for (label, n) in rows {
                    out.push_str(&format!("  {label:<23}{n}\n"));
                }
                if p.errors.unwrap_or(0) > 0 {
                    out.push_str(&format!(
                        "The rejected records: kubectl freshteam errors {} {}\n",
                        p.run_name,
                        self.ns_flag()
                    ));
                }
                if let (Some(pg), Some(g)) = (p.generation, fti.metadata.generation) {
                    if pg != g && !fti.spec.published {
                        out.push_str(&format!(
                            "The spec changed since (generation {pg} → {g}): a new preview is due.\n"
                        ));
                    }
                }
            }
        }
        if fti.spec.published {
            out.push_str(&format!(
                "{name} is published: imports write to the destination.\n"
            ));
        } else {
            out.push_str(&format!(
                "{name} is not published: nothing is written to the destination. To publish:\n  \
                 kubectl patch fti {name} {} --type merge -p '{{\"spec\":{{\"published\":true}}}}'\n",
                self.ns_flag()
            ));
        }
        Ok(Output::ok(out))
    }

    // ---------------------------------------------------------------- status

    /// Conditions, last import, next import, published and suspended.
    pub async fn status(&self, name: &str) -> Output {
        self.status_inner(name).await.unwrap_or_else(Output::from)
    }

    async fn status_inner(&self, name: &str) -> Result<Output, Fail> {
        let fti = self.integration(name).await?;
        let status = fti.status.clone().unwrap_or_default();
        let now = self.clock.now();
        let spec = &fti.spec;
        let mut fields: Vec<(&str, String)> = vec![
            ("Name:", name.to_string()),
            ("Namespace:", self.namespace.clone()),
            ("Published:", spec.published.to_string()),
            ("Suspended:", spec.suspend.to_string()),
            (
                "Schedule:",
                format!(
                    "{} ({})",
                    spec.schedule,
                    spec.time_zone.as_deref().unwrap_or("UTC")
                ),
            ),
        ];
        let next = match (&status.next_import_time, spec.suspend, spec.published) {
            (_, true, _) => "none (suspended)".to_string(),
            (_, _, false) => "none (unpublished: previews only)".to_string(),
            (Some(t), _, _) => match parse_time(t) {
                Some(at) if at > now => format!("{t} (in {})", human_duration(at - now)),
                _ => t.clone(),
            },
            (None, _, _) => "-".to_string(),
        };
        fields.push(("Next import:", next));
        let last = match &status.last_import {
            None => "none".to_string(),
            Some(l) => {
                let mut text = format!("{} {}: {}", l.run_name, l.phase, counts(&l.summary));
                if let Some(t) = l.completion_time.as_deref().or(l.start_time.as_deref()) {
                    let ago = parse_time(t)
                        .map(|t| format!(" ({} ago)", human_duration(now - t)))
                        .unwrap_or_default();
                    let verb = if l.phase.is_final() {
                        "ended"
                    } else {
                        "started"
                    };
                    text.push_str(&format!(", {verb} {t}{ago}"));
                }
                text
            }
        };
        fields.push(("Last import:", last));
        let mut out = String::new();
        for (k, v) in &fields {
            out.push_str(&format!("{k:<14}{v}\n"));
        }
        if let (Some(observed), Some(g)) = (status.observed_generation, fti.metadata.generation) {
            if observed != g {
                out.push_str(&format!(
                    "The status describes generation {observed}; the spec is at {g} (the operator has not caught up yet).\n"
                ));
            }
        }
        if status.conditions.is_empty() {
            out.push_str("Conditions:   none yet (is the operator running?)\n");
        } else {
            out.push_str("Conditions:\n");
            let rows: Vec<Vec<String>> = status
                .conditions
                .iter()
                .map(|c| {
                    vec![
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                        age(&c.last_transition_time, now),
                    ]
                })
                .collect();
            for line in table(&["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"], &rows).lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(Output::ok(out))
    }
}

/// "3 created, 0 updated, 1 leaver, 2 errors": the counts a user checks first.
fn counts(s: &ImportSummary) -> String {
    let plural = |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} created, {} updated, {}, {}",
        s.created,
        s.updated,
        plural(s.leavers, "leaver", "leavers"),
        plural(s.errors, "error", "errors")
    )
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn to_chrono(t: &Time) -> Option<DateTime<Utc>> {
    parse_time(&t.0.to_string())
}

/// When a run was created: its creationTimestamp, else its start time.
fn created(r: &ImportRun) -> Option<DateTime<Utc>> {
    r.metadata
        .creation_timestamp
        .as_ref()
        .and_then(to_chrono)
        .or_else(|| {
            r.status
                .as_ref()
                .and_then(|s| s.start_time.as_deref())
                .and_then(parse_time)
        })
}

fn age(t: &Time, now: DateTime<Utc>) -> String {
    to_chrono(t)
        .map(|t| human_duration(now - t))
        .unwrap_or_else(|| "-".into())
}

/// End minus start; a run still going counts up to now.
fn run_duration(st: &ImportRunStatus, now: DateTime<Utc>) -> String {
    let Some(start) = st.start_time.as_deref().and_then(parse_time) else {
        return "-".into();
    };
    let end = match st.completion_time.as_deref().and_then(parse_time) {
        Some(end) => end,
        None if !st.phase.is_final() => now,
        None => return "-".into(),
    };
    human_duration(end - start)
}

fn show_timeout(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        human_duration(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
    }
}

/// Data rows of a CSV with a header line.
fn csv_rows(csv: &str) -> usize {
    csv::Reader::from_reader(csv.as_bytes())
        .records()
        .filter(|r| r.is_ok())
        .count()
}
