//! `preview`: what an import would do.

use super::{condition, Fail, Output, Plugin};
use crate::api::{ImportPhase, Preview};

impl Plugin {
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
                scope_and_sample(p, &mut out);
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
}

/// The scope's counts (when a scope filter is set) and the sample of mapped members, one
/// line each, values as they would be written.
fn scope_and_sample(p: &Preview, out: &mut String) {
    if let (Some(inside), Some(outside)) = (p.in_scope, p.out_of_scope) {
        out.push_str(&format!("  {:<23}{inside}\n", "In scope:"));
        out.push_str(&format!(
            "  {:<23}{outside} (never created)\n",
            "Out of scope:"
        ));
    }
    if p.sample.is_empty() {
        return;
    }
    out.push_str(&format!(
        "The first {} mapped members, as they would be written:\n",
        p.sample.len()
    ));
    for m in &p.sample {
        let values: Vec<String> = m
            .attributes
            .iter()
            .map(|(target, value)| format!("{target}={value}"))
            .collect();
        out.push_str(&format!("  {}  {}\n", m.employee_id, values.join(", ")));
    }
}
