//! `freshteam-operator sync`: one import without a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, ValueEnum};
use kube::api::ObjectMeta;

use super::progress::TerminalProgress;
use crate::api::{ImportPhase, ImportRun, ImportRunSpec, ImportTrigger};
use crate::clock::SystemClock;
use crate::connect::{ConnectError, Connector, HttpConnector};
use crate::destination::scim::BulkMode;
use crate::destination::{ConvergenceNotes, MemberDirectory};
use crate::exit;
use crate::manifest::{self, Manifests};
use crate::notify::{Mail, MailSetupError, Outbox};
use crate::progress::ProgressSink;
use crate::source::EmployeeSource;
use crate::state::{MemoryStore, StateFile, Store};
use crate::sync::mode::{spec_fingerprint, ModePolicy, RequestedMode};
use crate::sync::{
    describe, notify_after_run, report_csv, run_import, ImportJob, ImportOptions, ImportOutcome,
    RunInfo, StopSignal, Stores,
};
use crate::validate::{validate_spec, EndpointPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BulkChoice {
    /// Use /Bulk when the service provider config announces it.
    Auto,
    /// One request per write.
    Off,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Compare every employee and every account.
    Full,
    /// Read only what changed since the last successful run recorded in --state-file,
    /// and everything when spec.fullReconcile.schedule says a full run is due, after a
    /// spec change, or when there is no usable cursor.
    Auto,
    /// As `auto`, but never full because of the schedule.
    Incremental,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Manifests file: the FreshteamIntegration and the Secrets it refers to
    /// (multi-document YAML; Secrets with `data` or `stringData`).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Write nothing and send nothing; the summary counts what would have happened.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the resulting ImportRun as JSON (or a human summary with `text`).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Let the run mark leavers even above `spec.safety.maxLeaversPercent`.
    #[arg(long)]
    pub approve_leavers: bool,
    /// Write the full error report (CSV) to this file.
    #[arg(long, value_name = "FILE")]
    pub error_report: Option<PathBuf>,
    /// Use SCIM /Bulk when the service announces it (`auto`), or never (`off`).
    #[arg(long, value_enum, default_value_t = BulkChoice::Auto)]
    pub bulk: BulkChoice,
    /// SMTP server for invitation and summary e-mails: smtp://host:port,
    /// smtp://user:password@host:587?tls=required (STARTTLS) or smtps://user:password@host
    /// (implicit TLS). Without one, e-mails are skipped with a warning.
    #[arg(long, env = "SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of e-mails (required with --smtp-url).
    #[arg(long, env = "MAIL_FROM", value_name = "ADDR")]
    pub mail_from: Option<String>,
    /// The integration's state: the ledger of managed members (those it created or
    /// adopted) and the invitation outbox. With it, an employee removed from Freshteam
    /// for good ("Delete Forever") is found and marked as a leaver, and pending
    /// invitations are sent exactly once, even after a crash. Without it, removed
    /// employees cannot be detected (they look like strangers and are left alone), and
    /// invitations are at most once. One process at a time per file.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Directory overriding the invitation templates (invitation.subject, invitation.txt,
    /// invitation.html).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Which kind of run (`auto` and `incremental` need --state-file, where the cursor
    /// of the last successful run is kept).
    #[arg(long, value_enum, default_value_t = ModeArg::Full)]
    pub mode: ModeArg,
    /// Import these employees alone (Employee IDs, comma-separated): nobody else is
    /// read, written or marked as a leaver, and each one's steps are printed (the
    /// ImportRun's status.members with --output json).
    #[arg(long, value_name = "EMPLOYEE-ID", value_delimiter = ',')]
    pub only: Vec<String>,
}

/// `--only` with an empty Employee ID.
#[derive(Debug, thiserror::Error)]
#[error("--only: an empty Employee ID; give IDs separated by commas, e.g. --only E-1,E-2")]
struct EmptyEmployeeId;

impl SyncArgs {
    /// `--only` as the run's option: none without it; an empty ID is invalid input.
    fn only(&self) -> Result<Option<Vec<String>>, EmptyEmployeeId> {
        if self.only.is_empty() {
            return Ok(None);
        }
        let mut ids: Vec<String> = Vec::new();
        for id in self.only.iter().map(|id| id.trim()) {
            if id.is_empty() {
                return Err(EmptyEmployeeId);
            }
            if !ids.iter().any(|have| have == id) {
                ids.push(id.to_string());
            }
        }
        Ok(Some(ids))
    }
}

/// Runs the command and maps the outcome to the exit codes of the contract.
pub(crate) async fn run(args: SyncArgs) -> ExitCode {
    super::init_logging("warn");
    let manifests = match manifest::load(&args.file) {
        Ok(m) => m,
        Err(e) => return invalid(&e.to_string()),
    };
    let spec = &manifests.integration.spec;
    let validated = match validate_spec(spec, EndpointPolicy::LoopbackOnly) {
        Ok(v) => v,
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            return invalid(&format!(
                "{}: the FreshteamIntegration is invalid:\n{}",
                manifests.file,
                lines.join("\n")
            ));
        }
    };
    let only = match args.only() {
        Ok(only) => only,
        Err(e) => return invalid(&e.to_string()),
    };
    let mail = match mail_setup(&args) {
        Ok(m) => m,
        Err(e) => return invalid(&e.to_string()),
    };
    let deadline = match crate::connect::run_deadline(spec) {
        Ok(d) => d,
        Err(e) => return invalid(&e.to_string()),
    };
    let integration = manifests
        .integration
        .metadata
        .name
        .clone()
        .unwrap_or_default();
    let progress = TerminalProgress::new();
    let file_store = args.state_file.as_ref().map(StateFile::new);
    // What earlier runs learnt about the destination spares requests when connecting.
    let notes = match &file_store {
        Some(f) => load_notes(f, &progress).await,
        None => ConvergenceNotes::default(),
    };
    // Connecting reads the destination: a wait for its rate limit shows as in the run.
    let connected =
        crate::progress::forward_waits(&progress, clients(&manifests, args.bulk, &notes)).await;
    let (source, destination) = match connected {
        Ok(c) => c,
        Err(Setup::Invalid(m)) => {
            progress.finish();
            return invalid(&m);
        }
        Err(Setup::Failed(m)) => {
            progress.finish();
            // A run that could not start is still a failed run: its owners hear of it.
            let mut outcome = failed_outcome(m);
            let name = run_name(&manifests);
            let info = RunInfo {
                integration: &integration,
                run_name: &name,
                spec,
                dry_run: args.dry_run,
                report_location: report_location(&args),
            };
            for w in notify_after_run(&mail, None, &info, &mut outcome).await {
                eprintln!("warning: {w}");
            }
            return finish(&args, &manifests, &name, outcome);
        }
    };

    let memory_store = MemoryStore::<Outbox>::new();
    let store: &dyn Store<Outbox> = match &file_store {
        Some(f) => f,
        None => &memory_store,
    };
    let invitations = (spec.welcome_email.enabled && !args.dry_run).then_some(store);

    if file_store.is_none() {
        progress.warn("no --state-file: employees removed from Freshteam for good cannot be detected (nothing remembers whom this integration manages), so their members stay active; pass --state-file FILE to keep the ledger of managed members");
    }
    let options = ImportOptions {
        dry_run: args.dry_run,
        max_leavers_percent: spec.safety.max_leavers_percent,
        approved_leavers: args.approve_leavers.then_some(u32::MAX),
        convergence: notes,
        when_removed: spec.leavers.when_removed,
        profile: spec.destination.scim.profile,
        mode: Some(ModePolicy {
            requested: match args.mode {
                ModeArg::Full => RequestedMode::Full,
                ModeArg::Auto => RequestedMode::Auto,
                ModeArg::Incremental => RequestedMode::Incremental,
            },
            full_schedule: validated.full_reconcile.clone(),
            time_zone: validated.time_zone,
            fingerprint: spec_fingerprint(spec),
        }),
        deadline: Some(deadline),
        only,
        ..ImportOptions::default()
    };
    let signals = tokio::spawn(stop_on_signal(options.stop.clone()));
    let mut outcome = run_import(&ImportJob {
        mapping: &validated.mapping,
        source: source.as_ref(),
        destination: destination.as_ref(),
        options: &options,
        stores: Stores {
            outbox: invitations,
            ledger: file_store.as_ref().map(|f| f as _),
            notes: file_store.as_ref().map(|f| f as _),
        },
        progress: &progress,
        clock: &SystemClock,
    })
    .await;
    signals.abort();
    let run_name = run_name(&manifests);
    if mail.transport.is_some() && !args.dry_run {
        progress.phase("Sending e-mail");
    }
    let info = RunInfo {
        integration: &integration,
        run_name: &run_name,
        spec,
        dry_run: args.dry_run,
        report_location: report_location(&args),
    };
    for w in notify_after_run(&mail, Some(store), &info, &mut outcome).await {
        progress.warn(&w);
    }
    progress.finish();
    finish(&args, &manifests, &run_name, outcome)
}

