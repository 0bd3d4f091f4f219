//! What a trc that died suddenly (SIGKILL, the OOM killer) left running, and how the next trc
//! of the same instance stops it.
//!
//! A task's leader dies with trc (`PR_SET_PDEATHSIG`, `spawn.rs`), but what it started (a
//! background child, a double-forked daemon that kept its process group) does not. So trc
//! records the process groups of its tasks in `groups` in its runtime dir, and a trc that takes
//! over a stale dir reads that file (before the dir is emptied) and stops those groups before
//! it starts anything: SIGTERM, SIGKILL after the stop-timeout.
//!
//! The file: a `boot <boot_id>` line, then `+<pgid> <start>` when a task's leader is forked
//! (`start`: its start time, `/proc/PID/stat`, clock ticks since boot) and `-<pgid>` when its
//! group is forgotten (empty). Appended at most once per pass of the loop (one `write`),
//! compacted (the live groups written to a new file renamed over the old one) when it has
//! more than 64 lines beyond 4 per live group. Not fsync'd: after a reboot the boot id
//! differs and the file is ignored. (Rewriting it at every change cost 3 ms a restart on
//! ext4, which flushes data at a rename over a file; an append costs a few microseconds.)
//!
//! A group number is the leader's pid, and the kernel reuses it only once every member of the
//! group is gone. A recorded group is the dead trc's when:
//! - its leader still exists (a zombie too): only if its start time is the recorded one;
//!   otherwise the number belongs to another process now, and its group is left alone;
//! - its leader is gone (the usual case: it died with trc): only if no member started before
//!   the recorded start (every process of the old group was started by its leader or a
//!   descendant, so after it; a member older than that proves the group is another one).
//!   What this cannot tell apart: the number reused by a new group whose leader has also
//!   exited, leaving members, all between the two trcs' runs. That needs the pids to wrap
//!   around onto that number within the downtime: accepted.
//!
//! Not covered: processes that left their task's group (`setsid` daemons); a cgroup would be
//! needed for those.

use super::reap;
use crate::runtime_dir::GROUPS_FILE;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{debug, error};

/// The record of the live task groups, kept in the runtime dir.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    boot_id: String,
    /// Open for appending; `None` when it could not be made (then nothing is recorded).
    file: Option<std::fs::File>,
    /// pgid -> its leader's start time.
    groups: BTreeMap<i32, u64>,
    /// Lines not written yet (one write per pass).
    pending: String,
    /// Lines in the file, to know when to compact it.
    lines: usize,
}

impl Record {
    pub fn new(runtime_dir: &Path) -> Record {
        let mut record = Record {
            path: runtime_dir.join(GROUPS_FILE),
            boot_id: boot_id(),
            file: None,
            groups: BTreeMap::new(),
            pending: String::new(),
            lines: 0,
        };
        record.compact();
        record
    }

    /// A task's leader was just forked (not reaped yet: its `stat` is there to read).
    pub fn started(&mut self, pgid: Pid) {
        if let Some(stat) = Stat::read(pgid.as_raw()) {
            self.groups.insert(pgid.as_raw(), stat.started);
            self.pending.push_str(&format!("+{pgid} {}\n", stat.started));
        }
    }

    /// Forgets the groups that are not in `live`, then writes what changed since the last call.
    pub fn update(&mut self, live: &HashSet<i32>) {
        let pending = &mut self.pending;
        self.groups.retain(|pgid, _| {
            let keep = live.contains(pgid);
            if !keep {
                pending.push_str(&format!("-{pgid}\n"));
            }
            keep
        });
        if self.pending.is_empty() {
            return;
        }
        let added = self.pending.bytes().filter(|&b| b == b'\n').count();
        if self.lines + added > 64 + 4 * self.groups.len() {
            self.compact();
        } else if let Some(file) = &mut self.file {
            use std::io::Write;
            // One write of whole lines: a trc killed meanwhile leaves whole lines.
            if let Err(e) = file.write_all(self.pending.as_bytes()) {
                debug!("cannot write {}: {e}", self.path.display());
            }
            self.lines += added;
        }
        self.pending.clear();
    }

    /// Rewrites the file with the live groups only (a new file renamed over the old one).
    fn compact(&mut self) {
        let mut text = format!("boot {}\n", self.boot_id);
        for (pgid, start) in &self.groups {
            text.push_str(&format!("+{pgid} {start}\n"));
        }
        let tmp = self.path.with_extension("new");
        // trc's alone (0600): tasks of other users reach the runtime dir.
        let made = private_file(&tmp)
            .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()).map(|()| file))
            .and_then(|file| std::fs::rename(&tmp, &self.path).map(|()| file));
        match made {
            Ok(file) => self.file = Some(file),
            Err(e) => {
                debug!("cannot write {}: {e}", self.path.display());
                self.file = None;
            }
        }
        self.lines = 1 + self.groups.len();
        self.pending.clear();
    }
}

