//! Signals for the app (issue #14): `--forward-signals` / `RC_FORWARD_SIGNALS` pass signals to
//! the async tasks (or those whose `forward-signals:` names them) and to the trailing command,
//! instead of ending trc; a `forward-signals:` that names a signal trc does not forward is
//! warned about. Every wait is on an event (a line, a file, a state) with the harness's
//! generous deadline.

mod common;

use common::sandbox::{python, Sandbox};
use common::{wait_until, DEADLINE};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `trc.d/<file>` in `work`: a header block of `directives` (the first on line 2), then
/// `body`.
fn task_file(work: &Path, file: &str, directives: &[&str], body: &str) {
    let header: String = directives.iter().map(|d| format!("# {d}\n")).collect();
    let text = format!("### BEGIN TRC\n{header}### END TRC\n{body}\n");
    std::fs::write(work.join("trc.d").join(file), text).unwrap();
}

/// A python3 program that says each HUP it gets on stdout, and marks `$DIR/<name>.armed` once
/// its handler is set (a HUP before that would kill it).
const HUP_PROGRAM: &str = r#"import os, signal, sys
name = sys.argv[1]
count = 0
def on_hup(sig, frame):
    global count
    count += 1
    print(f"got HUP {count}", flush=True)
signal.signal(signal.SIGHUP, on_hup)
mark = os.path.join(os.environ["DIR"], name + ".armed")
open(mark + ".tmp", "w").close()
os.rename(mark + ".tmp", mark)
while True:
    signal.pause()
"#;

/// Async task `name` running [`HUP_PROGRAM`].
fn hup_task(s: &Sandbox, work: &Path, name: &str, directives: &[&str]) {
    let program = s.root().join("hup.py");
    if !program.exists() {
        std::fs::write(&program, HUP_PROGRAM).unwrap();
    }
    let py = python().unwrap_or("python3");
    task_file(work, &format!("async.{name}"), directives, &format!("exec {py} \"$DIR/hup.py\" {name}"));
}

fn wait_armed(s: &Sandbox, name: &str) {
    let mark = s.root().join(format!("{name}.armed"));
    wait_until(&format!("{name} to handle HUP"), || mark.exists());
}

/// `--forward-signals HUP`: a HUP reaches the task and trc keeps running (a second one reaches
/// it too); TERM still ends trc with 143.
#[test]
fn a_forwarded_hup_reaches_the_task_and_trc_keeps_running() {
    let s = Sandbox::new();
    let work = s.work("app");
    hup_task(&s, &work, "app", &[]);
    let mut trc = s.trc(&work, &["--forward-signals", "HUP", "--verbose"]).spawn();
    wait_armed(&s, "app");
    trc.signal(libc::SIGHUP);
    trc.wait_for_line("app: got HUP 1");
    assert!(trc.child.try_wait().unwrap().is_none(), "trc ended on a forwarded HUP");
    trc.signal(libc::SIGHUP);
    trc.wait_for_line("app: got HUP 2");
    trc.signal(libc::SIGTERM);
    let out = trc.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert_eq!(out.stdout.matches("forwarding SIGHUP to app\n").count(), 2, "{out:?}");
}

/// Without the option, TrivialRC's rule: a HUP ends trc with 129 (and is not passed on).
#[test]
fn an_unforwarded_hup_ends_trc_with_129() {
    let s = Sandbox::new();
    let work = s.work("app");
    hup_task(&s, &work, "app", &[]);
    let trc = s.trc(&work, &[]).spawn();
    wait_armed(&s, "app");
    trc.signal(libc::SIGHUP);
    let out = trc.wait();
    assert_eq!(out.code(), 129, "{out:?}");
    assert!(!out.stdout.contains("got HUP"), "{out:?}");
}

/// RC_FORWARD_SIGNALS=HUP and `forward-signals: HUP` on one of two tasks: only that one gets
/// it.
#[test]
fn forward_signals_directive_chooses_the_tasks() {
    let s = Sandbox::new();
    let work = s.work("app");
    hup_task(&s, &work, "a", &["forward-signals: HUP"]);
    hup_task(&s, &work, "b", &[]);
    let mut trc = s.trc(&work, &[]).env("RC_FORWARD_SIGNALS", "HUP").env("RC_VERBOSE", "true").spawn();
    wait_armed(&s, "a");
    wait_armed(&s, "b");
    trc.signal(libc::SIGHUP);
    trc.wait_for_line("a: got HUP 1");
    trc.signal(libc::SIGTERM);
    let out = trc.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(out.stdout.lines().any(|l| l.ends_with("forwarding SIGHUP to a")), "{out:?}");
    assert!(!out.stdout.contains("b: got HUP"), "{out:?}");
}

