//! Mapping and planning at scale (pure, in memory): 100,000 Freshteam records mapped
//! with the default mapping, then planned against 100,000 destination members.
//!
//!     cargo bench --bench plan
//!
//! Scenarios: the first import (empty destination), the steady state (identical) and a
//! delta (1% of the employees changed). Under `cargo test` (no `--bench` argument) every
//! routine runs once on 1,000 records, as a smoke test.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use freshteam_operator::api::{LeaversSpec, MappingSpec, WhenRemoved};
use freshteam_operator::destination::{DestinationMember, UpdateOp, WriteOp};
use freshteam_operator::mapping::{map_records, CompiledMapping, MappedSource};
use freshteam_operator::plan::{plan, PlanOptions, PlanScope, WriteKind};
use freshteam_operator::source::{EmployeeRecord, LookupKind, Population, SourceSnapshot};

const DEPARTMENTS: i64 = 40;

fn size() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    }
}

fn mapping() -> CompiledMapping {
    CompiledMapping::compile(&MappingSpec::default(), &LeaversSpec::default())
        .expect("the default mapping compiles")
}

/// One record with the fields the mapping asks for, in its order.
fn record(mapping: &CompiledMapping, n: usize, title: &str) -> EmployeeRecord {
    let values = mapping
        .request
        .fields
        .iter()
        .map(|f| {
            Some(match f.as_str() {
                "employee_id" => format!("E-{n:06}"),
                "official_email" => format!("employee.{n}@acme.example"),
                "first_name" => format!("First{n}"),
                "last_name" => format!("Last{}", n % 977),
                "designation" => title.to_string(),
                "department_id" => (n as i64 % DEPARTMENTS).to_string(),
                // Every 33rd employee has left.
                "status" if n.is_multiple_of(33) => "inactive".to_string(),
                "status" => "active".to_string(),
                other => panic!("the bench does not generate {other}"),
            })
        })
        .collect();
    EmployeeRecord {
        id: 1000 + n as i64,
        values,
        population: if n.is_multiple_of(33) {
            Population::Inactive
        } else {
            Population::Active
        },
    }
}

fn snapshot(mapping: &CompiledMapping, n: usize, changed_every: Option<usize>) -> SourceSnapshot {
    let employees = (0..n)
        .map(|i| {
            let changed = changed_every.is_some_and(|k| i.is_multiple_of(k));
            record(mapping, i, if changed { "Promoted" } else { "Engineer" })
        })
        .collect();
    let departments: HashMap<i64, String> = (0..DEPARTMENTS)
        .map(|d| (d, format!("Department {d}")))
        .collect();
    SourceSnapshot {
        employees,
        lookups: HashMap::from([(LookupKind::Departments, departments)]),
        ..SourceSnapshot::default()
    }
}

fn options(mapping: &CompiledMapping) -> PlanOptions {
    PlanOptions {
        managed: mapping.managed,
        max_leavers_percent: 20,
        approved_leavers: None,
        when_removed: WhenRemoved::Deactivate,
        scope: PlanScope::Everyone,
    }
}

/// The destination after a first import of `mapped`: every create applied, plus the
/// leavers as inactive members (an earlier run created them while they were active).
fn destination(mapped: &MappedSource, options: &PlanOptions) -> Vec<DestinationMember> {
    let first = plan(mapped, &[], options);
    let mut members: Vec<DestinationMember> = first
        .writes
        .into_iter()
        .map(|w| match w.op {
            WriteOp::Create { member } => member,
            WriteOp::Update(UpdateOp { .. }) => unreachable!("a first import only creates"),
        })
        .chain(
            mapped
                .members
                .iter()
                .filter(|d| !d.member.active)
                .map(|d| d.member.clone()),
        )
        .enumerate()
        .map(|(i, member)| DestinationMember {
            id: format!("{i:08x}-scim"),
            version: Some(format!("W/\"{i}\"")),
            member,
            has_work_email: true,
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members
}

fn bench(c: &mut Criterion) {
    let n = size();
    let mapping = mapping();
    let opts = options(&mapping);
    let source = snapshot(&mapping, n, None);
    let mapped = map_records(&source, &mapping);
    let current = destination(&mapped, &opts);
    let delta_source = snapshot(&mapping, n, Some(100));
    let delta = map_records(&delta_source, &mapping);

    // The scenarios plan what they should: a wrong fixture would measure nothing.
    let first = plan(&mapped, &[], &opts);
    assert_eq!(first.count(WriteKind::Create) as usize, n - n.div_ceil(33));
    let steady = plan(&mapped, &current, &opts);
    assert!(steady.writes.is_empty() && steady.errors.is_empty());
    assert_eq!(steady.unchanged as usize, n);
    let changed = plan(&delta, &current, &opts);
    let expected = (0..n)
        .filter(|i| i.is_multiple_of(100) && !i.is_multiple_of(33))
        .count();
    assert_eq!(changed.count(WriteKind::Update) as usize, expected);

    let mut group = c.benchmark_group(format!("{n} members"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(n as u64));

    group.bench_function("map", |b| {
        b.iter(|| map_records(black_box(&source), &mapping))
    });
    group.bench_function("plan first import", |b| {
        b.iter(|| plan(black_box(&mapped), &[], &opts))
    });
    group.bench_function("plan steady state", |b| {
        b.iter(|| plan(black_box(&mapped), black_box(&current), &opts))
    });
    group.bench_function("plan delta 1%", |b| {
        b.iter(|| plan(black_box(&delta), black_box(&current), &opts))
    });
    // What a steady-state run spends between reading both sides and applying.
    group.bench_function("map + plan steady state", |b| {
        b.iter(|| {
            let mapped = map_records(black_box(&source), &mapping);
            plan(&mapped, black_box(&current), &opts)
        })
    });
    // Building the inputs is not free either: dropping 100k members is part of a run.
    group.bench_function("map + plan delta 1% (owned inputs)", |b| {
        b.iter_batched(
            || delta_source.clone(),
            |s| {
                let mapped = map_records(&s, &mapping);
                drop(s);
                plan(&mapped, &current, &opts)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
