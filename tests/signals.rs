//! Signals sent to the real `trc` binary, and the clean state its children start in.
//!
//! Every wait is on an event (a line, a file, a process exiting) with the harness' generous
//! deadline; no test sleeps to let a state settle, and no test bounds a duration from above.

mod common;

use common::{
    process_alive, read_pid, wait_child_runs, wait_for, wait_until, Running, Spawned, Trc, DEADLINE,
};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

// ----- helpers ------------------------------------------------------------------------------

/// `trc ARGS` in a fresh temp dir, which tasks find as `$DIR`.
fn trc(dir: &Path, args: &[&str]) -> Trc {
    Trc::new(dir, args).env("DIR", dir.to_str().unwrap())
}

/// Waits for a child started outside the harness, killing it after the deadline.
fn wait_child(child: &mut Spawned) -> ExitStatus {
    child.wait_deadline(DEADLINE)
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig).map(|s| s.as_str().to_owned()).unwrap_or_else(|_| sig.to_string())
}

/// The value of a `Sig...:` line of /proc/PID/status as a bit mask.
fn mask(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} line in {status:?}"));
    u64::from_str_radix(line[key.len() + 1..].trim(), 16).unwrap()
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Makes `cmd`'s process start with SIGINT, SIGHUP, SIGPIPE and SIGRTMIN+5 ignored and
/// SIGUSR1, SIGUSR2, SIGTERM and SIGRTMIN+6 blocked, as a careless parent (a shell's background
/// job, a badly written service manager) might start trc.
fn dirty_signal_state(cmd: &mut Command) {
    // SAFETY: only async-signal-safe calls (signal, sigprocmask) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGPIPE, libc::SIGRTMIN() + 5] {
                libc::signal(sig, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGTERM, libc::SIGRTMIN() + 6] {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// The kernel's `struct sigaction` for rt_sigaction(2), which glibc's wrapper does not let us
/// use on the signals it reserves (32 and 33).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    #[cfg(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64", target_arch = "arm"))]
    restorer: usize,
    mask: u64,
}

/// Makes `cmd`'s process start with signals 32, 33 (reserved by glibc, so only the raw system
/// call changes them) and 64 (SIGRTMAX) ignored. glibc's posix_spawn(3), which Rust's and
/// Python's process APIs use, leaves 32 and 33 ignored in the programs it starts.
fn ignore_edge_signals(cmd: &mut Command) {
    // SAFETY: only system calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [32, 33, 64] {
                let action = KernelSigaction {
                    handler: libc::SIG_IGN,
                    flags: 0,
                    #[cfg(any(
                        target_arch = "x86_64",
                        target_arch = "x86",
                        target_arch = "aarch64",
                        target_arch = "arm"
                    ))]
                    restorer: 0,
                    mask: 0,
                };
                let rc = libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig as libc::c_long,
                    &action as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8 as libc::c_long,
                );
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s process inherit `file` as fd 5 and fd 7 (without close-on-exec).
fn leak_fds(cmd: &mut Command, file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; `file` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            for target in [5, 7] {
                if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

// ----- a signal ends the group: 128+N --------------------------------------------------------

/// Sends `sig` to trc while an async task runs: the group ends with 128+N, and the task is gone,
/// its bash and the `sleep` it runs.
fn signal_while_async_runs(sig: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(
        dir.path(),
        &["-D", "echo $$ > $DIR/async.pid; echo ready; sleep 100 & echo $! > $DIR/sleep.pid; wait"],
    )
    .spawn();
    run.wait_for_line("ready");
    let task = read_pid(dir.path(), "async.pid");
    let sleep = read_pid(dir.path(), "sleep.pid");
    wait_child_runs(task, "sleep");
    run.signal(sig);
    let out = run.wait();
    assert_eq!(out.code(), 128 + sig, "SIG{} while an async task runs: {out:?}", signal_name(sig));
    assert_eq!(out.status.code(), Some(128 + sig), "trc must exit, not die of the signal: {out:?}");
    assert!(!process_alive(task), "the async task {task} outlived trc");
    assert!(!process_alive(sleep), "the sleep {sleep} of the async task outlived trc");
}

/// ★ Sends `sig` to trc while a sync task runs: TrivialRC defers the signal until the sync task
/// ends (and then reports its status); trc starts the teardown at once and stops the task.
fn signal_while_sync_runs(sig: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(
        dir.path(),
        &["-F", "echo $$ > $DIR/sync.pid; echo ready; sleep 60; echo sync-ran-to-its-end; exit 0"],
    )
    .spawn();
    run.wait_for_line("ready");
    let task = read_pid(dir.path(), "sync.pid");
    wait_child_runs(task, "sleep");
    run.signal(sig);
    // The harness' deadline (30 s) is shorter than the task's 60 s: trc exiting at all shows
    // that the sync task was stopped.
    let out = run.wait();
    assert_eq!(out.code(), 128 + sig, "SIG{} while a sync task runs: {out:?}", signal_name(sig));
    assert!(!out.stdout.contains("sync-ran-to-its-end"), "the sync task ran to its end: {out:?}");
    assert!(!process_alive(task), "the sync task {task} outlived trc");
}

/// ★ Under wait_forever, after every task has finished, a signal ends trc with 128+N
/// (TrivialRC exits 0 there).
fn signal_under_wait_forever(sig: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(dir.path(), &["-D", "exit 3", "-F", "echo sync-done"])
        .env("RC_WAIT_POLICY", "wait_forever")
        .env("RC_VERBOSE", "true")
        .spawn();
    wait_for(&mut run, "Exiting in the background (exitcode=3)");
    wait_for(&mut run, "Activated infinite loop!");
    run.signal(sig);
    let out = run.wait();
    assert_eq!(out.code(), 128 + sig, "SIG{} under wait_forever: {out:?}", signal_name(sig));
}

macro_rules! signal_tests {
    ($($sig:ident => $async_test:ident, $sync_test:ident;)*) => {$(
        #[test]
        fn $async_test() {
            signal_while_async_runs(libc::$sig);
        }

        #[test]
        fn $sync_test() {
            signal_while_sync_runs(libc::$sig);
        }
    )*};
}

signal_tests! {
    SIGTERM => term_while_async_runs_gives_143, term_while_sync_runs_stops_it_and_gives_143;
    SIGINT => int_while_async_runs_gives_130, int_while_sync_runs_stops_it_and_gives_130;
    SIGHUP => hup_while_async_runs_gives_129, hup_while_sync_runs_stops_it_and_gives_129;
    SIGUSR1 => usr1_while_async_runs_gives_138, usr1_while_sync_runs_stops_it_and_gives_138;
    SIGQUIT => quit_while_async_runs_gives_131, quit_while_sync_runs_stops_it_and_gives_131;
    SIGUSR2 => usr2_while_async_runs_gives_140, usr2_while_sync_runs_stops_it_and_gives_140;
    SIGALRM => alrm_while_async_runs_gives_142, alrm_while_sync_runs_stops_it_and_gives_142;
}

#[test]
fn the_other_terminating_signals_give_128_plus_n() {
    for sig in [libc::SIGABRT, libc::SIGXCPU, libc::SIGXFSZ, libc::SIGVTALRM] {
        signal_while_async_runs(sig);
    }
}

/// TrivialRC also traps ILL, TRAP, BUS, FPE, SEGV and SYS, and SPEC section 6 asks for "the
/// other signals TrivialRC traps" to end the group gracefully. Sent with kill(2) they are not
/// faults, so handling them is safe (a handler can tell them apart by si_code). Each one ends
/// the group with 128+N and stops the task, its bash and its `sleep`; so does the same signal
/// sent twice, a second apart (the first one must not have used the handler up).
#[test]
fn fault_signals_sent_with_kill_end_the_group_gracefully() {
    for sig in [libc::SIGILL, libc::SIGTRAP, libc::SIGBUS, libc::SIGFPE, libc::SIGSEGV, libc::SIGSYS] {
        signal_while_async_runs(sig);
    }
}

/// A fault signal sent with kill(2) again and again while trc stops a stubborn task (one that
/// ignores SIGTERM): the handler stays in place, trc never dies of the signal, and the signal
/// repeated a second after teardown began kills what is left at once, as any terminating
/// signal does (the stop-timeout is 60 s).
#[test]
fn fault_signal_repeated_during_teardown_is_handled_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(dir.path(), &["-D", "trap '' TERM; echo $$ > $DIR/stubborn.pid; exec sleep 100"])
        .env("RC_STOP_TIMEOUT", "60s")
        .env("RC_VERBOSE", "true")
        .spawn();
    let task = read_pid(dir.path(), "stubborn.pid");
    let sent = Instant::now();
    while run.child.try_wait().unwrap().is_none() {
        assert!(sent.elapsed() < DEADLINE, "trc did not exit");
        run.signal(libc::SIGSEGV);
        // The interval of the repetition, not a wait for a state.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = run.wait();
    assert_eq!(out.status.code(), Some(139), "trc must exit with 139, not die of SIGSEGV: {out:?}");
    assert!(out.stdout.contains("Exiting in the background (exitcode=137)"), "{out:?}");
    assert!(!process_alive(task), "the stubborn task {task} outlived trc");
}

#[test]
fn term_under_wait_forever_gives_143() {
    signal_under_wait_forever(libc::SIGTERM);
}

#[test]
fn int_under_wait_forever_gives_130() {
    signal_under_wait_forever(libc::SIGINT);
}

#[test]
fn hup_under_wait_forever_gives_129() {
    signal_under_wait_forever(libc::SIGHUP);
}

#[test]
fn term_under_wait_forever_with_tasks_running_gives_143() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(
        dir.path(),
        &[
            "-D",
            "echo $$ > $DIR/async.pid; sleep 100 & wait",
            "-F",
            "echo $$ > $DIR/sync.pid; echo ready; sleep 60",
        ],
    )
    .env("RC_WAIT_POLICY", "wait_forever")
    .spawn();
    run.wait_for_line("ready");
    let (a, s) = (read_pid(dir.path(), "async.pid"), read_pid(dir.path(), "sync.pid"));
    wait_child_runs(a, "sleep");
    wait_child_runs(s, "sleep");
    run.signal(libc::SIGTERM);
    let out = run.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(!process_alive(a) && !process_alive(s), "a task outlived trc");
}

// ----- SIGPIPE --------------------------------------------------------------------------------

/// SIGPIPE sent to trc does not kill it: it keeps supervising (it logs a task's exit after the
/// signal), and a later TERM still gives 143.
#[test]
fn sigpipe_does_not_kill_trc() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(
        dir.path(),
        &[
            "-D",
            "for i in $(seq 1000); do [ -e $DIR/go ] && exit 0; sleep 0.03; done; exit 9",
            "-D",
            "echo ready; sleep 100 & wait",
        ],
    )
    .env("RC_WAIT_POLICY", "wait_all")
    .env("RC_VERBOSE", "true")
    .spawn();
    run.wait_for_line("ready");
    run.signal(libc::SIGPIPE);
    run.signal(libc::SIGPIPE);
    std::fs::write(dir.path().join("go"), "").unwrap();
    // trc's own log line, written after the SIGPIPEs: trc is alive and supervising.
    wait_for(&mut run, "Exiting in the background (exitcode=0)");
    assert!(process_alive(run.pid()), "trc died after SIGPIPE");
    run.signal(libc::SIGTERM);
    let out = run.wait();
    assert_eq!(out.status.code(), Some(143), "{out:?}");
}

