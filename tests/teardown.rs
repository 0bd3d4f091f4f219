//! Teardown of the real `trc` binary: every task is stopped at once, stubborn ones are killed
//! after the stop-timeout, halt tasks run after the tasks are gone, and nothing trc started
//! (daemons, leftovers of finished tasks, grandchildren) outlives it, nor does its runtime dir.
//!
//! Every wait is on an event (a line, a file, a process exiting) with the harness' generous
//! deadline; the only time bounds asserted are lower bounds, plus one spread that shows the
//! stop-timeouts of several tasks run concurrently (see there).

mod common;

use common::{process_alive, read_pid, wait_child_runs, wait_for, wait_until, Output, Running, Trc};
use std::path::Path;
use std::time::{Duration, Instant};

// ----- helpers ------------------------------------------------------------------------------

/// `trc ARGS` in a fresh temp dir, which tasks find as `$DIR`.
fn trc(dir: &Path, args: &[&str]) -> Trc {
    Trc::new(dir, args).env("DIR", dir.to_str().unwrap())
}

/// A bash loop waiting (bounded: about 30 s) for `$DIR/name` to exist, then running `then`.
fn until_file(name: &str, then: &str) -> String {
    format!("for _i in $(seq 1000); do [ -e \"$DIR/{name}\" ] && break; sleep 0.03; done; {then}")
}

fn assert_gone(pids: &[(&str, i32)], out: &Output) {
    for (what, pid) in pids {
        assert!(!process_alive(*pid), "{what} (pid {pid}) outlived trc\n{out:?}");
    }
}

/// How a run is made to end.
#[derive(Debug, Clone, Copy)]
enum End {
    /// SIGTERM to trc: status 143.
    Signal,
    /// The wait policy: a sync task exits 0 when `$DIR/go` appears.
    Policy,
}

impl End {
    /// The sync task that ends the group for `End::Policy` (nothing for a signal).
    fn args(self) -> Vec<String> {
        match self {
            End::Signal => vec![],
            End::Policy => vec!["-F".into(), until_file("go", "exit 0")],
        }
    }

    fn finish(self, dir: &Path, running: &mut Running) {
        match self {
            End::Signal => running.signal(libc::SIGTERM),
            End::Policy => std::fs::write(dir.join("go"), "").unwrap(),
        }
    }

    fn status(self) -> i32 {
        match self {
            End::Signal => 143,
            End::Policy => 0,
        }
    }
}

/// Runs trc with `args` (plus what `end` needs) until every pid file in `pids` is written,
/// checks those processes are alive, ends the run by `end`, and checks they are all gone.
fn nothing_outlives(end: End, env: &[(&str, &str)], args: &[&str], pids: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(end.args());
    let mut t = Trc::new(dir.path(), &all).env("DIR", dir.path().to_str().unwrap());
    for (k, v) in env {
        t = t.env(k, v);
    }
    let mut running = t.spawn();
    let pids: Vec<(&str, i32)> = pids.iter().map(|name| (*name, read_pid(dir.path(), name))).collect();
    for (what, pid) in &pids {
        assert!(process_alive(*pid), "{what} (pid {pid}) is not running before the end");
    }
    end.finish(dir.path(), &mut running);
    let out = running.wait();
    assert_eq!(out.code(), end.status(), "{out:?}");
    assert_gone(&pids, &out);
    out
}

// ----- every task at once -------------------------------------------------------------------

/// Both tasks get SIGTERM, and at the same time: each one's TERM trap waits until the other's
/// has run too, so a teardown that stopped one task after the other would never see both.
#[test]
fn every_task_gets_sigterm_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let task = |me: &str, other: &str| {
        let on_term = format!(
            "touch $DIR/{me}.term; {}",
            until_file(
                &format!("{other}.term"),
                &format!("[ -e $DIR/{other}.term ] && touch $DIR/{me}.saw-{other}; exit 0")
            )
        );
        format!("trap '{on_term}' TERM; echo $$ > $DIR/{me}.pid; sleep 100 & wait")
    };
    let (a, b) = (task("a", "b"), task("b", "a"));
    let running = trc(dir.path(), &["-D", &a, "-D", &b]).env("RC_STOP_TIMEOUT", "60s").spawn();
    let pids = [("a", read_pid(dir.path(), "a.pid")), ("b", read_pid(dir.path(), "b.pid"))];
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    for name in ["a.term", "b.term", "a.saw-b", "b.saw-a"] {
        assert!(dir.path().join(name).exists(), "no {name}: the tasks were not stopped together\n{out:?}");
    }
    assert_gone(&pids, &out);
}

