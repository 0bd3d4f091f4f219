//! Whether and when a task that exited is started again: restart policy, exponential backoff
//! and the start limit, as pure logic over the times given to it.
//!
//! Timing rules:
//! - the first restart waits `restart-delay`; each further one doubles it, up to
//!   `restart-max-delay`;
//! - a run that lasted at least `restart-max-delay` resets the doubling;
//! - with `start-limit: N in W`, a task that has started N times within the last W and exits
//!   again gives up: it has finished for good with its last status;
//! - a start that failed (no process, or its exec failed) counts as a start, and waits at
//!   least [`FAILED_START_DELAY`], doubling with each failed start in a row, up to
//!   `restart-max-delay`: `restart-delay: 0` cannot spin on a task that cannot start;
//! - only the starts inside the window are kept (none without a limit), so the history never
//!   grows past the limit.
//!
//! A task that trc itself stopped (teardown, a stop request) never gets here: the state
//! machine (`machine.rs`) does not ask.

use crate::config::{Restart, TaskSettings};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest wait before a start that failed is tried again (doubling from there).
pub const FAILED_START_DELAY: Duration = Duration::from_millis(100);

/// What to do with a task that exited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// It has finished for good.
    Done,
    /// Start it again after `delay`; this will be restart number `count`.
    Restart { delay: Duration, count: u32 },
    /// It exceeded its start limit: it has finished for good, as a failure.
    GiveUp { starts: u32, window: Duration },
}

/// A task's restart history.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Restarts since the doubling was last reset.
    consecutive: u32,
    /// All restarts so far.
    pub total: u32,
    /// Start times inside the current start-limit window (at most the limit's count).
    starts: VecDeque<Instant>,
    /// Starts that failed in a row.
    failed_streak: u32,
}

impl RestartState {
    /// Records a start.
    pub fn started(&mut self, at: Instant, settings: &TaskSettings) {
        let Some(limit) = settings.start_limit else {
            self.starts.clear();
            return;
        };
        self.forget_before(at, limit.window);
        self.starts.push_back(at);
        while self.starts.len() > limit.starts as usize {
            self.starts.pop_front();
        }
    }

    fn forget_before(&mut self, now: Instant, window: Duration) {
        while self.starts.front().is_some_and(|&t| now.saturating_duration_since(t) >= window) {
            self.starts.pop_front();
        }
    }

    /// How many start times are kept (for tests of the bound).
    pub fn history_len(&self) -> usize {
        self.starts.len()
    }