/// Stops the groups a dead trc recorded in `stale` (its `groups` file) that are still its own
/// (see the module's comment): SIGTERM, SIGKILL to what is left after `timeout`. Returns when
/// they are gone, or a second after the SIGKILL.
pub fn stop(stale: &str, instance: &str, timeout: Duration) {
    let groups: Vec<(i32, u64)> =
        parse(stale, &boot_id()).into_iter().filter(|&(g, s)| is_left_over(g, s)).collect();
    if groups.is_empty() {
        return;
    }
    let names: Vec<String> = groups
        .iter()
        .map(|&(pgid, _)| {
            let members = reap::group_members(Pid::from_raw(pgid));
            let comms: Vec<String> = members.iter().map(|m| comm(m.pid.as_raw())).collect();
            format!("{pgid} ({})", comms.join(", "))
        })
        .collect();
    // Always shown (as errors are): trc died, and processes are killed because of it.
    error!(
        "stopping the process groups left by a trc of instance \"{instance}\" that died: {} (SIGTERM, SIGKILL after {timeout:?})",
        names.join("; ")
    );
    for &(pgid, _) in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    }
    let left = |groups: &[(i32, u64)]| -> Vec<(i32, u64)> {
        groups.iter().copied().filter(|&(g, _)| reap::group_alive(Pid::from_raw(g))).collect()
    };
    let mut alive = wait_gone(&groups, Instant::now() + timeout, left);
    if alive.is_empty() {
        return;
    }
    // Checked again: a group that emptied meanwhile may be another one by now.
    alive.retain(|&(g, s)| is_left_over(g, s));
    for &(pgid, _) in &alive {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let alive = wait_gone(&alive, Instant::now() + Duration::from_secs(1), left);
    if !alive.is_empty() {
        let list: Vec<String> = alive.iter().map(|(g, _)| g.to_string()).collect();
        error!("the process groups {} left by the trc that died are still there", list.join(", "));
    }
}

/// Waits until `left` finds none of `groups`, or until `deadline`; returns what is left. Polls
/// (every 10 ms): the processes are not trc's children, so no event says they are gone, and
/// this runs once, before anything starts.
fn wait_gone(
    groups: &[(i32, u64)],
    deadline: Instant,
    left: impl Fn(&[(i32, u64)]) -> Vec<(i32, u64)>,
) -> Vec<(i32, u64)> {
    loop {
        let alive = left(groups);
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The groups of a `groups` file written during this boot (none from another boot): its
/// `+pgid start` and `-pgid` lines replayed.
fn parse(text: &str, boot_id: &str) -> Vec<(i32, u64)> {
    let mut lines = text.lines();
    if lines.next().and_then(|l| l.strip_prefix("boot ")) != Some(boot_id) {
        return Vec::new();
    }
    let mut groups = BTreeMap::new();
    for line in lines {
        if let Some((pgid, start)) = line.strip_prefix('+').and_then(|l| l.split_once(' ')) {
            if let (Ok(pgid), Ok(start)) = (pgid.parse::<i32>(), start.parse::<u64>()) {
                groups.insert(pgid, start);
            }
        } else if let Some(Ok(pgid)) = line.strip_prefix('-').map(str::parse::<i32>) {
            groups.remove(&pgid);
        }
    }
    groups.into_iter().filter(|&(pgid, _)| pgid > 1).collect()
}

/// Whether group `pgid`, whose leader started at `start`, is still the one recorded and has
/// members (see the module's comment).
fn is_left_over(pgid: i32, start: u64) -> bool {
    let members = reap::group_members(Pid::from_raw(pgid));
    if members.is_empty() {
        return false;
    }
    match Stat::read(pgid) {
        Some(leader) => leader.started == start,
        None => members.iter().all(|m| m.started >= start),
    }
}

/// What trc needs of `/proc/PID/stat`.
struct Stat {
    started: u64,
}

impl Stat {
    fn read(pid: i32) -> Option<Stat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        // After the name: state (field 3) ... starttime (22).
        let started = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(Stat { started })
    }
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim_end().to_owned()).unwrap_or_default()
}

/// A new file at `path` (one left there is replaced), mode 0600, open for appending.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new().append(true).create_new(true).mode(0o600).open(path)
}

/// This boot's id: start times are clock ticks since boot, meaningless across a reboot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_another_boot_or_garbled_lines_give_nothing() {
        let text = "boot abc\n+123 456\nx y\n+1 5\n+77 9\n+80 3\n-80\n+12";
        assert_eq!(parse(text, "abc"), vec![(77, 9), (123, 456)]);
        assert!(parse(text, "def").is_empty());
        assert!(parse("", "").is_empty());
    }

    /// `cargo test --release --lib record_benchmark -- --ignored --nocapture`: what one restart
    /// of a task adds (its start time read, two appends, compactions), with 10 other tasks
    /// running. Set TMPDIR to try another file system.
    #[test]
    #[ignore]
    fn record_benchmark() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = Record::new(dir.path());
        let me = std::process::id() as i32;
        let mut live: HashSet<i32> = (0..10).map(|n| 100_000 + n).collect();
        for &pgid in &live {
            record.groups.insert(pgid, 1);
        }
        record.compact();
        let start = Instant::now();
        for _ in 0..10_000 {
            live.insert(me);
            record.started(Pid::from_raw(me));
            record.update(&live);
            live.remove(&me);
            record.update(&live);
        }
        println!("{:?} per restart", start.elapsed() / 10_000);
    }

    #[test]
    fn a_group_is_recognised_by_its_leaders_start_time() {
        let _forks = crate::fork_lock();
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep").arg("100").process_group(0).spawn().unwrap();
        let pid = child.id() as i32;
        let started = Stat::read(pid).unwrap().started;
        let ours = is_left_over(pid, started);
        let reused = is_left_over(pid, started + 1) || is_left_over(pid, started.saturating_sub(1));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(ours);
        assert!(!reused, "a group whose leader started at another time is another group");
        assert!(!is_left_over(pid, started), "a group that is gone");
    }
}