/// The stop reaches the whole process group of a task, not only its leader.
#[test]
fn sigterm_reaches_the_whole_process_group_of_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let child = "sh -c 'trap \"touch $DIR/child.term; exit 0\" TERM; echo $$ > $DIR/child.pid; \
                 while :; do sleep 0.05; done' & wait";
    let running = trc(dir.path(), &["-D", child]).env("RC_STOP_TIMEOUT", "60s").spawn();
    let pid = read_pid(dir.path(), "child.pid");
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(dir.path().join("child.term").exists(), "the task's child did not get SIGTERM\n{out:?}");
    assert_gone(&[("the task's child", pid)], &out);
}

// ----- halt ---------------------------------------------------------------------------------

const HALT_REPORT: &str = "for p in $(cat $DIR/*.pid); do \
    if kill -0 $p 2>/dev/null; then echo \"halt: $p alive\"; else echo \"halt: $p gone\"; fi; \
    if kill -0 -- -$p 2>/dev/null; then echo \"halt: group $p alive\"; fi; done; \
    echo \"halt: _exit_status=$_exit_status TRC_EXIT_STATUS=$TRC_EXIT_STATUS\"";

/// Halt tasks run after the tasks (and their process groups) are gone, and see the group's
/// status; trc then exits with the last halt task's status.
#[test]
fn halt_runs_after_the_tasks_are_gone_and_sees_the_status_of_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let running = trc(
        dir.path(),
        &[
            "-H",
            HALT_REPORT,
            "-D",
            "echo $$ > $DIR/a.pid; sleep 100 & sleep 101 & wait",
            "-D",
            "echo $$ > $DIR/b.pid; trap '' TERM; sleep 100",
        ],
    )
    .env("RC_STOP_TIMEOUT", "1s")
    .spawn();
    let (a, b) = (read_pid(dir.path(), "a.pid"), read_pid(dir.path(), "b.pid"));
    wait_child_runs(a, "sleep");
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 0, "the halt task's own status\n{out:?}");
    for pid in [a, b] {
        assert!(out.stdout.contains(&format!("halt: {pid} gone")), "{out:?}");
        assert!(!out.stdout.contains(&format!("group {pid} alive")), "{out:?}");
    }
    assert!(out.stdout.contains("halt: _exit_status=143 TRC_EXIT_STATUS=143"), "{out:?}");
}

#[test]
fn halt_runs_after_the_tasks_are_gone_and_sees_the_status_of_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let out = trc(
        dir.path(),
        &[
            "-H",
            HALT_REPORT,
            "-H",
            "exit $_exit_status",
            // Renamed into place: the sync task ends the group as soon as a.pid exists, which
            // must not be before it holds the pid.
            "-D",
            "echo $$ > $DIR/a.tmp; mv $DIR/a.tmp $DIR/a.pid; sleep 100 & wait",
            "-F",
            &until_file("a.pid", "exit 7"),
        ],
    )
    .run();
    let a = read_pid(dir.path(), "a.pid");
    assert_eq!(out.code(), 7, "{out:?}");
    assert!(out.stdout.contains(&format!("halt: {a} gone")), "{out:?}");
    assert!(out.stdout.contains("halt: _exit_status=7 TRC_EXIT_STATUS=7"), "{out:?}");
}

// ----- stubborn tasks -----------------------------------------------------------------------

/// A task that ignores SIGTERM is killed after the stop-timeout (not before), and trc exits
/// with the status the signal gave.
fn stubborn_task_is_killed(env: &[(&str, &str)], opts: &[&str], task: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["-D", task]);
    let mut t = trc(dir.path(), &args).env("RC_VERBOSE", "true");
    for (k, v) in env {
        t = t.env(k, v);
    }
    let mut running = t.spawn();
    running.wait_for_line("stubborn-ready");
    let pid = read_pid(dir.path(), "stubborn.pid");
    let sent = Instant::now();
    running.signal(libc::SIGTERM);
    let out = running.wait();
    let took = sent.elapsed();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(
        took >= Duration::from_millis(950),
        "killed after {took:?}, before the 1 s stop-timeout\n{out:?}"
    );
    assert_gone(&[("the stubborn task", pid)], &out);
    assert!(out.stdout.contains("Exiting in the background (exitcode=137)"), "{out:?}");
}

