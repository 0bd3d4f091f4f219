//! trcctl and the control socket, against the real `trc` and `trcctl` binaries: the verbs
//! (list, status, stop, start, restart, signal, logs, ensure, start-all, reload), trcctl's exit
//! codes, the socket's permissions and peer check, a protocol peer that misbehaves, and how
//! instances are named, found, nested and taken over when stale.
//!
//! Isolation: every test has its own `XDG_RUNTIME_DIR` (for trc and trcctl alike), so the tests
//! run in parallel without seeing each other's instances. Every wait is on an event with the
//! harness' generous deadline; the only fixed pause is the window of one negative check (a
//! stopped task is not restarted), which can only make that test pass late, never fail
//! wrongly.

mod common;

use common::sandbox::*;
use common::{can_use_namespaces, process_alive, skip, wait_until, Running};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

// ----- list, status, exit codes ---------------------------------------------------------------

#[test]
fn list_status_and_exit_codes() {
    let s = Sandbox::new();
    // Nothing runs yet: no manager reachable.
    let out = s.ctl(&["list"]);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("no trc instance"), "{out:?}");

    let work = s.work("app");
    task(&work, "web", "exec sleep 1000\n");
    task(&work, "db", "exec sleep 1000\n");
    let _trc = s.start(&work);
    let web = s.wait_sleeping("web");
    let db = s.wait_sleeping("db");

    let Value::Array(tasks) = s.ctl(&["--json", "list"]).json() else { panic!("list: not an array") };
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for t in &tasks {
        assert_eq!(t["stage"], "async", "{t}");
        assert_eq!(t["state"], "running", "{t}");
        let want = if t["name"] == "web" { web } else { db };
        assert_eq!(int_of(&t["pid"]), want, "{t}");
        assert!(process_alive(want));
    }
    let st = s.status("web").expect("status web");
    assert_eq!((st["name"].as_str(), st["state"].as_str()), (Some("web"), Some("running")), "{st}");
    assert_eq!(int_of(&st["pid"]), web);
    assert_eq!(st["starts"], 1, "{st}");
    // The table, and auto (no --manager) picks the only running trc.
    let mut cmd = s.trcctl();
    cmd.args(["list"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("NAME"), "{out:?}");
    assert!(out.stdout.lines().any(|l| l.starts_with("web ") && l.contains("running")), "{out:?}");

    let out = s.ctl(&["status", "nope"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("unknown task \"nope\""), "{out:?}");
    let out = s.ctl(&["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = s.ctl(&["frobnicate"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = s.ctl(&["signal", "web", "NOSUCHSIG"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = s.ctl(&["--instance", "nosuch", "list"]);
    assert_eq!(out.code, 69, "{out:?}");
}

// ----- stop, start, restart -----------------------------------------------------------------

#[test]
fn stop_holds_a_task_down_start_and_restart_bring_it_back() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(
        &work,
        "web",
        "### BEGIN TRC\n# restart: always\n# restart-delay: 100ms\n### END TRC\nexec sleep 1000\n",
    );
    // The default wait policy (wait_any): a task held down by `stop` must not end the group.
    let mut trc = s.start_trc(s.trc(&work, &[]));
    let pid = s.wait_sleeping("web");

    let st = s.ctl(&["--json", "stop", "web"]).json();
    assert!(!process_alive(pid), "the task (pid {pid}) still runs after stop returned");
    assert_eq!(st["state"], "stopped", "{st}");
    assert!(st["pid"].is_null(), "{st}");

    // Negative check: with restart: always and a 100 ms delay, a restart would come well
    // within this window.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(trc.alive(), "trc ended the group when a task was stopped on request (wait_any)");
    let st = s.status("web").expect("status web");
    assert_eq!(st["state"], "stopped", "a stopped task was restarted: {st}");
    assert_eq!(st["starts"], 1, "{st}");
    // Stopping it again is fine.
    assert_eq!(s.ctl(&["--json", "stop", "web"]).json()["state"], "stopped");

    let st = s.ctl(&["--json", "start", "web"]).json();
    assert_eq!(st["state"], "running", "{st}");
    let started = int_of(&st["pid"]);
    assert_ne!(started, pid);
    assert!(process_alive(started));
    let started = s.wait_sleeping("web");

    let st = s.ctl(&["--json", "restart", "web"]).json();
    assert_eq!(st["state"], "running", "{st}");
    let restarted = int_of(&st["pid"]);
    assert_ne!(restarted, started);
    assert!(!process_alive(started), "the old process (pid {started}) survived restart");
    assert!(process_alive(restarted));
    assert_eq!(st["starts"], 3, "{st}");
    assert!(trc.alive());
}

// ----- signal ---------------------------------------------------------------------------------

#[test]
fn signal_reaches_the_tasks_process_group() {
    let s = Sandbox::new();
    let work = s.work("app");
    // The task and a child of it (same process group) each trap HUP and write a file; the
    // loops survive the interrupted `wait` (`|| :`), so the task keeps running.
    task(
        &work,
        "hup",
        &format!(
            "( trap 'echo child >> \"$DIR/got-child\"' HUP; {}; while :; do sleep 1 & wait $! || :; done ) &\n\
             trap 'echo hup >> \"$DIR/got\"' HUP\n\
             {}\n\
             while :; do sleep 1 & wait $! || :; done\n",
            write_file("child-ready", "1"),
            write_file("ready", "1"),
        ),
    );
    let _trc = s.start(&work);
    wait_file(&s.root().join("ready"));
    wait_file(&s.root().join("child-ready"));
    let pid = int_of(&s.status("hup").unwrap()["pid"]);

    let out = s.ctl(&["signal", "hup", "HUP"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the task's HUP trap", || {
        std::fs::read_to_string(s.root().join("got")).is_ok_and(|t| t.contains("hup"))
    });
    wait_until("the HUP trap of the task's child", || {
        std::fs::read_to_string(s.root().join("got-child")).is_ok_and(|t| t.contains("child"))
    });
    let st = s.status("hup").unwrap();
    assert_eq!((st["state"].as_str(), int_of(&st["pid"])), (Some("running"), pid), "{st}");

    let out = s.ctl(&["signal", "nope", "HUP"]);
    assert_eq!(out.code, 1, "{out:?}");
}

// ----- logs -----------------------------------------------------------------------------------

#[test]
fn logs_show_recent_lines() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(&work, "talk", "for i in 1 2 3 4 5; do echo line$i; done\nexec sleep 1000\n");
    let _trc = s.start(&work);
    wait_until("line5 in the task's log", || {
        let out = s.ctl(&["logs", "talk"]);
        out.code == 0 && out.stdout.contains("line5")
    });
    let out = s.ctl(&["logs", "talk"]);
    assert_eq!(out.stdout, "line1\nline2\nline3\nline4\nline5\n", "{out:?}");
    let out = s.ctl(&["logs", "-n", "3", "talk"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "line3\nline4\nline5\n", "{out:?}");
    let out = s.ctl(&["--json", "logs", "-n", "1", "talk"]);
    let line: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!((line["stream"].as_str(), line["text"].as_str()), (Some("stdout"), Some("line5")), "{out:?}");
    let out = s.ctl(&["logs", "nope"]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn logs_follow_prints_new_lines() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(
        &work,
        "talk",
        "echo ready\nuntil [ -e \"$DIR/go\" ]; do sleep 0.02; done\necho after-go\nexec sleep 1000\n",
    );
    let _trc = s.start(&work);
    wait_until("ready in the task's log", || s.ctl(&["logs", "talk"]).stdout.contains("ready"));

    let mut cmd = s.trcctl();
    cmd.args(["--manager", "trc", "logs", "-f", "talk"]);
    let mut follower = Running::start(cmd);
    // The recent line comes with the reply: from then on trcctl follows.
    follower.wait_for_line("ready");
    assert!(!follower.stdout.contains("after-go"));
    std::fs::write(s.root().join("go"), "").unwrap();
    let line = follower.wait_for_line("after-go");
    assert_eq!(line, "after-go\n");
    assert!(follower.child.try_wait().unwrap().is_none(), "trcctl logs -f exited");
    let _ = follower.child.kill();
    let _ = follower.child.wait();
    // trc goes on serving once the follower is gone.
    assert_eq!(s.list(&[]).len(), 1);
}

/// `trcctl logs -f quiet | head -1`: once its reader is gone, the follower of a task that has
/// gone quiet ends at once (it waits on its stdout too), not at the task's next line.
#[test]
fn logs_follow_ends_when_its_reader_goes_away() {
    use std::io::BufRead;
    let s = Sandbox::new();
    let work = s.work("app");
    task(&work, "quiet", "echo first\nexec sleep 1000\n");
    let _trc = s.start(&work);
    s.wait_sleeping("quiet");

    let mut cmd = s.trcctl();
    cmd.args(["--manager", "trc", "logs", "-f", "quiet"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut follower = common::Spawned::spawn(&mut cmd);
    let mut head = std::io::BufReader::new(follower.stdout.take().unwrap());
    let mut line = String::new();
    head.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    drop(head); // `head -1` exits
    let status = follower.wait_deadline(common::DEADLINE);
    assert!(status.success(), "trcctl logs -f: {status}");
    assert_eq!(s.list(&[]).len(), 1);
}

// ----- ensure ---------------------------------------------------------------------------------

#[test]
fn ensure_registers_updates_and_keeps_a_task() {
    let s = Sandbox::new();
    let work = s.root().join("app");
    std::fs::create_dir(&work).unwrap(); // no trc.d yet: ensure creates it
    let _trc = s.start(&work);
    let marker = s.root().join("marker");
    let marker_s = marker.to_str().unwrap();
    let script = "echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec sleep 1000";

    let out = s.ctl(&["--json", "ensure", "svc", "--", "sh", "-c", script, "sh", marker_s]).json();
    assert_eq!(out["ensured"], "created", "{out}");
    assert_eq!(out["task"]["state"], "running", "{out}");
    let pid = int_of(&out["task"]["pid"]);
    let file = std::fs::read_to_string(work.join("trc.d/async.svc")).expect("trc.d/async.svc");
    assert!(file.starts_with("### BEGIN TRC\n"), "{file}");
    let header = &file[..file.find("### END TRC\n").expect("an END TRC line")];
    assert!(header.lines().any(|l| l == "# restart: always"), "{file}");
    // The command as an argv, no shell needed to run it.
    assert!(header.lines().any(|l| l.starts_with("# command: sh -c ")), "{file}");
    assert!(header.contains(marker_s), "{file}");
    assert_eq!(wait_file(&marker).trim(), pid.to_string(), "the marker holds the task's pid");

    // The same command: nothing to do, the same process.
    let out = s.ctl(&["--json", "ensure", "svc", "--", "sh", "-c", script, "sh", marker_s]).json();
    assert_eq!(out["ensured"], "unchanged", "{out}");
    assert_eq!(int_of(&out["task"]["pid"]), pid, "{out}");
    assert_eq!(out["task"]["starts"], 1, "{out}");
    // Without a command: it exists, so it is just made sure of.
    let out = s.ctl(&["--json", "ensure", "svc"]).json();
    assert_eq!((out["ensured"].as_str(), int_of(&out["task"]["pid"])), (Some("unchanged"), pid), "{out}");

    // A changed command: the file is rewritten and the task restarted.
    std::fs::remove_file(&marker).unwrap();
    let changed = script.replace("1000", "999");
    let out = s.ctl(&["--json", "ensure", "svc", "--", "sh", "-c", &changed, "sh", marker_s]).json();
    assert_eq!(out["ensured"], "updated", "{out}");
    let new = int_of(&out["task"]["pid"]);
    assert_ne!(new, pid, "{out}");
    assert!(!process_alive(pid), "the old process (pid {pid}) survived the update");
    assert_eq!(wait_file(&marker).trim(), new.to_string());
    let file = std::fs::read_to_string(work.join("trc.d/async.svc")).unwrap();
    assert!(file.contains("sleep 999") && !file.contains("sleep 1000"), "{file}");

    // restart: always took effect: a killed task comes back.
    wait_until("the updated task to run sleep", || comm(new).as_deref() == Some("sleep"));
    // SAFETY: kill(2) of the task's pid, which trc has not reaped (it runs sleep).
    unsafe { libc::kill(new, libc::SIGKILL) };
    wait_until("the killed ensured task to be restarted", || {
        s.status("svc").is_some_and(|st| st["state"] == "running" && st["pid"].as_i64() != Some(new as i64))
    });

    let out = s.ctl(&["ensure", "ghost"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("unknown task"), "{out:?}");
    assert!(!work.join("trc.d/async.ghost").exists());
}

#[test]
fn ensure_cwd_and_env_take_effect() {
    let s = Sandbox::new();
    let work = s.work("app");
    let _trc = s.start(&work);
    let place = s.root().join("some place");
    std::fs::create_dir(&place).unwrap();
    let out_file = s.root().join("env-out");
    let out = s
        .ctl(&[
            "--json",
            "ensure",
            "envy",
            "--cwd",
            place.to_str().unwrap(),
            "--env",
            "K=v1",
            "--env",
            "L=two words",
            "--",
            "sh",
            "-c",
            "{ pwd; echo \"$K\"; echo \"$L\"; } > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec sleep 1000",
            "sh",
            out_file.to_str().unwrap(),
        ])
        .json();
    assert_eq!(out["ensured"], "created", "{out}");
    let text = wait_file(&out_file);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert_eq!(std::fs::canonicalize(lines[0]).unwrap(), std::fs::canonicalize(&place).unwrap(), "{text:?}");
    assert_eq!(&lines[1..], ["v1", "two words"], "{text:?}");

    // A relative --cwd is trcctl's directory's (the sandbox root here), not trc's.
    let rel_out = s.root().join("rel-out");
    let out = s.ctl(&[
        "ensure",
        "rel",
        "--cwd",
        "some place",
        "--",
        "sh",
        "-c",
        "pwd > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec sleep 1000",
        "sh",
        rel_out.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let text = wait_file(&rel_out);
    assert_eq!(
        std::fs::canonicalize(text.trim()).unwrap(),
        std::fs::canonicalize(&place).unwrap(),
        "{text:?}"
    );
}

// ----- start-all ------------------------------------------------------------------------------

#[test]
fn start_all_starts_the_stopped_tasks() {
    let s = Sandbox::new();
    let work = s.work("app");
    for name in ["a", "b", "c"] {
        task(&work, name, "exec sleep 1000\n");
    }
    let _trc = s.start(&work);
    let a = s.wait_sleeping("a");
    let b = s.wait_sleeping("b");
    let c = s.wait_sleeping("c");
    for name in ["a", "b"] {
        assert_eq!(s.ctl(&["--json", "stop", name]).json()["state"], "stopped");
    }
    assert!(!process_alive(a) && !process_alive(b));

    let started = s.ctl(&["--json", "start-all"]).json();
    let mut names: Vec<String> =
        started.as_array().expect("start-all: an array").iter().map(str_of).collect();
    names.sort();
    assert_eq!(names, ["a", "b"], "{started}");
    for (name, old) in [("a", a), ("b", b)] {
        let st = s.status(name).unwrap();
        assert_eq!(st["state"], "running", "{st}");
        let pid = int_of(&st["pid"]);
        assert_ne!(pid, old);
        assert!(process_alive(pid));
    }
    assert_eq!(int_of(&s.status("c").unwrap()["pid"]), c, "a running task was restarted");
}

// ----- reload ---------------------------------------------------------------------------------

#[test]
fn reload_applies_the_work_dir() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(&work, "keep", "exec sleep 1000\n");
    task(&work, "gone", "exec sleep 1000\n");
    task(&work, "change", &format!("{}\nexec sleep 1000\n", write_file("change-v1", "1")));
    let _trc = s.start(&work);
    let keep = s.wait_sleeping("keep");
    let gone = s.wait_sleeping("gone");
    let change = s.wait_sleeping("change");

    // A bad directive: reload fails, naming the file and line, and changes nothing (not even
    // what else is new in the work dir).
    task(&work, "bad", "### BEGIN TRC\n# restart: sometimes\n### END TRC\nexec sleep 1000\n");
    task(&work, "extra", &format!("{}\nexec sleep 1000\n", write_file("extra-ran", "1")));
    let before = s.list(&[]);
    let out = s.ctl(&["reload"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("trc.d/async.bad:2"), "{out:?}");
    assert_eq!(s.list(&[]), before, "a failed reload changed the tasks");
    assert!(!s.root().join("extra-ran").exists());
    std::fs::remove_file(work.join("trc.d/async.bad")).unwrap();
    std::fs::remove_file(work.join("trc.d/async.extra")).unwrap();

    task(&work, "new", &format!("{}\nexec sleep 1000\n", write_file("new-ran", "1")));
    std::fs::remove_file(work.join("trc.d/async.gone")).unwrap();
    task(&work, "change", &format!("{}\nexec sleep 1000\n", write_file("change-v2", "1")));
    let report = s.ctl(&["--json", "reload"]).json();
    for (field, want) in
        [("added", "new"), ("removed", "gone"), ("restarted", "change"), ("unchanged", "keep")]
    {
        assert_eq!(report[field], serde_json::json!([want]), "{field}: {report}");
    }
    wait_file(&s.root().join("new-ran"));
    assert_eq!(s.status("new").expect("status new")["state"], "running");
    wait_until("the removed task's process to end", || !process_alive(gone));
    wait_file(&s.root().join("change-v2"));
    let st = s.status("change").unwrap();
    assert_eq!(st["state"], "running", "{st}");
    assert_ne!(int_of(&st["pid"]), change, "{st}");
    assert!(!process_alive(change));
    assert_eq!(int_of(&s.status("keep").unwrap()["pid"]), keep, "an unchanged task was restarted");
    wait_until("the removed task to leave the list", || !s.list(&[]).iter().any(|(n, _)| n == "gone"));
    let names: Vec<String> = s.list(&[]).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["change", "keep", "new"]);
    assert_eq!(s.ctl(&["status", "gone"]).code, 1);
}

// ----- the socket -----------------------------------------------------------------------------

#[test]
fn socket_and_runtime_dir_are_private() {
    let s = Sandbox::new();
    let work = s.work("app");
    let trc = s.start(&work);
    let dir = s.runtime_dir(&trc.name);
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    assert_eq!(mode(dir.parent().unwrap()), 0o700, "{}", dir.parent().unwrap().display());
    let sock = dir.join("control.sock");
    assert!(std::fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    assert_eq!(mode(&sock), 0o600, "{}", sock.display());
}

/// A command run as uid/gid 65534 (nobody), with `CAP_DAC_OVERRIDE` when `with_cap` (which
/// lets it through the 0700 runtime dir and the 0600 socket, so that trc's own peer check is
/// what stops it).
fn as_nobody(s: &Sandbox, with_cap: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
    if with_cap {
        cmd.args(["--inh-caps", "+dac_override", "--ambient-caps", "+dac_override"]);
    }
    cmd.env_remove("TRC_INSTANCE")
        .env_remove("TRCCTL_MANAGER")
        .env("XDG_RUNTIME_DIR", s.xdg())
        .current_dir("/")
        .stdin(Stdio::null());
    cmd
}

/// A running trc whose runtime base (and the dirs above it) anyone may enter: only trc's own
/// dirs may keep others out.
fn open_sandbox_trc(s: &Sandbox) -> Sup {
    for p in [s.root().to_path_buf(), s.xdg()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let work = s.work("app");
    task(&work, "web", "exec sleep 1000\n");
    s.start(&work)
}

#[test]
fn peers_of_another_uid_are_refused() {
    if !can_switch_uid("peers_of_another_uid_are_refused") {
        return;
    }
    let s = Sandbox::new();
    let trc = open_sandbox_trc(&s);
    let sock = s.runtime_dir(&trc.name).join("control.sock");

    // With dac_override it gets through the 0700 dir and the 0600 socket: SO_PEERCRED refuses.
    // trc may answer and close before the request is written: EPIPE is expected then.
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  s.connect(sys.argv[1])\n\
                  try:\n    s.sendall(b'{\"v\":1,\"cmd\":\"list\"}\\n')\n\
                  except OSError:\n    pass\n\
                  sys.stdout.write(s.makefile().readline())\n";
    let mut cmd = as_nobody(&s, true);
    cmd.args([python().unwrap(), "-c", script, sock.to_str().unwrap()]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    let reply: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(str_of(&reply["error"]).contains("permission denied"), "{reply}");
    assert!(reply.get("tasks").is_none(), "{reply}");

    // Without it, the runtime dir keeps it out: no manager reachable.
    for args in [vec!["list"], vec!["--instance", trc.name.as_str(), "list"]] {
        let mut cmd = as_nobody(&s, false);
        cmd.args([TRCCTL, "--manager", "trc"]).args(&args);
        let out = run(cmd);
        assert_eq!(out.code, 69, "{args:?}: {out:?}");
    }
    // And the owner still gets through.
    assert_eq!(s.list(&[]).len(), 1);
}

/// trcctl run by a uid that trc refuses says what trc said (exit 1, "permission denied"), every
/// time: it used to race (trc answered and closed before trcctl had written its request; the
/// write failed with EPIPE and trcctl reported "Broken pipe", 69).
#[test]
fn trcctl_reports_the_refusal_of_another_uid() {
    if !can_switch_uid("trcctl_reports_the_refusal_of_another_uid") {
        return;
    }
    let s = Sandbox::new();
    let trc = open_sandbox_trc(&s);
    let dir = s.runtime_dir(&trc.name);
    // The race goes either way (about one try in three here): many tries make the wrong way
    // all but certain to show.
    for _ in 0..100 {
        let mut cmd = as_nobody(&s, true);
        cmd.args([TRCCTL, "--manager", "trc", "--instance", dir.to_str().unwrap(), "list"]);
        let out = run(cmd);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("permission denied"), "{out:?}");
    }
}

#[test]
fn bad_clients_get_errors_and_block_nobody() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(&work, "web", "exec sleep 1000\n");
    let mut trc = s.start(&work);
    let sock = s.runtime_dir(&trc.name).join("control.sock");

    // Clients that connect and never finish a request, kept open throughout.
    let _idle = connect(&sock);
    let mut half = connect(&sock);
    half.write_all(br#"{"v":1,"#).unwrap();
    assert_eq!(s.list(&[]).len(), 1, "trcctl list with idle clients connected");

    let mut conn = connect(&sock);
    let reply = request(&mut conn, b"not json\n");
    assert_eq!((reply["v"].as_u64(), reply["ok"].as_bool()), (Some(1), Some(false)), "{reply}");
    assert!(str_of(&reply["error"]).contains("malformed"), "{reply}");
    // The same connection answers a good request after it.
    let reply = request(&mut conn, b"{\"v\":1,\"cmd\":\"list\"}\n");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["tasks"][0]["name"], "web", "{reply}");
    let reply = request(&mut conn, b"{\"v\":1,\"cmd\":\"fly\"}\n");
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(str_of(&reply["error"]).contains("fly"), "{reply}");
    let reply = request(&mut conn, b"{\"v\":2,\"cmd\":\"list\"}\n");
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(str_of(&reply["error"]).contains("version"), "{reply}");
    let reply = request(&mut conn, b"{\"cmd\":\"list\"}\n");
    assert_eq!(reply["ok"], false, "{reply}");
    let reply = request(&mut conn, b"{\"v\":1,\"cmd\":\"status\"}\n");
    assert_eq!(reply["ok"], false, "{reply}");
    let reply = request(&mut conn, b"{\"v\":1,\"cmd\":\"status\",\"task\":\"web\"}\n");
    assert_eq!((reply["ok"].as_bool(), reply["task"]["state"].as_str()), (Some(true), Some("running")));

    // 8 MiB without a newline: an error reply, and the connection is closed (the writer may
    // see EPIPE or ECONNRESET: trc stops reading).
    let big = connect(&sock);
    let mut writer = big.try_clone().unwrap();
    let flood = std::thread::spawn(move || writer.write_all(&vec![b'x'; 8 << 20]).err());
    let reply = read_reply(&big);
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(str_of(&reply["error"]).contains("request too long"), "{reply}");
    let write_error = flood.join().unwrap();
    assert!(
        write_error
            .as_ref()
            .is_some_and(|e| !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "8 MiB were written, or the write timed out: trc kept reading ({write_error:?})"
    );
    let mut rest = [0u8; 64];
    match (&big).read(&mut rest) {
        Ok(0) => {}
        Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the connection was not closed after the error: {other:?}"),
    }

    // trc serves the others as before.
    assert!(trc.alive());
    assert_eq!(s.list(&[]).len(), 1);
    let reply = request(&mut conn, b"{\"v\":1,\"cmd\":\"list\"}\n");
    assert_eq!(reply["ok"], true, "{reply}");
    // The half request, completed, is answered.
    half.write_all(b"\"cmd\":\"list\"}\n").unwrap();
    assert_eq!(read_reply(&half)["ok"], true);
}

// ----- instances ------------------------------------------------------------------------------

#[test]
fn two_instances_of_the_same_name() {
    let s = Sandbox::new();
    let first = s.work("a/app");
    let second = s.work("b/app");
    task(&first, "one", "exec sleep 1000\n");
    task(&second, "two", "exec sleep 1000\n");
    let trc1 = s.start(&first);
    assert_eq!(trc1.name, "app");
    let trc2 = s.start(&second);
    assert_eq!(trc2.name, "app-2");

    let out = s.ctl(&["list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("app-2") && out.stderr.matches("app").count() >= 2, "{out:?}");
    assert!(out.stderr.contains("--instance"), "{out:?}");

    let names = |rows: Vec<(String, Option<i64>)>| rows.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(s.list(&["--instance", "app-2"])), ["two"]);
    assert_eq!(names(s.list(&["--instance", "app"])), ["one"]);
    let mut cmd = s.trcctl();
    cmd.env("TRC_INSTANCE", "app-2").args(["--manager", "trc", "--json", "list"]);
    let out = run(cmd);
    assert_eq!(out.json()[0]["name"], "two", "{out:?}");

    let mut found: Vec<(String, i64)> =
        s.instances().iter().map(|i| (str_of(&i["name"]), i["pid"].as_i64().unwrap())).collect();
    found.sort();
    assert_eq!(found, [("app".to_owned(), trc1.pid() as i64), ("app-2".to_owned(), trc2.pid() as i64)]);

    // A name asked for that is taken: trc refuses to start (a config error).
    for (args, env) in [(vec!["--instance", "app"], None), (vec![], Some("app-2"))] {
        let mut t = s.trc(&first, &args).env("RC_WAIT_POLICY", "wait_forever");
        if let Some(name) = env {
            t = t.env("RC_INSTANCE", name);
        }
        let out = t.run();
        assert_eq!(out.code(), 78, "{args:?} {env:?}: {out:?}");
        assert!(out.stderr.contains("already running"), "{out:?}");
    }
    assert_eq!(s.instances().len(), 2);
}

#[test]
fn nested_instances_do_not_collide() {
    let s = Sandbox::new();
    let outer = s.work("app");
    let inner = s.work("inner/app");
    task(
        &outer,
        "nest",
        &format!("{}\nexec \"$TRC\" -w \"$DIR/inner/app\"\n", write_file("outer-env", "$TRC_INSTANCE")),
    );
    task(&inner, "probe", &format!("{}\nexec sleep 1000\n", write_file("inner-env", "$TRC_INSTANCE")));
    let trc = s.start_trc(
        s.trc(&outer, &[])
            .env("RC_WAIT_POLICY", "wait_forever")
            .env("TRC", common::trc_bin().to_str().unwrap()),
    );
    assert_eq!(trc.name, "app");
    let inner_env = wait_file(&s.root().join("inner-env"));
    let outer_env = wait_file(&s.root().join("outer-env"));
    assert_eq!(outer_env.trim(), "app", "TRC_INSTANCE in the outer trc's task");

    let mut inner_name = String::new();
    wait_until("both instances to be listed", || {
        let found = s.instances();
        if let Some(i) = found.iter().find(|i| i["name"] != "app") {
            inner_name = str_of(&i["name"]);
        }
        found.len() == 2
    });
    assert_ne!(inner_name, "app");
    assert_eq!(inner_env.trim(), inner_name, "TRC_INSTANCE in the inner trc's task");
    let nest = s.status_in("app", "nest");
    let inner_info = s.instances().into_iter().find(|i| i["name"] == inner_name.as_str()).unwrap();
    assert_eq!(inner_info["pid"], nest["pid"], "the inner trc is the outer's task");
    let rows = s.list(&["--instance", &inner_name]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "probe");
}

impl Sandbox {
    fn status_in(&self, instance: &str, task: &str) -> Value {
        self.ctl(&["--instance", instance, "--json", "status", task]).json()
    }
}

#[test]
fn a_stale_runtime_dir_is_reused() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(&work, "web", "exec sleep 1000\n");
    let mut old = s.start(&work);
    assert_eq!(old.name, "app");
    let web = s.wait_sleeping("web");
    // Its tasks die with it (tests/hardening_death.rs); killed at the end should one not.
    let _orphans = KillGroups(vec![web]);
    old.kill9();
    let dir = s.runtime_dir("app");
    assert!(dir.join("lock").exists(), "the dead trc's runtime dir is gone");
    assert!(s.instances().is_empty(), "a dead trc is listed");
    let out = s.ctl(&["--instance", "app", "list"]);
    assert_eq!(out.code, 69, "{out:?}");

    let new = s.start(&work);
    assert_eq!(new.name, "app", "the stale dir was not reused");
    assert!(!s.runtime_dir("app-2").exists());
    let pid = s.wait_sleeping("web");
    assert_ne!(pid, web);
    let found = s.instances();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["pid"], new.pid());
    assert_eq!(s.list(&[]), [("web".to_owned(), Some(pid as i64))]);
    assert!(!process_alive(web), "the old task outlived its trc");
}

/// A forced manager that is not available on the machine is a clear error (69): systemd when it
/// is not PID 1 here, runit when no runsvdir runs (checked only when that is so).
#[test]
fn a_forced_manager_that_is_not_there_is_exit_69() {
    let s = Sandbox::new();
    if std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("note: systemd runs as PID 1 here: the 'not available' case cannot be checked");
    } else {
        let mut cmd = s.trcctl();
        cmd.args(["--manager", "systemd", "list"]);
        let out = run(cmd);
        assert_eq!(out.code, 69, "{out:?}");
        assert!(out.stderr.contains("systemd is not running as PID 1"), "{out:?}");
    }
    let runsvdir_runs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "runsvdir"));
    if runsvdir_runs {
        eprintln!("note: a runsvdir runs on this machine: the runit 'not available' case is not checked");
    } else {
        let mut cmd = s.trcctl();
        cmd.args(["--manager", "runit", "list"]);
        let out = run(cmd);
        assert_eq!(out.code, 69, "{out:?}");
    }
}

/// `--manager auto` with no trc instance, no systemd as PID 1 and no runsvdir falls back to tmux
/// and says so on stderr (an empty table is not "nothing runs"). Run in new pid and mount
/// namespaces (`unshare --mount-proc`: no runsvdir of another test is seen; a tmpfs on /run:
/// no /run/systemd/system, no /run/trc), with an empty runtime base and a tmux of its own
/// (socket dir, socket name, registry in the test's dir).
#[test]
fn auto_says_when_it_falls_back_to_tmux() {
    if !can_use_namespaces("auto_says_when_it_falls_back_to_tmux") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        skip("auto_says_when_it_falls_back_to_tmux", "tmux (Debian: tmux)");
        return;
    }
    let s = Sandbox::new();
    let tmux = s.root().join("tmux");
    std::fs::create_dir(&tmux).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"])
        .args(["sh", "-c", "mount -t tmpfs tmpfs /run && exec \"$@\"", "sh", TRCCTL, "list"])
        .env_remove("TRC_INSTANCE")
        .env_remove("TRCCTL_MANAGER")
        .env_remove("TRCCTL_HOST")
        .env_remove("RC_RUNTIME_DIR")
        .env_remove("SVDIR")
        .env("XDG_RUNTIME_DIR", s.xdg())
        .env("TMPDIR", &tmux)
        .env("TMUX_TMPDIR", &tmux)
        .env("HOME", &tmux)
        .env("TRCCTL_TMUX_SOCKET", "trcctl-fallback-test")
        .env("TRCCTL_TMUX_REGISTRY", tmux.join("registry.json"))
        .stdin(Stdio::null());
    let out = run(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stderr,
        "trcctl: using tmux (no trc instance answers, systemd is not PID 1, no runsvdir runs); choose one with --manager\n",
        "{out:?}"
    );
    assert!(out.stdout.starts_with("NAME "), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");

    // Named, the same manager says nothing more.
    let mut cmd = s.trcctl();
    cmd.env("TMUX_TMPDIR", &tmux)
        .env("HOME", &tmux)
        .env("TRCCTL_TMUX_SOCKET", "trcctl-fallback-test")
        .env("TRCCTL_TMUX_REGISTRY", tmux.join("registry.json"))
        .args(["--manager", "tmux", "list"]);
    let out = run(cmd);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
}

/// On a terminal, with several instances and none named, trcctl asks which one and takes the
/// answer (`script` gives it a terminal; the answer comes through it).
#[test]
fn several_instances_on_a_terminal_are_a_question() {
    if Command::new("script").arg("--version").output().is_err() {
        skip("several_instances_on_a_terminal_are_a_question", "script(1) (bsdutils)");
        return;
    }
    let s = Sandbox::new();
    let first = s.work("a/app");
    let second = s.work("b/app");
    task(&first, "one", "exec sleep 1000\n");
    task(&second, "two", "exec sleep 1000\n");
    let _trc1 = s.start(&first);
    let _trc2 = s.start(&second);
    // Instances are listed by name: 1) app, 2) app-2.
    let mut cmd = s.trcctl();
    cmd.args(["-qec", &format!("{TRCCTL} --manager trc list"), "/dev/null"]);
    let mut cmd = {
        // `timeout`: a trcctl that never reads its answer fails the test instead of hanging it.
        let mut script = Command::new("timeout");
        script.args(["30", "script"]).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        script.current_dir(s.root());
        script
    };
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("script");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("Several trc instances are running"), "{text}");
    assert!(text.contains("Which one?"), "{text}");
    assert!(text.contains("two") && !text.contains("one "), "the second instance's tasks: {text}");
}
