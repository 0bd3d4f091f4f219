//! A task's life as an explicit state machine: what the task *is* ([`State`]) and what the
//! operator *wants* ([`Wanted`]) are kept apart, and every change of either goes through
//! [`Task::transition`], which returns the [`Action`]s the supervisor must carry out (spawn,
//! signal, report to the group). Timers belong to states: a task in `Backoff` is due at
//! `until`, one in `Stopping` at its re-check or kill deadline; the loop sleeps until the
//! earliest [`Task::deadline`] and feeds [`Input::Tick`].
//!
//! ```text
//!                 Start / Want(Up)                 Spawned            Ready
//!   Pending ----------------------> [Spawn] -----> Starting --------> Running
//!                                                     |                  |
//!                                      Tick(until): not ready in time;   Fail(unhealthy,
//!                                      Fail: [Failing][Signal]           watchdog): [Failing][Signal]
//!                                                     v                  v
//!                                     Stopping(then: Fail) --Exited--> restart policy, as a failure
//!      |                               |              |                  |
//!      |                    SpawnFailed|              +--Exited--+-------+-- Want(Down|Removed),
//!      |                               v              |          |       |   Restart, Teardown:
//!      |                       (failed start)         |          |       v   [Signal]
//!      |                               |              v          |    Stopping --Tick(deadline)--> [Kill]
//!      |                               +------> restart policy   |       |
//!      |                                        /     |     \    |       +--Exited--> by its `then`:
//!      |                          delay due    /      |      \   |          Down/Removed -> Stopped
//!      |                     Backoff(until) <-+   Finished  GaveUp          Restart      -> [Spawn]
//!      |                          |   Tick(until): [Spawn]                  Teardown     -> Finished
//!      +-- Want(Down|Removed) --> Stopped <-- Want(Down|Removed) from Backoff
//! ```
//! - `Finished` and `GaveUp` are final for the wait policy (reported once as
//!   [`Action::Finished`]); `Stopped` is "held down by the operator": not restarted and not
//!   finished for the policy, until `Want(Up)` starts it again.
//! - A start that fails (no process could be made, or its exec failed) is a start: it counts
//!   for the start limit and the backoff, and waits at least `FAILED_START_DELAY` (doubling)
//!   before the next try, so that `restart-delay: 0` cannot spin.
//! - A restart with no delay still goes through `Backoff` (due at once): the loop starts it
//!   in its timer pass, after signals and control requests had their turn.
//! - Boot and halt tasks run once: their exit is always final.
//! - A task stopped by trc (teardown, `stop`, `restart`, removal) is never restarted by its
//!   policy; one stopped because it failed (not ready by its `ready-timeout`, unhealthy, its
//!   watchdog not fed) is: its exit counts as a failure (status 0 counts as 1).
//! - A task with a `ready:` probe stays `Starting` until `Ready` or its `until` (the
//!   `ready-timeout`); without one, the supervisor feeds `Ready` right after `Spawned`.
//! - `Ending`: the group stops, but this task only once the tasks that depend on it have
//!   stopped; meanwhile it is not restarted (an exit is final).
//! - `DependencyFailed`: a task waiting for its dependencies to be ready (spawn asked, not
//!   done) whose dependency finished for good never starts: finished, with that status.
//!
//! Timing rules of `Stopping`: the stop signal goes to the task's process group at once;
//! [`RESEND_CHECKS`] after it, trc looks for members of the group that cannot have received it
//! (started after it, or that exec'd since: the signal was lost on the way, see `teardown.rs`)
//! and sends it to them; SIGKILL goes to the whole group at `stop-timeout`.

use super::restart::{Decision, RestartState};
use crate::config::{Stage, TaskSettings};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::time::Instant;

/// When, after the stop signal, trc looks for group members that missed it.
pub const RESEND_CHECKS: [Duration; 4] =
    [Duration::from_millis(50), Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(3)];

/// What a task is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Not started yet (a sync task waiting for its turn, any task before its stage).
    Pending,
    /// Its process runs but is not ready yet; not ready by `until`: a failed start.
    Starting {
        pid: Pid,
        until: Option<Instant>,
    },
    Running {
        pid: Pid,
    },
    /// The stop signal was sent at `sent`; SIGKILL at `deadline` unless `killed` already.
    Stopping {
        pid: Pid,
        sent: Instant,
        deadline: Instant,
        killed: bool,
        checks: u8,
        then: Then,
    },
    /// Exited with `status`; starts again at `until`.
    Backoff {
        until: Instant,
        status: i32,
    },
    /// Held down on request; `status` of its last run, if it ran.
    Stopped {
        status: Option<i32>,
    },
    /// Done for good with `status`: the wait policy has counted it.
    Finished {
        status: i32,
    },
    /// Exceeded its start limit: done for good, as a failure with its last status.
    GaveUp {
        status: i32,
    },
}