#[test]
fn task_ignoring_sigterm_is_killed_after_rc_stop_timeout() {
    stubborn_task_is_killed(
        &[("RC_STOP_TIMEOUT", "1s")],
        &[],
        "trap '' TERM; echo $$ > $DIR/stubborn.pid; echo stubborn-ready; exec sleep 100",
    );
}

#[test]
fn bash_loop_ignoring_sigterm_is_killed_after_stop_timeout_option() {
    stubborn_task_is_killed(
        &[],
        &["--stop-timeout", "1s"],
        "trap '' TERM; echo $$ > $DIR/stubborn.pid; echo stubborn-ready; while :; do sleep 0.1; done",
    );
}

/// A task whose TERM trap keeps it running (it does not ignore the signal: it catches it).
/// (`|| true`: the task's `sleep` dies of the SIGTERM sent to the group, and a failing command
/// ends a task, as in TrivialRC.)
#[test]
fn task_trapping_sigterm_without_exiting_is_killed_after_the_stop_timeout() {
    stubborn_task_is_killed(
        &[("RC_STOP_TIMEOUT", "1s")],
        &[],
        "trap 'echo caught-term' TERM; echo $$ > $DIR/stubborn.pid; echo stubborn-ready; \
         while :; do sleep 0.1 || true; done",
    );
}

/// The group ends by its wait policy (a sync task exits 4) while a stubborn task runs: it is
/// killed after the stop-timeout and the status stays 4.
#[test]
fn stubborn_task_is_killed_when_the_policy_ends_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let running = trc(
        dir.path(),
        &[
            "-D",
            "trap '' TERM; echo $$ > $DIR/stubborn.pid; exec sleep 100",
            "-F",
            &until_file("go", "exit 4"),
        ],
    )
    .env("RC_STOP_TIMEOUT", "1s")
    .spawn();
    let pid = read_pid(dir.path(), "stubborn.pid");
    let sent = Instant::now();
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), 4, "{out:?}");
    assert!(sent.elapsed() >= Duration::from_millis(950), "{out:?}");
    assert_gone(&[("the stubborn task", pid)], &out);
}