    /// Decides about a task that exited with `status` after running for `ran_for`, or whose
    /// start failed (`failed_start`).
    pub fn decide(
        &mut self,
        settings: &TaskSettings,
        status: i32,
        failed_start: bool,
        ran_for: Duration,
        now: Instant,
    ) -> Decision {
        self.failed_streak = if failed_start { self.failed_streak.saturating_add(1) } else { 0 };
        let wanted = match settings.restart {
            Restart::Never => false,
            Restart::OnFailure => !settings.is_success(status),
            Restart::Always => true,
        };
        if !wanted {
            return Decision::Done;
        }
        if ran_for >= settings.restart_max_delay {
            self.consecutive = 0;
        }
        if let Some(limit) = settings.start_limit {
            self.forget_before(now, limit.window);
            if self.starts.len() >= limit.starts as usize {
                return Decision::GiveUp { starts: limit.starts, window: limit.window };
            }
        }
        let factor = 1u32.checked_shl(self.consecutive.min(31)).unwrap_or(u32::MAX);
        let mut delay = settings
            .restart_delay
            .checked_mul(factor)
            .unwrap_or(settings.restart_max_delay)
            .min(settings.restart_max_delay);
        if failed_start {
            let factor = 1u32.checked_shl((self.failed_streak - 1).min(31)).unwrap_or(u32::MAX);
            let floor = FAILED_START_DELAY.checked_mul(factor).unwrap_or(Duration::MAX);
            delay = delay.max(floor.min(settings.restart_max_delay.max(FAILED_START_DELAY)));
        }
        self.consecutive = self.consecutive.saturating_add(1);
        self.total += 1;
        Decision::Restart { delay, count: self.total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StartLimit;

    fn settings(restart: Restart) -> TaskSettings {
        TaskSettings {
            restart,
            restart_delay: Duration::from_secs(1),
            restart_max_delay: Duration::from_secs(8),
            start_limit: None,
            ..TaskSettings::default()
        }
    }

    const QUICK: Duration = Duration::from_millis(10);

    #[test]
    fn policies() {
        let now = Instant::now();
        let mut r = RestartState::default();
        assert_eq!(r.decide(&settings(Restart::Never), 1, false, QUICK, now), Decision::Done);
        assert_eq!(r.decide(&settings(Restart::OnFailure), 0, false, QUICK, now), Decision::Done);
        assert!(matches!(
            r.decide(&settings(Restart::OnFailure), 137, false, QUICK, now),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            r.decide(&settings(Restart::Always), 0, false, QUICK, now),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_stable_run() {
        let s = settings(Restart::Always);
        let now = Instant::now();
        let mut r = RestartState::default();
        let delays: Vec<u64> = (0..6)
            .map(|_| match r.decide(&s, 1, false, QUICK, now) {
                Decision::Restart { delay, .. } => delay.as_secs(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        match r.decide(&s, 1, false, Duration::from_secs(8), now) {
            Decision::Restart { delay, count } => {
                assert_eq!(delay, Duration::from_secs(1));
                assert_eq!(count, 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn start_limit_gives_up_after_exactly_n_starts() {
        let s = TaskSettings {
            start_limit: Some(StartLimit { starts: 3, window: Duration::from_secs(60) }),
            restart_delay: Duration::ZERO,
            ..settings(Restart::OnFailure)
        };
        let t0 = Instant::now();
        let mut r = RestartState::default();
        let mut starts = 0;
        loop {
            r.started(t0, &s);
            starts += 1;
            match r.decide(&s, 2, false, QUICK, t0) {
                Decision::Restart { delay, .. } => assert_eq!(delay, Duration::ZERO),
                Decision::GiveUp { starts: n, .. } => {
                    assert_eq!(n, 3);
                    break;
                }
                Decision::Done => panic!("done"),
            }
        }
        assert_eq!(starts, 3);
    }

    #[test]
    fn the_history_keeps_only_what_the_limit_needs() {
        let limited = TaskSettings {
            start_limit: Some(StartLimit { starts: 3, window: Duration::from_secs(60) }),
            ..settings(Restart::Always)
        };
        let unlimited = TaskSettings { start_limit: None, ..settings(Restart::Always) };
        let t0 = Instant::now();
        let (mut a, mut b) = (RestartState::default(), RestartState::default());
        for i in 0..10_000 {
            a.started(t0 + Duration::from_millis(i), &limited);
            b.started(t0 + Duration::from_millis(i), &unlimited);
        }
        assert_eq!(a.history_len(), 3);
        assert_eq!(b.history_len(), 0);
    }

    #[test]
    fn starts_outside_the_window_do_not_count() {
        let s = TaskSettings {
            start_limit: Some(StartLimit { starts: 2, window: Duration::from_secs(10) }),
            ..settings(Restart::Always)
        };
        let t0 = Instant::now();
        let mut r = RestartState::default();
        r.started(t0, &s);
        assert!(matches!(r.decide(&s, 1, false, QUICK, t0), Decision::Restart { .. }));
        r.started(t0 + Duration::from_secs(5), &s);
        // 12 s later the first start has left the window: one start inside, so restart.
        assert!(matches!(
            r.decide(&s, 1, false, QUICK, t0 + Duration::from_secs(12)),
            Decision::Restart { .. }
        ));
        r.started(t0 + Duration::from_secs(13), &s);
        assert!(matches!(
            r.decide(&s, 1, false, QUICK, t0 + Duration::from_secs(13)),
            Decision::GiveUp { .. }
        ));
    }
}
