//! Restart supervision of the real `trc` binary (README "Supervision: restart directives",
//! SPEC §5): which exits restart under `never`, `on-failure` and `always`; a task killed from
//! outside; the start limit and what the wait policy does when a task gives up; the backoff,
//! its cap and its reset after a stable run; output across restarts; teardown during a restart
//! delay; tasks stopped by trc are never restarted; every bad directive is a configuration
//! error naming `file:line` before anything starts.
//!
//! Every wait is on an event (a line, a file, a process) with the harness' generous deadline.
//! The delays trc chose are read from its verbose `Restarting ... in 200ms (restart 2)` lines,
//! which are exact; times measured by the tasks are checked against lower bounds only, plus
//! upper bounds so generous that only a wrong delay (an uncapped one, an hour) can cross them.

mod common;

use common::{process_alive, sleeper, wait_sleeping, wait_until, Output, Trc};
use std::path::Path;
use std::time::{Duration, Instant};

// ----- helpers ------------------------------------------------------------------------------

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `trc -w DIR` in DIR, which tasks find as `$DIR`.
fn trc(dir: &Path) -> Trc {
    Trc::new(dir, ["-w", dir.to_str().unwrap()]).env("DIR", dir.to_str().unwrap())
}

/// `trc ARGS` (command-line tasks) in DIR, which tasks find as `$DIR`.
fn trc_args(dir: &Path, args: &[&str]) -> Trc {
    Trc::new(dir, args).env("DIR", dir.to_str().unwrap())
}

/// The text of a task file: a `### BEGIN TRC` block with `directives` (no block when there are
/// none), then `body`.
fn task_text(directives: &[&str], body: &str) -> String {
    let mut text = String::new();
    if !directives.is_empty() {
        text.push_str("### BEGIN TRC\n");
        for d in directives {
            text.push_str(&format!("# {d}\n"));
        }
        text.push_str("### END TRC\n");
    }
    text.push_str(body);
    text.push('\n');
    text
}

/// Writes `DIR/trc.d/<file>` (e.g. `async.web`) with a header block and a body.
fn task(dir: &Path, file: &str, directives: &[&str], body: &str) {
    write_task(dir, file, &task_text(directives, body));
}

fn write_task(dir: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir.join("trc.d")).unwrap();
    std::fs::write(dir.join("trc.d").join(file), text).unwrap();
}

/// Shell code that records a start of `name` in `$DIR/<name>.starts` and sets `$n` to the
/// number of this start (1, 2, ...).
fn count_start(name: &str) -> String {
    format!("echo start >> \"$DIR/{name}.starts\"; n=$(wc -l < \"$DIR/{name}.starts\")")
}

/// How many times a task ran [`count_start`].
fn starts(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{name}.starts"))).map(|t| t.lines().count()).unwrap_or(0)
}

/// Shell code appending the (wall-clock) time of this start to `$DIR/<name>.times`, without
/// forking.
fn stamp(name: &str) -> String {
    format!("echo $EPOCHREALTIME >> \"$DIR/{name}.times\"")
}

/// The times [`stamp`] recorded, as durations since the epoch.
fn times(dir: &Path, name: &str) -> Vec<Duration> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.times"))).unwrap();
    text.lines()
        .map(|line| {
            let (secs, frac) = line.trim().split_once(['.', ',']).expect("seconds.microseconds");
            Duration::from_secs(secs.parse().unwrap()) + Duration::from_micros(frac.parse().unwrap())
        })
        .collect()
}

/// The gaps between consecutive times.
fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1].saturating_sub(w[0])).collect()
}

/// A bash loop waiting (bounded: about 30 s) for `$DIR/name` to exist, then running `then`.
fn until_file(name: &str, then: &str) -> String {
    format!("for _i in $(seq 1000); do [ -e \"$DIR/{name}\" ] && break; sleep 0.03; done; {then}")
}

/// The restarts trc logged (`RC_VERBOSE=true`) for the task whose label ends with `label`
/// (`trc.d/async.web`, or a command): each one's delay as logged and its number.
fn restarts(stdout: &str, label: &str) -> Vec<(String, u32)> {
    let re = regex::Regex::new(
        r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trc \[(?:async|sync)/\d+\]: Restarting in the (?:background|foreground) in (.+) \(restart (\d+)\): (.*)$",
    )
    .unwrap();
    re.captures_iter(stdout)
        .filter(|c| c[3].ends_with(label))
        .map(|c| (c[1].to_owned(), c[2].parse().unwrap()))
        .collect()
}

/// The pids of the `Launching ...` lines of the task whose label ends with `label`.
fn launches(stdout: &str, label: &str) -> Vec<i32> {
    let re = regex::Regex::new(
        r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trc \[(?:async|sync)/(\d+)\]: Launching in the (?:background|foreground): (.*)$",
    )
    .unwrap();
    re.captures_iter(stdout).filter(|c| c[2].ends_with(label)).map(|c| c[1].parse().unwrap()).collect()
}