/// Three tasks that ignore SIGTERM, stop-timeout 2 s: the timeout is not taken once per task
/// (TrivialRC's way, 1 s per task), it runs for all of them at once.
///
/// Shown twice without bounding the total time: each task, once it has its own SIGTERM, waits
/// for the other two to have theirs (so all three were signalled within one stop-timeout);
/// and a watcher records when each died: all three within much less than one stop-timeout
/// (killing one after the other's timeout would spread them by 2 s per task). The watcher can
/// only see deaths later than they happen, and it checks all three in one pass, so load can
/// shrink the spread it measures but hardly grow it.
#[test]
fn stubborn_tasks_share_one_stop_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let task = |n: u32| {
        format!(
            "trap 'touch $DIR/term.{n}' TERM; echo $$ > $DIR/stubborn.{n}; \
             while :; do \
               if [ -e $DIR/term.1 ] && [ -e $DIR/term.2 ] && [ -e $DIR/term.3 ]; then touch $DIR/all.{n}; fi; \
               sleep 0.02 || true; \
             done"
        )
    };
    let tasks: Vec<String> = (1..=3).map(task).collect();
    let running = trc(dir.path(), &["-D", &tasks[0], "-D", &tasks[1], "-D", &tasks[2]])
        .env("RC_STOP_TIMEOUT", "2s")
        .spawn();
    let pids: Vec<i32> = (1..=3).map(|n| read_pid(dir.path(), &format!("stubborn.{n}"))).collect();
    let watched = pids.clone();
    let watcher = std::thread::spawn(move || {
        let mut died: Vec<Option<Instant>> = vec![None; watched.len()];
        let until = Instant::now() + common::DEADLINE;
        while died.iter().any(Option::is_none) && Instant::now() < until {
            let now = Instant::now();
            for (i, pid) in watched.iter().enumerate() {
                if died[i].is_none() && !process_alive(*pid) {
                    died[i] = Some(now);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        died
    });
    let sent = Instant::now();
    running.signal(libc::SIGTERM);
    let out = running.wait();
    let took = sent.elapsed();
    assert_eq!(out.code(), 143, "{out:?}");
    let died: Vec<Instant> =
        watcher.join().unwrap().into_iter().map(|d| d.expect("a task never died")).collect();
    assert_gone(&[("task 1", pids[0]), ("task 2", pids[1]), ("task 3", pids[2])], &out);
    assert!(took >= Duration::from_millis(1950), "killed after {took:?}, before the stop-timeout\n{out:?}");
    for n in 1..=3 {
        assert!(
            dir.path().join(format!("all.{n}")).exists(),
            "task {n} was killed before all three tasks had their SIGTERM\n{out:?}"
        );
    }
    let spread = died.iter().max().unwrap().duration_since(*died.iter().min().unwrap());
    assert!(spread < Duration::from_millis(1500), "the tasks died {spread:?} apart\n{out:?}");
}

// ----- nothing outlives trc -----------------------------------------------------------------

const DAEMON: &str = "(setsid sleep 300 & echo $! > $DIR/daemon.pid); sleep 100 & wait";

/// A double-forked daemon (new session, parent gone) started by a task.
#[test]
fn double_forked_daemon_is_gone_after_sigterm() {
    nothing_outlives(End::Signal, &[], &["-D", DAEMON], &["daemon.pid"]);
}

#[test]
fn double_forked_daemon_is_gone_after_the_policy_ends_the_group() {
    nothing_outlives(End::Policy, &[], &["-D", DAEMON], &["daemon.pid"]);
}

/// A daemon started by a sync task that has finished by the time the group ends.
#[test]
fn daemon_of_a_finished_sync_task_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let out = trc(dir.path(), &["-F", "(setsid sleep 300 & echo $! > $DIR/daemon.pid); exit 0"]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_gone(&[("the daemon", read_pid(dir.path(), "daemon.pid"))], &out);
}

/// A daemon that ignores SIGTERM is killed after the stop-timeout.
#[test]
fn daemon_ignoring_sigterm_is_killed() {
    let daemon =
        "(setsid bash -c 'trap \"\" TERM; exec sleep 300' & echo $! > $DIR/daemon.pid); sleep 100 & wait";
    nothing_outlives(End::Signal, &[("RC_STOP_TIMEOUT", "1s")], &["-D", daemon], &["daemon.pid"]);
    nothing_outlives(End::Policy, &[("RC_STOP_TIMEOUT", "1s")], &["-D", daemon], &["daemon.pid"]);
}

/// A daemon whose own child becomes an orphan only when the daemon is stopped: trc adopts it
/// then and stops it too.
#[test]
fn daemon_of_a_daemon_is_gone() {
    let daemon = "(setsid sh -c 'sleep 300 & echo $! > $DIR/inner.pid; wait' & echo $! > $DIR/daemon.pid); \
                  sleep 100 & wait";
    nothing_outlives(End::Signal, &[], &["-D", daemon], &["daemon.pid", "inner.pid"]);
    nothing_outlives(End::Policy, &[], &["-D", daemon], &["daemon.pid", "inner.pid"]);
}

/// A task that finished leaving a background child (in its own process group) behind, while
/// another task keeps the group running (wait_all) until a marker.
#[test]
fn background_child_of_a_finished_task_is_gone() {
    let leftover = "sleep 300 & echo $! > $DIR/left.pid; exit 0";
    let keeper = until_file("go", "exit 0");
    for end in [End::Signal, End::Policy] {
        let out = nothing_outlives(
            end,
            &[("RC_WAIT_POLICY", "wait_all"), ("RC_VERBOSE", "true")],
            &["-D", leftover, "-D", &keeper],
            &["left.pid"],
        );
        assert!(
            out.stdout.contains(&format!("Exiting in the background (exitcode=0): {leftover}")),
            "{out:?}"
        );
    }
}

/// The same, where the leftover ignores SIGTERM: killed after the stop-timeout.
#[test]
fn stubborn_background_child_of_a_finished_task_is_killed() {
    let leftover = "bash -c 'trap \"\" TERM; exec sleep 300' & echo $! > $DIR/left.pid; exit 0";
    let keeper = until_file("go", "exit 0");
    for end in [End::Signal, End::Policy] {
        nothing_outlives(
            end,
            &[("RC_WAIT_POLICY", "wait_all"), ("RC_STOP_TIMEOUT", "1s")],
            &["-D", leftover, "-D", &keeper],
            &["left.pid"],
        );
    }
}

/// A grandchild in the task's process group (task -> sh -> sleep).
#[test]
fn grandchild_in_the_tasks_group_is_gone() {
    let task = "sh -c 'sleep 300 & echo $! > $DIR/grandchild.pid; wait' & echo $! > $DIR/child.pid; wait";
    for end in [End::Signal, End::Policy] {
        nothing_outlives(end, &[], &["-D", task], &["child.pid", "grandchild.pid"]);
    }
}

/// A grandchild that ignores SIGTERM, under a task that exits on it: its group lingers after
/// the task's leader is gone, and is killed after the stop-timeout.
#[test]
fn stubborn_grandchild_of_a_stopped_task_is_killed() {
    let task = "sh -c 'trap \"\" TERM; sleep 300 & echo $! > $DIR/grandchild.pid; wait' & \
                echo $! > $DIR/child.pid; echo $$ > $DIR/leader.pid; wait";
    for end in [End::Signal, End::Policy] {
        nothing_outlives(
            end,
            &[("RC_STOP_TIMEOUT", "1s")],
            &["-D", task],
            &["leader.pid", "child.pid", "grandchild.pid"],
        );
    }
}

// ----- the runtime dir ----------------------------------------------------------------------

/// trc's runtime dir `$XDG_RUNTIME_DIR/trc/<instance>` exists while it runs (the task
/// sees it), and is removed at exit, leaving nothing in `$XDG_RUNTIME_DIR/trc`.
fn runtime_dir_removed(end: End) {
    let dir = tempfile::tempdir().unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![
        "-D".into(),
        "ls -d $XDG_RUNTIME_DIR/trc/$TRC_INSTANCE > $DIR/seen; echo $$ > $DIR/task.pid; sleep 100 & wait"
            .into(),
    ];
    args.extend(end.args());
    let mut running = Trc::new(dir.path(), &args)
        .env("DIR", dir.path().to_str().unwrap())
        .env("XDG_RUNTIME_DIR", xdg.path().to_str().unwrap())
        .spawn();
    wait_child_runs(read_pid(dir.path(), "task.pid"), "sleep");
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    let own = Path::new(seen.trim());
    let base = xdg.path().join("trc");
    assert_eq!(own.parent(), Some(base.as_path()), "{seen:?}");
    // Named after the work dir (without a leading dot).
    let work_name = dir.path().file_name().unwrap().to_str().unwrap().trim_start_matches('.');
    assert_eq!(own.file_name().unwrap().to_str().unwrap(), work_name, "{seen:?}");
    assert!(own.is_dir(), "no runtime dir {}", own.display());
    end.finish(dir.path(), &mut running);
    let out = running.wait();
    assert_eq!(out.code(), end.status(), "{out:?}");
    assert!(!own.exists(), "the runtime dir {} is left\n{out:?}", own.display());
    let left: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "left in the runtime base dir: {left:?}");
}

#[test]
fn runtime_dir_exists_while_running_and_is_removed_after_sigterm() {
    runtime_dir_removed(End::Signal);
}

#[test]
fn runtime_dir_exists_while_running_and_is_removed_after_the_policy_ends_the_group() {
    runtime_dir_removed(End::Policy);
}

/// Also when boot fails (no task of the group ever starts).
#[test]
fn runtime_dir_is_removed_after_a_boot_failure() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let out = trc(
        dir.path(),
        &["-B", "ls -d $XDG_RUNTIME_DIR/trc/$TRC_INSTANCE > $DIR/seen; exit 3", "-F", "true"],
    )
    .env("XDG_RUNTIME_DIR", xdg.path().to_str().unwrap())
    .run();
    assert_eq!(out.code(), 3, "{out:?}");
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    assert!(seen.trim().starts_with(xdg.path().to_str().unwrap()), "{seen:?}");
    assert!(!Path::new(seen.trim()).exists(), "the runtime dir {seen} is left");
}

