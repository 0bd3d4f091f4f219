//! trc as PID 1 of a new PID namespace (`unshare --pid --fork --kill-child --mount-proc`), as in
//! a container: orphans are reaped, and signals work (PID 1 only gets the signals it handles).
mod common;

use common::{can_use_namespaces, trc_bin, Running};
use std::process::{Command, Stdio};

/// `trc ARGS` as PID 1 of a new PID namespace, run in `cwd` (an empty dir: no trc.d there).
fn in_namespace(cwd: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.current_dir(cwd);
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"]).arg(trc_bin()).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RC_") {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

#[test]
fn orphans_are_reaped_and_a_task_can_stop_pid_1() {
    if !can_use_namespaces("orphans_are_reaped_and_a_task_can_stop_pid_1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("orphan.pid");
    // The async task double-forks a short-lived process: its parent exits at once, so it is
    // re-parented to PID 1 (trc) and would stay a zombie if trc did not reap it. The sync task
    // waits (bounded) until /proc has no entry for it at all, checks that no zombie is left,
    // then signals PID 1.
    let orphan = format!("sh -c 'sleep 0.3 & echo $! > {}'; exec sleep 60", pidfile.display());
    let check = format!(
        r#"[ "$MAINPID" = 1 ] || {{ echo "MAINPID=$MAINPID"; exit 9; }}
        for i in $(seq 300); do [ -s {p} ] && break; sleep 0.05; done
        pid=$(cat {p})
        for i in $(seq 600); do [ -e /proc/$pid ] || break; sleep 0.05; done
        if [ -e /proc/$pid ]; then echo "not reaped: $(cat /proc/$pid/stat)"; exit 8; fi
        if ps -eo stat= | grep -q '^Z'; then echo "zombies left"; ps -eo pid,stat,comm; exit 7; fi
        echo reaped
        kill -TERM 1
        exec sleep 60"#,
        p = pidfile.display()
    );
    let mut run =
        Running::start(in_namespace(dir.path(), &["--wait-policy", "wait_all", "-D", &orphan, "-F", &check]));
    run.wait_for_line("reaped");
    let out = run.wait();
    assert_eq!(out.code(), 143, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
}

#[test]
fn a_signal_from_outside_ends_pid_1_with_128_plus_n() {
    if !can_use_namespaces("a_signal_from_outside_ends_pid_1_with_128_plus_n") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut run =
        Running::start(in_namespace(dir.path(), &["-D", "echo up; exec sleep 60", "-D", "exec sleep 60"]));
    run.wait_for_line("up");
    // trc is the child of the unshare process; signal it by its pid outside the namespace.
    let unshare = run.pid();
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let trc: i32 = children.split_whitespace().next().expect("trc under unshare").parse().unwrap();
    // SAFETY: kill(2) on a process of our own test, which is alive (it printed "up").
    assert_eq!(unsafe { libc::kill(trc, libc::SIGINT) }, 0);
    let out = run.wait();
    assert_eq!(out.code(), 130, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    // Everything in the namespace went with PID 1.
    assert!(!common::process_alive(trc));
}