/// The give-up error lines for task `name`: (starts, window as logged, last status).
fn give_ups(stderr: &str, name: &str) -> Vec<(u32, String, i32)> {
    let re = regex::Regex::new(&format!(
        r"(?m)^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d trc \[(?:async|sync)/\d+\]: {}: giving up after (\d+) starts in (\S+) \(last exitcode=(\d+)\): .+$",
        regex::escape(name)
    ))
    .unwrap();
    re.captures_iter(stderr)
        .map(|c| (c[1].parse().unwrap(), c[2].to_owned(), c[3].parse().unwrap()))
        .collect()
}

/// Waits until `$DIR/<file>` holds the pid of a running `sleep` other than `not`; returns it.
fn wait_sleep_pid(dir: &Path, file: &str, not: Option<i32>) -> i32 {
    let path = dir.join(file);
    let read = || std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<i32>().ok());
    wait_until(&format!("{} to name a new running sleep", path.display()), || {
        read().is_some_and(|pid| {
            Some(pid) != not
                && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
        })
    });
    read().unwrap()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid read from a task of this test, checked to be running.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

// ----- which exits restart ------------------------------------------------------------------

/// One group under `wait_all`: a task that fails (exit 3) and one that succeeds (exit 0), both
/// with `restart: <policy>` (no header block at all for `None`), restart-delay 0 and a start
/// limit of 3 in 60 s. Returns the run and how often each task started.
fn failing_and_succeeding(policy: Option<&str>) -> (Output, usize, usize) {
    let dir = tmp();
    let restart = policy.map(|p| format!("restart: {p}"));
    let directives: Vec<&str> = match &restart {
        Some(r) => vec![r, "restart-delay: 0", "start-limit: 3 in 60s"],
        None => vec![],
    };
    task(dir.path(), "async.fails", &directives, &format!("{}; exit 3", count_start("fails")));
    task(dir.path(), "async.succeeds", &directives, &format!("{}; exit 0", count_start("succeeds")));
    let out = trc(dir.path()).env("RC_WAIT_POLICY", "wait_all").env("RC_VERBOSE", "true").run();
    (out, starts(dir.path(), "fails"), starts(dir.path(), "succeeds"))
}

#[test]
fn on_failure_restarts_a_failing_task_and_not_a_succeeding_one() {
    let (out, fails, succeeds) = failing_and_succeeding(Some("on-failure"));
    assert_eq!((fails, succeeds), (3, 1), "starts of (fails, succeeds)\n{out:?}");
    assert_eq!(out.code(), 3, "wait_all: the first failed task's status\n{out:?}");
    let zero = |n| ("0s".to_owned(), n);
    assert_eq!(restarts(&out.stdout, "trc.d/async.fails"), [zero(1), zero(2)], "{out:?}");
    assert_eq!(restarts(&out.stdout, "trc.d/async.succeeds"), [], "{out:?}");
    assert_eq!(give_ups(&out.stderr, "fails"), [(3, "1m".to_owned(), 3)], "{out:?}");
    assert_eq!(give_ups(&out.stderr, "succeeds"), [], "{out:?}");
}

#[test]
fn always_restarts_a_failing_and_a_succeeding_task() {
    let (out, fails, succeeds) = failing_and_succeeding(Some("always"));
    assert_eq!((fails, succeeds), (3, 3), "starts of (fails, succeeds)\n{out:?}");
    assert_eq!(out.code(), 3, "wait_all: the first failed task's status\n{out:?}");
    assert_eq!(restarts(&out.stdout, "trc.d/async.succeeds").len(), 2, "{out:?}");
    assert_eq!(give_ups(&out.stderr, "fails"), [(3, "1m".to_owned(), 3)], "{out:?}");
    assert_eq!(give_ups(&out.stderr, "succeeds"), [(3, "1m".to_owned(), 0)], "{out:?}");
}

#[test]
fn never_is_the_default_and_restarts_nothing() {
    let (out, fails, succeeds) = failing_and_succeeding(None);
    assert_eq!((fails, succeeds), (1, 1), "starts of (fails, succeeds)\n{out:?}");
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(!out.stdout.contains("Restarting"), "{out:?}");
    assert!(!out.stderr.contains("giving up"), "{out:?}");
}

#[test]
fn restart_never_restarts_nothing() {
    let (out, fails, succeeds) = failing_and_succeeding(Some("never"));
    assert_eq!((fails, succeeds), (1, 1), "starts of (fails, succeeds)\n{out:?}");
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(!out.stdout.contains("Restarting"), "{out:?}");
}

/// A task killed by a signal that trc did not send has failed: `on-failure` restarts it.
/// `$$` of a shell task file is the task's own pid (its `Launching` line says so), and
/// `exec sleep` keeps it.
fn killed_from_outside_is_restarted(sig: i32, status: i32) {
    let dir = tmp();
    task(
        dir.path(),
        "async.victim",
        &["restart: on-failure", "restart-delay: 0"],
        &format!(
            "{}; echo $$ > \"$DIR/victim.tmp\"; mv \"$DIR/victim.tmp\" \"$DIR/victim.pid\"; exec sleep 1000",
            count_start("victim")
        ),
    );
    let running = trc(dir.path()).env("RC_VERBOSE", "true").spawn();
    let first = wait_sleep_pid(dir.path(), "victim.pid", None);
    kill(first, sig);
    let second = wait_sleep_pid(dir.path(), "victim.pid", Some(first));
    assert!(!process_alive(first), "the killed run {first} is still there");
    assert_eq!(starts(dir.path(), "victim"), 2);
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    assert_eq!(launches(&out.stdout, "trc.d/async.victim"), [first, second], "{out:?}");
    assert!(
        out.stdout.contains(&format!("[async/{first}]: Exiting in the background (exitcode={status}): ")),
        "{out:?}"
    );
    assert_eq!(restarts(&out.stdout, "trc.d/async.victim"), [("0s".to_owned(), 1)], "{out:?}");
    assert_eq!(starts(dir.path(), "victim"), 2, "started again at teardown\n{out:?}");
    assert!(!process_alive(second), "{out:?}");
}

