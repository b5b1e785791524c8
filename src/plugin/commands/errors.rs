//! `errors`: a run's CSV report.

use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::{csv_rows, Fail, Output, Plugin};
use crate::api::ErrorReportRef;
use crate::sync::{errors_csv, report_part_name};

/// Rows of a report `errors -o FILE` shows on stdout.
const HEAD_ROWS: usize = 10;

/// The header and the first `n` rows of a CSV as stored (rows may span lines: quoted
/// messages).
fn head(csv: &str, n: usize) -> String {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut row = csv::StringRecord::new();
    let has_header = reader.headers().is_ok();
    let mut end = if has_header {
        reader.position().byte() as usize
    } else {
        0
    };
    for _ in 0..n {
        match reader.read_record(&mut row) {
            Ok(true) => end = reader.position().byte() as usize,
            _ => break,
        }
    }
    csv.get(..end).unwrap_or(csv).to_string()
}

impl Plugin {
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
            Some(report) => self.stored_report(run_name, report).await?,
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
                let rows = csv_rows(&csv);
                note.push_str(&format!(
                    "{rows} rows of ImportRun {run_name}'s report written to {}\n",
                    path.display()
                ));
                // The first rows for whoever reads the terminal; the file has them all.
                let mut shown = head(&csv, HEAD_ROWS);
                if rows > HEAD_ROWS {
                    shown.push_str(&format!(
                        "… and {} more rows: the whole report is in {}\n",
                        rows - HEAD_ROWS,
                        path.display()
                    ));
                }
                Ok(Output::ok(shown).with_stderr(note))
            }
        }
    }

    /// The whole CSV report of the run `run_name`, every part joined (one header).
    pub(super) async fn stored_report(
        &self,
        run_name: &str,
        report: &ErrorReportRef,
    ) -> Result<String, Fail> {
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
        Ok(csv)
    }
}