/// trc's stdout closed by its reader: its log lines then fail with EPIPE, which must neither
/// kill it (SIGPIPE) nor make it panic; it still tears down and exits 128+N.
#[test]
fn closed_stdout_does_not_kill_trc() {
    let dir = tempfile::tempdir().unwrap();
    let mut t =
        trc(dir.path(), &["-D", "echo $$ > $DIR/async.pid; sleep 100 & wait"]).env("RC_VERBOSE", "true");
    let cmd = t.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::spawn(cmd);
    let task = read_pid(dir.path(), "async.pid");
    wait_child_runs(task, "sleep");
    drop(child.stdout.take());
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = wait_child(&mut child);
    let stderr = errors.join().unwrap();
    assert_eq!(
        status.code(),
        Some(143),
        "status {status:?} (signal {:?}), stderr:\n{stderr}",
        status.signal()
    );
    assert!(!stderr.contains("panic") && !stderr.contains("internal error"), "stderr:\n{stderr}");
    assert!(!process_alive(task), "the task outlived trc");
}

// ----- kill -USR1 $MAINPID from a task --------------------------------------------------------

/// TrivialRC's documented test pattern: a task signals success with `kill -USR1 $MAINPID`
/// (here as its last command, so the task's own exit races with the signal).
#[test]
fn usr1_to_mainpid_from_an_async_task_gives_138() {
    let dir = tempfile::tempdir().unwrap();
    let out = trc(dir.path(), &["-D", "kill -USR1 ${MAINPID}"]).run();
    assert_eq!(out.code(), 138, "{out:?}");
}