#[test]
fn task_sigkilled_from_outside_is_restarted_under_on_failure() {
    killed_from_outside_is_restarted(libc::SIGKILL, 137);
}

#[test]
fn task_sigtermed_from_outside_is_restarted_under_on_failure() {
    killed_from_outside_is_restarted(libc::SIGTERM, 143);
}

/// A program that cannot be started (its `#!` interpreter is missing: 127) is subject to its
/// restart policy like any other exit, and gives up at its start limit.
#[test]
fn task_that_cannot_start_is_restarted_and_gives_up() {
    let dir = tmp();
    write_task(
        dir.path(),
        "async.ghost",
        "#!/nonexistent/interpreter\n### BEGIN TRC\n# restart: on-failure\n# restart-delay: 0\n\
         # start-limit: 3 in 60s\n### END TRC\n",
    );
    let path = dir.path().join("trc.d/async.ghost");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = trc(dir.path()).env("RC_VERBOSE", "true").run();
    assert_eq!(out.code(), 127, "{out:?}");
    assert_eq!(launches(&out.stdout, "trc.d/async.ghost").len(), 3, "{out:?}");
    assert_eq!(out.stderr.matches("cannot start").count(), 3, "{out:?}");
    assert_eq!(give_ups(&out.stderr, "ghost"), [(3, "1m".to_owned(), 127)], "{out:?}");
}

// ----- the start limit and the wait policy --------------------------------------------------

/// Under `wait_any` a task that gives up ends the group with its own status, although another
/// task still runs; the error is shown without `RC_VERBOSE`.
#[test]
fn start_limit_gives_up_after_exactly_n_starts_and_wait_any_ends_with_its_status() {
    let dir = tmp();
    task(
        dir.path(),
        "async.fails",
        &["restart: on-failure", "restart-delay: 0", "start-limit: 3 in 60s"],
        &format!("{}; echo \"run $n\"; exit 3", count_start("fails")),
    );
    task(dir.path(), "async.other", &[], "sleep 1000");
    let out = trc(dir.path()).env("RC_STOP_TIMEOUT", "2s").run();
    assert_eq!(out.code(), 3, "the status of the task that gave up\n{out:?}");
    assert_eq!(starts(dir.path(), "fails"), 3, "{out:?}");
    assert_eq!(give_ups(&out.stderr, "fails"), [(3, "1m".to_owned(), 3)], "{out:?}");
    let label = format!("): {}\n", dir.path().join("trc.d/async.fails").display());
    assert!(out.stderr.contains(&label), "the error names the task's file\n{out:?}");
    assert_eq!(out.stdout, "fails: run 1\nfails: run 2\nfails: run 3\n", "{out:?}");
}

/// Under `wait_all` the rest of the group goes on after a task gave up: another task is still
/// running then, and finishes by itself (exit 0, its last line written) when the test lets it;
/// trc then exits with the status of the task that gave up (the first failed one).
#[test]
fn start_limit_under_wait_all_lets_the_rest_of_the_group_finish() {
    let dir = tmp();
    task(
        dir.path(),
        "async.fails",
        &["restart: on-failure", "restart-delay: 0", "start-limit: 3 in 60s"],
        &format!("{}; exit 3", count_start("fails")),
    );
    task(dir.path(), "async.other", &[], &until_file("go", "echo other-done; exit 0"));
    let mut running = trc(dir.path()).env("RC_WAIT_POLICY", "wait_all").env("RC_VERBOSE", "true").spawn();
    running.wait_for_line("fails: giving up after 3 starts");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), 3, "{out:?}");
    assert_eq!(starts(dir.path(), "fails"), 3, "{out:?}");
    assert!(out.stdout.contains("other: other-done\n"), "the other task was not let finish\n{out:?}");
    assert!(out.stdout.contains("Exiting in the background (exitcode=0): "), "{out:?}");
    assert!(!out.stdout.contains("(exitcode=143)"), "{out:?}");
}

/// Under `wait_err` a failure that will be restarted is not the group's failure: the group
/// ends when all tasks have finished, with 0.
#[test]
fn a_failure_that_is_restarted_does_not_end_the_group_under_wait_err() {
    let dir = tmp();
    task(
        dir.path(),
        "async.flaky",
        &["restart: on-failure", "restart-delay: 0"],
        &format!("{}; if [ $n -lt 3 ]; then exit 3; fi; exit 0", count_start("flaky")),
    );
    task(
        dir.path(),
        "async.other",
        &[],
        "for _i in $(seq 1000); do \
           [ -e \"$DIR/flaky.starts\" ] && [ \"$(wc -l < \"$DIR/flaky.starts\")\" -ge 3 ] && break; \
           sleep 0.03; \
         done; echo other-done",
    );
    let out = trc(dir.path()).env("RC_WAIT_POLICY", "wait_err").env("RC_VERBOSE", "true").run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(starts(dir.path(), "flaky"), 3, "{out:?}");
    assert!(out.stdout.contains("other: other-done\n"), "{out:?}");
}