/// Asks the run to stop on SIGINT or SIGTERM: reads are dropped, a wait for the
/// destination's rate limit ends, the writes that settled are kept, and the run ends
/// `Interrupted` with its ImportRun printed as usual.
async fn stop_on_signal(stop: StopSignal) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    stop.stop(format!("sync received {which}"));
}

/// The convergence notes in the state file. Unreadable notes do not stop a run: without
/// them it writes what it would write anyway (an unkept value once more), so it says so
/// and starts without them.
async fn load_notes(store: &StateFile, progress: &TerminalProgress) -> ConvergenceNotes {
    store.load().await.unwrap_or_else(|e| {
        progress.warn(&format!(
            "convergence notes not read ({e}): the run starts without them"
        ));
        ConvergenceNotes::default()
    })
}

/// Why the clients could not be had: bad input (exit code INVALID_INPUT) or a run that
/// failed to start (reported like any failed run).
enum Setup {
    Invalid(String),
    Failed(String),
}

impl From<ConnectError> for Setup {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Config { .. } => Setup::Invalid(e.to_string()),
            ConnectError::Unavailable { .. } => Setup::Failed(e.to_string()),
        }
    }
}

/// The credentials come from the manifests; the clients from the shared factory.
async fn clients(
    manifests: &Manifests,
    bulk: BulkChoice,
    notes: &ConvergenceNotes,
) -> Result<(Box<dyn EmployeeSource>, Box<dyn MemberDirectory>), Setup> {
    let spec = &manifests.integration.spec;
    let api_key = manifests
        .secret(
            "spec.source.apiKeySecretRef",
            &spec.source.api_key_secret_ref,
        )
        .map_err(|e| Setup::Invalid(e.to_string()))?;
    let token = manifests
        .secret(
            "spec.destination.scim.tokenSecretRef",
            &spec.destination.scim.token_secret_ref,
        )
        .map_err(|e| Setup::Invalid(e.to_string()))?;
    let connector = HttpConnector::default().with_bulk(match bulk {
        BulkChoice::Auto => BulkMode::Auto,
        BulkChoice::Off => BulkMode::Off,
    });
    let source = connector.source(spec, api_key).await?;
    let destination = connector.destination(spec, token, notes).await?;
    Ok((source, destination))
}

