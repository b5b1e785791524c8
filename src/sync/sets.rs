//! The desired members and the accounts a plan refers into: owned by the stages from
//! the plan to the writes ([`PlanSets`]), lent to each step as [`Sets`].

use crate::destination::Accounts;
use crate::mapping::DesiredSet;
use crate::plan::{PackedPlan, PlanItem, PlannedWrite, Vanished};

/// The desired members and the accounts a plan refers into.
#[derive(Clone, Copy)]
pub(super) struct Sets<'a> {
    pub desired: &'a DesiredSet,
    pub current: &'a Accounts,
    /// Ledger members whose account is gone from the destination.
    pub vanished: &'a Vanished,
}

impl<'a> Sets<'a> {
    pub(super) fn employee_id(&self, item: &PlanItem) -> &'a str {
        PackedPlan::employee_id(item, self.desired, self.current)
    }
    pub(super) fn email(&self, item: &PlanItem) -> &'a str {
        PackedPlan::email(item, self.desired, self.current)
    }
    pub(super) fn write(&self, item: &PlanItem) -> PlannedWrite {
        PackedPlan::write(item, self.desired, self.current)
    }
}

/// The sets a plan was made from, owned: the largest part of a run's memory.
pub(super) struct PlanSets {
    pub desired: DesiredSet,
    pub current: Accounts,
    pub vanished: Vanished,
}

impl PlanSets {
    pub(super) fn view(&self) -> Sets<'_> {
        Sets {
            desired: &self.desired,
            current: &self.current,
            vanished: &self.vanished,
        }
    }
}
