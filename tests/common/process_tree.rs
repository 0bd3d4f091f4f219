//! The harness's cleanup: when a test ends, passed or failed, nothing it started is left, neither
//! a process nor a trc runtime dir. A test's trc is a subreaper and starts each task as the
//! leader of a process group of its own, so killing trc (or trc's process group) would leave the
//! tasks running, and their FIFOs in trc's runtime dir.
//!
//! Every process a test starts goes through [`Spawned`], which marks it with an environment
//! variable unique to that start (inherited by everything below it). When it is dropped, the
//! whole tree is stopped first (SIGSTOP, so that nothing forks, restarts or reaps meanwhile),
//! pass after pass until no new process turns up, then every process of it and every process
//! group they lead or belong to is SIGKILLed, then the runtime dirs held by trcs of the tree are
//! removed. The tree is what descends from the process started (while it is not reaped, its pid
//! is ours: `/proc/PID/task/*/children`, recursively) plus every process carrying the mark, which
//! also finds what was orphaned to init when a trc died.

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that marks the processes of one start. Not `TRC_*` or `RC_*`: trc
/// may treat those as its own.
pub const MARK_VAR: &str = "TEST_PROCESS_TREE";

/// How long the cleanup waits for processes to stop, and then to be gone, before it goes on.
const CLEANUP_WAIT: Duration = Duration::from_secs(10);

/// A process started by a test. Dropping it (at the test's end, also when the test panics)
/// kills it and everything it started; see the module's comment.
pub struct Spawned {
    child: Child,
    mark: String,
}

impl Spawned {
    /// Starts `cmd` with a mark of its own in its environment.
    pub fn spawn(cmd: &mut Command) -> Spawned {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let mark = format!("{}.{}", std::process::id(), STARTS.fetch_add(1, Ordering::Relaxed));
        cmd.env(MARK_VAR, &mark);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        Spawned { child, mark }
    }

    /// Waits for the process to exit; fails the test after `deadline` (the drop that follows
    /// then kills the tree).
    pub fn wait_deadline(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for a child") {
                return status;
            }
            assert!(Instant::now() < until, "process {} did not exit within {deadline:?}", self.child.id());
            // The polling interval of this wait, not a sleep that the outcome depends on.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // The child's pid names our process only as long as we have not reaped it.
        let root = match self.child.try_wait() {
            Ok(None) => Some(self.child.id() as i32),
            _ => None,
        };
        let tree = freeze(root, &self.mark);
        let groups = process_groups(&tree);
        let dirs: Vec<RuntimeDir> = tree.iter().flat_map(|&pid| runtime_dirs(pid)).collect();
        for &pid in &tree {
            signal(pid, libc::SIGKILL);
        }
        for pgid in groups {
            signal(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let until = Instant::now() + CLEANUP_WAIT;
        while tree.iter().any(|&pid| super::process_alive(pid)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        for dir in dirs {
            dir.remove();
        }
    }
}

/// Stops the root and every process below it or carrying `mark`, until a pass finds no new one
/// (a stopped process cannot fork; one that was forking when stopped shows its child in the
/// next pass). Returns them all.
fn freeze(root: Option<i32>, mark: &str) -> BTreeSet<i32> {
    let me = std::process::id() as i32;
    let mut frozen = BTreeSet::new();
    loop {
        let mut found: Vec<i32> = root.into_iter().collect();
        found.extend(frozen.iter().flat_map(|&pid| children(pid)));
        found.extend(marked(mark));
        let new: Vec<i32> =
            found.into_iter().filter(|&pid| pid > 1 && pid != me && frozen.insert(pid)).collect();
        if new.is_empty() {
            return frozen;
        }
        for &pid in &new {
            signal(pid, libc::SIGSTOP);
        }
        let until = Instant::now() + CLEANUP_WAIT;
        while new.iter().any(|&pid| state(pid).is_some_and(|s| !"TtZX".contains(s))) && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// kill(2), whose failure (the process is gone already) does not matter here.
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes no pointers; `pid` is a process (or, negative, a group) of this
    // test's tree, stopped, or a zombie not yet reaped, so not reused.
    unsafe { libc::kill(pid, sig) };
}

/// The fields of /proc/PID/stat after the command name: state, ppid, pgrp...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The state letter of a process (`R`, `S`, `T`, `Z`...), None when it is gone.
fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The children of every thread of `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .collect()
}

/// Every process whose environment has `MARK_VAR=mark`.
fn marked(mark: &str) -> Vec<i32> {
    let entry = format!("{MARK_VAR}={mark}");
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == entry.as_bytes()))
        })
        .collect()
}

/// The process groups of `pids`, but never the test's own (trc runs in it unless a test says
/// otherwise).
fn process_groups(pids: &BTreeSet<i32>) -> BTreeSet<i32> {
    // SAFETY: getpgrp(2) cannot fail and takes no arguments.
    let own = unsafe { libc::getpgrp() };
    pids.iter()
        .filter_map(|&pid| stat_fields(pid)?.get(2)?.parse::<i32>().ok())
        .filter(|&pgid| pgid > 1 && pgid != own)
        .collect()
}

/// A trc runtime dir, found through the lock file its owner holds open.
struct RuntimeDir {
    path: PathBuf,
    /// The lock file's identity: the dir is removed only while it is still that one.
    dev: u64,
    ino: u64,
}

impl RuntimeDir {
    fn remove(&self) {
        let lock = self.path.join("lock");
        if std::fs::symlink_metadata(&lock).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The runtime dirs whose lock `pid` holds open: an open file `<base>/<instance>/lock`, with a
/// `pid` file beside it, in a base named `trc` or `trc-<uid>` (the rule of src/runtime_dir.rs).
/// Only when the path names the same file here as in the process's mount namespace.
fn runtime_dirs(pid: i32) -> Vec<RuntimeDir> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let dir = target.parent()?;
            let base = dir.parent()?.file_name()?.to_str()?;
            let is_trcs = target.file_name()? == "lock"
                && dir.join("pid").is_file()
                && (base == "trc" || base.starts_with("trc-"));
            let held = std::fs::metadata(fd.path()).ok()?;
            let here = std::fs::symlink_metadata(&target).ok()?;
            (is_trcs && held.dev() == here.dev() && held.ino() == here.ino()).then(|| RuntimeDir {
                path: dir.to_path_buf(),
                dev: held.dev(),
                ino: held.ino(),
            })
        })
        .collect()
}
