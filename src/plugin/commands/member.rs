//! `member`: what the kept runs did to one member, oldest first, from their reports.

use kube::ResourceExt;

use super::{created, Fail, Output, Plugin};
use crate::api::ImportRun;

impl Plugin {
    /// Every row of the kept runs' reports about `employee_id` (created, updated with
    /// old → new, leaver with reason, re-activated, errors and warnings), oldest run
    /// first, and how far back the kept history goes.
    pub async fn member(&self, name: &str, employee_id: &str) -> Output {
        self.member_inner(name, employee_id)
            .await
            .unwrap_or_else(Output::from)
    }

    async fn member_inner(&self, name: &str, employee_id: &str) -> Result<Output, Fail> {
        let fti = self.integration(name).await?;
        let mut runs = self.runs_of(name).await?;
        runs.reverse();
        let mut lines = Vec::new();
        for run in &runs {
            lines.extend(self.rows_about(run, employee_id).await?);
        }
        let mut out = String::new();
        let history = &fti.spec.history;
        let since = match runs.first() {
            None => "no runs are kept".to_string(),
            Some(r) => format!(
                "{} runs kept, the oldest {} started {}",
                runs.len(),
                r.name_any(),
                r.status
                    .as_ref()
                    .and_then(|s| s.start_time.clone())
                    .or_else(|| created(r).map(crate::clock::rfc3339))
                    .unwrap_or_else(|| "-".into()),
            ),
        };
        out.push_str(&format!(
            "{employee_id} in {name}: {since}; older runs are pruned (spec.history: successfulRunsLimit {}, failedRunsLimit {})\n",
            history.successful_runs_limit, history.failed_runs_limit
        ));
        if lines.is_empty() {
            out.push_str(&format!(
                "No kept run of {name} changed or reported {employee_id}.\n"
            ));
        }
        for line in &lines {
            out.push_str(line);
            out.push('\n');
        }
        Ok(Output::ok(out))
    }

    /// The lines of one run's report about the member: `<start> <run> <what>: <message>`.
    async fn rows_about(&self, run: &ImportRun, employee_id: &str) -> Result<Vec<String>, Fail> {
        let Some(status) = &run.status else {
            return Ok(Vec::new());
        };
        let stored = match &status.error_report {
            Some(report) => self.stored_report(&run.name_any(), report).await.ok(),
            None => None,
        };
        // No report stored (or no longer readable): the rows kept in the status.
        let csv = stored.unwrap_or_else(|| crate::sync::errors_csv(&status.errors));
        let when = status.start_time.clone().unwrap_or_else(|| "-".into());
        let dry = if run.spec.dry_run { " (dry run)" } else { "" };
        let mut lines = Vec::new();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        // severity,employee_id,email,field,message
        for row in reader.records().filter_map(Result::ok) {
            if row.get(1) != Some(employee_id) {
                continue;
            }
            let what = match (row.get(0), row.get(3)) {
                (Some("change"), Some(field)) => field.to_string(),
                (Some(severity), Some("")) | (Some(severity), None) => severity.to_string(),
                (Some(severity), Some(field)) => format!("{severity} ({field})"),
                _ => continue,
            };
            lines.push(format!(
                "{when}  {}{dry}  {what}: {}",
                run.name_any(),
                row.get(4).unwrap_or_default()
            ));
        }
        Ok(lines)
    }
}
