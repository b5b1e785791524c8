//! Reading lists page by page (the `link` chain, concurrent numbered pages), details and
//! lookups.

use super::*;

impl FreshteamClient {
    /// Reads every list page of one population into `records` (deduplicated by id),
    /// only those changed since the date `since` when given. Returns the last
    /// `total-objects` the server sent.
    pub(super) async fn list_pass(
        &self,
        tally: &ReadTally,
        pass: Pass,
        since: Option<&str>,
        fields: &[String],
        progress: &dyn ProgressSink,
        records: &mut Records,
    ) -> Result<Option<u64>, SourceError> {
        let first = match pass {
            Pass::Unfiltered => self.first_page(),
            Pass::Population(p) => self.first_page_of(p.filter(), since),
        };
        let call = Call::List(pass.population());
        let merge = |url: &Url, body: Value, records: &mut Records| {
            merge_page(url, body, fields, pass.population(), records)
        };
        let page1 = self.get(tally, &first, call).await?;
        let mut total_objects = page1.total_objects;
        if let (Some(t), Population::Active) = (total_objects, pass.population()) {
            progress.set_total(t);
        }
        let total_pages = page1.total_pages;
        let mut visited = HashSet::from([first.clone()]);
        merge(&first, page1.body, records)?;
        let mut done = 1u64;
        let mut next = page1.next;
        let what = pass.describe();
        let report = |done: u64| {
            let every = total_pages.map_or(10, |t| t.div_ceil(10).max(1));
            if done == 1 || done.is_multiple_of(every) || Some(done) == total_pages {
                progress.phase(&match total_pages {
                    Some(t) => format!("Reading Freshteam {what} (page {done} of {t})"),
                    None => format!("Reading Freshteam {what} (page {done})"),
                });
            }
        };
        report(done);

        // With the page count known, the pages after the first are fetched at once by
        // setting `page` on the next link; the link chain takes over after the last.
        // Only when the link really numbers pages from 1 and the count is plausible
        // (no more pages than records): otherwise the chain is the safer guide.
        if let (Some(pages), Some(template)) = (total_pages, next.clone()) {
            let plausible = pages
                <= total_objects
                    .map_or(100_000, |t| t.max(1))
                    .min(MAX_LIST_PAGES);
            if pages > 2 && plausible && page_number(&template) == Some(2) {
                let mut fetched = stream::iter(2..=pages)
                    .map(|page| {
                        let url = with_page(&template, page);
                        async move {
                            let response = self.get(tally, &url, call).await;
                            (page, url, response)
                        }
                    })
                    .buffer_unordered(self.concurrency());
                next = None;
                while let Some((page, url, response)) = fetched.next().await {
                    let response = response?;
                    total_objects = response.total_objects.or(total_objects);
                    merge(&url, response.body, records)?;
                    visited.insert(url);
                    if page == pages {
                        next = response.next;
                    }
                    done += 1;
                    report(done);
                }
            }
        }

        while let Some(url) = next.take() {
            check_next(&mut visited, done, &url).map_err(|e| SourceError::BadResponse {
                path: shown_path(&url),
                detail: e.to_string(),
            })?;
            let response = self.get(tally, &url, call).await?;
            total_objects = response.total_objects.or(total_objects);
            let count = merge(&url, response.body, records)?;
            done += 1;
            report(done);
            // An empty page ends the list even if it links on: nothing suggests more.
            if count > 0 {
                next = response.next;
            }
        }
        Ok(total_objects)
    }

    /// One population, read whole: re-read once when fewer records arrived than
    /// announced.
    pub(super) async fn read_population(
        &self,
        tally: &ReadTally,
        population: Population,
        since: Option<&str>,
        fields: &[String],
        progress: &dyn ProgressSink,
    ) -> Result<Records, SourceError> {
        let pass = Pass::Population(population);
        let mut records = Records::new();
        let total = self
            .list_pass(tally, pass, since, fields, progress, &mut records)
            .await?;
        // Fewer records than announced: pages shifted under a deletion while they were
        // read, and someone may have been skipped. A missed employee would look like a
        // leaver, so the list is read once more (records merge by id).
        if let Some(total) = total.filter(|t| (records.len() as u64) < *t) {
            debug!(
                population = population.name(),
                announced = total,
                read = records.len(),
                "fewer employees than announced, reading the list again"
            );
            let total = self
                .list_pass(tally, pass, since, fields, progress, &mut records)
                .await?;
            if let Some(total) = total.filter(|t| (records.len() as u64) < *t) {
                progress.warn(&format!(
                    "Freshteam announced {total} {} but listed {}; the directory may have changed during the run",
                    pass.describe(),
                    records.len()
                ));
            }
        }
        let ignored = records.values().filter(|r| r.contradicted).count();
        if ignored > 0 {
            progress.warn(&format!(
                "{ignored} record(s) listed under {} say otherwise in their own fields: Freshteam seems to ignore that filter; each record's own status, terminated, deleted and draft fields were used",
                filter_text(population.filter())
            ));
        }
        Ok(records)
    }

