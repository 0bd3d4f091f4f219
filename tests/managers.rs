//! The process-manager backends of `trcctl`, end to end with the real managers: runit (a
//! runsvdir of the test's own on a temp dir), tmux (a private server per test) and systemd
//! (generated units through `systemd-analyze verify`; this machine has no systemd as PID 1).
//!
//! Every wait is on an event (a file appearing, a pid changing) with a generous deadline. A
//! missing tool skips a test with a note, except under CI=true, where it fails.

mod common;

use common::skip;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use trc::control::backend::find_program;
use trc::control::manager::{EnsureSpec, Ensured, Manager, ManagerError};
use trc::control::protocol::TaskInfo;
use trc::control::runit::Runit;
use trc::control::systemd::{self, Systemd};
use trc::control::tmux::Tmux;

const DEADLINE: Duration = Duration::from_secs(30);

/// Whether every tool is there; if not: a failure under CI=true, else a note and a skip.
fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| find_program(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    skip(test, &format!("{} (not installed)", missing.join(", ")));
    false
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `cond` to give a value.
fn wait_for<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let mut value = None;
    wait_until(what, || {
        value = cond();
        value.is_some()
    });
    value.unwrap()
}

/// Whether a process with this pid exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn quote(path: &Path) -> String {
    shlex::try_quote(&path.to_string_lossy()).unwrap().into_owned()
}

/// The service of these tests: writes its pid to `DIR/NAME.pid`, prints `greeting` and
/// `$GREETING_ENV`, notes each SIGHUP in `DIR/NAME.hups`, exits on SIGTERM (killing its sleep).
fn service(dir: &Path, name: &str, greeting: &str) -> Vec<String> {
    let p = quote(&dir.join(name));
    let script = format!(
        "p={p}\n\
         echo $$ > \"$p.pid.tmp\" && mv \"$p.pid.tmp\" \"$p.pid\"\n\
         trap 'echo hup >> \"$p.hups\"' HUP\n\
         trap 'kill $s 2>/dev/null; exit 0' TERM\n\
         echo \"$1 in $(pwd) with $GREETING_ENV\"\n\
         while :; do sleep 1000 & s=$!; wait $s; kill $s 2>/dev/null; done\n"
    );
    ["/bin/sh", "-c", &script, "service", greeting].map(str::to_owned).to_vec()
}

fn spec(name: &str, command: Vec<String>, cwd: &Path) -> EnsureSpec {
    EnsureSpec {
        name: name.to_owned(),
        command,
        cwd: Some(cwd.to_path_buf()),
        env: vec![("GREETING_ENV".to_owned(), "a b 'c' $HOME".to_owned())],
        directives: vec![],
    }
}

fn directives(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Waits until the service writes a pid file with a pid other than `old`, that the manager
/// shows running; returns it.
fn wait_new_pid(manager: &mut dyn Manager, dir: &Path, name: &str, old: Option<i32>) -> i32 {
    let file = dir.join(format!("{name}.pid"));
    wait_for(&format!("{name} to run with a new pid (old: {old:?})"), || {
        let pid = read_pid(&file).filter(|p| Some(*p) != old && process_alive(*p))?;
        let info = manager.status(name).ok()?;
        (info.state == "running" && info.pid == Some(pid)).then_some(pid)
    })
}

fn log_texts(manager: &mut dyn Manager, name: &str, lines: usize) -> Vec<String> {
    let mut texts = Vec::new();
    manager
        .logs(name, lines, false, &mut |line| {
            texts.push(line.text);
            Ok(())
        })
        .unwrap();
    texts
}

fn refused<T: std::fmt::Debug>(result: Result<T, ManagerError>) -> String {
    match result {
        Err(ManagerError::Refused(text)) => text,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn by_name(list: &[TaskInfo], name: &str) -> TaskInfo {
    list.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name} not in {list:?}")).clone()
}

/// Follows `name`'s log in a thread of its own (a blocked follow cannot hang the test): its
/// lines arrive on the receiver.
fn follow_logs(mut manager: impl Manager + Send + 'static, name: &str) -> Receiver<String> {
    let (tx, rx) = channel();
    let name = name.to_owned();
    std::thread::spawn(move || {
        let _ = manager.logs(&name, 1, true, &mut |line| tx.send(line.text).map_err(io::Error::other));
    });
    rx
}

fn wait_line(rx: &Receiver<String>, needle: &str) {
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => continue,
            Err(e) => panic!("no followed line with {needle:?}: {e}"),
        }
    }
}