/// Where `sync` keeps the full report, for the owners' e-mail.
fn report_location(args: &SyncArgs) -> Option<String> {
    Some(match &args.error_report {
        Some(path) => format!("in {} (--error-report)", path.display()),
        None => "not kept: run sync with --error-report FILE to keep it".to_string(),
    })
}

fn mail_setup(args: &SyncArgs) -> Result<Mail, MailSetupError> {
    Mail::configure(
        args.smtp_url.as_deref(),
        args.mail_from.as_deref(),
        None,
        args.templates.as_deref(),
        "--templates",
    )
}

fn run_name(manifests: &Manifests) -> String {
    let name = manifests
        .integration
        .metadata
        .name
        .clone()
        .unwrap_or_default();
    crate::api::import_run_name(&name, Utc::now())
}

/// A run that could not start: it failed the moment it began.
fn failed_outcome(message: String) -> ImportOutcome {
    let now = Utc::now();
    ImportOutcome::failed(now, now, message)
}

fn invalid(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(exit::INVALID_INPUT)
}

fn finish(
    args: &SyncArgs,
    manifests: &Manifests,
    run_name: &str,
    outcome: ImportOutcome,
) -> ExitCode {
    let integration = &manifests.integration;
    let name = integration.metadata.name.clone().unwrap_or_default();
    let run = ImportRun {
        metadata: ObjectMeta {
            name: Some(run_name.to_string()),
            namespace: integration.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: ImportRunSpec {
            integration: name,
            trigger: match args.only.is_empty() {
                true => ImportTrigger::Manual,
                false => ImportTrigger::OnDemand,
            },
            dry_run: args.dry_run,
            employee_ids: args.only().ok().flatten().unwrap_or_default(),
        },
        status: Some(outcome.status.clone()),
    };

    if let Some(path) = &args.error_report {
        if let Err(e) = std::fs::write(path, report_csv(&outcome.report, &outcome.changes)) {
            eprintln!(
                "error: --error-report {}: cannot write: {e}",
                path.display()
            );
        }
    } else if !outcome.report.is_empty() || !outcome.changes.is_empty() {
        eprintln!(
            "{} error and warning rows, {} changes; pass --error-report FILE to save them all as CSV",
            outcome.report.len(),
            outcome.changes.len()
        );
    }

    match args.output {
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&run).expect("an ImportRun serialises")
            );
        }
        OutputFormat::Text => print!("{}", text_summary(&run, &outcome)),
    }
    let phase = outcome.status.phase;
    // The reason reaches the terminal even when stdout goes to a file or to jq.
    if matches!(
        phase,
        ImportPhase::Failed | ImportPhase::Blocked | ImportPhase::Interrupted
    ) {
        if let Some(message) = &outcome.status.message {
            eprintln!("error: {message}");
        }
    }
    if phase == ImportPhase::Blocked {
        eprintln!("the run is Blocked: re-run with --approve-leavers to apply the leavers");
    }
    ExitCode::from(match phase {
        ImportPhase::Succeeded => exit::SUCCEEDED,
        ImportPhase::PartiallySucceeded => exit::PARTIALLY_SUCCEEDED,
        _ => exit::FAILED,
    })
}

