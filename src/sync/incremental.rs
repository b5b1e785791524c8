//! An incremental run's reads: the employees Freshteam reports changed since the cursor,
//! and only their accounts (and their managers').

use chrono::{DateTime, Utc};

use crate::destination::{DestinationError, DestinationMember, MemberDirectory, MemberKeys};
use crate::mapping::{map_records, CompiledMapping, MappedSource};
use crate::progress::ProgressSink;
use crate::source::{EmployeeSource, SourceError, SourceStats};

/// What an incremental run read.
pub(super) struct ChangedRead {
    pub stats: SourceStats,
    pub mapped: MappedSource,
    /// The accounts of the changed employees, of their managers, and any holding their
    /// e-mail addresses; every account when the destination cannot look accounts up.
    pub current: Vec<DestinationMember>,
}

pub(super) enum ReadError {
    Source(SourceError),
    /// With the Freshteam calls made before it.
    Destination(SourceStats, DestinationError),
}

pub(super) async fn read_changed(
    mapping: &CompiledMapping,
    source: &dyn EmployeeSource,
    destination: &dyn MemberDirectory,
    since: DateTime<Utc>,
    progress: &dyn ProgressSink,
) -> Result<ChangedRead, ReadError> {
    let mut request = mapping.request.clone();
    request.updated_since = Some(since);
    let snapshot = source
        .fetch(&request, progress)
        .await
        .map_err(ReadError::Source)?;
    let stats = snapshot.stats.clone();
    let mapped = map_records(&snapshot, mapping);
    drop(snapshot);
    progress.set_total(mapped.records as u64);
    progress.phase("Reading the changed employees' accounts");
    let keys = keys_of(&mapped);
    let found = match destination.find_members(&keys).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => destination.list_members().await,
        Err(e) => Err(e),
    };
    match found {
        Ok(current) => Ok(ChangedRead {
            stats,
            mapped,
            current,
        }),
        Err(e) => Err(ReadError::Destination(stats, e)),
    }
}

/// Every account the plan of these employees can touch or must know about: theirs (by
/// Employee ID), their managers' (to link them), and those holding their e-mail
/// addresses (a create or an e-mail change must not clash).
pub(super) fn keys_of(mapped: &MappedSource) -> MemberKeys {
    let mut external_ids: Vec<String> = mapped
        .members
        .iter()
        .flat_map(|d| {
            std::iter::once(d.member.employee_id.clone()).chain(d.manager_employee_id.clone())
        })
        .chain(mapped.drafts.iter().cloned())
        .chain(mapped.ambiguous_ids.iter().cloned())
        .chain(mapped.errors.iter().filter_map(|e| e.employee_id.clone()))
        .filter(|id| !id.is_empty())
        .collect();
    external_ids.sort_unstable();
    external_ids.dedup();
    let mut user_names: Vec<String> = mapped
        .members
        .iter()
        .map(|d| d.member.email.to_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    user_names.sort_unstable();
    user_names.dedup();
    MemberKeys {
        external_ids,
        user_names,
    }
}
