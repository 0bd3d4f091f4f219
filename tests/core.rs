//! The core loop and the task state machine under combination and load, with the real `trc`
//! and `trcctl`: control verbs on the sync chain, a restart storm, resources after many
//! restarts and after a task is removed.
//!
//! Every wait is on an event with the harness' generous deadline.

mod common;

use common::sandbox::*;
use common::{process_alive, wait_until};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `trc.d/<file>` in `work`, executable when `exec`.
fn file(work: &Path, name: &str, text: &str, exec: bool) {
    use std::os::unix::fs::PermissionsExt;
    let path = work.join("trc.d").join(name);
    std::fs::write(&path, text).unwrap();
    if exec {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn state(s: &Sandbox, task: &str) -> Value {
    s.status(task).unwrap_or_else(|| panic!("status {task} refused"))
}

fn wait_state(s: &Sandbox, task: &str, want: &str) -> Value {
    let mut last = Value::Null;
    // Before its stage starts, a task is not known yet: that is "not yet" too.
    wait_until(&format!("{task} to be {want}"), || {
        last = s.status(task).unwrap_or(Value::Null);
        last["state"] == want
    });
    last
}

/// Lines of `$DIR/<name>` (0 when it does not exist).
fn lines(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(name)).map(|t| t.lines().count()).unwrap_or(0)
}

/// trc's open fds but its sockets: a control connection of a trcctl that has just exited may
/// still be open for a moment (trc closes it when it sees the end), and is not what these tests
/// count.
fn open_fds(pid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    dir.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| !target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A sync task that waits for `$DIR/go-NAME`, counting its runs in `$DIR/runs-NAME`.
fn gated_sync(work: &Path, name: &str) {
    let body =
        format!("echo run >> \"$DIR/runs-{name}\"; until [ -e \"$DIR/go-{name}\" ]; do sleep 0.05; done\n");
    file(work, &format!("sync.{name}"), &body, false);
}

// ----- verbs on the sync chain ------------------------------------------------------------

/// `start` of a sync task that has not had its turn is refused (it once started a second copy
/// beside the running one); `stop` of a pending one holds it down, and the chain skips it
/// instead of stalling; `start` later runs it, after the chain.
#[test]
fn sync_chain_start_waits_its_turn_and_stop_skips_a_pending_task() {
    let s = Sandbox::new();
    let work = s.work("app");
    for name in ["a", "b", "c"] {
        gated_sync(&work, name);
    }
    let _trc = s.start(&work);
    wait_state(&s, "a", "running");

    let out = s.ctl(&["start", "b"]);
    assert_ne!(out.code, 0, "start of a sync task before its turn: {out:?}");
    assert!(out.stderr.contains("waiting for its turn"), "{out:?}");
    assert_eq!(state(&s, "b")["state"], "pending");
    assert_eq!(lines(s.root(), "runs-b"), 0, "b ran beside a");
    // Starting the running one is nothing new.
    assert_eq!(s.ctl(&["--json", "start", "a"]).json()["starts"], 1);

    assert_eq!(s.ctl(&["--json", "stop", "c"]).json()["state"], "stopped");

    std::fs::write(s.root().join("go-a"), "").unwrap();
    wait_state(&s, "b", "running");
    assert_eq!(state(&s, "a")["state"], "finished");
    std::fs::write(s.root().join("go-b"), "").unwrap();
    wait_state(&s, "b", "finished");
    // The chain moved past c in the same step as b's exit: it is still held.
    assert_eq!(state(&s, "c")["state"], "stopped");
    assert_eq!(lines(s.root(), "runs-c"), 0);

    std::fs::write(s.root().join("go-c"), "").unwrap();
    s.ctl(&["--json", "start", "c"]).json();
    wait_state(&s, "c", "finished");
    assert_eq!(
        (lines(s.root(), "runs-a"), lines(s.root(), "runs-b"), lines(s.root(), "runs-c")),
        (1, 1, 1),
        "every sync task ran once"
    );
}

/// `stop` of the running sync task lets the chain go on; `start` of a task that has run puts
/// it next, after the one that runs now, never beside it.
#[test]
fn sync_chain_stop_of_the_running_task_goes_on_and_start_queues_it_next() {
    let s = Sandbox::new();
    let work = s.work("app");
    for name in ["a", "b"] {
        gated_sync(&work, name);
    }
    let _trc = s.start(&work);
    wait_state(&s, "a", "running");

    let st = s.ctl(&["--json", "stop", "a"]).json();
    assert_eq!(st["state"], "stopped", "{st}");
    wait_state(&s, "b", "running");

    // a goes next, after b: not now.
    let st = s.ctl(&["--json", "start", "a"]).json();
    assert_ne!(st["state"], "running", "a started beside b: {st}");
    assert_eq!(lines(s.root(), "runs-a"), 1);
    assert_eq!(state(&s, "b")["state"], "running");

    std::fs::write(s.root().join("go-b"), "").unwrap();
    let st = wait_state(&s, "a", "running");
    assert_eq!(st["starts"], 2, "{st}");
    std::fs::write(s.root().join("go-a"), "").unwrap();
    wait_state(&s, "a", "finished");
    assert_eq!((lines(s.root(), "runs-a"), lines(s.root(), "runs-b")), (2, 1));
}

// ----- a restart storm --------------------------------------------------------------------

/// 100 tasks that exit after 50 ms and restart at once, for ever (more starts a second than
/// this machine can make): `trcctl list` still answers and SIGTERM still ends trc promptly
/// (once, trc never waited for anything else and ignored both for 30 s and more).
#[test]
fn a_restart_storm_starves_neither_control_nor_signals() {
    let s = Sandbox::new();
    let work = s.work("storm");
    let text = "#!/bin/dash\n### BEGIN TRC\n# restart: always\n# restart-delay: 0\n# start-limit: none\n\
                ### END TRC\nexec sleep 0.05\n";
    for i in 0..100 {
        file(&work, &format!("async.s{i:03}"), text, true);
    }
    let mut trc = s.start(&work);
    let pid = trc.pid();
    let starts = |s: &Sandbox| -> (u64, Duration) {
        let asked = Instant::now();
        let Value::Array(tasks) = s.ctl(&["--json", "list"]).json() else { panic!("list: not an array") };
        (tasks.iter().map(|t| t["starts"].as_u64().unwrap()).sum(), asked.elapsed())
    };
    let mut slowest = Duration::ZERO;
    wait_until("the storm to reach 1,000 starts", || {
        let (n, took) = starts(&s);
        slowest = slowest.max(took);
        n >= 1000
    });
    // Generous for a loaded 2-core machine: the loop takes a request every pass.
    assert!(slowest < Duration::from_secs(5), "trcctl list took {slowest:?} during the storm");

    let asked = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_until("trc to end after SIGTERM", || !trc.alive());
    let took = asked.elapsed();
    let status = trc.terminate().expect("trc's status");
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?} to end the storm");
    // Every task has TRC_INSTANCE in its environment.
    let marker = format!("TRC_INSTANCE={}\0", trc.name);
    let left: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&p: &i32| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.windows(marker.len()).any(|w| w == marker.as_bytes()))
        })
        .collect();
    assert!(left.is_empty(), "processes of the storm left: {left:?}");
}