/// Starts that left the window do not count: with a restart delay longer than the window,
/// only the current start is ever inside it, so a limit of 2 is never reached. The same task
/// with a long window gives up after 2 starts.
#[test]
fn starts_outside_the_start_limit_window_do_not_count() {
    let run = |limit: &str| {
        let dir = tmp();
        let limit = format!("start-limit: {limit}");
        task(
            dir.path(),
            "async.flaky",
            &["restart: on-failure", "restart-delay: 250ms", "restart-max-delay: 250ms", &limit],
            &format!("{}; if [ $n -lt 5 ]; then exit 3; fi; exit 0", count_start("flaky")),
        );
        let out = trc(dir.path()).run();
        (out, starts(dir.path(), "flaky"))
    };
    let (out, n) = run("2 in 200ms");
    assert_eq!((out.code(), n), (0, 5), "{out:?}");
    assert!(!out.stderr.contains("giving up"), "{out:?}");
    let (out, n) = run("2 in 60s");
    assert_eq!((out.code(), n), (3, 2), "{out:?}");
    assert_eq!(give_ups(&out.stderr, "flaky"), [(2, "1m".to_owned(), 3)], "{out:?}");
}

/// The default start limit is 5 in 60 s; `none` lifts it.
#[test]
fn default_start_limit_is_5_and_none_lifts_it() {
    let run = |directives: &[&str]| {
        let dir = tmp();
        task(
            dir.path(),
            "async.flaky",
            directives,
            &format!("{}; if [ $n -lt 9 ]; then exit 3; fi; exit 0", count_start("flaky")),
        );
        let out = trc(dir.path()).run();
        (out, starts(dir.path(), "flaky"))
    };
    let (out, n) = run(&["restart: on-failure", "restart-delay: 0"]);
    assert_eq!((out.code(), n), (3, 5), "{out:?}");
    assert_eq!(give_ups(&out.stderr, "flaky"), [(5, "1m".to_owned(), 3)], "{out:?}");
    let (out, n) = run(&["restart: on-failure", "restart-delay: 0", "start-limit: none"]);
    assert_eq!((out.code(), n), (0, 9), "{out:?}");
    assert!(!out.stderr.contains("giving up"), "{out:?}");
}

// ----- backoff ------------------------------------------------------------------------------

/// The delay starts at restart-delay, doubles on each restart and stops at restart-max-delay:
/// the delays trc logs are exact; the gaps between the starts the task recorded are at least
/// those delays; and the whole run is far shorter than uncapped doubling (150 ms × 127 =
/// 19 s of delays) would take.
#[test]
fn backoff_doubles_from_restart_delay_up_to_restart_max_delay() {
    let dir = tmp();
    task(
        dir.path(),
        "async.flaky",
        &["restart: on-failure", "restart-delay: 150ms", "restart-max-delay: 600ms", "start-limit: 8 in 60s"],
        &format!("{}; exit 3", stamp("flaky")),
    );
    let out = trc(dir.path()).env("RC_VERBOSE", "true").run();
    assert_eq!(out.code(), 3, "{out:?}");
    let logged: Vec<(String, u32)> = restarts(&out.stdout, "trc.d/async.flaky");
    let expected_ms = [150, 300, 600, 600, 600, 600, 600];
    let expected: Vec<(String, u32)> =
        expected_ms.iter().zip(1..).map(|(ms, n)| (format!("{ms}ms"), n)).collect();
    assert_eq!(logged, expected, "{out:?}");
    assert_eq!(give_ups(&out.stderr, "flaky"), [(8, "1m".to_owned(), 3)], "{out:?}");
    let times = times(dir.path(), "flaky");
    assert_eq!(times.len(), 8, "{out:?}");
    let gaps = gaps(&times);
    for (i, (gap, ms)) in gaps.iter().zip(expected_ms).enumerate() {
        assert!(
            *gap + Duration::from_millis(10) >= Duration::from_millis(ms),
            "restart {} came {gap:?} after the start before it, sooner than its {ms} ms delay\n{gaps:?}",
            i + 1
        );
    }
    let span = *times.last().unwrap() - times[0];
    assert!(span < Duration::from_secs(12), "8 starts took {span:?}: the delay was not capped\n{gaps:?}");
}

