//! ImportRun history limits, like a CronJob's.

use crate::api::{HistorySpec, ImportPhase};

/// A finished or running run, as far as pruning cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunEntry {
    pub name: String,
    pub phase: ImportPhase,
    /// RFC 3339 creation time (sorts chronologically).
    pub created: String,
}

/// The runs to delete: beyond `successfulRunsLimit` newest Succeeded/PartiallySucceeded
/// runs and beyond `failedRunsLimit` newest Failed/Interrupted/Blocked runs. Pending and
/// Running runs are never pruned.
pub(crate) fn runs_to_prune(runs: &[RunEntry], limits: &HistorySpec) -> Vec<String> {
    let mut sorted: Vec<&RunEntry> = runs.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut prune = Vec::new();
    for r in sorted {
        if !r.phase.is_final() {
            continue;
        }
        let (count, limit) = if r.phase.is_successful() {
            (&mut ok, limits.successful_runs_limit)
        } else {
            (&mut failed, limits.failed_runs_limit)
        };
        *count += 1;
        if *count > limit {
            prune.push(r.name.clone());
        }
    }
    prune
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(i: u32, phase: ImportPhase) -> RunEntry {
        RunEntry {
            name: format!("r{i:02}"),
            phase,
            created: format!("2026-01-01T00:00:{i:02}Z"),
        }
    }

    #[test]
    fn keeps_the_newest_per_kind_and_never_a_running_one() {
        let mut runs: Vec<RunEntry> = (0..6).map(|i| run(i, ImportPhase::Succeeded)).collect();
        runs.push(run(6, ImportPhase::Failed));
        runs.push(run(7, ImportPhase::Blocked));
        runs.push(run(8, ImportPhase::Interrupted));
        runs.push(run(9, ImportPhase::PartiallySucceeded));
        runs.push(run(10, ImportPhase::Running));
        let limits = HistorySpec {
            successful_runs_limit: 3,
            failed_runs_limit: 1,
        };
        let mut p = runs_to_prune(&runs, &limits);
        p.sort();
        // Successful, newest first: r09, r05, r04 kept; r03..r00 pruned.
        // Failed, newest first: r08 kept; r07, r06 pruned.
        assert_eq!(p, ["r00", "r01", "r02", "r03", "r06", "r07"]);
    }

    #[test]
    fn zero_limits_prune_every_finished_run() {
        let runs = vec![run(0, ImportPhase::Succeeded), run(1, ImportPhase::Pending)];
        let limits = HistorySpec {
            successful_runs_limit: 0,
            failed_runs_limit: 0,
        };
        assert_eq!(runs_to_prune(&runs, &limits), ["r00"]);
    }
}