/// What happens once a stopping task has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Stay down (`trcctl stop`).
    Down,
    /// Start again at once (`trcctl restart`, a changed file).
    Restart,
    /// Gone from the work dir: free what it holds.
    Remove,
    /// The group is stopping.
    Teardown,
    /// Trc stopped it because it failed: its exit goes to the restart policy as a failure.
    Fail(Failure),
}

/// Why trc stopped a task (or never started it) as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not ready within its `ready-timeout`.
    ReadyTimeout,
    /// `health-retries` health checks failed in a row.
    Unhealthy,
    /// No `WATCHDOG=1` within its `watchdog:` time (or `WATCHDOG=trigger`).
    Watchdog,
    /// A task of its `after:` failed for good (finished, not a completed one-shot, or gave
    /// up): it never started.
    Dependency,
}

impl Failure {
    /// The word `trcctl status` shows as its `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::ReadyTimeout => "ready-timeout",
            Failure::Unhealthy => "unhealthy",
            Failure::Watchdog => "watchdog",
            Failure::Dependency => "dependency",
        }
    }
}

/// What the operator wants of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Up,
    Down,
    Removed,
}

/// What happens to a task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    /// Its turn has come (boot, the group's start, the sync chain, halt).
    Start,
    /// The supervisor made its process.
    Spawned { pid: Pid },
    /// No process could be made (`status` 127 or 126).
    SpawnFailed { status: i32 },
    /// Its process is ready (started = ready, for now).
    Ready,
    /// Its leader was reaped; `exec_failed` when the process never ran the program.
    Exited { status: i32, exec_failed: bool },
    /// Time has passed: deadlines up to `now` are due.
    Tick { now: Instant },
    /// The operator changed what they want.
    Want(Wanted),
    /// The operator asks for a stop and a start.
    Restart,
    /// The group is stopping.
    Teardown,
    /// The group is stopping; this task stops later (after its dependents): no restart.
    Ending,
    /// The operator, a health check or the watchdog says it failed: stop it as a failure.
    Fail(Failure),
    /// A task it waits for finished for good with `status`: it never starts.
    DependencyFailed { status: i32 },
}

/// What the supervisor must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Start the task's process (and feed back `Spawned` or `SpawnFailed`).
    Spawn,
    /// Send the task's stop signal to its process group.
    Signal,
    /// Look for members of its group that missed the stop signal, and send it to them.
    Resend,
    /// SIGKILL to its process group.
    Kill,
    /// Log that it starts again after `delay` (restart number `count`).
    Restarting { delay: Duration, count: u32 },
    /// Log that it gave up.
    GiveUp { starts: u32, window: Duration },
    /// It has finished for good with this status: the wait policy decides.
    Finished { status: i32 },
    /// It is gone: free what it holds.
    Release,
    /// Log that it is stopped because it failed (not ready in time, unhealthy, watchdog).
    Failing(Failure),
}

/// A task's place in the state machine, with what its transitions need.
#[derive(Debug, Clone)]
pub struct Machine {
    pub state: State,
    pub wanted: Wanted,
    pub stage: Stage,
    pub settings: TaskSettings,
    pub restart: RestartState,
    /// When the current (or last) run started.
    pub started_at: Option<Instant>,
    /// Starts so far, failed ones included.
    pub starts: u64,
    /// The group is stopping: an exit is final.
    pub ending: bool,
    /// Why its last run failed, when trc decided it had (cleared at the next start).
    pub failure: Option<Failure>,
}

impl Machine {
    pub fn new(stage: Stage, settings: TaskSettings) -> Machine {
        Machine {
            state: State::Pending,
            wanted: Wanted::Up,
            stage,
            settings,
            restart: RestartState::default(),
            started_at: None,
            starts: 0,
            ending: false,
            failure: None,
        }
    }