#[test]
fn usr1_to_mainpid_from_a_task_that_keeps_running_gives_138() {
    let dir = tempfile::tempdir().unwrap();
    let out = trc(dir.path(), &["-D", "echo $$ > $DIR/async.pid; kill -10 $MAINPID; sleep 100 & wait"]).run();
    assert_eq!(out.code(), 138, "{out:?}");
    assert!(!process_alive(read_pid(dir.path(), "async.pid")));
}

/// ★ From a sync task: TrivialRC would only see it when the sync task ends.
#[test]
fn usr1_to_mainpid_from_a_sync_task_gives_138_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = trc(dir.path(), &["-F", "kill -USR1 $MAINPID; sleep 60; echo sync-ran-to-its-end"]).run();
    assert_eq!(out.code(), 138, "{out:?}");
    assert!(!out.stdout.contains("sync-ran-to-its-end"), "{out:?}");
}

const HALT_138_IS_SUCCESS: &str =
    "if [[ ${_exit_status} -eq 138 ]]; then exit 0; else exit ${_exit_status}; fi";

/// The halt task of TrivialRC's reliable-tests-for-docker-images example turns 138 into 0.
#[test]
fn halt_turns_usr1_into_success() {
    let dir = tempfile::tempdir().unwrap();
    let out = trc(dir.path(), &["-H", HALT_138_IS_SUCCESS, "-D", "true && kill -10 ${MAINPID}"]).run();
    assert_eq!(out.code(), 0, "{out:?}");
}

