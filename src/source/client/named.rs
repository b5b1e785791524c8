//! Reading named employees only (an on-demand run): each population pass with
//! `employee_id=<id>` added to its filter, so nobody else is read.

use super::*;

impl FreshteamClient {
    /// The employees whose `employee_id` is one of `ids`, from every population (merged
    /// by Freshteam id as a full read merges them), with their details when the request
    /// needs them.
    pub(super) async fn read_named(
        &self,
        tally: &ReadTally,
        ids: &[String],
        request: &SourceRequest,
        progress: &dyn ProgressSink,
    ) -> Result<(Records, Records), SourceError> {
        progress.phase(&format!("Reading Freshteam employees {}", ids.join(", ")));
        let passes: Vec<(String, Population)> = ids
            .iter()
            .flat_map(|id| Population::ALL.map(|p| (id.clone(), p)))
            .collect();
        let fields = &request.fields;
        let mut read =
            stream::iter(passes)
                .map(|(id, population)| async move {
                    self.named_pass(tally, population, &id, fields).await
                })
                .buffer_unordered(self.concurrency());
        let mut records = Records::new();
        while let Some(pass) = read.next().await {
            for (id, found) in pass? {
                match records.get_mut(&id) {
                    Some(have) if have.population >= found.population => {}
                    Some(have) => *have = found,
                    None => {
                        records.insert(id, found);
                    }
                }
            }
        }
        if request.needs_detail && !records.is_empty() {
            self.read_details(tally, &request.fields, progress, &mut records)
                .await?;
        }
        let people = self.people_of(tally, request, progress, &records).await?;
        Ok((records, people))
    }

    /// One population's list filtered by one Employee ID: usually a single page; the
    /// `link` chain is followed when there is more.
    async fn named_pass(
        &self,
        tally: &ReadTally,
        population: Population,
        employee_id: &str,
        fields: &[String],
    ) -> Result<Records, SourceError> {
        let mut filter = population.filter().to_vec();
        filter.push(("employee_id", employee_id));
        let mut next = Some(self.first_page_of(&filter, None));
        let mut visited = HashSet::new();
        let mut records = Records::new();
        let mut done = 0u64;
        while let Some(url) = next.take() {
            check_next(&mut visited, done, &url).map_err(|e| SourceError::BadResponse {
                path: shown_path(&url),
                detail: e.to_string(),
            })?;
            let response = self.get(tally, &url, Call::List(population)).await?;
            let count = merge_page(&url, response.body, fields, population, &mut records)?;
            done += 1;
            if count > 0 {
                next = response.next;
            }
        }
        Ok(records)
    }
}