/// A run that lasted at least restart-max-delay resets the doubling: the restart after it
/// waits restart-delay again, and the doubling starts over.
#[test]
fn a_stable_run_resets_the_backoff() {
    let dir = tmp();
    task(
        dir.path(),
        "async.flaky",
        &["restart: on-failure", "restart-delay: 250ms", "restart-max-delay: 2s", "start-limit: none"],
        &format!(
            "{}; {}; case $n in 3) sleep 2.2; exit 3;; 5) exit 0;; *) exit 3;; esac",
            count_start("flaky"),
            stamp("flaky")
        ),
    );
    let out = trc(dir.path()).env("RC_VERBOSE", "true").run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(starts(dir.path(), "flaky"), 5, "{out:?}");
    let logged = restarts(&out.stdout, "trc.d/async.flaky");
    // Without the reset the third delay would be 1 s (250 ms doubled twice).
    let expected = [("250ms", 1), ("500ms", 2), ("250ms", 3), ("500ms", 4)];
    let expected: Vec<(String, u32)> = expected.iter().map(|(d, n)| (d.to_string(), *n)).collect();
    assert_eq!(logged, expected, "{out:?}");
    let gaps = gaps(&times(dir.path(), "flaky"));
    for (i, ms) in [250, 500, 2200 + 250, 500].into_iter().enumerate() {
        assert!(gaps[i] + Duration::from_millis(10) >= Duration::from_millis(ms), "gap {i}: {gaps:?}");
    }
}

// ----- output across restarts ---------------------------------------------------------------

/// Every line of every run arrives, prefixed, in order, on the stream it was written to; each
/// run's lines come after its `Launching` line and before its `Exiting` line.
#[test]
fn output_stays_prefixed_and_complete_across_restarts() {
    let dir = tmp();
    task(
        dir.path(),
        "async.out",
        &["restart: on-failure", "restart-delay: 0", "start-limit: 3 in 60s"],
        &format!(
            "{}; for i in $(seq 1000); do echo \"run $n line $i\"; done; \
             for i in $(seq 100); do echo \"run $n err $i\" >&2; done; exit 3",
            count_start("out")
        ),
    );
    let out = trc(dir.path()).env("RC_VERBOSE", "true").run();
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert_eq!(starts(dir.path(), "out"), 3);

    let stdout: Vec<&str> = out.stdout.lines().collect();
    let task_lines: Vec<&str> = stdout.iter().copied().filter(|l| l.contains("run ")).collect();
    let expected: Vec<String> =
        (1..=3).flat_map(|n| (1..=1000).map(move |i| format!("out: run {n} line {i}"))).collect();
    assert_eq!(task_lines, expected, "stdout lines of the task, in order");

    let err_lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains("run ")).collect();
    let expected: Vec<String> =
        (1..=3).flat_map(|n| (1..=100).map(move |i| format!("out: run {n} err {i}"))).collect();
    assert_eq!(err_lines, expected, "stderr lines of the task, in order");

    let position = |needle: &str| -> Vec<usize> {
        stdout.iter().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i).collect()
    };
    let launched = position("]: Launching in the background: ");
    let exited = position("]: Exiting in the background (exitcode=3): ");
    assert_eq!((launched.len(), exited.len()), (3, 3), "{}", out.stdout);
    for n in 1..=3 {
        let first = stdout.iter().position(|l| *l == format!("out: run {n} line 1")).unwrap();
        let last = stdout.iter().position(|l| *l == format!("out: run {n} line 1000")).unwrap();
        assert!(launched[n - 1] < first && last < exited[n - 1], "run {n}: lines out of its run");
    }
}

// ----- teardown and restarts ----------------------------------------------------------------

/// SIGTERM while a task waits out a one-hour restart delay: trc tears down at once (the
/// waiting task is cancelled, not waited for) and never starts the task again.
#[test]
fn sigterm_during_a_long_restart_delay_tears_down_at_once() {
    let dir = tmp();
    task(
        dir.path(),
        "async.slow",
        &["restart: on-failure", "restart-delay: 1h", "restart-max-delay: 2h"],
        &format!("{}; exit 3", count_start("slow")),
    );
    let mut running = trc(dir.path()).env("RC_VERBOSE", "true").spawn();
    running.wait_for_line("Restarting in the background in 1h (restart 1)");
    let sent = Instant::now();
    running.signal(libc::SIGTERM);
    let out = running.wait();
    let took = sent.elapsed();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(took < Duration::from_secs(10), "teardown took {took:?}\n{out:?}");
    assert_eq!(starts(dir.path(), "slow"), 1, "{out:?}");
    assert_eq!(launches(&out.stdout, "trc.d/async.slow").len(), 1, "{out:?}");
}

/// The same when the wait policy ends the group: a sync task exits while the other task waits
/// out its one-hour delay.
#[test]
fn policy_ending_the_group_cancels_a_pending_restart() {
    let dir = tmp();
    task(
        dir.path(),
        "async.slow",
        &["restart: always", "restart-delay: 1h", "restart-max-delay: 2h"],
        &format!("{}; exit 0", count_start("slow")),
    );
    task(dir.path(), "sync.end", &[], &until_file("go", "exit 5"));
    let mut running = trc(dir.path()).env("RC_VERBOSE", "true").spawn();
    running.wait_for_line("Restarting in the background in 1h (restart 1)");
    let sent = Instant::now();
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.wait();
    let took = sent.elapsed();
    assert_eq!(out.code(), 5, "{out:?}");
    assert!(took < Duration::from_secs(10), "teardown took {took:?}\n{out:?}");
    assert_eq!(starts(dir.path(), "slow"), 1, "{out:?}");
}