/// ...and passes any other status through.
#[test]
fn halt_passes_other_statuses_through() {
    let dir = tempfile::tempdir().unwrap();
    let out = trc(dir.path(), &["-H", HALT_138_IS_SUCCESS, "-D", "false && kill -10 ${MAINPID}"]).run();
    assert_eq!(out.code(), 1, "{out:?}");
    let out = trc(dir.path(), &["-H", HALT_138_IS_SUCCESS, "-D", "exit 5"]).run();
    assert_eq!(out.code(), 5, "{out:?}");
}

// ----- the state children start in ------------------------------------------------------------

/// What each kind of task sees (async, sync, and the trailing command exec'd directly, which
/// involves no bash at all): its /proc/self/status, when trc was started by `cmd`.
fn task_signal_state(mut t: Trc, dir: &Path) -> Vec<(&'static str, String)> {
    t = t.env("RC_WAIT_POLICY", "wait_all");
    let out = t.spawn().wait();
    assert_eq!(out.code(), 0, "{out:?}");
    vec![
        ("async", std::fs::read_to_string(dir.join("async.status")).unwrap()),
        ("sync", std::fs::read_to_string(dir.join("sync.status")).unwrap()),
        ("trailing command", out.stdout),
    ]
}

const STATUS_TASKS: [&str; 6] = [
    "-D",
    "exec cat /proc/self/status > $DIR/async.status",
    "-F",
    "exec cat /proc/self/status > $DIR/sync.status",
    "cat",
    "/proc/self/status",
];

/// Every kind of task starts with nothing blocked and nothing ignored, even when trc itself was
/// started with signals ignored and blocked. (Signals 32, 33 and 64 are left to the next test.)
#[test]
fn tasks_start_with_an_empty_mask_and_default_dispositions() {
    // The control: a program started that way does see it.
    let mut control = Command::new("cat");
    control.arg("/proc/self/status");
    dirty_signal_state(&mut control);
    let seen = String::from_utf8(control.output().unwrap().stdout).unwrap();
    assert_eq!(mask(&seen, "SigIgn") & bit(libc::SIGINT), bit(libc::SIGINT), "control: {seen}");
    assert_eq!(mask(&seen, "SigBlk") & bit(libc::SIGUSR1), bit(libc::SIGUSR1), "control: {seen}");

    let dir = tempfile::tempdir().unwrap();
    let mut t = trc(dir.path(), &STATUS_TASKS);
    dirty_signal_state(t.command());
    let checked = !(bit(32) | bit(33) | bit(64));
    for (what, status) in task_signal_state(t, dir.path()) {
        assert_eq!(mask(&status, "SigBlk"), 0, "{what} task has signals blocked:\n{status}");
        assert_eq!(mask(&status, "SigIgn") & checked, 0, "{what} task has signals ignored:\n{status}");
    }
}

