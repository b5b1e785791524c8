//! `status`: conditions, last and next import.

use super::{age, counts, Fail, Output, Plugin};
use crate::plugin::format::{human_duration, parse_time, table};

impl Plugin {
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