    pub(super) async fn read_employees(
        &self,
        tally: &ReadTally,
        request: &SourceRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Records, SourceError> {
        let fields = &request.fields;
        let since = request.updated_since_param();
        let since = since.as_deref();
        let passes = Population::ALL
            .map(|population| self.read_population(tally, population, since, fields, progress));
        let mut records = Records::new();
        for pass in futures::future::try_join_all(passes).await? {
            for (id, found) in pass {
                match records.get_mut(&id) {
                    Some(have) if have.population >= found.population => {}
                    Some(have) => *have = found,
                    None => {
                        records.insert(id, found);
                    }
                }
            }
        }
        if request.needs_detail {
            self.read_details(tally, fields, progress, &mut records)
                .await?;
        }
        Ok(records)
    }

    /// The people the records name in `request.people` (a manager by `reporting_to_id`,
    /// one detail call each) who are not among them, so that a partial read (incremental
    /// or named) can name them: without them a manager would look unset. One who is gone
    /// is left out.
    pub(super) async fn people_of(
        &self,
        tally: &ReadTally,
        request: &SourceRequest,
        progress: &dyn ProgressSink,
        records: &Records,
    ) -> Result<Records, SourceError> {
        let fields = &request.fields;
        let slots: Vec<usize> = request
            .people
            .iter()
            .filter_map(|p| fields.iter().position(|f| f == p))
            .collect();
        let mut people = Records::new();
        for found in records.values() {
            let values = found.values.unpack();
            for id in slots
                .iter()
                .filter_map(|&at| values[at].as_deref()?.parse::<i64>().ok())
            {
                if !records.contains_key(&id) {
                    people.entry(id).or_insert_with(|| Found {
                        values: PackedValues::new(&vec![None; fields.len()]),
                        population: Population::Active,
                        contradicted: false,
                    });
                }
            }
        }
        if !people.is_empty() {
            self.read_details(tally, fields, progress, &mut people)
                .await?;
        }
        Ok(people)
    }

    /// `GET /employees/{id}` for every record; a detail value wins over the list's,
    /// the list's stays where the detail has none.
    pub(super) async fn read_details(
        &self,
        tally: &ReadTally,
        fields: &[String],
        progress: &dyn ProgressSink,
        records: &mut Records,
    ) -> Result<(), SourceError> {
        // Drafts are never provisioned: their details are not needed.
        let ids: Vec<i64> = records
            .iter()
            .filter(|(_, r)| r.population != Population::Draft)
            .map(|(id, _)| *id)
            .collect();
        let total = ids.len();
        let every = total.div_ceil(10).max(1);
        progress.phase(&format!(
            "Reading Freshteam employee details (0 of {total})"
        ));
        let mut details = stream::iter(ids)
            .map(|id| async move {
                let url = self.endpoint(&["employees", &id.to_string()]);
                match self.get(tally, &url, Call::Detail).await {
                    Ok(r) if r.body.is_object() => Ok((id, Some(project(&r.body, fields)))),
                    Ok(_) => Err(SourceError::BadResponse {
                        path: shown_path(&url),
                        detail: "expected one employee as a JSON object".into(),
                    }),
                    // Deleted since the list was read.
                    Err(SourceError::UnknownAccount { .. }) => Ok((id, None)),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.concurrency());
        let mut done = 0usize;
        let mut vanished = Vec::new();
        while let Some(detail) = details.next().await {
            let (id, values) = detail?;
            match values {
                Some(values) => {
                    let found = records.get_mut(&id).expect("ids come from records");
                    let mut slots = found.values.unpack();
                    for (slot, value) in slots.iter_mut().zip(values) {
                        if value.is_some() {
                            *slot = value;
                        }
                    }
                    found.values = PackedValues::new(&slots);
                }
                None => vanished.push(id),
            }
            done += 1;
            if done.is_multiple_of(every) || done == total {
                progress.phase(&format!(
                    "Reading Freshteam employee details ({done} of {total})"
                ));
            }
        }
        if !vanished.is_empty() {
            // Kept with their list fields: treating them as gone is the next run's call.
            vanished.sort_unstable();
            let shown: Vec<String> = vanished.iter().take(10).map(i64::to_string).collect();
            let more = if vanished.len() > 10 { ", …" } else { "" };
            progress.warn(&format!(
                "{} Freshteam employee(s) disappeared while the run read them (404 on their details; ids {}{more}); only the fields the list carries are used for them",
                vanished.len(),
                shown.join(", ")
            ));
        }
        Ok(())
    }

    pub(super) async fn read_lookups(
        &self,
        tally: &ReadTally,
        kinds: &[LookupKind],
        fields: &[(LookupKind, String)],
    ) -> Result<(HashMap<LookupKind, HashMap<i64, String>>, LookupFields), SourceError> {
        let kinds: BTreeSet<LookupKind> = kinds.iter().copied().collect();
        let read: Vec<(LookupKind, HashMap<i64, String>, LookupFields)> = stream::iter(kinds)
            .map(|kind| async move {
                let url = self.endpoint(&[kind.path()]);
                let response = self.get(tally, &url, Call::Lookup).await?;
                let bad = || SourceError::BadResponse {
                    path: shown_path(&url),
                    detail: "expected a JSON array of {id, name} objects".into(),
                };
                let names = lookup_names(&response.body).ok_or_else(bad)?;
                let mut values = LookupFields::new();
                for (k, field) in fields.iter().filter(|(k, _)| *k == kind) {
                    let by_id = lookup_field(&response.body, field).ok_or_else(bad)?;
                    values.insert((*k, field.clone()), by_id);
                }
                Ok::<_, SourceError>((kind, names, values))
            })
            .buffer_unordered(self.concurrency())
            .try_collect()
            .await?;
        let mut names = HashMap::new();
        let mut values = LookupFields::new();
        for (kind, n, v) in read {
            names.insert(kind, n);
            values.extend(v);
        }
        Ok((names, values))
    }
}

pub(super) fn page_number(url: &Url) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

/// `url` with its `page` parameter set to `page`, other parameters kept in place.
pub(super) fn with_page(url: &Url, page: u64) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    {
        let mut query = out.query_pairs_mut();
        query.clear();
        let mut set = false;
        for (k, v) in &pairs {
            if k == "page" {
                if !set {
                    query.append_pair("page", &page.to_string());
                    set = true;
                }
            } else {
                query.append_pair(k, v);
            }
        }
        if !set {
            query.append_pair("page", &page.to_string());
        }
    }
    out
}
