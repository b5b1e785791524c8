//! An incremental run's reads: the employees Freshteam reports changed since the cursor,
//! and only their accounts (and their managers').

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::destination::{DestinationError, DestinationMember, MemberDirectory, MemberKeys};
use crate::ledger::Ledger;
use crate::mapping::{CompiledMapping, DesiredSet};
use crate::member::Attr;
use crate::progress::ProgressSink;
use crate::source::{EmployeeSource, SourceError, SourceStats};

/// What an incremental run read.
pub(super) struct ChangedRead {
    pub stats: SourceStats,
    pub desired: DesiredSet,
    /// The accounts of the changed employees, of their managers, and any holding their
    /// e-mail addresses; every account when the destination cannot look accounts up.
    pub current: Vec<DestinationMember>,
}

pub(super) enum ReadError {
    Source(SourceError),
    /// With the Freshteam calls made before it.
    Destination(SourceStats, DestinationError),
}

/// Reads the employees changed since `since`, then their accounts: by the destination
/// id the ledger recorded where it has one (one cheap read each), by a filtered search
/// for the others (new hires, members whose id is not known yet), and every member when
/// the destination can do neither.
pub(super) async fn read_changed(
    mapping: &CompiledMapping,
    source: &dyn EmployeeSource,
    destination: &dyn MemberDirectory,
    ledger: Option<&Ledger>,
    since: DateTime<Utc>,
    progress: &dyn ProgressSink,
) -> Result<ChangedRead, ReadError> {
    let mut request = mapping.request.clone();
    request.updated_since = Some(since);
    let (stats, desired) = super::stages::read::read_desired(mapping, &request, source, progress)
        .await
        .map_err(ReadError::Source)?;
    progress.phase("Reading the changed employees' accounts");
    let managers = mapping.managed.contains(Attr::Manager);
    match accounts_of(&desired, managers, ledger, destination).await {
        Ok(current) => Ok(ChangedRead {
            stats,
            desired,
            current,
        }),
        Err(e) => Err(ReadError::Destination(stats, e)),
    }
}

async fn accounts_of(
    desired: &DesiredSet,
    managers: bool,
    ledger: Option<&Ledger>,
    destination: &dyn MemberDirectory,
) -> Result<Vec<DestinationMember>, DestinationError> {
    let wanted = keys_of(desired, managers);
    let known = |id: &String| ledger.and_then(|l| l.account(id));
    let by_id: Vec<String> = wanted.external_ids.iter().filter_map(known).collect();
    let mut current = match destination.get_members(&by_id).await? {
        Some(found) => found,
        None => return find_or_list(&wanted, destination).await,
    };
    // Searched for: current staff without a known account (new hires, and accounts
    // gone or holding another Employee ID since), and managers. A leaver, draft or
    // error row outside the ledger has nothing managed to change; an account made for
    // one by hand since the last full reconciliation waits for the next one.
    let held: HashSet<&str> = current
        .iter()
        .map(|m| m.member.employee_id.as_str())
        .collect();
    let needed: HashSet<&str> = desired
        .members
        .iter()
        .filter(|d| d.member.active() || ledger.is_some_and(|l| l.contains(d.member.employee_id())))
        .flat_map(|d| {
            std::iter::once(d.member.employee_id())
                .chain(d.manager_employee_id().filter(|_| managers))
        })
        .collect();
    let mut search = MemberKeys::default();
    for id in &wanted.external_ids {
        if !held.contains(id.as_str()) && needed.contains(id.as_str()) {
            search.external_ids.push(id.clone());
        }
    }
    // Whose e-mail may clash: those searched for (a create needs a free userName) and
    // members whose e-mail changes.
    let emails: HashMap<&str, String> = current
        .iter()
        .map(|m| (m.member.employee_id.as_str(), m.member.email.to_lowercase()))
        .collect();
    for d in desired.members.iter().filter(|d| d.member.active()) {
        let email = d.member.email().to_lowercase();
        if !email.is_empty() && emails.get(d.member.employee_id()) != Some(&email) {
            search.user_names.push(email);
        }
    }
    if search.external_ids.is_empty() && search.user_names.is_empty() {
        return Ok(current);
    }
    let found = find_or_list(&search, destination).await?;
    add_unseen(&mut current, found);
    Ok(current)
}

/// Adds to `current` the accounts of `found` it does not hold yet (by account id).
pub(super) fn add_unseen(current: &mut Vec<DestinationMember>, found: Vec<DestinationMember>) {
    let mut seen: HashSet<String> = current.iter().map(|m| m.id.clone()).collect();
    current.extend(found.into_iter().filter(|m| seen.insert(m.id.clone())));
}

pub(super) async fn find_or_list(
    keys: &MemberKeys,
    destination: &dyn MemberDirectory,
) -> Result<Vec<DestinationMember>, DestinationError> {
    match destination.find_members(keys).await? {
        Some(found) => Ok(found),
        None => destination.list_members().await,
    }
}

/// Every account the plan of these employees can touch or must know about: theirs (by
/// Employee ID), their managers' (to link them), and those holding their e-mail
/// addresses (a create or an e-mail change must not clash).
pub(super) fn keys_of(desired: &DesiredSet, managers: bool) -> MemberKeys {
    let mut external_ids: Vec<String> = desired
        .members
        .iter()
        .flat_map(|d| {
            std::iter::once(d.member.employee_id().to_string()).chain(
                d.manager_employee_id()
                    .filter(|_| managers)
                    .map(str::to_string),
            )
        })
        .chain(desired.drafts.iter().cloned())
        .chain(desired.ambiguous_ids.iter().cloned())
        .chain(desired.errors.iter().filter_map(|e| e.employee_id.clone()))
        .filter(|id| !id.is_empty())
        .collect();
    external_ids.sort_unstable();
    external_ids.dedup();
    let mut user_names: Vec<String> = desired
        .members
        .iter()
        .map(|d| d.member.email().to_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    user_names.sort_unstable();
    user_names.dedup();
    MemberKeys {
        external_ids,
        user_names,
    }
}