// ----- signals during teardown ----------------------------------------------------------------

/// A terminating signal repeated a second or more after teardown began ("Ctrl-C again") kills
/// what is left at once; the same signal within that second (delivered twice) changes nothing.
/// The test keeps sending SIGTERM from the start: trc must wait at least a second, then not
/// wait for the 60 s stop-timeout.
#[test]
fn repeated_sigterm_kills_a_stubborn_task_without_waiting_for_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = trc(dir.path(), &["-D", "trap '' TERM; echo $$ > $DIR/stubborn.pid; exec sleep 100"])
        .env("RC_STOP_TIMEOUT", "60s")
        .env("RC_VERBOSE", "true")
        .spawn();
    let pid = read_pid(dir.path(), "stubborn.pid");
    let sent = Instant::now();
    while running.child.try_wait().unwrap().is_none() {
        assert!(sent.elapsed() < common::DEADLINE, "trc did not exit");
        running.signal(libc::SIGTERM);
        // The interval of the repetition, not a wait for a state.
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = sent.elapsed();
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(took >= Duration::from_millis(950), "a repeated signal within the first second killed at once");
    assert_gone(&[("the stubborn task", pid)], &out);
    assert!(out.stdout.contains("Exiting in the background (exitcode=137)"), "{out:?}");
}

