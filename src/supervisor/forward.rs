//! Signals for the app (`--forward-signals` / `RC_FORWARD_SIGNALS`): which tasks a forwarded
//! signal goes to, and the warning for `forward-signals:` directives that name a signal trc
//! does not forward.
//!
//! The recipients of signal S: when some async task's `forward-signals:` names S (whatever that
//! task's state: a task waiting to restart still made the choice), those async tasks alone;
//! otherwise every async task and the trailing command (the container's main program). Only
//! the ones running get it, in their process group.

use super::machine::State;
use super::task::{Source, Task, TaskId};
use super::{signals, Supervisor};
use crate::config::Stage;
use nix::sys::signal::Signal;
use tracing::info;

/// What the choice of recipients needs to know of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    /// An async task (not removed).
    async_task: bool,
    /// The trailing command.
    trailing: bool,
    /// Its `forward-signals:` names the signal.
    named: bool,
    /// It runs (starting or running): it can be sent a signal.
    runs: bool,
}

/// The indexes of `candidates` that get the signal.
fn recipients(candidates: &[Candidate]) -> Vec<usize> {
    let chosen = candidates.iter().any(|c| c.async_task && c.named);
    let gets = |c: &Candidate| match (c.async_task, c.trailing) {
        (true, _) => !chosen || c.named,
        (false, true) => !chosen,
        (false, false) => false,
    };
    candidates.iter().enumerate().filter(|(_, c)| c.runs && gets(c)).map(|(i, _)| i).collect()
}

impl Supervisor {
    /// Passes a `--forward-signals` signal to the process groups of its recipients (see the
    /// module's comment) and says so.
    pub(super) fn forward_signal(&mut self, sig: i32) {
        let Ok(signal) = Signal::try_from(sig) else { return };
        let candidate = |t: &Task| Candidate {
            async_task: t.stage == Stage::Async && !t.is_removed(),
            trailing: t.stage == Stage::Sync && matches!(t.source, Source::Argv(_)),
            named: t.settings().forward_signals.contains(&signal),
            runs: matches!(t.state(), State::Starting { .. } | State::Running { .. }),
        };
        let (ids, candidates): (Vec<TaskId>, Vec<Candidate>) =
            self.tasks.iter().map(|(id, t)| (id, candidate(t))).unzip();
        let mut names = Vec::new();
        for i in recipients(&candidates) {
            let task = &self.tasks[ids[i]];
            if let Some(pid) = task.pid() {
                super::reap::signal_group(pid, signal);
                names.push(task.name.clone());
            }
        }
        info!(
            "forwarding SIG{} to {}",
            signals::name(sig),
            if names.is_empty() { "no task (none runs)".to_owned() } else { names.join(", ") }
        );
    }

    /// Says once, when the group starts running, which `forward-signals:` directives name a
    /// signal that trc does not forward (one that `--forward-signals` / `RC_FORWARD_SIGNALS`
    /// does not name), and which are on tasks that never get a forwarded signal (not async):
    /// both would otherwise be ignored without a word.
    pub(super) fn warn_unforwarded(&self) {
        let forwarded = &self.settings.forward_signals;
        for stage in Stage::ALL {
            for file in self.files.stage(stage) {
                for d in file.directives.iter().filter(|d| d.key == "forward-signals") {
                    let at = format!("{}:{}", file.path.display(), d.line);
                    if stage != Stage::Async {
                        tracing::warn!(
                            always = true,
                            "{at}: \"forward-signals:\" is ignored on a {stage} task: forwarded signals go to async tasks"
                        );
                        continue;
                    }
                    let named = crate::config::parse_forwardable(&d.value).unwrap_or_default();
                    let unforwarded: Vec<String> = named
                        .iter()
                        .filter(|s| !forwarded.contains(s))
                        .map(|&s| signals::name(s as i32))
                        .collect();
                    if unforwarded.is_empty() {
                        continue;
                    }
                    let now = if forwarded.is_empty() {
                        "none".to_owned()
                    } else {
                        forwarded.iter().map(|&s| signals::name(s as i32)).collect::<Vec<_>>().join(",")
                    };
                    tracing::warn!(
                        always = true,
                        "{at}: \"forward-signals:\" names {}, which trc does not forward: trc forwards only the signals of --forward-signals or RC_FORWARD_SIGNALS (now: {now})",
                        unforwarded.join(", ")
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn c(async_task: bool, trailing: bool, named: bool, runs: bool) -> Candidate {
        Candidate { async_task, trailing, named, runs }
    }

    #[test]
    fn who_gets_a_forwarded_signal() {
        // (candidates, recipients)
        let cases: [(&[Candidate], &[usize]); 6] = [
            // No directive: every running async task and the trailing command.
            (&[c(true, false, false, true), c(false, true, false, true)], &[0, 1]),
            // Only the trailing command.
            (&[c(false, true, false, true)], &[0]),
            // A directive chooses: the others (and the trailing command) get nothing.
            (&[c(true, false, true, true), c(true, false, false, true), c(false, true, false, true)], &[0]),
            // A task that names it but does not run (waiting to restart) still chooses.
            (&[c(true, false, true, false), c(true, false, false, true), c(false, true, false, true)], &[]),
            // Other sync tasks, boot and halt tasks never get it.
            (&[c(false, false, false, true)], &[]),
            // Not running: nothing to send to.
            (&[c(true, false, false, false), c(false, true, false, false)], &[]),
        ];
        for (candidates, want) in cases {
            assert_eq!(recipients(candidates), want, "{candidates:?}");
        }
    }
}
