//! `provision`: an on-demand ImportRun for one employee, followed to its end, its steps
//! printed.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};

use super::{Fail, Output, Plugin};
use crate::api::{
    import_run_name, FreshteamIntegration, ImportRun, ImportRunSpec, ImportTrigger,
    INTEGRATION_LABEL,
};
use crate::plugin::view::FollowView;
use crate::sync::describe_steps;

impl Plugin {
    /// Creates an `OnDemand` ImportRun of `name` for `employee_id` (owned by the
    /// integration, labelled like the operator's runs), follows it and prints its steps.
    /// Exit codes as `import-now`.
    pub async fn provision(
        &self,
        name: &str,
        employee_id: &str,
        dry_run: bool,
        timeout: Duration,
        view: &dyn FollowView,
    ) -> Output {
        let result = self
            .provision_inner(name, employee_id, dry_run, timeout, view)
            .await;
        view.finish();
        result.unwrap_or_else(Output::from)
    }

    async fn provision_inner(
        &self,
        name: &str,
        employee_id: &str,
        dry_run: bool,
        timeout: Duration,
        view: &dyn FollowView,
    ) -> Result<Output, Fail> {
        let employee_id = employee_id.trim();
        if employee_id.is_empty() {
            return Err(Fail::Usage("<employee-id> is empty".into()));
        }
        let fti = self.integration(name).await?;
        if fti.spec.suspend {
            return Err(Fail::Failed(format!(
                "{name} is suspended (spec.suspend: true): the operator starts no import"
            )));
        }
        if !fti.spec.published && !dry_run {
            return Err(Fail::Failed(format!(
                "{name} is unpublished (spec.published: false): add --dry-run to see what would happen, or publish it first"
            )));
        }
        let run = self.create_on_demand(&fti, employee_id, dry_run).await?;
        let run_name = run.name_any();
        view.phase(&format!("ImportRun {run_name} created for {employee_id}"));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = self
            .follow_run(name, &run_name, deadline, timeout, view)
            .await?;
        let members = match self.runs().get_opt(&run_name).await {
            Ok(Some(r)) => r.status.map(|s| s.members).unwrap_or_default(),
            _ => Vec::new(),
        };
        out.stdout.push_str(&describe_steps(&members));
        Ok(out)
    }

    /// The run, created under a free name (`<integration>-<time>`, a suffix when taken).
    async fn create_on_demand(
        &self,
        fti: &FreshteamIntegration,
        employee_id: &str,
        dry_run: bool,
    ) -> Result<ImportRun, Fail> {
        let name = fti.name_any();
        let base = import_run_name(&name, self.clock.now());
        let mut run = ImportRun {
            metadata: ObjectMeta {
                name: Some(base.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    INTEGRATION_LABEL.to_string(),
                    name.clone(),
                )])),
                owner_references: fti.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            spec: ImportRunSpec {
                integration: name,
                trigger: ImportTrigger::OnDemand,
                dry_run,
                employee_ids: vec![employee_id.to_string()],
            },
            status: None,
        };
        for attempt in 0..5 {
            if attempt > 0 {
                run.metadata.name = Some(format!("{base}-{attempt}"));
            }
            match self.runs().create(&PostParams::default(), &run).await {
                Ok(created) => return Ok(created),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(Fail::Failed(format!("cannot create the ImportRun: {e}"))),
            }
        }
        Err(Fail::Failed(format!("ImportRun names {base}-* are taken")))
    }
}
