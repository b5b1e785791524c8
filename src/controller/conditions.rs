//! Status conditions, kept the Kubernetes way: one per type, `lastTransitionTime` moves
//! only when the status does.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A chrono time as Kubernetes' `Time` (whole seconds, as the API server stores it).
pub(crate) fn k8s_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).expect("a representable time"))
}

pub(crate) const READY: &str = "Ready";
pub(crate) const AUTHORIZED: &str = "Authorized";
pub(crate) const MAPPING_VALID: &str = "MappingValid";
pub(crate) const PUBLISHED: &str = "Published";
pub(crate) const IMPORTING: &str = "Importing";
/// Whether the destination keeps every mapping target (from the last run's discovery).
pub(crate) const DESTINATION_SUPPORTS_MAPPING: &str = "DestinationSupportsMapping";

/// Sets (or replaces) the condition of `type_`.
pub(crate) fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" };
    set_status(conditions, type_, status, reason, message, generation, now)
}

/// Sets the condition of `type_` to `True`, `False` or `Unknown`.
pub(crate) fn set_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = status.to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = k8s_time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: k8s_time(now),
        }),
    }
}

/// The condition of `type_`, if set.
pub(crate) fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition is set and `True`.
pub(crate) fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let mut c = Vec::new();
        set(&mut c, AUTHORIZED, true, "Connected", "a", Some(1), t0);
        set(&mut c, AUTHORIZED, true, "Connected", "b", Some(2), t1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, k8s_time(t0));
        assert_eq!(c[0].message, "b");
        set(
            &mut c,
            AUTHORIZED,
            false,
            "InvalidCredentials",
            "c",
            Some(2),
            t1,
        );
        assert_eq!(c[0].last_transition_time, k8s_time(t1));
        assert!(!is_true(&c, AUTHORIZED));
    }
}