/// Halt tasks run to completion: signals during halt, even a second and more after teardown
/// began, do not interrupt them.
#[test]
fn signals_do_not_interrupt_halt_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let halt = "t0=${EPOCHREALTIME/./}; echo $$ > $DIR/halt.pid; \
                for _i in $(seq 1000); do \
                  [ $(( ${EPOCHREALTIME/./} - t0 )) -gt 1200000 ] && touch $DIR/halt.late; \
                  [ -e $DIR/go ] && break; sleep 0.03; \
                done; echo halt-done; exit 0";
    let mut running = trc(dir.path(), &["-H", halt, "-D", "echo $$ > $DIR/async.pid; sleep 100 & wait"])
        .env("RC_VERBOSE", "true")
        .env("RC_VERBOSE_EXTRA", "true")
        .spawn();
    wait_child_runs(read_pid(dir.path(), "async.pid"), "sleep");
    running.signal(libc::SIGTERM);
    let halt_pid = read_pid(dir.path(), "halt.pid");
    wait_until("the halt task to run for 1.2 s", || dir.path().join("halt.late").exists());
    running.signal(libc::SIGTERM);
    running.signal(libc::SIGINT);
    wait_for(&mut running, "SIGINT during halt");
    assert!(process_alive(halt_pid), "the halt task was stopped by a signal");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), 0, "the halt task's status\n{out:?}");
    assert!(out.stdout.contains("halt-done"), "{out:?}");
}

/// A task waiting to be restarted when a signal comes is not restarted: the group ends at once.
#[test]
fn pending_restart_is_cancelled_by_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mut running =
        trc(dir.path(), &["-D", "echo started >> $DIR/starts; exit 1", "-D", "sleep 100 & wait"])
            .env("RC_RESTART", "on-failure")
            .env("RC_RESTART_DELAY", "60s")
            .env("RC_RESTART_MAX_DELAY", "60s")
            .env("RC_VERBOSE", "true")
            .spawn();
    running.wait_for_line("Restarting in the background");
    running.signal(libc::SIGTERM);
    // The harness' deadline (30 s) is shorter than the restart delay.
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    let starts = std::fs::read_to_string(dir.path().join("starts")).unwrap();
    assert_eq!(starts.lines().count(), 1, "{out:?}");
}

// ----- a stop signal that reaches bash as it starts a program --------------------------------

/// Shell code that makes bash's next program lookup slow (a `PATH` of thousands of missing
/// directories, all searched before bash execs or forks), creates `$DIR/go`, then runs `cmd`.
/// A stop signal sent as soon as `go` appears reaches bash while it is starting `cmd`.
fn slow_start(cmd: &str) -> String {
    format!("PATH=$(printf '/nonexistent/%d:' $(seq 6000))$PATH; : > \"$DIR/go\"; {cmd}")
}

