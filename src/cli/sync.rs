//! `freshteam-operator sync`: one import without a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, ValueEnum};
use kube::api::ObjectMeta;

use super::exit;
use super::progress::TerminalProgress;
use crate::api::validate::{validate_spec, EndpointPolicy};
use crate::api::{ImportPhase, ImportRun, ImportRunSpec, ImportTrigger};
use crate::clock::SystemClock;
use crate::destination::scim::BulkMode;
use crate::destination::{ScimClient, ScimConfig};
use crate::manifest::{self, Manifests};
use crate::progress::ProgressSink;
use crate::source::{FreshteamClient, FreshteamConfig};
use crate::sync::{describe, errors_csv, run_import, ImportOptions, ImportOutcome};

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
    /// SMTP server for invitation and summary e-mails, e.g. smtp://127.0.0.1:2525.
    #[arg(long, env = "SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of e-mails.
    #[arg(long, env = "MAIL_FROM", value_name = "ADDR")]
    pub mail_from: Option<String>,
}

/// Runs the command and maps the outcome to the exit codes of the contract.
pub async fn run(args: SyncArgs) -> ExitCode {
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
    let (source, destination) = match clients(&manifests, args.bulk).await {
        Ok(c) => c,
        Err(Setup::Invalid(m)) => return invalid(&m),
        Err(Setup::Failed(m)) => {
            let outcome = failed_outcome(m);
            return finish(&args, &manifests, outcome);
        }
    };

    let progress = TerminalProgress::new();
    if args.smtp_url.is_some() || args.mail_from.is_some() {
        progress.warn("e-mail (invitations and import summaries) is not supported by this version yet; no e-mail is sent");
    }
    let options = ImportOptions {
        dry_run: args.dry_run,
        max_leavers_percent: spec.safety.max_leavers_percent,
        approved_leavers: args.approve_leavers.then_some(u32::MAX),
    };
    let outcome = run_import(
        &validated.mapping,
        &source,
        destination.as_ref(),
        &options,
        &progress,
        &SystemClock,
    )
    .await;
    progress.finish();
    finish(&args, &manifests, outcome)
}

enum Setup {
    Invalid(String),
    Failed(String),
}

async fn clients(
    manifests: &Manifests,
    bulk: BulkChoice,
) -> Result<(FreshteamClient, Box<ScimClient>), Setup> {
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
    let config = FreshteamConfig::new(
        &spec.source.subdomain,
        spec.source.base_url.as_deref(),
        api_key,
    )
    .map_err(|e| Setup::Invalid(format!("spec.source: {e}")))?;
    let source =
        FreshteamClient::new(config).map_err(|e| Setup::Failed(format!("Freshteam: {e}")))?;
    let mut scim = ScimConfig::new(&spec.destination.scim.url, token)
        .map_err(|e| Setup::Invalid(format!("spec.destination.scim.url: {e}")))?;
    scim.bulk = match bulk {
        BulkChoice::Auto => BulkMode::Auto,
        BulkChoice::Off => BulkMode::Off,
    };
    let destination = ScimClient::connect(scim)
        .await
        .map_err(|e| Setup::Failed(format!("destination: {e}")))?;
    Ok((source, Box::new(destination)))
}

fn failed_outcome(message: String) -> ImportOutcome {
    let mut outcome = ImportOutcome::default();
    let now = crate::clock::rfc3339(Utc::now());
    outcome.status.phase = ImportPhase::Failed;
    outcome.status.start_time = Some(now.clone());
    outcome.status.completion_time = Some(now);
    outcome.status.message = Some(message);
    outcome
}

fn invalid(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(exit::INVALID_INPUT)
}

fn finish(args: &SyncArgs, manifests: &Manifests, outcome: ImportOutcome) -> ExitCode {
    let integration = &manifests.integration;
    let name = integration.metadata.name.clone().unwrap_or_default();
    let run = ImportRun {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", Utc::now().format("%Y%m%d-%H%M%S"))),
            namespace: integration.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: ImportRunSpec {
            integration: name,
            trigger: ImportTrigger::Manual,
            dry_run: args.dry_run,
        },
        status: Some(outcome.status.clone()),
    };

    if let Some(path) = &args.error_report {
        if let Err(e) = std::fs::write(path, errors_csv(&outcome.report)) {
            eprintln!(
                "error: --error-report {}: cannot write: {e}",
                path.display()
            );
        }
    } else if !outcome.report.is_empty() {
        eprintln!(
            "{} error and warning rows; pass --error-report FILE to save them all as CSV",
            outcome.report.len()
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