/// A task that trc stops at teardown is never restarted, whatever its status then: with
/// `restart: always` it exits 0 on the stop signal (case 1), or ignores it and is killed after
/// its stop-timeout (137, case 2).
fn stopped_by_trc_is_not_restarted(trap: &str, extra: &[&str]) {
    let dir = tmp();
    let mut directives = vec!["restart: always", "restart-delay: 0"];
    directives.extend(extra);
    task(
        dir.path(),
        "async.keep",
        &directives,
        &format!("{trap}; {}; {}", count_start("keep"), sleeper(dir.path(), "keep")),
    );
    task(dir.path(), "sync.end", &[], &until_file("go", "exit 5"));
    let running = trc(dir.path()).env("RC_VERBOSE", "true").spawn();
    wait_sleeping(dir.path(), "keep");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), 5, "{out:?}");
    assert_eq!(starts(dir.path(), "keep"), 1, "{out:?}");
    assert!(!out.stdout.contains("Restarting"), "{out:?}");
    assert_eq!(launches(&out.stdout, "trc.d/async.keep").len(), 1, "{out:?}");
}

#[test]
fn task_stopped_at_teardown_is_not_restarted() {
    stopped_by_trc_is_not_restarted("trap 'exit 0' TERM", &[]);
}

#[test]
fn task_killed_at_teardown_after_its_stop_timeout_is_not_restarted() {
    stopped_by_trc_is_not_restarted("trap '' TERM", &["stop-timeout: 300ms"]);
}

/// What earlier runs of a restarted task left behind (a background process whose parent
/// exited) still runs while the group does, and is stopped when trc ends.
#[test]
fn leftovers_of_earlier_runs_are_stopped_at_the_end() {
    let dir = tmp();
    task(
        dir.path(),
        "async.leaky",
        &["restart: on-failure", "restart-delay: 0", "start-limit: 3 in 60s"],
        "sleep 1000 & echo $! >> \"$DIR/leaky.pids\"; exit 3",
    );
    task(dir.path(), "async.other", &[], &until_file("go", "exit 0"));
    let mut running = trc(dir.path()).env("RC_WAIT_POLICY", "wait_all").spawn();
    running.wait_for_line("leaky: giving up after 3 starts");
    let pids: Vec<i32> = std::fs::read_to_string(dir.path().join("leaky.pids"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    for pid in &pids {
        wait_until(&format!("leftover {pid} to run sleep"), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
        });
    }
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), 3, "{out:?}");
    for pid in pids {
        assert!(!process_alive(pid), "leftover {pid} outlived trc\n{out:?}");
    }
}

// ----- which tasks restart, and where the settings come from --------------------------------

/// Sync tasks restart too; the next sync task starts only once the previous one has finished
/// for good, and a failure that was restarted is not the group's (`wait_all`: 0).
#[test]
fn sync_task_restarts_before_the_next_sync_task_runs() {
    let dir = tmp();
    task(
        dir.path(),
        "sync.1",
        &["restart: on-failure", "restart-delay: 0"],
        &format!("{}; if [ $n -lt 3 ]; then exit 3; fi; exit 0", count_start("s1")),
    );
    task(dir.path(), "sync.2", &[], "wc -l < \"$DIR/s1.starts\" > \"$DIR/s2.saw\"");
    let out = trc(dir.path()).env("RC_WAIT_POLICY", "wait_all").env("RC_VERBOSE", "true").run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(starts(dir.path(), "s1"), 3, "{out:?}");
    let saw = std::fs::read_to_string(dir.path().join("s2.saw")).unwrap();
    assert_eq!(saw.trim(), "3", "sync.2 started before sync.1 finished for good\n{out:?}");
    assert_eq!(restarts(&out.stdout, "trc.d/sync.1").len(), 2, "{out:?}");
    assert!(out.stdout.contains("Restarting in the foreground in 0s (restart 1): "), "{out:?}");
}

/// Boot and halt tasks run once, whatever their directives and the group's default.
#[test]
fn boot_and_halt_tasks_are_never_restarted() {
    let dir = tmp();
    let always = ["restart: always", "restart-delay: 0"];
    task(dir.path(), "boot.b", &always, &count_start("boot"));
    task(dir.path(), "halt.h", &always, &format!("{}; exit 0", count_start("halt")));
    task(dir.path(), "async.a", &["restart: never"], &format!("{}; exit 0", count_start("async")));
    let out = trc(dir.path()).env("RC_RESTART", "always").env("RC_RESTART_DELAY", "0").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let counts = [starts(dir.path(), "boot"), starts(dir.path(), "halt"), starts(dir.path(), "async")];
    assert_eq!(counts, [1, 1, 1], "starts of boot, halt, async\n{out:?}");
}

/// The `RC_*` variables give the default of every task, also of `-D` tasks.
#[test]
fn rc_variables_supervise_command_line_tasks() {
    let dir = tmp();
    let out = trc_args(dir.path(), &["-D", &format!("{}; exit 4", count_start("d"))])
        .env("RC_RESTART", "on-failure")
        .env("RC_RESTART_DELAY", "0")
        .env("RC_START_LIMIT", "3 in 60s")
        .env("RC_VERBOSE", "true")
        .run();
    assert_eq!(out.code(), 4, "{out:?}");
    assert_eq!(starts(dir.path(), "d"), 3, "{out:?}");
    assert_eq!(give_ups(&out.stderr, "async-1"), [(3, "1m".to_owned(), 4)], "{out:?}");
}

