//! trc's own sudden death (`kill -9`, the OOM killer): its tasks do not outlive it. A task's
//! leader dies with trc; what the leader started (a background child, a double-forked daemon)
//! is stopped by the next trc of the same instance before it starts anything; and a recorded
//! group whose number now belongs to another process is left alone.
//!
//! Every wait is on an event with the harness' generous deadline. Each `sleep` gets an
//! argument unique to this test process, so that exactly the test's own processes are counted.

mod common;

use common::sandbox::{comm, int_of, task, KillGroups, Sandbox};
use common::{process_alive, read_pid, wait_until, Spawned};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A `sleep` argument (seconds) that no other process on the machine uses.
fn marker(n: u32) -> String {
    format!("{}.{}", 4240 + n, std::process::id())
}

/// How many processes run `sleep ARG`.
fn copies(arg: &str) -> usize {
    let wanted = format!("sleep\0{arg}\0");
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    procs
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|s| s.parse::<i32>().is_ok()))
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .filter(|e| process_alive(e.file_name().to_str().unwrap().parse().unwrap()))
        .count()
}

/// A process's start time (clock ticks since boot, `/proc/PID/stat` field 22).
fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Shell code writing `what`'s pid to `$DIR/name` (atomically).
fn pid_to(name: &str, what: &str) -> String {
    format!("echo {what} > \"$DIR/{name}.tmp\"; mv \"$DIR/{name}.tmp\" \"$DIR/{name}\"")
}

#[test]
fn a_task_leader_dies_with_a_sigkilled_trc() {
    let s = Sandbox::new();
    let work = s.work("leader");
    let arg = marker(1);
    task(&work, "svc", &format!("exec sleep {arg}\n"));
    let mut trc = s.start(&work);
    let leader = s.wait_sleeping("svc");
    // Killed at the end should it outlive trc (as it did).
    let _orphans = KillGroups(vec![leader]);
    assert_eq!(copies(&arg), 1);
    trc.kill9();
    wait_until("the task's leader to die with trc", || !process_alive(leader));
    assert_eq!(copies(&arg), 0);
}

#[test]
fn what_a_dead_trc_left_is_stopped_before_the_next_one_starts_its_tasks() {
    let s = Sandbox::new();
    let work = s.work("left");
    let (child, daemon) = (marker(2), marker(3));
    let body = format!(
        "sleep {child} & {}\n( sleep {daemon} & {} ) &\nwait\n",
        pid_to("child.pid", "$!"),
        pid_to("daemon.pid", "$!")
    );
    task(&work, "svc", &body);
    let mut old = s.start(&work);
    let (old_child, old_daemon) = (read_pid(s.root(), "child.pid"), read_pid(s.root(), "daemon.pid"));
    wait_until("both sleeps to run", || {
        comm(old_child).as_deref() == Some("sleep") && comm(old_daemon).as_deref() == Some("sleep")
    });
    let leader = int_of(&s.status("svc").expect("svc's status")["pid"]);
    let _orphans = KillGroups(vec![leader]);
    old.kill9();
    // The leader dies with trc (PDEATHSIG), but not at the same instant: on a busy machine
    // the next trc could find it still there.
    wait_until("the task's leader to die with trc", || !process_alive(leader));
    std::fs::remove_file(s.root().join("child.pid")).unwrap();
    std::fs::remove_file(s.root().join("daemon.pid")).unwrap();

    let mut new = s.start(&work);
    assert_eq!(new.name, old.name, "the same instance");
    let running = new.running.as_mut().unwrap();
    let warning = running.wait_for_line("left by a trc");
    assert!(warning.contains(&format!("{leader} (sleep, sleep)")), "{warning}");
    // The new task has started (its first line ran): the old processes were gone by then.
    let new_child = read_pid(s.root(), "child.pid");
    assert!(!process_alive(old_child), "the old background child outlived the takeover");
    assert!(!process_alive(old_daemon), "the old daemon outlived the takeover");
    assert_ne!(new_child, old_child);
    let new_daemon = read_pid(s.root(), "daemon.pid");
    // A pid is known as soon as its fork is done; the copies are counted once both run sleep.
    wait_until("both new sleeps to run", || {
        comm(new_child).as_deref() == Some("sleep") && comm(new_daemon).as_deref() == Some("sleep")
    });
    assert_eq!(copies(&child), 1, "one copy of the background child");
    assert_eq!(copies(&daemon), 1, "one copy of the daemon");
}

#[test]
fn a_recorded_group_whose_number_was_reused_is_not_signalled() {
    let s = Sandbox::new();
    let work = s.work("reuse");
    // Two groups of the test's own: one recorded with its real start time (a leftover of the
    // dead trc, as far as anyone can tell), one with another (the number reused since).
    let group = |arg: &str| Spawned::spawn(Command::new("sleep").arg(arg).process_group(0));
    let (mut leftover, mut unrelated) = (group(&marker(4)), group(&marker(5)));
    let (leftover_pid, unrelated_pid) = (leftover.id() as i32, unrelated.id() as i32);
    let dir = s.runtime_dir("reuse");
    std::fs::create_dir_all(&dir).unwrap();
    for private in [dir.parent().unwrap(), &dir] {
        std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(dir.join("lock"), "").unwrap();
    std::fs::write(dir.join("pid"), "1\n").unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let groups = format!(
        "boot {}\n+{leftover_pid} {}\n+{unrelated_pid} {}\n",
        boot.trim(),
        start_time(leftover_pid),
        start_time(unrelated_pid) + 7
    );
    std::fs::write(dir.join("groups"), groups).unwrap();

    let mut trc = s.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_forever").env("RC_VERBOSE", "true").spawn();
    let warning = trc.wait_for_line("left by a trc");
    assert!(warning.contains(&format!("{leftover_pid} (sleep)")), "{warning}");
    assert!(!warning.contains(&unrelated_pid.to_string()), "{warning}");
    let mut status = None;
    wait_until("the leftover to be stopped", || {
        status = leftover.try_wait().unwrap();
        status.is_some()
    });
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.unwrap().signal(), Some(libc::SIGTERM));
    trc.wait_for_line("Work dir");
    assert!(unrelated.try_wait().unwrap().is_none(), "the unrelated process was signalled");
}
