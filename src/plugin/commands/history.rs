//! `history`: the integration's runs.

use kube::ResourceExt;
use serde_json::json;

use super::{run_duration, Fail, Output, Plugin};
use crate::plugin::format::table;

/// `history -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HistoryFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

impl Plugin {
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
                    yaml_serde::to_string(&list).expect("a list serialises")
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
}
