//! The wait policies and the exit-status rules, as pure functions.
//!
//! | policy        | the group ends when...                         | status                      |
//! |---------------|------------------------------------------------|-----------------------------|
//! | wait_any      | the first async or sync task finishes          | that task's status          |
//! | wait_all      | every async and sync task has finished         | first failure's status, or 0|
//! | wait_err      | a task fails, or else all have finished        | the failure's status, or 0  |
//! | wait_forever  | never by itself: only a signal ends it         | 128+N                       |
//!
//! On top: a signal N ends any group with 128+N; a boot failure ends it with the boot task's
//! status (halt does not run); if any halt task ran, trc exits with the last halt task's status.

use crate::config::WaitPolicy;

/// The status of a process that exited with `code` or was killed by signal `signal`,
/// as a shell reports it (128+N for a signal).
pub fn exit_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (_, Some(sig)) => 128 + sig,
        (Some(code), None) => code,
        (None, None) => 0,
    }
}

/// The status trc exits with when signal `sig` ended it.
pub fn signal_status(sig: i32) -> i32 {
    128 + sig
}

/// Follows the tasks of the async and sync stages as they finish and decides, by the wait
/// policy, when the group is done and with which status.
#[derive(Debug, Clone)]
pub struct GroupPolicy {
    policy: WaitPolicy,
    first_failure: Option<i32>,
}

impl GroupPolicy {
    pub fn new(policy: WaitPolicy) -> GroupPolicy {
        GroupPolicy { policy, first_failure: None }
    }

    /// A task finished for good with `status`; `all_done` tells whether it was the last one
    /// (no async task running, no sync task left). Returns the group's status when the group
    /// is done.
    pub fn task_finished(&mut self, status: i32, all_done: bool) -> Option<i32> {
        if status != 0 && self.first_failure.is_none() {
            self.first_failure = Some(status);
        }
        match self.policy {
            WaitPolicy::Any => Some(status),
            WaitPolicy::Err if status != 0 => Some(status),
            WaitPolicy::All | WaitPolicy::Err if all_done => Some(self.first_failure.unwrap_or(0)),
            _ => None,
        }
    }

    /// The group had no async or sync task at all: whether it is done at once.
    pub fn empty_group(&self) -> Option<i32> {
        match self.policy {
            WaitPolicy::Forever => None,
            _ => Some(0),
        }
    }
}

/// The status trc exits with: the group's, unless a halt task ran (TrivialRC's rule: then the
/// last halt task's status wins, so a halt task can keep the group's with `exit $_exit_status`).
pub fn final_status(group: i32, last_halt: Option<i32>) -> i32 {
    last_halt.unwrap_or(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a sequence of `(status, all_done)` finishes and returns the decision.
    fn run(policy: WaitPolicy, finishes: &[(i32, bool)]) -> Option<(usize, i32)> {
        let mut p = GroupPolicy::new(policy);
        finishes
            .iter()
            .enumerate()
            .find_map(|(i, &(status, done))| p.task_finished(status, done).map(|s| (i, s)))
    }

    #[test]
    fn wait_any_ends_with_the_first_task_and_its_own_status() {
        assert_eq!(run(WaitPolicy::Any, &[(11, false), (22, true)]), Some((0, 11)));
        assert_eq!(run(WaitPolicy::Any, &[(0, false)]), Some((0, 0)));
    }

    #[test]
    fn wait_all_waits_for_all_and_reports_the_first_failure() {
        assert_eq!(run(WaitPolicy::All, &[(0, false), (4, false), (5, false), (2, true)]), Some((3, 4)));
        assert_eq!(run(WaitPolicy::All, &[(0, false), (0, true)]), Some((1, 0)));
        assert_eq!(run(WaitPolicy::All, &[(0, false)]), None);
    }

    #[test]
    fn wait_err_stops_at_the_first_failure() {
        assert_eq!(run(WaitPolicy::Err, &[(0, false), (4, false), (5, true)]), Some((1, 4)));
        assert_eq!(run(WaitPolicy::Err, &[(0, false), (0, true)]), Some((1, 0)));
    }

    #[test]
    fn wait_forever_never_ends_by_itself() {
        assert_eq!(run(WaitPolicy::Forever, &[(1, false), (0, true)]), None);
        assert_eq!(GroupPolicy::new(WaitPolicy::Forever).empty_group(), None);
        assert_eq!(GroupPolicy::new(WaitPolicy::All).empty_group(), Some(0));
    }

    #[test]
    fn statuses() {
        assert_eq!(exit_code(Some(3), None), 3);
        assert_eq!(exit_code(None, Some(9)), 137);
        assert_eq!(signal_status(15), 143);
        assert_eq!(final_status(5, None), 5);
        assert_eq!(final_status(5, Some(0)), 0);
    }
}