/// The window between a task's bash and the program it starts: the stop signal that reaches
/// bash there must not be lost (it was, when bash's TERM trap took it and then exec'd the
/// program or forked it and waited for it; the program then ran until the stop-timeout's
/// SIGKILL). The second task ends the group (wait_any) the moment the first one writes `go`;
/// the stop-timeout is 60 s, so a lost signal shows as trc not exiting within the harness'
/// 30 s deadline. Both ways bash starts a program, and with an EXIT trap of the task's own
/// (bash then handles TERM itself, and must run it); 10 runs each.
#[test]
fn stop_signal_reaching_bash_as_it_starts_a_program_is_not_lost() {
    let exit_trap = "trap 'echo exit-trap-$((6 * 7))' EXIT; ";
    let cases = [
        ("", "exec sleep 1000"),
        ("", "sleep 1000"),
        ("", "sleep 1000; echo after-$((6 * 7))"),
        (exit_trap, "exec sleep 1000"),
        (exit_trap, "sleep 1000; echo after-$((6 * 7))"),
    ];
    for (before, cmd) in cases {
        let task = format!("{before}{}", slow_start(cmd));
        for run in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let out = trc(dir.path(), &["-D", &task, "-D", "until [ -e \"$DIR/go\" ]; do :; done; exit 0"])
                .env("RC_STOP_TIMEOUT", "60s")
                .env("RC_VERBOSE", "true")
                .run();
            assert_eq!(out.code(), 0, "{task:?}, run {run}: {out:?}");
            assert!(
                !out.stdout.contains("after-42"),
                "bash went on after the stop: {task:?}, run {run}: {out:?}"
            );
            // Unless bash was already exec'ing sleep, the task's EXIT trap ran.
            if !before.is_empty() && !cmd.starts_with("exec") {
                assert!(out.stdout.contains("async-1: exit-trap-42"), "{task:?}, run {run}: {out:?}");
            }
        }
    }
}

/// A shell task stopped by trc (SIGTERM, which bash leaves at its default action so that it
/// cannot be lost) still runs its own EXIT trap, and ends with 143; its foreground program is
/// stopped too.
#[test]
fn a_stopped_tasks_exit_trap_runs() {
    let dir = tempfile::tempdir().unwrap();
    let running = trc(
        dir.path(),
        &[
            "-D",
            "trap 'echo exit-trap-ran' EXIT; sleep 1000 & echo $! > $DIR/sleep.pid; wait",
            "-F",
            &until_file("go", "exit 0"),
        ],
    )
    .env("RC_VERBOSE", "true")
    .spawn();
    let sleep = read_pid(dir.path(), "sleep.pid");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("async-1: exit-trap-ran"), "{out:?}");
    assert!(out.stdout.contains("Exiting in the background (exitcode=143)"), "{out:?}");
    assert_gone(&[("the task's sleep", sleep)], &out);
}

/// The same race as it comes, without the slow lookup: two tasks of a trc.d start together,
/// one `exec`s a program, the other exits at once and ends the group (wait_any), so the stop
/// signal often comes while the first one's bash is still starting its program. 30 runs.
#[test]
fn stop_signal_sent_as_tasks_start_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("trc.d")).unwrap();
    std::fs::write(dir.path().join("trc.d/async.a"), "exec sleep 1000\n").unwrap();
    std::fs::write(dir.path().join("trc.d/async.b"), "exit 0\n").unwrap();
    for run in 0..30 {
        let out = trc(dir.path(), &[]).env("RC_STOP_TIMEOUT", "60s").run();
        assert_eq!(out.code(), 0, "run {run}: {out:?}");
    }
}

/// What a task's own TERM trap starts to clean up (after the stop signal, like a program that
/// missed it would be) is never stopped by the re-sent signal: a cleanup that takes a while
/// completes.
#[test]
fn a_trap_s_cleanup_commands_are_not_stopped_again() {
    let dir = tempfile::tempdir().unwrap();
    let task = "trap 'sleep 0.6 && touch $DIR/cleaned; exit 0' TERM; echo $$ > $DIR/task.pid; \
                sleep 1000 & wait";
    let running = trc(dir.path(), &["-D", task]).env("RC_STOP_TIMEOUT", "30s").spawn();
    let pid = read_pid(dir.path(), "task.pid");
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(dir.path().join("cleaned").exists(), "the trap's cleanup was cut short\n{out:?}");
    assert!(!out.stderr.contains("Terminated"), "a cleanup command was stopped\n{out:?}");
    assert_gone(&[("the task", pid)], &out);
}
