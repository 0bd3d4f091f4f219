//! Dependencies between tasks (`after:`): a start of a task whose dependencies are not all
//! ready waits (the machine asked for a spawn; the supervisor holds it back) until they are;
//! a dependency that completed (finished with a success status, a one-shot) counts as ready;
//! one that finished for good otherwise, or gave up, makes the dependent finish without
//! running (`DependencyFailed`, with that dependency's status, 1 for 0). Teardown goes in reverse:
//! a task gets its stop signal only once every task that depends on it has stopped.

use super::machine::{Input, State, Wanted};
use super::task::TaskId;
use super::Supervisor;
use crate::config::Stage;
use tracing::{error, info};

/// Where a task stands with its dependencies.
enum Deps {
    Ready,
    Waiting(Vec<String>),
    /// This one finished for good (not a completed one-shot) or gave up.
    Failed {
        name: String,
        status: i32,
        gave_up: bool,
    },
}

impl Supervisor {
    /// Whether a task may start now by its `after:` list.
    fn dependencies(&self, id: TaskId) -> Deps {
        let after = &self.tasks[id].settings().after;
        let mut waiting = Vec::new();
        for name in after {
            let dep = self
                .tasks
                .iter()
                .find(|(_, t)| t.stage == Stage::Async && &t.name == name && !t.is_removed())
                .map(|(_, t)| t);
            match dep.map(|t| t.state()) {
                Some(State::Running { .. }) => {}
                // A one-shot that completed (a migration before a server): done is as good as
                // ready, for every start of its dependents.
                Some(State::Finished { status }) if dep.is_some_and(|t| t.completed(status)) => {}
                Some(State::Finished { status }) => {
                    return Deps::Failed { name: name.clone(), status, gave_up: false }
                }
                Some(State::GaveUp { status }) => {
                    return Deps::Failed { name: name.clone(), status, gave_up: true }
                }
                _ => waiting.push(name.clone()),
            }
        }
        if waiting.is_empty() {
            Deps::Ready
        } else {
            Deps::Waiting(waiting)
        }
    }

    /// Called before a spawn: `true` when it must wait for its dependencies (it is held back
    /// until [`Supervisor::dependencies_changed`] lets it go).
    pub(super) fn held_by_dependencies(&mut self, id: TaskId) -> bool {
        if self.tasks[id].settings().after.is_empty() {
            return false;
        }
        match self.dependencies(id) {
            Deps::Ready => {
                self.blocked.retain(|&b| b != id);
                if let Some(p) = self.probing.get_mut(&id) {
                    p.waiting_for.clear();
                }
                false
            }
            Deps::Waiting(names) => {
                let task = &self.tasks[id];
                let first = !self.blocked.contains(&id);
                if first {
                    info!(
                        ns = task.stage.ns(),
                        task = task.name.as_str(),
                        "Waiting for {} to be ready: {}",
                        names.join(", "),
                        task.label
                    );
                    self.blocked.push(id);
                }
                self.probing.entry(id).or_default().waiting_for = names;
                true
            }
            Deps::Failed { name, status, gave_up } => {
                self.blocked.retain(|&b| b != id);
                self.dependency_failed(id, &name, status, gave_up);
                true
            }
        }
    }

    fn dependency_failed(&mut self, id: TaskId, name: &str, status: i32, gave_up: bool) {
        let task = &self.tasks[id];
        let how = if gave_up { "has given up" } else { "has finished for good" };
        error!(
            ns = task.stage.ns(),
            task = task.name.as_str(),
            "{} does not start: {name}, which it starts after, {how} (exitcode={status}): {}",
            task.name,
            task.label
        );
        let status = if status == 0 { 1 } else { status };
        if let Some(p) = self.probing.get_mut(&id) {
            p.waiting_for.clear();
        }
        self.tasks[id].last_status = Some(status);
        self.feed(id, Input::DependencyFailed { status });
    }

    /// Starts the held-back tasks whose dependencies are now ready (once per pass).
    pub(super) fn dependencies_changed(&mut self) {
        if self.blocked.is_empty() || self.group.phase != super::group::Phase::Running {
            return;
        }
        for id in self.blocked.clone() {
            let Some(task) = self.tasks.get(id) else {
                self.blocked.retain(|&b| b != id);
                continue;
            };
            // Held down or removed meanwhile: no longer waiting.
            if task.state() != State::Pending || task.machine.wanted != Wanted::Up {
                self.blocked.retain(|&b| b != id);
                if let Some(p) = self.probing.get_mut(&id) {
                    p.waiting_for.clear();
                }
                continue;
            }
            match self.dependencies(id) {
                Deps::Ready => {
                    self.blocked.retain(|&b| b != id);
                    self.launch(id);
                }
                Deps::Waiting(names) => self.probing.entry(id).or_default().waiting_for = names,
                Deps::Failed { name, status, gave_up } => {
                    self.blocked.retain(|&b| b != id);
                    self.dependency_failed(id, &name, status, gave_up);
                }
            }
        }
    }

    /// The tasks that name `id` in their `after:` and still have a process.
    pub(super) fn active_dependents(&self, id: TaskId) -> Vec<TaskId> {
        let task = &self.tasks[id];
        if task.stage != Stage::Async {
            return Vec::new();
        }
        self.tasks
            .iter()
            .filter(|(_, t)| t.is_active() && t.settings().after.contains(&task.name))
            .map(|(other, _)| other)
            .collect()
    }

    /// Teardown in reverse dependency order: the tasks held back so far whose dependents have
    /// all stopped get their stop signal now.
    pub(super) fn stop_released_dependencies(&mut self) {
        if self.teardown_held.is_empty() {
            return;
        }
        for id in self.teardown_held.clone() {
            let free = self.tasks.get(id).is_none_or(|_| self.active_dependents(id).is_empty());
            if free {
                self.teardown_held.retain(|&h| h != id);
                if let Some(task) = self.tasks.get(id) {
                    if let Some(pid) = task.pid() {
                        info!("terminating the child process <pid={pid}> (its dependents have stopped)");
                    }
                    self.feed(id, Input::Teardown);
                }
            }
        }
    }
}