// ----- resources --------------------------------------------------------------------------

/// 1,000 restarts of a task leave trc's open fds where they were and its memory within a
/// small bound (the start-limit history no longer grows with `start-limit: none`).
#[test]
fn a_thousand_restarts_keep_fds_and_memory_flat() {
    let s = Sandbox::new();
    let work = s.work("app");
    let text = "#!/bin/dash\n### BEGIN TRC\n# restart: always\n# restart-delay: 0\n# start-limit: none\n\
                ### END TRC\necho run; exit 3\n";
    file(&work, "async.flap", text, true);
    let trc = s.start(&work);
    let pid = trc.pid();
    let held_at = |n: u64| {
        wait_until(&format!("flap to reach {n} starts"), || {
            state(&s, "flap")["starts"].as_u64().unwrap() >= n
        });
        s.ctl(&["--json", "stop", "flap"]).json();
        wait_state(&s, "flap", "stopped");
        // The connections of the trcctl runs above are closed by now or soon.
        let mut fds = 0;
        wait_until("trc's fds to settle", || {
            fds = open_fds(pid);
            std::thread::sleep(Duration::from_millis(20));
            fds == open_fds(pid)
        });
        (fds, rss_kib(pid))
    };
    let (fds_before, rss_before) = held_at(20);
    s.ctl(&["--json", "start", "flap"]).json();
    let (fds_after, rss_after) = held_at(1020);
    assert_eq!(fds_after, fds_before, "open fds after 1,000 restarts");
    assert!(
        rss_after < rss_before + 2048,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over 1,000 restarts (bound: 2 MiB)"
    );
}