/// A task that names HUP in its `forward-signals:` chooses the recipients even while it does
/// not run (waiting to restart): the other async task does not get the HUP, trc keeps running.
#[test]
fn a_directive_on_a_task_waiting_to_restart_still_chooses_the_recipients() {
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(
        &work,
        "async.a",
        &["forward-signals: HUP", "restart: always", "restart-delay: 1h", "restart-max-delay: 1h"],
        "exit 1",
    );
    task_file(&work, "async.b", &[], "exec sleep 1000");
    let mut sup = s.start_trc(
        s.trc(&work, &["--forward-signals", "HUP", "--verbose"]).env("RC_WAIT_POLICY", "wait_forever"),
    );
    wait_state(&s, "a", "waiting");
    let b = s.wait_sleeping("b");
    let trc = sup.running.as_mut().unwrap();
    trc.signal(libc::SIGHUP);
    let line = trc.wait_for_line("forwarding SIGHUP to ");
    assert!(line.ends_with("forwarding SIGHUP to no task (none runs)\n"), "{line:?}");
    // trc still answers, and b is the same process.
    let st = s.status("b").expect("status b");
    assert_eq!((st["state"].as_str(), st["pid"].as_i64()), (Some("running"), Some(b as i64)), "{st}");
}

/// `--forward-signals HUP` and only a trailing command (the container's main program): the
/// HUP reaches it and trc keeps running.
#[test]
fn a_forwarded_signal_reaches_the_trailing_command() {
    let Some(py) = python() else {
        return common::skip("a_forwarded_signal_reaches_the_trailing_command", "python3");
    };
    let s = Sandbox::new();
    let work = s.work("app");
    let program = s.root().join("hup.py");
    std::fs::write(&program, HUP_PROGRAM).unwrap();
    let mut trc = s
        .trc(&work, &["--forward-signals", "HUP", "--verbose", py, program.to_str().unwrap(), "main"])
        .spawn();
    wait_armed(&s, "main");
    trc.signal(libc::SIGHUP);
    trc.wait_for_line("got HUP 1");
    assert!(trc.child.try_wait().unwrap().is_none(), "trc ended on a forwarded HUP");
    trc.signal(libc::SIGHUP);
    trc.wait_for_line("got HUP 2");
    trc.signal(libc::SIGTERM);
    let out = trc.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert_eq!(out.stdout.matches("forwarding SIGHUP to cmd\n").count(), 2, "{out:?}");
}

/// A `forward-signals:` directive naming a signal that trc does not forward (no
/// `--forward-signals` for it) is warned about once, at start, without `--verbose`: naming the
/// file and line, the signal and the option.
#[test]
fn a_directive_naming_a_signal_trc_does_not_forward_is_warned_about() {
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "async.a", &["restart: never", "forward-signals: HUP,USR2"], "exit 0");
    let path = work.join("trc.d/async.a");
    let out = s.trc(&work, &[]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    let want = format!(
        "{}:3: \"forward-signals:\" names HUP, USR2, which trc does not forward: trc forwards only the signals of --forward-signals or RC_FORWARD_SIGNALS (now: none)",
        path.display()
    );
    assert_eq!(out.stderr.matches(&want).count(), 1, "want {want:?}: {out:?}");
    // With USR2 forwarded, HUP alone is named.
    let out = s.trc(&work, &[]).env("RC_FORWARD_SIGNALS", "USR2").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let want = format!("{}:3: \"forward-signals:\" names HUP, which trc does not forward", path.display());
    assert!(out.stderr.contains(&want) && out.stderr.contains("(now: USR2)"), "want {want:?}: {out:?}");
    // Every signal it names forwarded: no warning.
    let out = s.trc(&work, &["--forward-signals", "HUP,USR2,TERM"]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(!out.stderr.contains("forward-signals"), "{out:?}");
}

/// `trcctl --json status TASK` until its state is `state`.
fn wait_state(s: &Sandbox, task: &str, state: &str) {
    let until = Instant::now() + DEADLINE;
    loop {
        let st = s.status(task).unwrap_or_default();
        if st["state"] == state {
            return;
        }
        assert!(Instant::now() < until, "timed out waiting for {task} to be {state}; last status: {st}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
