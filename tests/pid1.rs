//! trc as PID 1 of a new PID namespace (`unshare --pid --fork --kill-child --mount-proc`), as
//! in a container: it reaps orphans (no zombie is ever left), its signal handlers work (PID 1
//! gets no default action: only signals it handles reach it), and when it exits nothing of the
//! namespace is left.
//!
//! Needs root and unshare(1): each test returns early (saying so) without them, except under
//! `CI=true`, where that is a failure.

mod common;

use common::{can_use_namespaces, read_pid, trc_bin, wait_for, wait_until, Output, Running};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

// ----- helpers ------------------------------------------------------------------------------

/// `trc ARGS` as PID 1 of a new PID namespace (with its own /proc), run in `dir`, which tasks
/// find as `$DIR`; the outer `RC_*`/`TRC_*` variables removed, as the harness does.
fn in_namespace(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.current_dir(dir);
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"]).arg(trc_bin()).args(args);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("RC_") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("DIR", dir).env("PWD", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Running {
    Running::start(in_namespace(dir, env, args))
}

/// The parent pid of a process, from /proc/PID/stat (None when it is gone).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// trc's pid outside the namespace: the (only) child of the unshare process.
fn trc_host_pid(running: &Running) -> i32 {
    let unshare = running.pid();
    let mut found = None;
    wait_until("trc to run under unshare", || {
        let children =
            std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap_or_default();
        found = children.split_whitespace().next().and_then(|p| p.parse::<i32>().ok());
        found.is_some()
    });
    found.unwrap()
}

/// The PID namespace of the trc a test started, held open for the whole test. Tests run in
/// parallel, and the kernel gives the inode number of a namespace that is freed to the next new
/// one (the lowest free number): by its number alone, the namespace of a trc that has exited
/// could seem to hold another test's processes. An open namespace file keeps the namespace, so
/// its number, from being freed until the test ends.
struct Namespace {
    file: std::fs::File,
    name: String,
}

impl Namespace {
    /// The namespace of `trc`, the child of the test's (unreaped) `unshare`: opened, then
    /// checked to still be that trc's, so that it is not the namespace of a process that took
    /// trc's pid after it exited.
    fn of_trc(running: &Running, trc: i32) -> Namespace {
        let path = format!("/proc/{trc}/ns/pid");
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let name = std::fs::read_link(&path).unwrap().to_string_lossy().into_owned();
        assert_eq!(parent_of(trc), Some(running.pid()), "trc {trc} exited before its namespace was opened");
        Namespace { file, name }
    }

    /// Whether process `pid` is in this namespace.
    fn holds(&self, pid: i32) -> bool {
        let (Ok(ns), Ok(of_pid)) = (self.file.metadata(), std::fs::metadata(format!("/proc/{pid}/ns/pid")))
        else {
            return false;
        };
        ns.dev() == of_pid.dev() && ns.ino() == of_pid.ino()
    }

    /// The pids, as seen inside the namespace, of every process in it.
    fn pids_inside(&self) -> Vec<i32> {
        self.processes().into_iter().filter_map(pid_inside).collect()
    }

    /// Every process (seen from outside) in this namespace.
    fn processes(&self) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
            .filter(|&pid| self.holds(pid))
            .collect()
    }
}

/// The pid of a process as its own (innermost) PID namespace sees it: the last `NSpid` field.
fn pid_inside(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse().ok()
}

fn show(out: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", out.status, out.stdout, out.stderr)
}

// ----- PID 1 --------------------------------------------------------------------------------

#[test]
fn trc_is_pid_1_and_tasks_see_mainpid_1() {
    if !can_use_namespaces("trc_is_pid_1_and_tasks_see_mainpid_1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = start(dir.path(), &[("RC_VERBOSE", "true")], &["-F", "echo \"task: MAINPID=$MAINPID\""]).wait();
    assert_eq!(out.code(), 0, "{}", show(&out));
    assert!(out.stdout.contains("task: MAINPID=1"), "{}", show(&out));
    assert!(out.stdout.contains("trc [main/1]: Exited (exitcode=0)"), "{}", show(&out));
}