/// The long options give the defaults too (also of the trailing command), and win over the
/// variables.
#[test]
fn long_options_supervise_the_trailing_command_and_win_over_variables() {
    let dir = tmp();
    let out = trc_args(
        dir.path(),
        &[
            "--restart",
            "on-failure",
            "--restart-delay",
            "0",
            "--start-limit",
            "3 in 60s",
            "sh",
            "-c",
            "echo start >> \"$DIR/cmd.starts\"; exit 4",
        ],
    )
    .env("RC_RESTART", "never")
    .env("RC_START_LIMIT", "10 in 60s")
    .run();
    assert_eq!(out.code(), 4, "{out:?}");
    assert_eq!(starts(dir.path(), "cmd"), 3, "{out:?}");
    assert_eq!(give_ups(&out.stderr, "cmd"), [(3, "1m".to_owned(), 4)], "{out:?}");
}

/// A task's own directive wins over the group's default.
#[test]
fn a_directive_wins_over_the_group_default() {
    let dir = tmp();
    task(dir.path(), "async.own", &["restart: never"], &format!("{}; exit 3", count_start("own")));
    task(
        dir.path(),
        "async.dflt",
        &[],
        &format!("{}; if [ $n -lt 2 ]; then exit 3; fi; exit 0", count_start("dflt")),
    );
    let out = trc(dir.path())
        .env("RC_RESTART", "always")
        .env("RC_RESTART_DELAY", "0")
        .env("RC_START_LIMIT", "2 in 60s")
        .env("RC_WAIT_POLICY", "wait_all")
        .run();
    assert_eq!(starts(dir.path(), "own"), 1, "{out:?}");
    assert_eq!(starts(dir.path(), "dflt"), 2, "{out:?}");
    assert_eq!(out.code(), 3, "{out:?}");
}

// ----- bad directives -----------------------------------------------------------------------

/// Runs trc on a work dir holding `file` with `text`, next to a boot and an async task that
/// leave a marker when they run: expects status 78 and an error naming `file:line` with
/// `needle`, and nothing started.
fn bad_directive(file: &str, text: &str, line: usize, needle: &str) -> Output {
    let dir = tmp();
    write_task(dir.path(), file, text);
    task(dir.path(), "boot.mark", &[], "touch \"$DIR/boot.ran\"");
    task(dir.path(), "async.mark", &[], "touch \"$DIR/async.ran\"");
    let out = trc(dir.path()).env("RC_VERBOSE", "true").run();
    let case = format!("{file} {text:?}");
    assert_eq!(out.code(), 78, "{case}\n{out:?}");
    let at = format!("{}:{line}: ", dir.path().join("trc.d").join(file).display());
    let error = out.stderr.lines().find(|l| l.contains(&at));
    let error = error.unwrap_or_else(|| panic!("{case}: no error naming {at:?}\n{out:?}"));
    assert!(error.contains(needle), "{case}: {error:?} does not say {needle:?}");
    for marker in ["boot.ran", "async.ran"] {
        assert!(!dir.path().join(marker).exists(), "{case}: {marker}: a task ran\n{out:?}");
    }
    assert!(!out.stdout.contains("Launching"), "{case}\n{out:?}");
    out
}

#[test]
fn every_bad_directive_is_a_configuration_error_naming_file_and_line() {
    let block = |lines: &str| format!("### BEGIN TRC\n{lines}### END TRC\nexit 0\n");
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "async.bad",
            format!("#!/bin/bash\n{}", block("# restart: on-failure\n# restrat: always\n")),
            4,
            "unknown directive \"restrat\"",
        ),
        ("async.bad", block("# restart-delay: soon\n"), 2, "not a duration"),
        ("async.bad", block("# restart-max-delay: 5 parsecs\n"), 2, "not a duration"),
        ("sync.bad", block("#\n# restart: sometimes\n"), 3, "unknown restart policy \"sometimes\""),
        ("async.bad", block("# start-limit: x in 60s\n"), 2, "is not a start limit"),
        ("async.bad", block("# start-limit: 3 in nonsense\n"), 2, "not a duration"),
        ("async.bad", block("# start-limit: 0 in 1s\n"), 2, "at least 1 start"),
        ("async.bad", block("# start-limit: 3\n"), 2, "is not a start limit"),
        ("async.bad", block("# restart: always\n# stop-signal: FOO\n"), 3, "unknown signal \"FOO\""),
        ("async.bad", block("# stop-signal: 99\n"), 2, "99 is not a signal number"),
        ("async.bad", block("# stop-timeout: forever\n"), 2, "not a duration"),
        ("async.bad", block("# log-prefix: maybe\n"), 2, "\"maybe\" is not yes or no"),
        ("async.bad", block("# restart always\n"), 2, "is not a \"key: value\" directive"),
        (
            "async.bad",
            block("# restart-max-delay: 1s\n# restart-delay: 10s\n"),
            3,
            "restart-max-delay (1s) is shorter than restart-delay (10s)",
        ),
        ("async.bad", "echo hi\n### BEGIN TRC\n# restart: always\n".into(), 2, "no \"### END TRC\" line"),
        (
            "async.bad",
            "### BEGIN TRC\n# restart: always\nexit 0\n".into(),
            3,
            "not a comment line inside the TRC block",
        ),
        ("boot.bad", block("# restart: sometimes\n"), 2, "unknown restart policy"),
        ("halt.bad", block("# stop-timeout: soon\n"), 2, "not a duration"),
        (
            "async.js",
            "#!/usr/bin/env node\n// BEGIN TRC\n// restart: always\n// restart-delay: later\n// END TRC\n"
                .into(),
            4,
            "not a duration",
        ),
    ];
    for (file, text, line, needle) in &cases {
        bad_directive(file, text, *line, needle);
    }
}