/// Every descendant of `pid` (a snapshot).
fn descendants(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let child: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, ppid))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// Waits for `pids` to be gone; SIGKILLs what is left after the deadline.
fn reap_all(pids: &[i32], what: &str) {
    let until = Instant::now() + DEADLINE;
    while pids.iter().any(|&p| process_alive(p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
    // Their children too (started after the list was taken), before they are orphaned.
    let mut doomed: Vec<i32> = left.iter().flat_map(|&p| descendants(p)).collect();
    doomed.extend(&left);
    for pid in doomed {
        eprintln!("{what}: process {pid} still there: killed");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// A runsvdir on a temp dir. Dropped (also on a panic): SIGHUP, on which runsvdir sends TERM to
/// every runsv and exits; each runsv then stops its service and log service and exits.
struct Runsvdir {
    child: Child,
}

impl Runsvdir {
    fn start(svdir: &Path) -> Runsvdir {
        let child = Command::new("runsvdir")
            .arg("-P")
            .arg(svdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("runsvdir");
        Runsvdir { child }
    }
}

impl Drop for Runsvdir {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let tree = descendants(pid);
        let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
        let _ = self.child.wait();
        reap_all(&tree, "runsvdir");
    }
}

#[test]
fn runit_end_to_end() {
    if !have_tools("runit_end_to_end", &["runsvdir", "runsv", "sv", "svlogd"]) {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let svdir = temp.path().join("service");
    let work = temp.path().join("work dir");
    std::fs::create_dir_all(&svdir).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let _runsvdir = Runsvdir::start(&svdir);
    let mut runit = Runit::new(svdir.clone());
    // With a runsvdir running (this one at least), runit is there.
    wait_until("runit to be detected", || Runit::detect().is_ok());

    // Nothing to ensure without a command; directives runit cannot honour are refused.
    assert!(refused(runit.ensure(&EnsureSpec { name: "web".into(), ..EnsureSpec::default() }))
        .contains("unknown"));
    let mut bad = spec("web", service(&work, "web", "hello"), &work);
    bad.directives = directives(&[("stop-signal", "INT")]);
    assert!(refused(runit.ensure(&bad)).contains("stop-signal"));
    assert!(!svdir.join("web").exists());

    // Created: the service runs (its pid file is runit's pid), in its cwd, with its env.
    let web = spec("web", service(&work, "web", "hello"), &work);
    let (ensured, _) = runit.ensure(&web).unwrap();
    assert_eq!(ensured, Ensured::Created);
    let pid1 = wait_new_pid(&mut runit, &work, "web", None);
    assert!(std::fs::read_dir(&svdir)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with('.')));

    // Unchanged: same process.
    let (ensured, info) = runit.ensure(&web).unwrap();
    assert_eq!((ensured, info.pid), (Ensured::Unchanged, Some(pid1)));
    // Updated: a new command, a new process.
    let web2 = spec("web", service(&work, "web", "hello again"), &work);
    let (ensured, _) = runit.ensure(&web2).unwrap();
    assert_eq!(ensured, Ensured::Updated);
    let pid2 = wait_new_pid(&mut runit, &work, "web", Some(pid1));
    assert!(!process_alive(pid1));
    // Ensure by name only: it runs already.
    let (ensured, info) = runit.ensure(&EnsureSpec { name: "web".into(), ..EnsureSpec::default() }).unwrap();
    assert_eq!((ensured, info.pid), (Ensured::Unchanged, Some(pid2)));

    // Status and list.
    let info = runit.status("web").unwrap();
    assert_eq!((info.state.as_str(), info.pid), ("running", Some(pid2)));
    assert!(info.since_secs.is_some_and(|s| (0.0..DEADLINE.as_secs_f64()).contains(&s)), "{info:?}");
    assert_eq!(by_name(&runit.list().unwrap(), "web").pid, Some(pid2));
    assert!(refused(runit.status("nope")).contains("unknown"));

    // Logs: what it printed, without svlogd's timestamps.
    let expected = format!("hello again in {} with a b 'c' $HOME", work.display());
    wait_until("the greeting in the log", || log_texts(&mut runit, "web", 10).contains(&expected));
    assert!(log_texts(&mut runit, "web", 10).iter().any(|l| l.starts_with("hello in ")));
    assert_eq!(log_texts(&mut runit, "web", 1), [expected]);

    // A signal sv has a command for, and one it has not (sent with kill(2)).
    runit.signal("web", Signal::SIGHUP).unwrap();
    wait_until("the HUP trap", || std::fs::read_to_string(work.join("web.hups")).is_ok_and(|t| t == "hup\n"));
    runit.signal("web", Signal::SIGWINCH).unwrap();

    // Stop: down, the process gone; start: a new one; restart: another one.
    let info = runit.stop("web").unwrap();
    assert_eq!((info.state.as_str(), info.pid), ("stopped", None));
    assert!(!process_alive(pid2));
    assert!(refused(runit.signal("web", Signal::SIGHUP)).contains("not running"));
    runit.start("web").unwrap();
    let pid3 = wait_new_pid(&mut runit, &work, "web", Some(pid2));
    runit.restart("web").unwrap();
    let pid4 = wait_new_pid(&mut runit, &work, "web", Some(pid3));
    assert!(!process_alive(pid3));

    // Following the log sees the greeting of the next start.
    let followed = follow_logs(Runit::new(svdir.clone()), "web");
    wait_line(&followed, "hello again");
    runit.restart("web").unwrap();
    let pid5 = wait_new_pid(&mut runit, &work, "web", Some(pid4));
    wait_line(&followed, "hello again");

    // restart: never: it ran once, exited 3 and stays down ("finished").
    let runs = work.join("once.runs");
    let once_cmd = format!("echo run >> {}; exit 3", quote(&runs));
    let mut once = spec("once", vec!["/bin/sh".into(), "-c".into(), once_cmd], &work);
    once.directives = directives(&[("restart", "never")]);
    assert_eq!(runit.ensure(&once).unwrap().0, Ensured::Created);
    let info = wait_for("once to finish", || runit.status("once").ok().filter(|i| i.state == "finished"));
    assert_eq!((info.last_status, info.pid), (Some(3), None));
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\n");

    // restart: on-failure after a failure restarts it.
    let again = work.join("again.runs");
    let again_cmd = format!("echo run >> {}; exit 4", quote(&again));
    let mut on_failure = spec("again", vec!["/bin/sh".into(), "-c".into(), again_cmd], &work);
    on_failure.directives = directives(&[("restart", "on-failure"), ("restart-delay", "100ms")]);
    runit.ensure(&on_failure).unwrap();
    wait_until("a restart after a failure", || {
        std::fs::read_to_string(&again).is_ok_and(|t| t.lines().count() >= 2)
    });
    assert_eq!(runit.status("again").unwrap().last_status, Some(4));
    runit.stop("again").unwrap();

    // A long restart delay: the service waits in `finish`; stop does not wait it out.
    let mut slow = spec("slow", vec!["/bin/sh".into(), "-c".into(), "exit 5".into()], &work);
    slow.directives = directives(&[("restart", "on-failure"), ("restart-delay", "1h")]);
    runit.ensure(&slow).unwrap();
    wait_for("slow to wait for its restart", || {
        runit.status("slow").ok().filter(|i| i.state == "waiting" && i.last_status == Some(5))
    });
    assert_eq!(runit.stop("slow").unwrap().state, "stopped");

    // start-all starts every service that is down.
    runit.stop("web").unwrap();
    assert!(!process_alive(pid5));
    let mut started = runit.start_all().unwrap();
    started.sort();
    assert_eq!(started, ["again", "once", "slow", "web"]);
    wait_new_pid(&mut runit, &work, "web", Some(pid5));
    wait_until("once to run again", || std::fs::read_to_string(&runs).is_ok_and(|t| t == "run\nrun\n"));

    let report = runit.reload().unwrap();
    assert_eq!(report.unchanged, ["again", "once", "slow", "web"]);
}

/// A private tmux server. Dropped (also on a panic): SIGTERM to every pane's process group,
/// then the server is killed.
struct TmuxServer {
    socket: String,
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let tmux = || {
            let mut c = Command::new("tmux");
            c.args(["-L", &self.socket]).stdin(Stdio::null()).stderr(Stdio::null());
            c
        };
        let mut pids = Vec::new();
        if let Ok(out) = tmux().args(["list-panes", "-a", "-F", "#{pane_pid}"]).output() {
            for pid in
                String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<i32>().ok())
            {
                pids.push(pid);
                pids.extend(descendants(pid));
                let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let socket = tmux().args(["display-message", "-p", "#{socket_path}"]).output();
        let _ = tmux().arg("kill-server").output();
        reap_all(&pids, "tmux");
        // tmux leaves its socket file behind.
        if let Ok(out) = socket {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !path.is_empty() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[test]
fn tmux_end_to_end() {
    if !have_tools("tmux_end_to_end", &["tmux"]) {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let work = temp.path().join("work dir");
    std::fs::create_dir_all(&work).unwrap();
    let socket = format!("trcctl-test-{}", std::process::id());
    let _server = TmuxServer { socket: socket.clone() };
    let registry = temp.path().join("state/tmux-services.json");
    let new = || Tmux::new(socket.clone(), registry.clone());
    let mut tmux = new();

    assert!(
        refused(tmux.ensure(&EnsureSpec { name: "web".into(), ..EnsureSpec::default() })).contains("unknown")
    );
    let mut bad = spec("web", service(&work, "web", "hello"), &work);
    bad.directives = directives(&[("restart", "always")]);
    assert!(refused(tmux.ensure(&bad)).contains("restart"));
    assert!(tmux.list().unwrap().is_empty());

    // Created, unchanged, updated.
    let web = spec("web", service(&work, "web", "hello"), &work);
    assert_eq!(tmux.ensure(&web).unwrap().0, Ensured::Created);
    let pid1 = wait_new_pid(&mut tmux, &work, "web", None);
    let registered: serde_json::Value = serde_json::from_slice(&std::fs::read(&registry).unwrap()).unwrap();
    assert_eq!(registered["web"]["cwd"], serde_json::json!(work));
    let (ensured, info) = tmux.ensure(&web).unwrap();
    assert_eq!((ensured, info.pid), (Ensured::Unchanged, Some(pid1)));
    let web2 = spec("web", service(&work, "web", "hello again"), &work);
    assert_eq!(tmux.ensure(&web2).unwrap().0, Ensured::Updated);
    let pid2 = wait_new_pid(&mut tmux, &work, "web", Some(pid1));
    assert!(!process_alive(pid1));

    let info = tmux.status("web").unwrap();
    assert_eq!((info.state.as_str(), info.pid), ("running", Some(pid2)));
    assert!(info.since_secs.is_some_and(|s| (0.0..DEADLINE.as_secs_f64()).contains(&s)), "{info:?}");
    assert_eq!(by_name(&tmux.list().unwrap(), "web").pid, Some(pid2));

    // Logs: both runs' output, copied from the pane (without the terminal's \r).
    let expected = format!("hello again in {} with a b 'c' $HOME", work.display());
    wait_until("the greeting in the log", || log_texts(&mut tmux, "web", 10).contains(&expected));
    assert!(log_texts(&mut tmux, "web", 10).iter().any(|l| l.starts_with("hello in ")));

    tmux.signal("web", Signal::SIGHUP).unwrap();
    wait_until("the HUP trap", || std::fs::read_to_string(work.join("web.hups")).is_ok_and(|t| t == "hup\n"));

    // Stop: the window goes; start: a new one; restart: the same window, a new process.
    let info = tmux.stop("web").unwrap();
    assert_eq!((info.state.as_str(), info.pid), ("stopped", None));
    assert!(!process_alive(pid2));
    assert!(refused(tmux.signal("web", Signal::SIGHUP)).contains("not running"));
    tmux.start("web").unwrap();
    let pid3 = wait_new_pid(&mut tmux, &work, "web", Some(pid2));
    tmux.restart("web").unwrap();
    let pid4 = wait_new_pid(&mut tmux, &work, "web", Some(pid3));
    assert!(!process_alive(pid3));

    let followed = follow_logs(new(), "web");
    wait_line(&followed, "hello again");
    tmux.restart("web").unwrap();
    let pid5 = wait_new_pid(&mut tmux, &work, "web", Some(pid4));
    wait_line(&followed, "hello again");

    // A service that exits: its pane stays, dead, with the status.
    let once_cmd = "echo bye; exit 3".to_owned();
    assert_eq!(
        tmux.ensure(&spec("once", vec!["/bin/sh".into(), "-c".into(), once_cmd], &work)).unwrap().0,
        Ensured::Created
    );
    let info = wait_for("once to finish", || {
        tmux.status("once").ok().filter(|i| i.state == "finished" && i.last_status.is_some())
    });
    assert_eq!((info.last_status, info.pid), (Some(3), None));
    wait_until("once's output in its log", || log_texts(&mut tmux, "once", 5).contains(&"bye".to_owned()));

    // start-all: every registered service that does not run.
    tmux.stop("web").unwrap();
    assert!(!process_alive(pid5));
    assert_eq!(tmux.start_all().unwrap(), ["once", "web"]);
    let pid6 = wait_new_pid(&mut tmux, &work, "web", Some(pid5));

    // reload after the registry was edited by hand: a removed service's window goes, an added
    // one starts, a changed one restarts.
    let mut edited = new().load().unwrap();
    edited.remove("once");
    let mut extra = edited["web"].clone();
    extra.command = service(&work, "extra", "extra");
    edited.insert("extra".into(), extra);
    edited.get_mut("web").unwrap().command = service(&work, "web", "hello edited");
    std::fs::write(&registry, serde_json::to_vec(&edited).unwrap()).unwrap();
    let report = tmux.reload().unwrap();
    assert_eq!(
        (report.added, report.removed, report.restarted),
        (vec!["extra".to_owned()], vec!["once".to_owned()], vec!["web".to_owned()])
    );
    wait_new_pid(&mut tmux, &work, "web", Some(pid6));
    wait_new_pid(&mut tmux, &work, "extra", None);
    assert!(refused(tmux.status("once")).contains("unknown"));
    assert_eq!(tmux.reload().unwrap().unchanged, ["extra", "web"]);
}

/// `systemd-analyze verify` on a unit: it must pass without a word (as .ci/run checks the
/// shipped unit).
fn verify_unit(dir: &Path, name: &str, text: &str) {
    let path = dir.join(format!("{name}.service"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{name}.service:\n{text}\nsystemd-analyze verify: {said}"
    );
}

#[test]
fn systemd_units_pass_verify() {
    if !have_tools("systemd_units_pass_verify", &["systemd-analyze"]) {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let cwd = temp.path().join("my dir 100%");
    std::fs::create_dir_all(&cwd).unwrap();
    let base = EnsureSpec {
        name: "plain".into(),
        command: vec!["/bin/sleep".into(), "1000".into()],
        ..EnsureSpec::default()
    };
    let specs = [
        base.clone(),
        EnsureSpec {
            name: "quoted".into(),
            command: [
                "/bin/sleep",
                "1 2",
                "it's",
                "\"q\"",
                "back\\slash",
                "$HOME",
                "${X}",
                "100%",
                "%n",
                ";",
                "a;b",
                "tab\tnl\n",
            ]
            .map(str::to_owned)
            .to_vec(),
            cwd: Some(cwd.clone()),
            env: [
                ("A", "b c"),
                ("QUOTES", "\"x\" 'y'"),
                ("DOLLAR", "$HOME ${Y}"),
                ("PERCENT", "50% %n"),
                ("EMPTY", ""),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
            ..base.clone()
        },
        EnsureSpec {
            name: "directives".into(),
            directives: directives(&[
                ("restart", "on-failure"),
                ("restart-delay", "1.5s"),
                ("stop-signal", "INT"),
                ("stop-timeout", "1m 30s"),
                ("start-limit", "3 in 10s"),
                ("log-prefix", "no"),
            ]),
            ..base.clone()
        },
        EnsureSpec {
            name: "never".into(),
            directives: directives(&[("restart", "never"), ("start-limit", "none")]),
            ..base.clone()
        },
    ];
    for spec in &specs {
        verify_unit(temp.path(), &spec.name, &systemd::unit_file(spec).unwrap());
    }
    let user = systemd::unit_file_for(&specs[0], true).unwrap();
    assert!(user.contains("WantedBy=default.target"));
    verify_unit(temp.path(), "user", &user);

    let quoted = systemd::unit_file(&specs[1]).unwrap();
    assert!(quoted.contains(r#"ExecStart="/bin/sleep" "1 2" "it's" "\"q\"" "back\\slash" "$$HOME" "$${X}" "100%%" "%%n" ";" "a;b" "tab\tnl\n""#), "{quoted}");
    assert!(quoted.contains(&format!("WorkingDirectory={}\n", cwd.display().to_string().replace('%', "%%"))));
    assert!(
        quoted.contains("Environment=\"DOLLAR=$HOME ${Y}\"\nEnvironment=\"PERCENT=50%% %%n\"\n"),
        "{quoted}"
    );

    // What a unit cannot say is refused.
    for (key, value) in [("restart-max-delay", "1m"), ("log-prefix", "yes"), ("restart", "sometimes")] {
        let spec = EnsureSpec { directives: directives(&[(key, value)]), ..base.clone() };
        assert!(matches!(systemd::unit_file(&spec), Err(ManagerError::Refused(_))), "{key}: {value}");
    }
    let relative = EnsureSpec { cwd: Some(PathBuf::from("rel")), ..base.clone() };
    assert!(matches!(systemd::unit_file(&relative), Err(ManagerError::Refused(_))));
}

#[test]
fn systemd_is_unavailable_without_pid1() {
    let result = Systemd::detect(false);
    if Path::new("/run/systemd/system").exists() {
        eprintln!(
            "NOTE systemd_is_unavailable_without_pid1: systemd runs here; detect gave {:?}",
            result.is_ok()
        );
        return;
    }
    match result {
        Err(e @ ManagerError::Unavailable(_)) => {
            assert_eq!(e.exit_status(), 69);
            assert!(e.to_string().contains("/run/systemd/system"), "{e}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, got a manager"),
    }
}
