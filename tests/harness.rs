//! The test harness's own promise (tests/common/process_tree.rs): a test that fails leaves
//! nothing behind, neither its trc, nor trc's tasks (each the leader of a process group of its
//! own), nor what they started, nor trc's runtime dir.
mod common;

use common::{process_alive, read_pid, runtime_base, sleeper, wait_sleeping, Running, Trc};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

/// Tasks that start processes of every kind: a plain child of a task, a daemon that left its
/// task's session (orphaned to trc, a subreaper), a task that ignores SIGTERM; every task
/// writes the pids to `dir`.
fn tasks(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        "-D".into(),
        format!("echo \"fifo $TRC_LOG_PIPE\"; {}", sleeper(dir, "child")),
        "-D".into(),
        format!("(setsid sleep 1000 & echo $! > {d}/daemon.tmp; mv {d}/daemon.tmp {d}/daemon.pid); exec sleep 1000"),
        "-D".into(),
        format!("trap '' TERM; echo $$ > {d}/stubborn.tmp; mv {d}/stubborn.tmp {d}/stubborn.pid; exec sleep 1000"),
    ]
}

/// Starts trc on `tasks` and waits until all of them run; returns the pids of every process
/// they started, and trc's runtime dir.
fn start_all(running: &mut Running, dir: &Path) -> (Vec<i32>, PathBuf) {
    let line = running.wait_for_line("fifo ");
    let fifo = PathBuf::from(line.trim_end().strip_prefix("async-1: fifo ").expect(&line));
    wait_sleeping(dir, "child");
    let pids = ["child.pid", "daemon.pid", "stubborn.pid"].map(|name| read_pid(dir, name));
    for pid in pids {
        assert!(process_alive(pid), "{pid} is not running");
    }
    let runtime_dir = fifo.parent().unwrap().to_path_buf();
    assert!(runtime_dir.is_dir());
    (pids.to_vec(), runtime_dir)
}

/// A test that panics while trc runs: trc, every task and what they started are killed, and
/// trc's runtime dir (where the README says it is) removed, as the test unwinds.
#[test]
fn a_failing_test_leaves_no_process_and_no_runtime_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = None;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut running = Trc::new(dir.path(), tasks(dir.path())).spawn();
        let (pids, runtime_dir) = start_all(&mut running, dir.path());
        seen = Some((running.pid(), pids, runtime_dir));
        panic!("the test fails while trc runs");
    }));
    assert!(result.is_err());
    let (trc, pids, runtime_dir) = seen.expect("the run got as far as the failure");
    assert_eq!(runtime_dir.parent(), Some(runtime_base().as_path()));
    for pid in pids.iter().chain([&trc]) {
        assert!(!process_alive(*pid), "process {pid} outlived the failed test");
    }
    assert!(!runtime_dir.exists(), "{} outlived the failed test", runtime_dir.display());
}

/// A trc that died (SIGKILLed here) leaves what its tasks started orphaned to init, out of its
/// tree (a task's leader dies with trc, but not its children or a daemon that left): they are
/// found by their mark in the environment and killed all the same.
#[test]
fn the_orphans_of_a_dead_trc_are_killed_too() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let mut running =
        Trc::new(dir.path(), tasks(dir.path())).env("XDG_RUNTIME_DIR", xdg.path().to_str().unwrap()).spawn();
    let (pids, _) = start_all(&mut running, dir.path());
    running.child.kill().unwrap();
    running.child.wait().unwrap();
    // The task's child and the daemon (not the stubborn leader, which dies with trc).
    for pid in &pids[..2] {
        assert!(process_alive(*pid), "{pid} went with trc: this test would show nothing");
    }
    drop(running);
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} outlived the test's end");
    }
}
