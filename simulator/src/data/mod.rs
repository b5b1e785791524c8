//! The simulated account's data: generated employees, lookups and employee fields.
//!
//! Generated employees are not stored: a record is a number, and its fields are derived
//! from `(seed, number)` whenever a page or a detail call needs them. Only employees a
//! test has changed or added are kept as JSON. That keeps 100,000 employees at a few
//! megabytes and makes the data deterministic per seed.

mod directory;
mod generator;

pub(crate) use directory::{Directory, ListQuery};
pub(crate) use generator::{after_generated_changes, lookup, Generator};

/// Fields the list endpoint returns; the detail endpoint returns these and more
/// (`docs/freshteam-api.md`). The operator keeps the same list to decide when detail
/// calls are needed (`freshteam_operator::source::LIST_FIELDS`); its test
/// `tests/source_simulator.rs` checks that the two agree.
pub const LIST_FIELDS: &[&str] = &[
    "id",
    "employee_id",
    "first_name",
    "middle_name",
    "last_name",
    "official_email",
    "status",
    "terminated",
    "termination_date",
    "deleted",
    "draft",
    "employee_type",
    "designation",
    "department_id",
    "sub_department_id",
    "business_unit_id",
    "branch_id",
    "team_id",
    "reporting_to_id",
    "joining_date",
    "created_at",
    "updated_at",
];

/// Fields only on `GET /api/employees/{id}`.
pub(crate) const DETAIL_ONLY_FIELDS: &[&str] = &[
    "personal_email",
    "date_of_birth",
    "gender",
    "phone_numbers",
    "role_ids",
    "level_id",
    "custom_field_values",
];

/// First numeric Freshteam id; employee number `n` (from 1) gets `ID_BASE + n`.
pub(crate) const ID_BASE: i64 = 1000;