    /// The pid of its process, while it has one.
    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Starting { pid, .. } | State::Running { pid } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// When this task next needs a `Tick`.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Backoff { until, .. } if self.wanted == Wanted::Up => Some(until),
            State::Starting { until, .. } => until,
            State::Stopping { killed: true, .. } => None,
            State::Stopping { sent, deadline, checks, .. } => {
                Some(match RESEND_CHECKS.get(usize::from(checks)) {
                    Some(&after) => (sent + after).min(deadline),
                    None => deadline,
                })
            }
            _ => None,
        }
    }

    /// Whether the wait policy must still wait for this task: it runs, will run again, or is
    /// held down (and may come back).
    pub fn is_alive(&self) -> bool {
        let done = matches!(self.state, State::Finished { .. } | State::GaveUp { .. });
        let never_to_run = self.state == State::Pending && self.wanted != Wanted::Up;
        !(done || never_to_run)
    }

    /// Applies one input and returns what the supervisor must do.
    pub fn transition(&mut self, input: Input, now: Instant) -> Vec<Action> {
        use Action as A;
        use State as S;
        let mut actions = Vec::new();
        match (self.state, input) {
            // ----- starting
            (S::Pending | S::Stopped { .. } | S::Finished { .. } | S::GaveUp { .. }, Input::Start)
                if self.wanted == Wanted::Up =>
            {
                self.spawn(now, &mut actions)
            }
            (_, Input::Spawned { pid }) => {
                let timed = self.settings.ready != crate::config::probe::Probe::None;
                let until = self.settings.ready_timeout.filter(|_| timed).map(|t| now + t);
                self.failure = None;
                self.state = S::Starting { pid, until }
            }
            (S::Starting { pid, .. }, Input::Ready) => self.state = S::Running { pid },
            (_, Input::SpawnFailed { status }) => self.exited(status, true, now, &mut actions),
            // ----- exits
            (S::Starting { .. } | S::Running { .. }, Input::Exited { status, exec_failed }) => {
                self.exited(status, exec_failed, now, &mut actions)
            }
            (S::Stopping { then, .. }, Input::Exited { status, .. }) => match then {
                Then::Fail(failure) => {
                    self.failure = Some(failure);
                    // A failure whatever the status: one that would count as success is 1.
                    let status = if self.settings.is_success(status) { 1 } else { status };
                    self.exited(status, false, now, &mut actions)
                }
                Then::Down => self.state = S::Stopped { status: Some(status) },
                Then::Remove => {
                    self.state = S::Stopped { status: Some(status) };
                    actions.push(A::Release);
                }
                Then::Restart if self.wanted == Wanted::Up => {
                    self.restart = RestartState::default();
                    self.spawn(now, &mut actions)
                }
                Then::Restart => self.state = S::Stopped { status: Some(status) },
                Then::Teardown => self.state = S::Finished { status },
            },
            // ----- time
            (S::Backoff { until, .. }, Input::Tick { now }) if until <= now && self.wanted == Wanted::Up => {
                self.spawn(now, &mut actions)
            }
            (S::Starting { pid, until: Some(until) }, Input::Tick { now }) if until <= now => {
                self.fail(pid, Failure::ReadyTimeout, now, &mut actions)
            }
            // ----- failures
            (S::Starting { pid, .. } | S::Running { pid }, Input::Fail(failure)) => {
                self.fail(pid, failure, now, &mut actions)
            }
            (S::Pending, Input::DependencyFailed { status }) if self.wanted == Wanted::Up => {
                self.failure = Some(Failure::Dependency);
                self.state = S::Finished { status };
                actions.push(A::Finished { status });
            }
            (S::Stopping { pid, sent, deadline, killed: false, checks, then }, Input::Tick { now }) => {
                if deadline <= now {
                    self.state = S::Stopping { pid, sent, deadline, killed: true, checks, then };
                    actions.push(A::Kill);
                } else if RESEND_CHECKS.get(usize::from(checks)).is_some_and(|&after| sent + after <= now) {
                    self.state = S::Stopping { pid, sent, deadline, killed: false, checks: checks + 1, then };
                    actions.push(A::Resend);
                }
            }
            // ----- the operator
            (_, Input::Want(wanted)) => {
                self.wanted = wanted;
                self.want(wanted, now, &mut actions)
            }
            (S::Starting { pid, .. } | S::Running { pid }, Input::Restart) => {
                self.wanted = Wanted::Up;
                self.stop(pid, Then::Restart, now, &mut actions)
            }
            (S::Stopping { pid, sent, deadline, killed, checks, then }, Input::Restart) => {
                self.wanted = Wanted::Up;
                if then != Then::Teardown {
                    self.state = S::Stopping { pid, sent, deadline, killed, checks, then: Then::Restart };
                }
            }
            (_, Input::Restart) => {
                self.wanted = Wanted::Up;
                self.restart = RestartState::default();
                self.spawn(now, &mut actions)
            }
            // ----- the group stops
            (_, Input::Teardown | Input::Ending) if !self.ending => {
                self.ending = true;
                return self.transition(input, now);
            }
            (S::Starting { pid, .. } | S::Running { pid }, Input::Teardown) => {
                self.stop(pid, Then::Teardown, now, &mut actions)
            }
            (S::Stopping { pid, sent, deadline, killed, checks, .. }, Input::Teardown) => {
                self.state = S::Stopping { pid, sent, deadline, killed, checks, then: Then::Teardown }
            }
            (S::Backoff { status, .. }, Input::Teardown | Input::Ending) => {
                self.state = S::Finished { status }
            }
            // Held for its dependents: no readiness deadline during teardown (no probe runs).
            (S::Starting { pid, .. }, Input::Ending) => self.state = S::Starting { pid, until: None },
            // Everything else changes nothing (a tick before its time, a start while running).
            _ => {}
        }
        actions
    }

    /// Asks for a start; the task is `Pending` until the supervisor reports how it went.
    fn spawn(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.state = State::Pending;
        self.starts += 1;
        self.started_at = Some(now);
        self.restart.started(now, &self.settings);
        actions.push(Action::Spawn);
    }

    /// Stops it because it failed: its exit goes to the restart policy as a failure.
    fn fail(&mut self, pid: Pid, failure: Failure, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::Failing(failure));
        self.stop(pid, Then::Fail(failure), now, actions)
    }

    fn stop(&mut self, pid: Pid, then: Then, now: Instant, actions: &mut Vec<Action>) {
        let deadline = now + self.settings.stop_timeout;
        self.state = State::Stopping { pid, sent: now, deadline, killed: false, checks: 0, then };
        actions.push(Action::Signal);
    }

    /// The process ended by itself (or never ran): the restart policy decides.
    fn exited(&mut self, status: i32, failed_start: bool, now: Instant, actions: &mut Vec<Action>) {
        if self.wanted != Wanted::Up {
            self.state = State::Stopped { status: Some(status) };
            if self.wanted == Wanted::Removed {
                actions.push(Action::Release);
            }
            return;
        }
        if self.ending {
            self.state = State::Finished { status };
            return;
        }
        if !matches!(self.stage, Stage::Async | Stage::Sync) {
            self.state = State::Finished { status };
            actions.push(Action::Finished { status });
            return;
        }
        let ran_for = if failed_start {
            Duration::ZERO
        } else {
            self.started_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
        };
        match self.restart.decide(&self.settings, status, failed_start, ran_for, now) {
            Decision::Done => {
                self.state = State::Finished { status };
                actions.push(Action::Finished { status });
            }
            Decision::GiveUp { starts, window } => {
                self.state = State::GaveUp { status };
                actions.push(Action::GiveUp { starts, window });
                actions.push(Action::Finished { status });
            }
            Decision::Restart { delay, count } => {
                self.state = State::Backoff { until: now + delay, status };
                actions.push(Action::Restarting { delay, count });
            }
        }
    }

    fn want(&mut self, wanted: Wanted, now: Instant, actions: &mut Vec<Action>) {
        use State as S;
        let then = if wanted == Wanted::Removed { Then::Remove } else { Then::Down };
        match (self.state, wanted) {
            (S::Starting { pid, .. } | S::Running { pid }, Wanted::Down | Wanted::Removed) => {
                self.stop(pid, then, now, actions)
            }
            (
                S::Stopping { pid, sent, deadline, killed, checks, then: old },
                Wanted::Down | Wanted::Removed,
            ) => {
                let then = if old == Then::Teardown { old } else { then };
                self.state = S::Stopping { pid, sent, deadline, killed, checks, then };
            }
            (S::Backoff { status, .. }, Wanted::Down | Wanted::Removed) => {
                self.state = S::Stopped { status: Some(status) };
                if wanted == Wanted::Removed {
                    actions.push(Action::Release);
                }
            }
            (S::Pending, Wanted::Down) => self.state = S::Stopped { status: None },
            (S::Pending | S::Stopped { .. } | S::Finished { .. } | S::GaveUp { .. }, Wanted::Removed) => {
                actions.push(Action::Release)
            }
            (
                S::Stopping { pid, sent, deadline, killed, checks, then: Then::Down | Then::Remove },
                Wanted::Up,
            ) => {
                self.state = S::Stopping { pid, sent, deadline, killed, checks, then: Then::Restart };
            }
            (S::Stopped { .. } | S::Finished { .. } | S::GaveUp { .. }, Wanted::Up) => {
                self.restart = RestartState::default();
                self.spawn(now, actions)
            }
            (S::Backoff { .. }, Wanted::Up) => self.spawn(now, actions),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Restart, StartLimit};
    use Action as A;
    use State as S;

    const PID: i32 = 4242;

    fn pid() -> Pid {
        Pid::from_raw(PID)
    }

    fn settings(restart: Restart) -> TaskSettings {
        TaskSettings {
            restart,
            restart_delay: Duration::from_secs(1),
            restart_max_delay: Duration::from_secs(8),
            start_limit: Some(StartLimit { starts: 3, window: Duration::from_secs(60) }),
            stop_timeout: Duration::from_secs(5),
            ..TaskSettings::default()
        }
    }

    fn stopping(now: Instant, then: Then) -> State {
        S::Stopping {
            pid: pid(),
            sent: now,
            deadline: now + Duration::from_secs(5),
            killed: false,
            checks: 0,
            then,
        }
    }

    /// One row of the table: a task of `stage` with `restart`, in `state` wanting `wanted`,
    /// gets `input` at time `now`; it must end in `expected` having asked for `actions`.
    struct Row {
        stage: Stage,
        restart: Restart,
        state: State,
        wanted: Wanted,
        input: Input,
        expected: State,
        expected_wanted: Wanted,
        actions: Vec<Action>,
    }

    fn check(rows: Vec<Row>) {
        for (i, row) in rows.into_iter().enumerate() {
            let mut m = Machine::new(row.stage, settings(row.restart));
            m.state = row.state;
            m.wanted = row.wanted;
            let before = format!("{:?} wanting {:?} + {:?}", row.state, row.wanted, row.input);
            let now = match row.input {
                Input::Tick { now } => now,
                _ => *T0,
            };
            let actions = m.transition(row.input, now);
            assert_eq!(m.state, row.expected, "row {i}: {before}");
            assert_eq!(m.wanted, row.expected_wanted, "row {i}: {before}");
            assert_eq!(actions, row.actions, "row {i}: {before}");
        }
    }

    static T0: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

    fn row(state: State, input: Input, expected: State, actions: Vec<Action>) -> Row {
        Row {
            stage: Stage::Async,
            restart: Restart::OnFailure,
            state,
            wanted: Wanted::Up,
            input,
            expected,
            expected_wanted: Wanted::Up,
            actions,
        }
    }

    /// Every state with every input, for an async task with `restart: on-failure` that the
    /// operator wants up.
    #[test]
    fn table_async_task_wanted_up() {
        let t0 = *T0;
        let d5 = Duration::from_secs(5);
        let exited = |status| Input::Exited { status, exec_failed: false };
        let running = S::Running { pid: pid() };
        let starting = S::Starting { pid: pid(), until: None };
        let backoff = S::Backoff { until: t0 + Duration::from_secs(1), status: 1 };
        let restarting = |ms| A::Restarting { delay: Duration::from_millis(ms), count: 1 };
        let later = |s| Input::Tick { now: t0 + Duration::from_secs(s) };
        check(vec![
            // Pending
            row(S::Pending, Input::Start, S::Pending, vec![A::Spawn]),
            row(S::Pending, Input::Spawned { pid: pid() }, starting, vec![]),
            row(S::Pending, Input::Tick { now: t0 }, S::Pending, vec![]),
            row(S::Pending, Input::Teardown, S::Pending, vec![]),
            row(S::Pending, Input::Restart, S::Pending, vec![A::Spawn]),
            row(
                S::Pending,
                Input::SpawnFailed { status: 127 },
                S::Backoff { until: t0 + Duration::from_secs(1), status: 127 },
                vec![restarting(1000)],
            ),
            // Starting
            row(starting, Input::Ready, running, vec![]),
            row(starting, exited(0), S::Finished { status: 0 }, vec![A::Finished { status: 0 }]),
            row(starting, exited(1), backoff, vec![restarting(1000)]),
            row(starting, Input::Teardown, stopping(t0, Then::Teardown), vec![A::Signal]),
            row(starting, Input::Restart, stopping(t0, Then::Restart), vec![A::Signal]),
            row(starting, Input::Start, starting, vec![]),
            // Running
            row(running, exited(0), S::Finished { status: 0 }, vec![A::Finished { status: 0 }]),
            row(
                running,
                exited(3),
                S::Backoff { until: t0 + Duration::from_secs(1), status: 3 },
                vec![restarting(1000)],
            ),
            row(
                running,
                Input::Exited { status: 126, exec_failed: true },
                S::Backoff { until: t0 + Duration::from_secs(1), status: 126 },
                vec![restarting(1000)],
            ),
            row(running, Input::Tick { now: t0 }, running, vec![]),
            row(running, Input::Start, running, vec![]),
            row(running, Input::Ready, running, vec![]),
            row(running, Input::Teardown, stopping(t0, Then::Teardown), vec![A::Signal]),
            row(running, Input::Restart, stopping(t0, Then::Restart), vec![A::Signal]),
            // Stopping
            row(stopping(t0, Then::Teardown), exited(143), S::Finished { status: 143 }, vec![]),
            row(stopping(t0, Then::Restart), exited(143), S::Pending, vec![A::Spawn]),
            row(stopping(t0, Then::Teardown), later(0), stopping(t0, Then::Teardown), vec![]),
            row(
                stopping(t0, Then::Teardown),
                Input::Tick { now: t0 + Duration::from_millis(60) },
                S::Stopping {
                    pid: pid(),
                    sent: t0,
                    deadline: t0 + d5,
                    killed: false,
                    checks: 1,
                    then: Then::Teardown,
                },
                vec![A::Resend],
            ),
            row(
                stopping(t0, Then::Teardown),
                later(5),
                S::Stopping {
                    pid: pid(),
                    sent: t0,
                    deadline: t0 + d5,
                    killed: true,
                    checks: 0,
                    then: Then::Teardown,
                },
                vec![A::Kill],
            ),
            row(stopping(t0, Then::Teardown), Input::Restart, stopping(t0, Then::Teardown), vec![]),
            row(stopping(t0, Then::Down), Input::Restart, stopping(t0, Then::Restart), vec![]),
            row(stopping(t0, Then::Down), Input::Teardown, stopping(t0, Then::Teardown), vec![]),
            row(stopping(t0, Then::Down), Input::Start, stopping(t0, Then::Down), vec![]),
            // Backoff
            row(backoff, Input::Tick { now: t0 }, backoff, vec![]),
            row(backoff, later(1), S::Pending, vec![A::Spawn]),
            row(backoff, Input::Teardown, S::Finished { status: 1 }, vec![]),
            row(backoff, Input::Restart, S::Pending, vec![A::Spawn]),
            row(backoff, Input::Start, backoff, vec![]),
            // Final states
            row(S::Finished { status: 0 }, Input::Start, S::Pending, vec![A::Spawn]),
            row(S::Finished { status: 0 }, Input::Teardown, S::Finished { status: 0 }, vec![]),
            row(S::Finished { status: 0 }, later(9), S::Finished { status: 0 }, vec![]),
            row(S::GaveUp { status: 2 }, Input::Teardown, S::GaveUp { status: 2 }, vec![]),
            row(S::GaveUp { status: 2 }, Input::Restart, S::Pending, vec![A::Spawn]),
            row(S::Stopped { status: None }, Input::Teardown, S::Stopped { status: None }, vec![]),
        ]);
    }

    /// What the operator's wishes do in every state.
    #[test]
    fn table_operator_wishes() {
        let t0 = *T0;
        let running = S::Running { pid: pid() };
        let backoff = S::Backoff { until: t0 + Duration::from_secs(1), status: 1 };
        let want = |state, wanted, expected, expected_wanted, actions| Row {
            stage: Stage::Async,
            restart: Restart::Always,
            state,
            wanted: Wanted::Up,
            input: Input::Want(wanted),
            expected,
            expected_wanted,
            actions,
        };
        let down = Wanted::Down;
        let removed = Wanted::Removed;
        let up = Wanted::Up;
        check(vec![
            want(running, down, stopping(t0, Then::Down), down, vec![A::Signal]),
            want(running, removed, stopping(t0, Then::Remove), removed, vec![A::Signal]),
            want(running, up, running, up, vec![]),
            want(
                S::Starting { pid: pid(), until: None },
                down,
                stopping(t0, Then::Down),
                down,
                vec![A::Signal],
            ),
            want(backoff, down, S::Stopped { status: Some(1) }, down, vec![]),
            want(backoff, removed, S::Stopped { status: Some(1) }, removed, vec![A::Release]),
            want(backoff, up, S::Pending, up, vec![A::Spawn]),
            want(S::Pending, down, S::Stopped { status: None }, down, vec![]),
            want(S::Pending, removed, S::Pending, removed, vec![A::Release]),
            want(S::Finished { status: 0 }, down, S::Finished { status: 0 }, down, vec![]),
            want(S::Finished { status: 0 }, up, S::Pending, up, vec![A::Spawn]),
            want(S::GaveUp { status: 1 }, removed, S::GaveUp { status: 1 }, removed, vec![A::Release]),
            want(S::Stopped { status: Some(143) }, up, S::Pending, up, vec![A::Spawn]),
            want(
                S::Stopped { status: Some(143) },
                removed,
                S::Stopped { status: Some(143) },
                removed,
                vec![A::Release],
            ),
            want(stopping(t0, Then::Down), up, stopping(t0, Then::Restart), up, vec![]),
            want(stopping(t0, Then::Restart), down, stopping(t0, Then::Down), down, vec![]),
            want(stopping(t0, Then::Teardown), down, stopping(t0, Then::Teardown), down, vec![]),
            want(stopping(t0, Then::Down), removed, stopping(t0, Then::Remove), removed, vec![]),
        ]);
    }

    /// Exits of tasks that are held down or removed, and of boot and halt tasks.
    #[test]
    fn table_exits_by_wish_and_stage() {
        let t0 = *T0;
        let running = S::Running { pid: pid() };
        let exited = |status| Input::Exited { status, exec_failed: false };
        let with = |stage, wanted, state, input, expected, actions| Row {
            stage,
            restart: Restart::Always,
            state,
            wanted,
            input,
            expected,
            expected_wanted: wanted,
            actions,
        };
        check(vec![
            with(Stage::Async, Wanted::Down, running, exited(1), S::Stopped { status: Some(1) }, vec![]),
            with(
                Stage::Async,
                Wanted::Removed,
                running,
                exited(1),
                S::Stopped { status: Some(1) },
                vec![A::Release],
            ),
            with(
                Stage::Async,
                Wanted::Down,
                stopping(t0, Then::Down),
                exited(143),
                S::Stopped { status: Some(143) },
                vec![],
            ),
            with(
                Stage::Async,
                Wanted::Removed,
                stopping(t0, Then::Remove),
                exited(143),
                S::Stopped { status: Some(143) },
                vec![A::Release],
            ),
            with(
                Stage::Async,
                Wanted::Down,
                stopping(t0, Then::Restart),
                exited(143),
                S::Stopped { status: Some(143) },
                vec![],
            ),
            with(
                Stage::Boot,
                Wanted::Up,
                running,
                exited(1),
                S::Finished { status: 1 },
                vec![A::Finished { status: 1 }],
            ),
            with(
                Stage::Halt,
                Wanted::Up,
                running,
                exited(0),
                S::Finished { status: 0 },
                vec![A::Finished { status: 0 }],
            ),
            with(
                Stage::Sync,
                Wanted::Up,
                running,
                exited(0),
                S::Backoff { until: t0 + Duration::from_secs(1), status: 0 },
                vec![A::Restarting { delay: Duration::from_secs(1), count: 1 }],
            ),
            with(
                Stage::Async,
                Wanted::Down,
                S::Backoff { until: t0, status: 1 },
                Input::Tick { now: t0 },
                S::Backoff { until: t0, status: 1 },
                vec![],
            ),
        ]);
    }

    /// Readiness timeouts, health and watchdog failures, dependencies and the teardown of a
    /// task held for its dependents.
    #[test]
    fn table_readiness_failures_and_dependencies() {
        let t0 = *T0;
        let exited = |status| Input::Exited { status, exec_failed: false };
        let running = S::Running { pid: pid() };
        let failing = |f| S::Stopping {
            pid: pid(),
            sent: t0,
            deadline: t0 + Duration::from_secs(5),
            killed: false,
            checks: 0,
            then: Then::Fail(f),
        };
        let due = S::Starting { pid: pid(), until: Some(t0) };
        let later = S::Starting { pid: pid(), until: Some(t0 + Duration::from_secs(1)) };
        let backoff = |status| S::Backoff { until: t0 + Duration::from_secs(1), status };
        let restarting = A::Restarting { delay: Duration::from_secs(1), count: 1 };
        check(vec![
            row(
                due,
                Input::Tick { now: t0 },
                failing(Failure::ReadyTimeout),
                vec![A::Failing(Failure::ReadyTimeout), A::Signal],
            ),
            row(later, Input::Tick { now: t0 }, later, vec![]),
            row(later, Input::Ready, running, vec![]),
            row(
                running,
                Input::Fail(Failure::Unhealthy),
                failing(Failure::Unhealthy),
                vec![A::Failing(Failure::Unhealthy), A::Signal],
            ),
            row(
                later,
                Input::Fail(Failure::Watchdog),
                failing(Failure::Watchdog),
                vec![A::Failing(Failure::Watchdog), A::Signal],
            ),
            row(
                S::Backoff { until: t0, status: 1 },
                Input::Fail(Failure::Unhealthy),
                S::Backoff { until: t0, status: 1 },
                vec![],
            ),
            // Its exit after trc stopped it is a failure, whatever the status.
            row(failing(Failure::Unhealthy), exited(143), backoff(143), vec![restarting]),
            row(failing(Failure::ReadyTimeout), exited(0), backoff(1), vec![restarting]),
            row(failing(Failure::Watchdog), Input::Teardown, stopping(t0, Then::Teardown), vec![]),
            row(
                S::Pending,
                Input::DependencyFailed { status: 3 },
                S::Finished { status: 3 },
                vec![A::Finished { status: 3 }],
            ),
            row(running, Input::DependencyFailed { status: 3 }, running, vec![]),
            // Held for its dependents at teardown: no restart, no readiness deadline.
            row(running, Input::Ending, running, vec![]),
            row(later, Input::Ending, S::Starting { pid: pid(), until: None }, vec![]),
            row(backoff(2), Input::Ending, S::Finished { status: 2 }, vec![]),
        ]);
        // After `Ending`, an exit is final (no restart, no report: the group is stopping).
        let mut m = Machine::new(Stage::Async, settings(Restart::Always));
        m.state = running;
        assert!(m.transition(Input::Ending, t0).is_empty());
        assert!(m.transition(exited(1), t0).is_empty());
        assert_eq!(m.state, S::Finished { status: 1 });
        // A task with a `ready:` probe is given its ready-timeout at its spawn; without one, none.
        let mut m = Machine::new(
            Stage::Async,
            TaskSettings {
                ready: crate::config::probe::Probe::Fd(3),
                ready_timeout: Some(Duration::from_secs(2)),
                ..settings(Restart::Never)
            },
        );
        m.transition(Input::Spawned { pid: pid() }, t0);
        assert_eq!(m.state, S::Starting { pid: pid(), until: Some(t0 + Duration::from_secs(2)) });
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(2)));
        let mut m = Machine::new(Stage::Async, settings(Restart::Never));
        m.transition(Input::Spawned { pid: pid() }, t0);
        assert_eq!((m.state, m.deadline()), (S::Starting { pid: pid(), until: None }, None));
    }

    /// Failed starts count for the start limit and never restart faster than
    /// FAILED_START_DELAY, doubling, even with `restart-delay: 0`.
    #[test]
    fn failed_starts_are_starts_and_back_off() {
        let mut m = Machine::new(
            Stage::Async,
            TaskSettings {
                restart_delay: Duration::ZERO,
                start_limit: Some(StartLimit { starts: 4, window: Duration::from_secs(60) }),
                ..settings(Restart::Always)
            },
        );
        let mut now = *T0;
        let mut delays = Vec::new();
        assert_eq!(m.transition(Input::Start, now), [A::Spawn]);
        loop {
            match m.transition(Input::SpawnFailed { status: 127 }, now).as_slice() {
                [A::Restarting { delay, .. }] => delays.push(delay.as_millis()),
                [A::GiveUp { starts: 4, .. }, A::Finished { status: 127 }] => break,
                other => panic!("{other:?}"),
            }
            let S::Backoff { until, .. } = m.state else { panic!("{:?}", m.state) };
            assert!(m.transition(Input::Tick { now: until - Duration::from_millis(1) }, now).is_empty());
            now = until;
            assert_eq!(m.transition(Input::Tick { now }, now), [A::Spawn]);
        }
        assert_eq!(delays, [100, 200, 400]);
        assert_eq!(m.starts, 4);
        assert_eq!(m.state, S::GaveUp { status: 127 });
    }

    #[test]
    fn deadlines_belong_to_states() {
        let t0 = *T0;
        let mut m = Machine::new(Stage::Async, settings(Restart::Always));
        assert_eq!(m.deadline(), None);
        m.state = S::Backoff { until: t0, status: 1 };
        assert_eq!(m.deadline(), Some(t0));
        m.wanted = Wanted::Down;
        assert_eq!(m.deadline(), None);
        m.state = stopping(t0, Then::Down);
        assert_eq!(m.deadline(), Some(t0 + RESEND_CHECKS[0]));
        m.state = S::Stopping {
            pid: pid(),
            sent: t0,
            deadline: t0 + Duration::from_secs(5),
            killed: false,
            checks: 4,
            then: Then::Down,
        };
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(5)));
        m.state =
            S::Stopping { pid: pid(), sent: t0, deadline: t0, killed: true, checks: 4, then: Then::Down };
        assert_eq!(m.deadline(), None);
    }
}
