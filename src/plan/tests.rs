use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::mapping::{DesiredMember, MappedSource};
use crate::member::replan_update;

const ALL_BUT_MANAGER: [Attr; 6] = [
    Attr::Email,
    Attr::FirstName,
    Attr::LastName,
    Attr::DisplayName,
    Attr::JobTitle,
    Attr::Department,
];

fn options() -> PlanOptions {
    PlanOptions {
        managed: ALL_BUT_MANAGER.into_iter().collect(),
        max_leavers_percent: 20,
        approved_leavers: None,
        when_removed: Default::default(),
        scope: PlanScope::Everyone,
    }
}

fn member(id: &str, active: bool) -> Member {
    Member {
        employee_id: id.into(),
        email: format!("{}@acme.example", id.to_lowercase()),
        first_name: Some(format!("First{id}")),
        last_name: Some("Last".into()),
        display_name: Some(format!("First{id} Last")),
        job_title: Some("Engineer".into()),
        department: Some("Engineering".into()),
        employee_number: None,
        manager: None,
        extra: Vec::new(),
        active,
    }
}

fn desired(members: Vec<Member>) -> MappedSource {
    MappedSource {
        records: members.len(),
        members: members
            .into_iter()
            .map(|member| DesiredMember {
                leaver_reason: (!member.active).then_some(crate::member::LeaverReason::Inactive),
                member,
                manager_employee_id: None,
            })
            .collect(),
        ..MappedSource::default()
    }
}

fn existing(m: Member) -> DestinationMember {
    DestinationMember {
        id: format!("scim-{}", m.employee_id),
        version: Some("W/\"1\"".into()),
        member: m,
        has_work_email: true,
    }
}

fn kinds(p: &Plan) -> Vec<(WriteKind, String)> {
    p.writes
        .iter()
        .map(|w| (w.kind, w.op.employee_id().to_string()))
        .collect()
}

fn changes(w: &PlannedWrite) -> &[Change] {
    match &w.op {
        WriteOp::Update(UpdateOp { changes, .. }) => changes,
        WriteOp::Create { .. } => panic!("not an update"),
    }
}

