//! Read: the employees from Freshteam (mapped as they arrive) and the destination's
//! accounts; all of them in a full run, the changed few in an incremental one
//! ([`crate::sync::incremental`]).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::prepare::Prepared;
use super::RunEnd;
use crate::destination::{Accounts, DestinationError, DestinationMember};
use crate::ledger::Ledger;
use crate::mapping::{CompiledMapping, DesiredSet, Mapper};
use crate::progress::ProgressSink;
use crate::source::{EmployeeSource, SourceError, SourceRequest, SourceStats};
use crate::sync::incremental::{self, ReadError};
use crate::sync::ImportJob;

/// What a run read.
pub(in crate::sync) struct Read {
    pub stats: SourceStats,
    pub desired: DesiredSet,
    pub current: Accounts,
}

pub(super) async fn read(job: &ImportJob<'_>, prepared: &Prepared) -> Result<Read, RunEnd> {
    if let Some(ids) = &job.options.only {
        return crate::sync::only::read(job, prepared.ledger.as_ref(), ids).await;
    }
    match prepared.since() {
        Some(since) => read_changed(job, prepared.ledger.as_ref(), since).await,
        None => read_all(job).await,
    }
}

/// Reads what `request` asks for and maps each record as it arrives: the records are
/// never all held at once, only the packed members.
pub(in crate::sync) async fn read_desired(
    mapping: &CompiledMapping,
    request: &SourceRequest,
    source: &dyn EmployeeSource,
    progress: &dyn ProgressSink,
) -> Result<(SourceStats, DesiredSet), SourceError> {
    let mut mapper = Mapper::new(mapping, HashMap::new());
    if request.updated_since.is_some() {
        mapper = mapper.partial();
    }
    let stats = source.fetch_each(request, progress, &mut mapper).await?;
    let desired = mapper.finish();
    progress.set_total(desired.records as u64);
    Ok((stats, desired))
}

async fn read_changed(
    job: &ImportJob<'_>,
    ledger: Option<&Ledger>,
    since: DateTime<Utc>,
) -> Result<Read, RunEnd> {
    job.progress
        .phase("Reading the employees changed in Freshteam");
    let read = incremental::read_changed(
        job.mapping,
        job.source,
        job.destination,
        ledger,
        since,
        job.progress,
    );
    let read = tokio::select! {
        biased;
        reason = job.options.stop.stopped() => {
            return Err(RunEnd::interrupted(reason, "while reading; nothing was written"))
        }
        r = read => r,
    };
    match read {
        Ok(r) => Ok(Read {
            stats: r.stats,
            desired: r.desired,
            current: Accounts::from(&r.current[..]),
        }),
        Err(ReadError::Source(e)) => Err(RunEnd::failed(format!("Freshteam: {e}"))),
        Err(ReadError::Destination(stats, e)) => {
            Err(RunEnd::failed(format!("destination: {e}")).with_calls(stats))
        }
    }
}

/// Both sides are read at once: the destination's list, usually the longest part of a
/// steady-state run, overlaps Freshteam's. A Freshteam failure ends the run at once; a
/// destination failure waits for Freshteam so the report still counts its calls. Reads
/// are abandoned as soon as a stop is asked for: they changed nothing. Records are mapped
/// as soon as Freshteam is read, and accounts packed page by page as they arrive: neither
/// side is ever held whole as plain records or members.
async fn read_all(job: &ImportJob<'_>) -> Result<Read, RunEnd> {
    job.progress.phase("Reading Freshteam employees");
    let accounts = Mutex::new(Accounts::default());
    let add_page = |page: Vec<DestinationMember>| {
        accounts.lock().expect("accounts lock").extend(&page);
    };
    let (stats, desired, listed) = read_both(job, &add_page).await?;
    match listed {
        Ok(()) => {
            let mut current = accounts.into_inner().expect("accounts lock");
            current.dedup();
            Ok(Read {
                stats,
                desired,
                current,
            })
        }
        Err(e) => Err(RunEnd::failed(format!("destination: {e}")).with_calls(stats)),
    }
}

/// Freshteam's read and the destination's list, until both are done.
async fn read_both(
    job: &ImportJob<'_>,
    add_page: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
) -> Result<(SourceStats, DesiredSet, Result<(), DestinationError>), RunEnd> {
    let mut fetch = std::pin::pin!(async {
        let read =
            read_desired(job.mapping, &job.mapping.request, job.source, job.progress).await?;
        job.progress.phase("Reading destination members");
        Ok::<_, SourceError>(read)
    });
    let mut list = std::pin::pin!(job.destination.list_pages(add_page));
    let (mut fetched, mut listed) = (None, None);
    while fetched.is_none() || listed.is_none() {
        tokio::select! {
            biased;
            reason = job.options.stop.stopped() => {
                return Err(match &fetched {
                    None => RunEnd::interrupted(reason, "while reading Freshteam; nothing was written"),
                    Some((stats, _)) => RunEnd::interrupted(reason, "while reading the destination; nothing was written")
                        .with_calls(SourceStats::clone(stats)),
                });
            }
            f = &mut fetch, if fetched.is_none() => match f {
                Ok(f) => fetched = Some(f),
                Err(e) => return Err(RunEnd::failed(format!("Freshteam: {e}"))),
            },
            l = &mut list, if listed.is_none() => listed = Some(l),
        }
    }
    let (Some((stats, desired)), Some(listed)) = (fetched, listed) else {
        unreachable!("the loop ends once both reads are done");
    };
    Ok((stats, desired, listed))
}