/// The same for the signals at the edges: 32 and 33 (which glibc reserves, so its signal()
/// cannot reset them: the raw rt_sigaction system call can) and 64 (SIGRTMAX itself).
/// trc started by glibc's posix_spawn (Rust's `Command`, Python's `subprocess`) has 32 and 33
/// ignored, and every task then inherits that.
#[test]
fn tasks_start_with_signals_32_33_and_64_at_default() {
    let mut control = Command::new("cat");
    control.arg("/proc/self/status");
    ignore_edge_signals(&mut control);
    let seen = String::from_utf8(control.output().unwrap().stdout).unwrap();
    // (Only these bits: a shell that started the tests in the background has INT and QUIT
    // ignored too, which the control inherits.)
    let edges = bit(32) | bit(33) | bit(64);
    assert_eq!(mask(&seen, "SigIgn") & edges, edges, "control: {seen}");

    let dir = tempfile::tempdir().unwrap();
    let mut t = trc(dir.path(), &STATUS_TASKS);
    ignore_edge_signals(t.command());
    for (what, status) in task_signal_state(t, dir.path()) {
        assert_eq!(mask(&status, "SigIgn"), 0, "{what} task has signals ignored:\n{status}");
    }
}

/// Async tasks in particular: TrivialRC's run in bash background jobs, which ignore SIGINT.
#[test]
fn async_task_is_stopped_by_sigint_to_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(dir.path(), &["-D", "echo $$ > $DIR/async.pid; echo ready; exec sleep 100"])
        .env("RC_VERBOSE", "true")
        .spawn();
    run.wait_for_line("ready");
    let task = read_pid(dir.path(), "async.pid");
    // A signal that reaches bash while it execs is lost (bash's trap is pending, then gone):
    // send it once the task is `sleep`.
    wait_until("the task to exec sleep", || {
        std::fs::read_to_string(format!("/proc/{task}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(task), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = run.wait();
    // wait_any: the task's own status, killed by SIGINT.
    assert_eq!(out.code(), 130, "{out:?}");
    assert!(out.stdout.contains("Exiting in the background (exitcode=130)"), "{out:?}");
}

/// Fds 0-2 only: `ls /proc/self/fd` lists 0 1 2 and its own directory fd (3), even when trc
/// inherited fds 5 and 7.
#[test]
fn tasks_inherit_only_fds_0_to_2() {
    let extra = std::fs::File::open("/dev/null").unwrap();
    let mut control = Command::new("ls");
    control.arg("/proc/self/fd");
    leak_fds(&mut control, &extra);
    let seen = String::from_utf8(control.output().unwrap().stdout).unwrap();
    assert!(seen.split_whitespace().any(|fd| fd == "5"), "control: {seen}");

    let dir = tempfile::tempdir().unwrap();
    let mut t = trc(
        dir.path(),
        &[
            "-D",
            "exec ls /proc/self/fd > $DIR/async.fds",
            "-F",
            "exec ls /proc/self/fd > $DIR/sync.fds",
            "ls",
            "/proc/self/fd",
        ],
    )
    .env("RC_WAIT_POLICY", "wait_all")
    .env("RC_VERBOSE", "true");
    leak_fds(t.command(), &extra);
    let out = t.spawn().wait();
    assert_eq!(out.code(), 0, "{out:?}");
    let fds = |text: &str| -> Vec<String> {
        text.lines().filter(|l| l.chars().all(|c| c.is_ascii_digit())).map(str::to_owned).collect()
    };
    let seen = [
        ("async", fds(&std::fs::read_to_string(dir.path().join("async.fds")).unwrap())),
        ("sync", fds(&std::fs::read_to_string(dir.path().join("sync.fds")).unwrap())),
        ("trailing command", fds(&out.stdout)),
    ];
    for (what, fds) in seen {
        assert_eq!(fds, ["0", "1", "2", "3"], "{what} task's open fds (3 is ls's own)\n{out:?}");
    }
}

/// Each task leads its own process group, which is not trc's.
#[test]
fn each_task_leads_its_own_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let report = |what: &str| format!("echo \"{what} pid=$$ pgid=$(ps -o pgid= -p $$)\"");
    let (a, f) = (report("async"), report("sync"));
    let cmd = "echo \"cmd pid=$$ pgid=$(ps -o pgid= -p $$)\"";
    let out = trc(dir.path(), &["-D", &a, "-F", &f, "sh", "-c", cmd]).env("RC_WAIT_POLICY", "wait_all").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let re = regex::Regex::new(r"(\w+) pid=(\d+) pgid=\s*(\d+)").unwrap();
    let mut groups = Vec::new();
    for caps in re.captures_iter(&out.stdout) {
        assert_eq!(caps[2], caps[3], "the {} task does not lead its group:\n{}", &caps[1], out.stdout);
        groups.push(caps[3].parse::<i32>().unwrap());
    }
    assert_eq!(groups.len(), 3, "{out:?}");
    groups.sort();
    groups.dedup();
    assert_eq!(groups.len(), 3, "{out:?}");
    let own = nix::unistd::getpgrp().as_raw();
    assert!(!groups.contains(&own), "a task is in trc's process group {own}");
}

// ----- stdin and stdout ------------------------------------------------------------------------

/// ★ The trailing command gets trc's own stdin and stdout: `trc cat` is byte-exact, including
/// NUL, CR, invalid UTF-8, long lines and no final newline.
#[test]
fn trailing_command_passes_binary_stdin_to_stdout_exactly() {
    let mut data: Vec<u8> = Vec::new();
    for i in 0..4096u32 {
        data.extend((0..=255u8).map(|b| b.wrapping_add(i as u8)));
        if i % 7 == 0 {
            data.extend(std::iter::repeat_n(b'x', 70_000 + i as usize));
        }
    }
    data.extend(b"\r\n\xff\xfe no final newline");

    let dir = tempfile::tempdir().unwrap();
    let mut t = trc(dir.path(), &["cat"]);
    let cmd = t.command();
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::spawn(cmd);
    let mut stdin = child.stdin.take().unwrap();
    let to_write = data.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&to_write).unwrap();
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).unwrap();
        got
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    writer.join().unwrap();
    let status = wait_child(&mut child);
    let got = reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(got.len(), data.len(), "stderr:\n{stderr}");
    assert!(got == data, "stdout differs from stdin");
}

