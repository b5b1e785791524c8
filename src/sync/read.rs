//! Reading Freshteam into the desired members: the one read both kinds of run make.

use std::collections::HashMap;

use crate::mapping::{CompiledMapping, DesiredSet, Mapper};
use crate::progress::ProgressSink;
use crate::source::{EmployeeSource, SourceError, SourceRequest, SourceStats};

/// Reads what `request` asks for and maps each record as it arrives: the records are
/// never all held at once, only the packed members.
pub(super) async fn read_desired(
    mapping: &CompiledMapping,
    request: &SourceRequest,
    source: &dyn EmployeeSource,
    progress: &dyn ProgressSink,
) -> Result<(SourceStats, DesiredSet), SourceError> {
    let mut mapper = Mapper::new(mapping, HashMap::new());
    let stats = source.fetch_each(request, progress, &mut mapper).await?;
    let desired = mapper.finish();
    progress.set_total(desired.records as u64);
    Ok((stats, desired))
}