fn text_summary(run: &ImportRun, outcome: &ImportOutcome) -> String {
    let status = &outcome.status;
    let s = &status.summary;
    let c = status.api_calls.clone().unwrap_or_default();
    let mut out = String::new();
    let dry = if run.spec.dry_run {
        " (dry run: nothing written)"
    } else {
        ""
    };
    out.push_str(&format!(
        "ImportRun {}{dry}\n",
        run.metadata.name.as_deref().unwrap_or_default()
    ));
    out.push_str(&format!("  Phase:     {}\n", status.phase));
    if let Some(m) = &status.message {
        out.push_str(&format!("  Message:   {m}\n"));
    } else {
        out.push_str(&format!("  Message:   {}\n", describe(s, run.spec.dry_run)));
    }
    out.push_str(&format!(
        "  Members:   {} created, {} updated, {} re-activated, {} leavers, {} unchanged, {} skipped\n",
        s.created, s.updated, s.reactivated, s.leavers, s.unchanged, s.skipped
    ));
    out.push_str(&format!(
        "  Report:    {} errors, {} warnings, {} invitations sent\n",
        s.errors, s.warnings, s.invitations_sent
    ));
    out.push_str(&format!(
        "  Freshteam: {} list, {} detail, {} lookup requests ({} throttled, {} retried)\n",
        c.freshteam_list,
        c.freshteam_detail,
        c.freshteam_lookups,
        c.freshteam_throttled,
        c.freshteam_retries
    ));
    out.push_str(&format!(
        "  SCIM:      {} reads, {} writes, {} bulk requests\n",
        c.destination_reads, c.destination_writes, c.destination_bulk
    ));
    if !status.members.is_empty() {
        out.push_str(&crate::sync::describe_steps(&status.members));
    }
    if !status.errors.is_empty() {
        out.push_str(&format!(
            "  First {} of {} report rows:\n",
            status.errors.len(),
            outcome.report.len()
        ));
        for e in &status.errors {
            out.push_str(&format!(
                "    {:<7} {:<10} {:<30} {:<11} {}\n",
                e.severity,
                e.employee_id.as_deref().unwrap_or("-"),
                e.email.as_deref().unwrap_or("-"),
                e.field.as_deref().unwrap_or("-"),
                e.message
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::member::{Attr, Change};
    use crate::notify::InvitationIntent;

    #[test]
    fn bad_configuration_is_invalid_input_and_an_unavailable_service_a_failed_run() {
        let config = ConnectError::Config {
            field: "spec.destination.scim.url",
            reason: "'x' is not a URL".into(),
        };
        assert!(
            matches!(Setup::from(config), Setup::Invalid(m) if m == "spec.destination.scim.url: 'x' is not a URL")
        );
        let down = ConnectError::Unavailable {
            service: "destination",
            reason: "cannot reach the SCIM service".into(),
        };
        assert!(
            matches!(Setup::from(down), Setup::Failed(m) if m == "destination: cannot reach the SCIM service")
        );
    }

    #[tokio::test]
    async fn notes_sit_beside_the_outbox_in_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = StateFile::new(&path);
        assert_eq!(
            Store::<ConvergenceNotes>::load(&store).await.unwrap(),
            ConvergenceNotes::default()
        );
        crate::notify::record_intents(
            &store,
            &[InvitationIntent {
                employee_id: "E1".into(),
                email: "a@example.com".into(),
                first_name: None,
            }],
        )
        .await
        .unwrap();
        let mut notes = ConvergenceNotes::default();
        notes.record("E1", &[Change::Set(Attr::JobTitle, "Engineer".into())]);
        store.save(&notes).await.unwrap();
        assert_eq!(
            Store::<ConvergenceNotes>::load(&store).await.unwrap(),
            notes
        );
        // The outbox reads as before, and its saves and the ledger's keep the notes.
        assert_eq!(Store::<Outbox>::load(&store).await.unwrap().pending(), 1);
        let outbox: Outbox = store.load().await.unwrap();
        store.save(&outbox).await.unwrap();
        store.save(&Ledger::default()).await.unwrap();
        assert_eq!(
            Store::<ConvergenceNotes>::load(&store).await.unwrap(),
            notes
        );
        assert_eq!(Store::<Outbox>::load(&store).await.unwrap().pending(), 1);
    }
}