#[test]
fn new_active_employee_is_created_with_managed_fields_only() {
    let mut m = member("E1", true);
    m.employee_number = Some("42".into()); // not managed
    let p = plan(&desired(vec![m]), &[], &options());
    assert_eq!(kinds(&p), vec![(WriteKind::Create, "E1".into())]);
    match &p.writes[0].op {
        WriteOp::Create { member } => {
            assert_eq!(member.employee_number, None);
            assert_eq!(member.first_name.as_deref(), Some("FirstE1"));
            assert!(member.active);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn inactive_employee_without_member_is_skipped() {
    let p = plan(&desired(vec![member("E1", false)]), &[], &options());
    assert!(p.writes.is_empty());
    assert_eq!(p.skipped, 1);
}

#[test]
fn unchanged_member_causes_no_write() {
    let m = member("E1", true);
    let p = plan(&desired(vec![m.clone()]), &[existing(m)], &options());
    assert!(p.writes.is_empty());
    assert_eq!(p.unchanged, 1);
    assert_eq!(p.managed, 1);
}

#[test]
fn update_carries_only_changed_managed_fields() {
    let cur = member("E1", true);
    let mut want = cur.clone();
    want.job_title = Some("Staff Engineer".into());
    want.employee_number = Some("99".into()); // unmanaged: ignored
    let p = plan(&desired(vec![want]), &[existing(cur)], &options());
    assert_eq!(kinds(&p), vec![(WriteKind::Update, "E1".into())]);
    assert_eq!(
        changes(&p.writes[0]),
        &[Change::Set(Attr::JobTitle, "Staff Engineer".into())]
    );
}

#[test]
fn a_value_gone_from_the_source_is_cleared() {
    let cur = member("E1", true);
    let mut want = cur.clone();
    want.department = None;
    let p = plan(&desired(vec![want]), &[existing(cur)], &options());
    assert_eq!(changes(&p.writes[0]), &[Change::Clear(Attr::Department)]);
}

#[test]
fn empty_and_absent_are_the_same() {
    let mut cur = member("E1", true);
    cur.department = Some(String::new());
    let mut want = cur.clone();
    want.department = None;
    let p = plan(&desired(vec![want]), &[existing(cur)], &options());
    assert!(p.writes.is_empty());
}

#[test]
fn email_change_is_a_set_even_in_case_only() {
    let cur = member("E1", true);
    let mut want = cur.clone();
    want.email = "E1@acme.example".into();
    let p = plan(&desired(vec![want]), &[existing(cur)], &options());
    assert_eq!(
        changes(&p.writes[0]),
        &[Change::Set(Attr::Email, "E1@acme.example".into())]
    );
    assert!(p.errors.is_empty());
}

#[test]
fn leaver_is_deactivated_and_nothing_else() {
    let cur = member("E1", true);
    let mut want = cur.clone();
    want.active = false;
    want.job_title = Some("Gone".into());
    let others: Vec<Member> = (2..=10).map(|i| member(&format!("E{i}"), true)).collect();
    let mut all = vec![want];
    all.extend(others.clone());
    let mut cur_all = vec![existing(cur)];
    cur_all.extend(others.into_iter().map(existing));
    let p = plan(&desired(all), &cur_all, &options());
    assert_eq!(kinds(&p), vec![(WriteKind::Leaver, "E1".into())]);
    assert_eq!(changes(&p.writes[0]), &[Change::Active(false)]);
    assert_eq!(p.unchanged, 9);
}

#[test]
fn inactive_member_of_inactive_employee_is_unchanged() {
    let m = member("E1", false);
    let p = plan(&desired(vec![m.clone()]), &[existing(m)], &options());
    assert!(p.writes.is_empty());
    assert_eq!(p.unchanged, 1);
}

#[test]
fn returning_employee_is_reactivated_with_changes() {
    let cur = member("E1", false);
    let mut want = cur.clone();
    want.active = true;
    want.job_title = Some("Returned".into());
    let p = plan(&desired(vec![want]), &[existing(cur)], &options());
    assert_eq!(kinds(&p), vec![(WriteKind::Reactivate, "E1".into())]);
    assert_eq!(
        changes(&p.writes[0]),
        &[
            Change::Set(Attr::JobTitle, "Returned".into()),
            Change::Active(true)
        ]
    );
}

#[test]
fn unmanaged_members_are_never_touched() {
    let mut stranger = existing(member("X9", true));
    stranger.member.job_title = Some("Contractor".into());
    let mut no_external = existing(member("", true));
    no_external.member.email = "admin@acme.example".into();
    no_external.id = "admin".into();
    let p = plan(
        &desired(vec![member("E1", true)]),
        &[stranger, no_external],
        &options(),
    );
    assert_eq!(kinds(&p), vec![(WriteKind::Create, "E1".into())]);
    assert_eq!(p.managed, 0);
}

#[test]
fn ambiguous_identity_leaves_the_member_alone_and_is_not_a_leaver() {
    let mut source = desired(vec![]);
    source.ambiguous_ids = vec!["E1".into()];
    let p = plan(&source, &[existing(member("E1", true))], &options());
    assert!(p.writes.is_empty());
    assert_eq!(p.managed, 1);
}

#[test]
fn duplicate_external_id_in_destination_is_an_error_and_untouched() {
    let a = existing(member("E1", true));
    let mut b = a.clone();
    b.id = "scim-other".into();
    b.member.email = "other@acme.example".into();
    let mut want = member("E1", true);
    want.job_title = Some("New".into());
    let p = plan(&desired(vec![want]), &[a, b], &options());
    assert!(p.writes.is_empty());
    assert_eq!(p.errors.len(), 1);
    assert!(p.errors[0]
        .message
        .contains("several destination accounts have externalId E1"));
}

#[test]
fn create_clashing_with_an_unmanaged_account_is_an_error_row() {
    let mut admin = existing(member("", true));
    admin.id = "admin-1".into();
    admin.member.email = "E1@ACME.example".into();
    let p = plan(&desired(vec![member("E1", true)]), &[admin], &options());
    assert!(p.writes.is_empty());
    assert_eq!(p.errors[0].field.as_deref(), Some("email"));
    assert!(
        p.errors[0].message.contains("does not manage (id admin-1)"),
        "{}",
        p.errors[0].message
    );
}

#[test]
fn email_change_clashing_with_another_member_is_an_error_row() {
    let a = member("E1", true);
    let b = member("E2", true);
    let mut want_b = b.clone();
    want_b.email = a.email.clone();
    let mut want_a = a.clone();
    want_a.job_title = Some("Lead".into());
    let p = plan(
        &desired(vec![want_a, want_b]),
        &[existing(a), existing(b)],
        &options(),
    );
    assert_eq!(kinds(&p), vec![(WriteKind::Update, "E1".into())]);
    assert_eq!(p.errors.len(), 1);
    assert!(p.errors[0].message.contains("member with Employee ID E1"));
}

fn population(n: usize, leavers: usize) -> (MappedSource, Vec<DestinationMember>) {
    let cur: Vec<Member> = (0..n).map(|i| member(&format!("E{i}"), true)).collect();
    let want: Vec<Member> = cur
        .iter()
        .enumerate()
        .map(|(i, m)| Member {
            active: i >= leavers,
            ..m.clone()
        })
        .collect();
    (desired(want), cur.into_iter().map(existing).collect())
}

#[test]
fn leavers_at_the_threshold_go_through() {
    let (want, cur) = population(10, 2);
    let p = plan(&want, &cur, &options());
    assert_eq!(p.count(WriteKind::Leaver), 2);
    assert!(p.blocked.is_none());
}

#[test]
fn leavers_above_the_threshold_block_and_deactivate_nothing() {
    let (mut want, mut cur) = population(10, 3);
    want.members.push(DesiredMember {
        member: member("NEW", true),
        manager_employee_id: None,
        leaver_reason: None,
    });
    let mut changed = member("E9", true);
    changed.job_title = Some("Changed".into());
    want.members[9].member = changed;
    cur.push(existing(member("X1", true))); // unmanaged, not in the denominator
    let p = plan(&want, &cur, &options());
    assert_eq!(p.count(WriteKind::Leaver), 0);
    assert_eq!(p.count(WriteKind::Create), 1);
    assert_eq!(p.count(WriteKind::Update), 1);
    let b = p.blocked.clone().unwrap();
    assert_eq!((b.leavers, b.managed, b.max_percent), (3, 10, 20));
    assert!(
        b.message()
            .starts_with("3 of 10 active managed members (30.0%)"),
        "{}",
        b.message()
    );
}

#[test]
fn approval_lets_up_to_the_approved_count_through() {
    let (want, cur) = population(10, 3);
    let mut o = options();
    o.approved_leavers = Some(3);
    assert_eq!(plan(&want, &cur, &o).count(WriteKind::Leaver), 3);
    o.approved_leavers = Some(2);
    let p = plan(&want, &cur, &o);
    assert_eq!(p.count(WriteKind::Leaver), 0);
    assert!(p.blocked.is_some());
}

#[test]
fn zero_percent_blocks_any_leaver_and_hundred_blocks_none() {
    let (want, cur) = population(4, 1);
    let mut o = options();
    o.max_leavers_percent = 0;
    assert!(plan(&want, &cur, &o).blocked.is_some());
    let (want, cur) = population(4, 4);
    o.max_leavers_percent = 100;
    assert_eq!(plan(&want, &cur, &o).count(WriteKind::Leaver), 4);
}

#[test]
fn writes_are_ordered_creates_updates_leavers() {
    let mut want = vec![member("L", false), member("N", true)];
    let mut upd = member("U", true);
    upd.last_name = Some("Changed".into());
    want.push(upd);
    let mut o = options();
    o.max_leavers_percent = 100;
    let cur = vec![existing(member("L", true)), existing(member("U", true))];
    let p = plan(&desired(want), &cur, &o);
    let k: Vec<WriteKind> = p.writes.iter().map(|w| w.kind).collect();
    assert_eq!(
        k,
        vec![WriteKind::Create, WriteKind::Update, WriteKind::Leaver]
    );
}

#[test]
fn manager_links_to_the_managers_destination_id() {
    let mut o = options();
    o.managed.insert(Attr::Manager);
    let boss = member("B", true);
    let dev = member("D", true);
    let mut source = desired(vec![boss.clone(), dev.clone()]);
    source.members[1].manager_employee_id = Some("B".into());
    let p = plan(
        &source,
        &[existing(boss.clone()), existing(dev.clone())],
        &o,
    );
    assert_eq!(
        changes(&p.writes[0]),
        &[Change::Set(Attr::Manager, "scim-B".into())]
    );
    assert_eq!(p.pending_manager_links, 0);

    // Manager not in the destination yet: the link waits, nothing else is held up.
    let p = plan(&source, &[], &o);
    assert_eq!(p.count(WriteKind::Create), 2);
    assert_eq!(p.pending_manager_links, 1);
    assert!(p
        .writes
        .iter()
        .all(|w| matches!(&w.op, WriteOp::Create { member } if member.manager.is_none())));
}

#[test]
fn replan_after_stale_version_keeps_the_kind_of_update() {
    let desired_m = member("E1", false);
    let mut now = member("E1", true);
    now.job_title = Some("Changed meanwhile".into());
    let managed = options().managed;
    // A leaver stays a leaver: no attribute writes sneak in.
    assert_eq!(
        replan_update(&now, &[Change::Active(false)], &desired_m, managed),
        vec![Change::Active(false)]
    );
    now.active = false;
    assert!(replan_update(&now, &[Change::Active(false)], &desired_m, managed).is_empty());
    let mut want = member("E1", true);
    want.job_title = Some("Target".into());
    let now = member("E1", true);
    assert_eq!(
        replan_update(
            &now,
            &[Change::Set(Attr::JobTitle, "x".into())],
            &want,
            managed
        ),
        vec![Change::Set(Attr::JobTitle, "Target".into())]
    );
}

/// Applies a plan the way a destination would, in memory.
fn apply(current: &mut Vec<DestinationMember>, p: &Plan) {
    for w in &p.writes {
        match &w.op {
            WriteOp::Create { member } => {
                let id = format!("scim-{}", member.employee_id);
                current.push(DestinationMember {
                    id,
                    version: None,
                    member: member.clone(),
                    has_work_email: true,
                });
            }
            WriteOp::Update(UpdateOp { id, changes, .. }) => {
                let m = current.iter_mut().find(|m| &m.id == id).unwrap();
                for c in changes {
                    c.apply_to(&mut m.member);
                }
            }
        }
    }
}

fn random_member(rng: &mut StdRng, id: usize) -> Member {
    let pick = |rng: &mut StdRng, opts: &[&str]| -> Option<String> {
        let i = rng.random_range(0..=opts.len());
        opts.get(i).map(|s| s.to_string())
    };
    Member {
        employee_id: format!("E{id}"),
        email: format!("p{id}-{}@acme.example", rng.random_range(0..2)),
        first_name: pick(rng, &["Ada", "Grace"]),
        last_name: pick(rng, &["Hopper", "Lovelace"]),
        display_name: pick(rng, &["A", "B"]),
        job_title: pick(rng, &["Dev", "Ops", ""]),
        department: pick(rng, &["Eng", "HR"]),
        employee_number: pick(rng, &["1", "2"]),
        manager: None,
        extra: Vec::new(),
        active: rng.random_bool(0.8),
    }
}

#[test]
fn property_applying_a_plan_converges_and_never_touches_strangers() {
    for seed in 0..300 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(0..30);
        let mut cur: Vec<DestinationMember> = Vec::new();
        let mut want = Vec::new();
        for i in 0..n {
            if rng.random_bool(0.6) {
                cur.push(existing(random_member(&mut rng, i)));
            }
            if rng.random_bool(0.8) {
                want.push(random_member(&mut rng, i));
            }
        }
        // Strangers: accounts the integration does not manage.
        for i in 0..rng.random_range(0..4) {
            let mut s = existing(random_member(&mut rng, 1000 + i));
            s.member.email = format!("stranger{i}@other.example");
            cur.push(s);
        }
        let strangers_before: Vec<DestinationMember> = cur
            .iter()
            .filter(|m| m.member.employee_id.starts_with("E100"))
            .cloned()
            .collect();
        let source = desired(want.clone());
        let mut o = options();
        o.max_leavers_percent = rng.random_range(0..=100);
        let first = plan(&source, &cur, &o);
        let leavers = first.count(WriteKind::Leaver);
        if first.blocked.is_none() {
            assert!(
                leavers as u64 * 100 <= o.max_leavers_percent as u64 * first.managed as u64,
                "seed {seed}: threshold exceeded without approval"
            );
        } else {
            assert_eq!(leavers, 0, "seed {seed}: blocked plan deactivates");
        }
        apply(&mut cur, &first);
        let strangers_after: Vec<DestinationMember> = cur
            .iter()
            .filter(|m| m.member.employee_id.starts_with("E100"))
            .cloned()
            .collect();
        assert_eq!(strangers_before, strangers_after, "seed {seed}");

        o.approved_leavers = Some(u32::MAX);
        let second = plan(&source, &cur, &o);
        apply(&mut cur, &second);
        let third = plan(&source, &cur, &o);
        assert!(
            third.writes.is_empty(),
            "seed {seed}: not converged: {:?}",
            kinds(&third)
        );
        assert!(third.blocked.is_none());

        // Every desired member without an error row holds its desired state now.
        let errored: std::collections::HashSet<_> = third
            .errors
            .iter()
            .filter_map(|e| e.employee_id.clone())
            .collect();
        for d in &source.members {
            if errored.contains(&d.member.employee_id) {
                continue;
            }
            match cur
                .iter()
                .find(|m| m.member.employee_id == d.member.employee_id)
            {
                Some(m) => {
                    assert_eq!(m.member.active, d.member.active, "seed {seed}");
                    if d.member.active {
                        assert!(
                            diff_member(&m.member, &d.member, o.managed).is_empty(),
                            "seed {seed}"
                        );
                    }
                }
                None => assert!(
                    !d.member.active,
                    "seed {seed}: active employee without member"
                ),
            }
        }
    }
}

#[test]
fn a_ledger_member_gone_from_freshteam_is_a_removed_leaver_and_strangers_are_untouched() {
    use crate::member::LeaverReason;
    // E0..E9 in Freshteam and managed; GONE was managed and is in no population any
    // more; STRANGER was made by hand; DRAFT is a draft profile with an account.
    let (mut want, mut cur) = population(10, 0);
    want.drafts.push("DRAFT".into());
    cur.push(existing(member("GONE", true)));
    cur.push(existing(member("STRANGER", true)));
    cur.push(existing(member("DRAFT", true)));
    let ledger: HashSet<String> = ["E0", "E1", "GONE", "DRAFT"].map(String::from).into();
    let p = plan_with_ledger(&want, &cur, Some(&ledger), &options());
    assert_eq!(kinds(&p), vec![(WriteKind::Leaver, "GONE".to_string())]);
    assert_eq!(p.writes[0].leaver_reason, Some(LeaverReason::Removed));
    // E2..E9 matched an employee for the first time: adopted.
    assert_eq!(
        p.adopted,
        (2..10).map(|i| format!("E{i}")).collect::<Vec<_>>()
    );
    assert_eq!((p.managed, p.active_managed), (12, 12));
    // An employee still in Freshteam with a bad record is an error row, not removed.
    let mut with_error = want.clone();
    with_error.errors.push(RecordError {
        employee_id: Some("GONE".into()),
        email: None,
        field: Some("email".into()),
        severity: Severity::Error,
        message: "invalid e-mail".into(),
    });
    assert!(
        plan_with_ledger(&with_error, &cur, Some(&ledger), &options())
            .writes
            .is_empty()
    );

    let ignore = PlanOptions {
        when_removed: WhenRemoved::Ignore,
        ..options()
    };
    assert!(plan_with_ledger(&want, &cur, Some(&ledger), &ignore)
        .writes
        .is_empty());
    // Without a ledger nobody removed can be seen.
    assert!(plan(&want, &cur, &options()).writes.is_empty());
}

#[test]
fn the_threshold_base_is_the_active_managed_members() {
    // 800 old leavers (inactive already) and 200 active members: 60 new leavers are
    // 30% of the 200, over a 20% limit, even though they are 6% of the 1,000.
    let (mut want, mut cur) = population(1000, 860);
    for (i, m) in cur.iter_mut().enumerate() {
        m.member.active = i >= 800;
    }
    for d in want.members.iter_mut().take(800) {
        d.leaver_reason = Some(crate::member::LeaverReason::Terminated);
    }
    let p = plan(&want, &cur, &options());
    let b = p.blocked.clone().expect("blocked");
    assert_eq!((b.leavers, b.managed), (60, 200));
    assert_eq!(p.count(WriteKind::Leaver), 0);
}

#[test]
fn a_plan_of_the_changed_few_never_sees_an_absent_employee_as_removed() {
    // An incremental run read E0..E9 (changed) only; GONE is in the ledger and its
    // account is among those looked up, but absence from a changed-since read proves
    // nothing.
    let (want, mut cur) = population(10, 0);
    cur.push(existing(member("GONE", true)));
    let ledger: HashSet<String> = want
        .members
        .iter()
        .map(|d| d.member.employee_id.clone())
        .chain(["GONE".to_string()])
        .collect();
    let changed = PlanOptions {
        scope: PlanScope::Changed { managed: 11 },
        ..options()
    };
    assert!(plan_with_ledger(&want, &cur, Some(&ledger), &changed)
        .writes
        .is_empty());
    // The same inputs seen as everyone: GONE was removed from Freshteam.
    assert_eq!(
        kinds(&plan_with_ledger(&want, &cur, Some(&ledger), &options())),
        vec![(WriteKind::Leaver, "GONE".to_string())]
    );
}

#[test]
fn a_plan_of_the_changed_few_takes_the_threshold_over_the_ledger() {
    // 5 leavers among the 5 accounts looked up: 100% of what was read, but 0.5% of the
    // 1,000 members in the ledger, under a 20% limit.
    let (want, cur) = population(5, 5);
    let ledger: HashSet<String> = (0..1000).map(|i| format!("E{i}")).collect();
    let changed = PlanOptions {
        scope: PlanScope::Changed { managed: 1000 },
        ..options()
    };
    let p = plan_with_ledger(&want, &cur, Some(&ledger), &changed);
    assert!(p.blocked.is_none());
    assert_eq!(p.count(WriteKind::Leaver), 5);
    let small = PlanOptions {
        scope: PlanScope::Changed { managed: 10 },
        ..options()
    };
    let blocked = plan_with_ledger(&want, &cur, Some(&ledger), &small)
        .blocked
        .expect("5 of 10 is over 20%");
    assert_eq!((blocked.leavers, blocked.managed), (5, 10));
}

/// Plans against a real ledger: `ids` managed, each with its account id recorded.
fn plan_against_ledger(
    want: &MappedSource,
    cur: &[DestinationMember],
    ledger: &crate::ledger::Ledger,
    options: &PlanOptions,
) -> Plan {
    let desired = DesiredSet::from(want);
    let accounts = Accounts::from(cur);
    plan_sets(
        &desired,
        &accounts,
        Some(ledger as &dyn ManagedIds),
        options,
    )
    .into_plan(&desired, &accounts)
}

fn ledger_with_accounts(ids: &[&str]) -> crate::ledger::Ledger {
    let mut ledger = crate::ledger::Ledger::default();
    for id in ids {
        ledger.insert(id, crate::ledger::Origin::Created);
        ledger.set_account(id, Some(&format!("scim-{id}")));
    }
    ledger
}

#[test]
fn a_vanished_account_of_current_staff_is_created_again_in_either_scope() {
    let want = desired(vec![member("E1", true), member("E2", true)]);
    let cur = vec![existing(member("E2", true))];
    let ledger = ledger_with_accounts(&["E1", "E2"]);
    let changed = PlanOptions {
        scope: PlanScope::Changed { managed: 2 },
        ..options()
    };
    for options in [options(), changed] {
        let p = plan_against_ledger(&want, &cur, &ledger, &options);
        assert_eq!(kinds(&p), vec![(WriteKind::Create, "E1".into())]);
        assert_eq!(
            p.vanished.recreated,
            vec![("E1".to_string(), "scim-E1".to_string())]
        );
        assert_eq!(p.vanished.replaces("E1"), Some("scim-E1"));
        assert_eq!(p.vanished.replaces("E2"), None);
        assert!(p.vanished.forgotten.is_empty());
    }
}

#[test]
fn a_vanished_account_of_a_leaver_is_forgotten_not_deactivated() {
    let want = desired(vec![member("E1", false)]);
    let ledger = ledger_with_accounts(&["E1"]);
    let p = plan_against_ledger(&want, &[], &ledger, &options());
    assert!(
        p.writes.is_empty(),
        "nothing to deactivate: {:?}",
        kinds(&p)
    );
    assert_eq!(p.vanished.forgotten, vec!["E1".to_string()]);
    assert!(p.vanished.forgets("E1"));
    assert!(p.vanished.recreated.is_empty());
}

#[test]
fn a_member_whose_create_never_happened_is_created_without_being_called_recreated() {
    // In the ledger without an account id: a run recorded it and crashed before the create.
    let want = desired(vec![member("E1", true)]);
    let mut ledger = crate::ledger::Ledger::default();
    ledger.insert("E1", crate::ledger::Origin::Created);
    let p = plan_against_ledger(&want, &[], &ledger, &options());
    assert_eq!(kinds(&p), vec![(WriteKind::Create, "E1".into())]);
    assert!(p.vanished.recreated.is_empty());
}

#[test]
fn an_account_found_again_by_external_id_is_not_recreated() {
    // The ledger's id is gone, but an account with the employee's externalId exists (made
    // again by hand): it is used, nothing is created.
    let want = desired(vec![member("E1", true)]);
    let mut other = existing(member("E1", true));
    other.id = "made-by-hand".into();
    let ledger = ledger_with_accounts(&["E1"]);
    let p = plan_against_ledger(&want, &[other], &ledger, &options());
    assert!(p.writes.is_empty());
    assert!(p.vanished.recreated.is_empty() && p.vanished.forgotten.is_empty());
}
