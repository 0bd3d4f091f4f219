//! File work for `ensure` and `reload` (writing a task file with fsync, scanning the work dir,
//! hashing files) runs on a worker thread, never on the loop. Jobs run one at a time in the
//! order they were asked for; each result comes back to the loop as a [`JobDone`], which
//! `control.rs` applies to the table.

use super::Supervisor;
use crate::config::{scan_work_dir, Stage, TaskFile, TaskFiles, TaskSettings};
use crate::control::manager::{EnsureSpec, Ensured};
use crate::control::server::Answer;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use tokio::sync::{mpsc, oneshot};

/// A finished job, with the reply it owes.
pub enum JobDone {
    Ensure { spec: EnsureSpec, answer: oneshot::Sender<Answer>, result: Result<Written, String> },
    Reload { answer: oneshot::Sender<Answer>, result: Result<TaskFiles, String> },
}

/// What `ensure` did on disk.
pub struct Written {
    pub outcome: Ensured,
    /// The task's file as scanned after the write (with its directives checked).
    pub file: TaskFile,
}

type Job = Box<dyn FnOnce() -> JobDone + Send>;

/// The worker thread's queue (started at the first job).
pub struct Worker {
    jobs: Option<std_mpsc::Sender<Job>>,
}

impl Worker {
    pub fn new() -> Worker {
        Worker { jobs: None }
    }

    fn submit(&mut self, job: Job, done: &mpsc::UnboundedSender<JobDone>) {
        let jobs = self.jobs.get_or_insert_with(|| {
            let (tx, rx) = std_mpsc::channel::<Job>();
            let done = done.clone();
            let _ = std::thread::Builder::new().name("trc-files".into()).spawn(move || {
                for job in rx {
                    if done.send(job()).is_err() {
                        break;
                    }
                }
            });
            tx
        });
        if let Err(std_mpsc::SendError(job)) = jobs.send(job) {
            // The thread could not be started: do the work here rather than lose the reply.
            let _ = done.send(job());
        }
    }
}

impl Supervisor {
    /// `ensure`'s file work: the task file written when it differs, then scanned.
    pub(super) fn submit_ensure(&mut self, spec: EnsureSpec, answer: oneshot::Sender<Answer>) {
        let trc_d = self.work_dir.join("trc.d");
        let work_dir = self.work_dir.clone();
        let label = self.work_dir_label.clone();
        let defaults = self.settings.task.clone();
        let cli_async = self.cli.async_.len();
        let job: Job = Box::new(move || {
            let result =
                write_task_file(&trc_d, &spec, &defaults).and_then(|(outcome, undo)| {
                    match scan_one(&work_dir, &label, &defaults, &spec.name, cli_async) {
                        Ok(file) => Ok(Written { outcome, file }),
                        Err(e) => Err(match undo.run() {
                            Ok(()) => e,
                            Err(undo_err) => format!("{e}; {undo_err}"),
                        }),
                    }
                });
            JobDone::Ensure { spec, answer, result }
        });
        self.worker.submit(job, &self.jobs_tx);
    }

    /// `reload`'s file work: the work dir scanned again (with every file's fingerprint).
    pub(super) fn submit_reload(&mut self, answer: oneshot::Sender<Answer>) {
        let work_dir = self.work_dir.clone();
        let defaults = self.settings.task.clone();
        let counts = self.cli.stage_counts();
        let trailing = !self.cli.command.is_empty();
        let cli_async = self.cli.async_.len();
        let job: Job = Box::new(move || {
            let result = scan_work_dir(&work_dir, &defaults).map_err(|e| e.to_string()).and_then(|files| {
                files.check_cli_names(counts, trailing).map_err(|e| e.to_string())?;
                files.check_dependencies(cli_async).map_err(|e| e.to_string())?;
                Ok(files)
            });
            JobDone::Reload { answer, result }
        });
        self.worker.submit(job, &self.jobs_tx);
    }
}

/// Writes `trc.d/async.NAME` when the command is given and the text differs. The text is
/// checked in full before the rename (see `task_file_text`); the [`Undo`] puts things back
/// should the scan that follows fail, so a failed `ensure` changes nothing on disk.
fn write_task_file(
    trc_d: &Path,
    spec: &EnsureSpec,
    defaults: &TaskSettings,
) -> Result<(Ensured, Undo), String> {
    if spec.command.is_empty() {
        return Ok((Ensured::Unchanged, Undo::Nothing));
    }
    let text = super::control::task_file_text(spec, defaults)?;
    let path: PathBuf = trc_d.join(format!("async.{}", spec.name));
    let old = std::fs::read(&path).ok();
    let new_dir = !trc_d.is_dir();
    std::fs::create_dir_all(trc_d).map_err(|e| format!("cannot make {}: {e}", trc_d.display()))?;
    if old.as_deref() == Some(text.as_bytes()) {
        return Ok((Ensured::Unchanged, Undo::Nothing));
    }
    crate::control::backend::write_atomically(&path, text.as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(match old {
        Some(old) => (Ensured::Updated, Undo::Restore { path, old }),
        None => (Ensured::Created, Undo::Remove { path, dir: new_dir.then(|| trc_d.to_owned()) }),
    })
}

/// How to take back what [`write_task_file`] did.
enum Undo {
    Nothing,
    Restore {
        path: PathBuf,
        old: Vec<u8>,
    },
    /// The new file, and `trc.d/` when it was made for it.
    Remove {
        path: PathBuf,
        dir: Option<PathBuf>,
    },
}

impl Undo {
    /// `Err` says what could not be put back.
    fn run(self) -> Result<(), String> {
        match self {
            Undo::Nothing => Ok(()),
            Undo::Restore { path, old } => crate::control::backend::write_atomically(&path, &old, 0o644)
                .map_err(|e| format!("cannot put back {}: {e}", path.display())),
            Undo::Remove { path, dir } => {
                std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir(dir);
                }
                Ok(())
            }
        }
    }
}

/// Scans the work dir for the async file of that name (with its directives checked).
fn scan_one(
    work_dir: &Path,
    label: &str,
    defaults: &TaskSettings,
    name: &str,
    cli_async: usize,
) -> Result<TaskFile, String> {
    let files = scan_work_dir(work_dir, defaults).map_err(|e| e.to_string())?;
    files.check_dependencies(cli_async).map_err(|e| e.to_string())?;
    files
        .stage(Stage::Async)
        .iter()
        .find(|f| f.name == name)
        .cloned()
        .ok_or_else(|| format!("async.{name} is not a task file of {label}"))
}