/// A task removed from the work dir (`reload`) is stopped and forgotten: its log pipes, its
/// fds and its entry are gone.
#[test]
fn a_removed_task_holds_nothing() {
    let s = Sandbox::new();
    let work = s.work("app");
    file(&work, "async.keep", "exec sleep 1000\n", false);
    let trc = s.start(&work);
    let pid = trc.pid();
    s.wait_sleeping("keep");
    let base_fds = open_fds(pid);
    let runtime = s.runtime_dir(&trc.name);
    let fifos = || {
        let mut names: Vec<String> = std::fs::read_dir(&runtime)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("async."))
            .collect();
        names.sort();
        names
    };
    assert_eq!(fifos(), ["async.keep.stderr", "async.keep.stdout"]);

    file(&work, "async.gone", "exec sleep 1000\n", false);
    let report = s.ctl(&["--json", "reload"]).json();
    assert_eq!(report["added"], serde_json::json!(["gone"]), "{report}");
    let gone = s.wait_sleeping("gone");
    assert_eq!(fifos().len(), 4);
    assert!(open_fds(pid) > base_fds, "the new task's pipes are open");

    std::fs::remove_file(work.join("trc.d/async.gone")).unwrap();
    let report = s.ctl(&["--json", "reload"]).json();
    assert_eq!(report["removed"], serde_json::json!(["gone"]), "{report}");
    wait_until("the removed task to be gone from list", || {
        let Value::Array(tasks) = s.ctl(&["--json", "list"]).json() else { panic!() };
        tasks.iter().all(|t| t["name"] != "gone")
    });
    assert!(!process_alive(gone), "the removed task still runs");
    assert_eq!(fifos(), ["async.keep.stderr", "async.keep.stdout"], "its FIFOs are removed");
    let mut fds = 0;
    wait_until("trc's fds to return to where they were", || {
        fds = open_fds(pid);
        fds == base_fds
    });
    let out = s.ctl(&["status", "gone"]);
    assert_ne!(out.code, 0, "status of a removed task: {out:?}");
}

/// Boot and halt tasks run once and the trailing command is the user's own: trc refuses to
/// control them, and says why.
#[test]
fn boot_tasks_and_the_trailing_command_are_not_controlled() {
    let s = Sandbox::new();
    let work = s.work("app");
    file(&work, "boot.init", "true\n", false);
    let _trc = s.start_trc(s.trc(&work, &["sleep", "1000"]).env("RC_WAIT_POLICY", "wait_forever"));
    wait_state(&s, "cmd", "running");
    for verb in ["start", "stop", "restart"] {
        let out = s.ctl(&[verb, "init"]);
        assert_ne!(out.code, 0, "{verb} init: {out:?}");
        assert!(out.stderr.contains("boot task: it runs once"), "{verb} init: {out:?}");
        let out = s.ctl(&[verb, "cmd"]);
        assert_ne!(out.code, 0, "{verb} cmd: {out:?}");
        assert!(out.stderr.contains("the trailing command"), "{verb} cmd: {out:?}");
    }
    assert_eq!(state(&s, "cmd")["starts"], 1);
    assert_eq!(state(&s, "init")["state"], "finished");
}