/// Sync tasks read trc's stdin; async tasks read /dev/null.
#[test]
fn sync_tasks_read_trcs_stdin_and_async_tasks_dev_null() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trc(
        dir.path(),
        &[
            "-D",
            "readlink /proc/self/fd/0 > $DIR/async.stdin",
            "-F",
            "read -r line; echo \"sync got: $line\"",
        ],
    )
    .env("RC_WAIT_POLICY", "wait_all");
    let cmd = t.command();
    cmd.stdin(Stdio::piped());
    let mut running = Running::start(std::mem::replace(cmd, Command::new("true")));
    let mut stdin = running.child.stdin.take().unwrap();
    stdin.write_all(b"hello from the test\n").unwrap();
    running.wait_for_line("sync got: hello from the test");
    drop(stdin);
    let out = running.wait();
    assert_eq!(out.code(), 0, "{out:?}");
    let seen = std::fs::read_to_string(dir.path().join("async.stdin")).unwrap();
    assert_eq!(seen.trim(), "/dev/null");
}

// ----- boot, and a terminal's Ctrl-C ----------------------------------------------------------

/// A signal during boot ends trc at once with 128+N: the boot task is stopped, nothing after it
/// starts and halt does not run (boot did not complete).
#[test]
fn term_during_boot_stops_it_and_runs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = trc(
        dir.path(),
        &[
            "-B",
            "echo $$ > $DIR/boot.pid; echo boot-ready; sleep 60; echo boot-ran-to-its-end",
            "-H",
            "echo halt-ran",
            "-D",
            "echo async-ran",
            "-F",
            "echo sync-ran",
        ],
    )
    .spawn();
    run.wait_for_line("boot-ready");
    let boot = read_pid(dir.path(), "boot.pid");
    wait_child_runs(boot, "sleep");
    run.signal(libc::SIGTERM);
    let out = run.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    for text in ["boot-ran-to-its-end", "halt-ran", "async-ran", "sync-ran"] {
        assert!(!out.stdout.contains(text), "{text}\n{out:?}");
    }
    assert!(!process_alive(boot), "the boot task outlived trc");
}

/// Ctrl-C on a terminal sends SIGINT to trc's whole process group; the tasks are in groups of
/// their own, so trc gets it once and stops them itself: 130.
#[test]
fn sigint_to_trcs_process_group_gives_130() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trc(
        dir.path(),
        &[
            "-D",
            "echo $$ > $DIR/async.pid; sleep 100 & wait",
            "-F",
            "echo $$ > $DIR/sync.pid; echo ready; sleep 60",
        ],
    );
    t.command().process_group(0);
    let mut run = t.spawn();
    run.wait_for_line("ready");
    let pids = [read_pid(dir.path(), "async.pid"), read_pid(dir.path(), "sync.pid")];
    for pid in pids {
        wait_child_runs(pid, "sleep");
    }
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(run.pid()), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let out = run.wait();
    assert_eq!(out.code(), 130, "{out:?}");
    for pid in pids {
        assert!(!process_alive(pid), "task {pid} outlived trc");
    }
}