/// Orphans re-parented to PID 1 are reaped: a task double-forks short-lived processes (their
/// parent exits at once; the first one runs until the task has seen it adopted by PID 1), and
/// waits (bounded) until /proc has no entry for them at all
/// (a zombie would keep it), and checks that `ps` shows no zombie in the namespace.
#[test]
fn orphans_are_reaped_by_pid_1() {
    if !can_use_namespaces("orphans_are_reaped_by_pid_1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let check = r#"
        gone() { for _i in $(seq 600); do [ -e /proc/$1 ] || return 0; sleep 0.05; done; return 1; }
        no_zombies() {
            z=$(ps -eo pid=,stat=,args= | awk '$2 ~ /^Z/')
            [ -z "$z" ] || { echo "zombies: $z"; ps -eo pid,ppid,stat,args; exit 7; }
        }
        sh -c '(while [ ! -e $DIR/release ]; do sleep 0.02; done) & echo $! > $DIR/orphan.pid'
        p=$(cat $DIR/orphan.pid)
        echo "orphan $p has parent $(ps -o ppid= -p $p | tr -d ' ')"
        touch $DIR/release
        gone $p || { echo "not reaped: $(cat /proc/$p/stat)"; exit 8; }
        no_zombies
        echo reaped-one
        for i in $(seq 20); do sh -c 'sleep 0.2 & echo $! >> $DIR/orphans'; done
        for p in $(cat $DIR/orphans); do gone $p || { echo "not reaped: $(cat /proc/$p/stat)"; exit 8; }; done
        no_zombies
        echo reaped-all
    "#;
    let out = start(dir.path(), &[], &["-F", check]).wait();
    assert_eq!(out.code(), 0, "{}", show(&out));
    assert!(out.stdout.contains("has parent 1\n"), "the orphan was not adopted by PID 1\n{}", show(&out));
    assert!(out.stdout.contains("reaped-one") && out.stdout.contains("reaped-all"), "{}", show(&out));
}

/// PID 1 only gets the signals it has handlers for: `kill -SIG 1` from a task ending the group
/// with 128+N proves the handlers are there. unshare(1) passes trc's status through.
#[test]
fn signals_to_pid_1_from_inside_end_the_group_with_128_plus_n() {
    if !can_use_namespaces("signals_to_pid_1_from_inside_end_the_group_with_128_plus_n") {
        return;
    }
    for (name, sig) in [
        ("TERM", libc::SIGTERM),
        ("INT", libc::SIGINT),
        ("HUP", libc::SIGHUP),
        ("USR1", libc::SIGUSR1),
        ("QUIT", libc::SIGQUIT),
        ("USR2", libc::SIGUSR2),
        ("ALRM", libc::SIGALRM),
        ("SEGV", libc::SIGSEGV),
        ("ILL", libc::SIGILL),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let task = format!("echo $$ > $DIR/task.pid; kill -{name} 1; sleep 100 & wait");
        let out = start(
            dir.path(),
            &[("RC_VERBOSE", "true")],
            &["-H", "echo \"halt: _exit_status=$_exit_status\"; exit $_exit_status", "-D", &task],
        )
        .wait();
        let want = 128 + sig;
        assert_eq!(out.code(), want, "kill -{name} 1\n{}", show(&out));
        assert!(out.stdout.contains(&format!("halt: _exit_status={want}")), "kill -{name} 1\n{}", show(&out));
        assert!(out.stdout.contains(&format!("Exited (exitcode={want})")), "kill -{name} 1\n{}", show(&out));
    }
}

/// SIGPIPE to PID 1 from inside changes nothing: the group ends by its policy, status 0.
#[test]
fn sigpipe_to_pid_1_from_inside_is_harmless() {
    if !can_use_namespaces("sigpipe_to_pid_1_from_inside_is_harmless") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = start(dir.path(), &[], &["-F", "kill -PIPE 1; kill -PIPE 1; echo still-here; exit 0"]).wait();
    assert_eq!(out.code(), 0, "{}", show(&out));
    assert!(out.stdout.contains("still-here"), "{}", show(&out));
}

/// SIGINT from outside to trc's host pid: 130, passed through by unshare; every process of
/// the namespace (tasks, a daemon) is gone afterwards.
#[test]
fn sigint_from_outside_gives_130_and_leaves_nothing() {
    if !can_use_namespaces("sigint_from_outside_gives_130_and_leaves_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut run = start(
        dir.path(),
        &[("RC_VERBOSE", "true")],
        &[
            "-D",
            "(setsid sleep 300 & echo $! > $DIR/daemon.pid); echo up; sleep 100 & wait",
            "-F",
            "echo sync-up; sleep 100 & wait",
        ],
    );
    wait_for(&mut run, "up");
    wait_for(&mut run, "sync-up");
    let daemon = read_pid(dir.path(), "daemon.pid");
    let trc = trc_host_pid(&run);
    let ns = Namespace::of_trc(&run, trc);
    assert!(!ns.holds(std::process::id() as i32), "not a new namespace");
    let inside = ns.pids_inside();
    assert!(
        inside.contains(&1) && inside.contains(&daemon),
        "trc and the daemon {daemon} in {}: {inside:?}",
        ns.name
    );
    assert!(inside.len() >= 4, "trc, two tasks and a daemon, at least: {inside:?}");
    // SAFETY: kill(2) on trc, a descendant of this test which is alive (it is in the namespace).
    assert_eq!(unsafe { libc::kill(trc, libc::SIGINT) }, 0);
    let out = run.wait();
    assert_eq!(out.code(), 130, "unshare's status\n{}", show(&out));
    assert!(out.stdout.contains("trc [main/1]: Exited (exitcode=130)"), "{}", show(&out));
    assert_eq!(ns.processes(), Vec::<i32>::new(), "processes left in {}", ns.name);
}

/// The same with SIGTERM, and trc's own teardown (not the kernel's killing of a namespace whose
/// init exited) is what empties it: a halt task, which runs after the teardown, finds nothing
/// in the namespace but PID 1 and itself, though a daemon ignoring SIGTERM was running.
#[test]
fn after_teardown_only_pid_1_is_left_in_the_namespace() {
    if !can_use_namespaces("after_teardown_only_pid_1_is_left_in_the_namespace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Every process but PID 1, the halt task and its own children (ps) is reported; that PID 1
    // is seen shows the listing worked.
    let halt = r#"
        seen=
        while read -r pid ppid args; do
            if [ "$pid" = 1 ]; then seen="pid 1 seen"
            elif [ "$pid" != $$ ] && [ "$ppid" != $$ ]; then echo "halt: left: $pid $ppid $args"; fi
        done < <(ps -eo pid=,ppid=,args=)
        echo "halt: checked, $seen, _exit_status=$_exit_status"
        exit $_exit_status
    "#;
    let mut run = start(
        dir.path(),
        &[("RC_STOP_TIMEOUT", "1s")],
        &[
            "-H",
            halt,
            "-D",
            "(setsid bash -c 'trap \"\" TERM; exec sleep 300' & echo $! > $DIR/stubborn.pid); \
             (setsid sleep 300 & echo $! > $DIR/daemon.pid); sleep 100 & wait",
            "-D",
            "sh -c 'sleep 300 & wait' & echo up; wait",
        ],
    );
    wait_for(&mut run, "up");
    let daemons = [read_pid(dir.path(), "stubborn.pid"), read_pid(dir.path(), "daemon.pid")];
    let trc = trc_host_pid(&run);
    let ns = Namespace::of_trc(&run, trc);
    let inside = ns.pids_inside();
    assert!(daemons.iter().all(|d| inside.contains(d)), "daemons {daemons:?} in {}: {inside:?}", ns.name);
    // SAFETY: kill(2) on trc, a descendant of this test which is alive (it is in the namespace).
    assert_eq!(unsafe { libc::kill(trc, libc::SIGTERM) }, 0);
    let out = run.wait();
    assert_eq!(out.code(), 143, "{}", show(&out));
    assert!(out.stdout.contains("halt: checked, pid 1 seen, _exit_status=143"), "{}", show(&out));
    assert!(!out.stdout.contains("halt: left:"), "{}", show(&out));
    assert_eq!(ns.processes(), Vec::<i32>::new(), "processes left in {}", ns.name);
}

/// Under wait_any, the group ends by policy when a task finishes, as PID 1 too; orphans left
/// by the finished task do not keep it (or the namespace) alive.
#[test]
fn policy_exit_as_pid_1_leaves_nothing() {
    if !can_use_namespaces("policy_exit_as_pid_1_leaves_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut run = start(
        dir.path(),
        &[],
        &[
            "-D",
            "(setsid sleep 300 & echo $! > $DIR/daemon.pid); sleep 300 & echo up; wait",
            "-F",
            "for i in $(seq 600); do [ -e $DIR/go ] && exit 5; sleep 0.05; done; exit 9",
        ],
    );
    wait_for(&mut run, "up");
    let daemon = read_pid(dir.path(), "daemon.pid");
    let trc = trc_host_pid(&run);
    let ns = Namespace::of_trc(&run, trc);
    let inside = ns.pids_inside();
    assert!(inside.contains(&daemon), "the daemon {daemon} in {}: {inside:?}", ns.name);
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = run.wait();
    assert_eq!(out.code(), 5, "{}", show(&out));
    assert_eq!(ns.processes(), Vec::<i32>::new(), "processes left in {}", ns.name);
}

/// A task's process group is forgotten once it is empty: at teardown trc signals only groups
/// it knows are alive. Here a task exits at once (its group with it), then a process outside
/// trc's tree is made to get the same number as its pid and process group (`ns_last_pid`
/// inside the namespace): teardown must not signal it (trc once sent TERM to every finished
/// task's old pgid, which on a long-running host can belong to another program by then).
#[test]
fn teardown_does_not_signal_the_old_process_group_of_a_finished_task() {
    if !can_use_namespaces("teardown_does_not_signal_the_old_process_group_of_a_finished_task") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("trc.d")).unwrap();
    std::fs::write(
        d.join("trc.d/async.early"),
        "echo $$ > \"$DIR/early.tmp\"; mv \"$DIR/early.tmp\" \"$DIR/early.pid\"\n",
    )
    .unwrap();
    std::fs::write(d.join("trc.d/async.main"), "exec sleep 1000\n").unwrap();
    let mut running = start(d, &[("RC_VERBOSE", "true"), ("RC_WAIT_POLICY", "wait_forever")], &[]);
    let trc = trc_host_pid(&running);
    wait_for(&mut running, "Exiting in the background (exitcode=0)");
    let early: i32 = std::fs::read_to_string(d.join("early.pid")).unwrap().trim().parse().unwrap();
    // In trc's namespace: the next pid is early's; that process leads its own session and
    // group (setsid does not fork: a background child of sh is no group leader), records its
    // pid, and notes a SIGTERM. Its parent stays alive outside trc's tree (`wait`), so trc
    // never adopts it.
    let victim = "trap 'touch \"$DIR/got-term\"' TERM; echo $$ > \"$DIR/victim.tmp\"; \
                  mv \"$DIR/victim.tmp\" \"$DIR/victim.pid\"; while :; do sleep 0.1; done";
    let outer = format!(
        "echo {} > /proc/sys/kernel/ns_last_pid || exit 1; setsid sh -c '{}' & wait",
        early - 1,
        victim.replace('\'', "'\\''")
    );
    let mut nsenter = common::Spawned::spawn(
        Command::new("nsenter")
            .args(["-t", &trc.to_string(), "--pid", "--mount", "--", "sh", "-c", &outer])
            .env("DIR", d)
            .stdin(Stdio::null()),
    );
    wait_until("the other program to start", || d.join("victim.pid").exists());
    let got: i32 = std::fs::read_to_string(d.join("victim.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: kill(2) on trc, which runs until this test's unshare process is reaped.
    unsafe { libc::kill(trc, libc::SIGTERM) };
    let out = running.wait();
    let _ = nsenter.kill();
    let _ = nsenter.wait();
    assert_eq!(got, early, "the other program did not get the old pid (a race in the namespace)\n{out:?}");
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(!d.join("got-term").exists(), "teardown signalled a process group that was not trc's\n{out:?}");
}