/// Bad `RC_*` defaults of the directives are configuration errors naming the variable.
#[test]
fn bad_rc_defaults_are_configuration_errors() {
    for (var, value, needle) in [
        ("RC_RESTART", "maybe", "unknown restart policy"),
        ("RC_RESTART_DELAY", "soon", "not a duration"),
        ("RC_RESTART_MAX_DELAY", "1ms", "shorter than restart-delay"),
        ("RC_START_LIMIT", "0 in 1s", "at least 1 start"),
        ("RC_START_LIMIT", "lots", "is not a start limit"),
    ] {
        let dir = tmp();
        let out = trc_args(dir.path(), &["-D", "touch \"$DIR/ran\""]).env(var, value).run();
        assert_eq!(out.code(), 78, "{var}={value}\n{out:?}");
        assert!(out.stderr.contains(var) && out.stderr.contains(needle), "{var}={value}\n{out:?}");
        assert!(!dir.path().join("ran").exists(), "{var}={value}: the task ran\n{out:?}");
    }
}

/// README ("Bad input"): `trc: /x/trc.d/async.web:4: "later" is not a duration ...`: the error
/// quotes the bad value, as it does for restart policies, start limits, signals and yes/no.
#[test]
fn bad_duration_directive_error_quotes_the_value() {
    for key in ["restart-delay", "restart-max-delay", "stop-timeout"] {
        let text = format!("### BEGIN TRC\n# {key}: later\n### END TRC\nexit 0\n");
        let out = bad_directive("async.web", &text, 2, "not a duration");
        assert!(out.stderr.contains("\"later\""), "{key}: the error does not quote \"later\"\n{out:?}");
    }
}

/// Directives that are fine with the defaults trc starts with but not with the defaults a boot
/// task set (`RC_RESTART_DELAY=10s` against the file's `restart-max-delay: 5s`). README: a bad
/// directive is a configuration error (78) naming file:line, and a bad `RC_*` value set by
/// boot makes boot fail (78), before any task of the group starts.
#[test]
fn directives_clashing_with_defaults_set_by_boot_are_a_configuration_error() {
    let dir = tmp();
    task(dir.path(), "boot.set", &[], "RC_RESTART_DELAY=10s");
    task(
        dir.path(),
        "async.web",
        &["restart: on-failure", "restart-max-delay: 5s"],
        &format!("{}; exit 3", count_start("web")),
    );
    let out = trc(dir.path()).run();
    assert_eq!(out.code(), 78, "{out:?}");
    let at = format!("{}:3: ", dir.path().join("trc.d/async.web").display());
    assert!(out.stderr.contains(&at), "{out:?}");
    assert_eq!(starts(dir.path(), "web"), 0, "the task ran without its directives\n{out:?}");
}

/// A task that cannot be started at all (its program is not in `PATH`, so no process is made:
/// the failed start once spun at 80,000 tries a second, past its start limit) counts every
/// failed start: it gives up at the default start limit (5 in 60s), its retries back off from
/// 100 ms (doubling: 1.5 s in all) although `restart-delay` is 0, its lines name it, and trc
/// removes its runtime dir. (Without bash for a shell task trc does not start at all: 78.)
#[test]
fn a_task_that_cannot_start_at_all_gives_up_at_its_start_limit() {
    let dir = tmp();
    let xdg = dir.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::create_dir(dir.path().join("trc.d")).unwrap();
    let web = "### BEGIN TRC\n# command: trc-test-no-such-program --flag\n### END TRC\n";
    std::fs::write(dir.path().join("trc.d/async.web"), web).unwrap();
    let started = Instant::now();
    let out = trc_args(dir.path(), &["--restart", "always", "--restart-delay", "0"])
        .env("XDG_RUNTIME_DIR", xdg.to_str().unwrap())
        .run();
    let took = started.elapsed();
    assert_eq!(out.code(), 127, "{out:?}");
    assert_eq!(out.stderr.matches("cannot start web (").count(), 5, "{out:?}");
    assert_eq!(give_ups(&out.stderr, "web"), [(5, "1m".to_owned(), 127)], "{out:?}");
    assert!(!out.stderr.contains("/0]"), "a line without a process names pid 0: {out:?}");
    assert!(took >= Duration::from_millis(1500), "4 retries back off 100+200+400+800 ms: {took:?}");
    let left: Vec<_> = std::fs::read_dir(xdg.join("trc"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime dirs left: {left:?}");
}
