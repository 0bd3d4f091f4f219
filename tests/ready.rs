//! Readiness and dependencies (issue #13): every `ready:` kind holds a dependent (`after:`)
//! back until its `Ready:` line; `ready-timeout` makes a failed start; a chain starts in order
//! and stops in reverse; cycles and unknown names are configuration errors before anything
//! starts; a dependency that gives up keeps its dependent from starting; trc's own READY=1
//! waits for every async task to be ready; a task's own READY=1 and STATUS= show in trcctl.

mod common;

use common::sandbox::{int_of, str_of, Sandbox};
use common::{wait_until, Trc, DEADLINE};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `trc.d/<stage>.<name>` with a header of `directives` and a shell body.
fn task(work: &Path, file: &str, directives: &[&str], body: &str) {
    let mut text = String::from("### BEGIN TRC\n");
    for d in directives {
        text.push_str(&format!("# {d}\n"));
    }
    text.push_str("### END TRC\n");
    text.push_str(body);
    text.push('\n');
    std::fs::write(work.join("trc.d").join(file), text).unwrap();
}

/// The position of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Task `a` becomes ready by `ready` after a short delay (its `body`); `b` starts after it.
/// The run must show a's `Ready:` line before b's launch line, and b must see a's marker.
fn dependent_waits_for(ready: &str, a_body: &str) {
    dependent_waits_for_in(Sandbox::new(), ready, a_body)
}

/// `touch $DIR/a.signalled` right before the readiness signal.
const MARK: &str = "touch \"$DIR/a.signalled\"";

#[test]
fn ready_log_holds_the_dependent_until_the_line() {
    dependent_waits_for(
        "log ^listening on",
        &format!("sleep 0.3; echo not yet; {MARK}; echo listening on 80; exec sleep 30"),
    );
}

#[test]
fn ready_fd_holds_the_dependent_until_the_newline() {
    dependent_waits_for(
        "fd 3",
        &format!("sleep 0.3; echo -n partial >&3; sleep 0.1; {MARK}; echo >&3; exec sleep 30"),
    );
}

#[test]
fn ready_notify_holds_the_dependent_until_ready_1() {
    let notify = "import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
                  s.sendto(b'STATUS=warming up', os.environ['NOTIFY_SOCKET']); \
                  open(os.environ['DIR'] + '/a.signalled', 'w').close(); \
                  s.sendto(b'READY=1\\nSTATUS=serving', os.environ['NOTIFY_SOCKET'])";
    dependent_waits_for("notify", &format!("sleep 0.3; python3 -c \"{notify}\"; exec sleep 30"));
}

#[test]
fn ready_check_holds_the_dependent_until_the_command_passes() {
    dependent_waits_for(
        "check test -e \"$DIR/a.signalled\"",
        "sleep 0.3; touch \"$DIR/a.signalled\"; exec sleep 30",
    );
}

#[test]
fn ready_file_holds_the_dependent_until_the_file_exists() {
    // A relative path is taken from trc's directory (the sandbox's root, `$DIR`).
    dependent_waits_for("file a.signalled", "sleep 0.3; touch \"$DIR/a.signalled\"; exec sleep 30");
}

#[test]
fn ready_tcp_holds_the_dependent_until_the_port_answers() {
    let port = free_port();
    let server = format!(
        "import os, socket, time; time.sleep(0.3); s = socket.socket(); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); \
         open(os.environ['DIR'] + '/a.signalled', 'w').close(); s.listen(); time.sleep(30)"
    );
    dependent_waits_for(&format!("tcp 127.0.0.1:{port}"), &format!("exec python3 -c \"{server}\""));
}

#[test]
fn ready_http_holds_the_dependent_until_a_2xx() {
    let port = free_port();
    // 503 until the marker exists, then 200.
    let server = format!(
        "import os, http.server, time\n\
         mark = os.environ['DIR'] + '/a.signalled'\n\
         start = time.time()\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       if time.time() - start > 0.3 and not os.path.exists(mark): open(mark, 'w').close()\n\
         \x20       self.send_response(200 if os.path.exists(mark) and self.path == '/healthz' else 503)\n\
         \x20       self.end_headers()\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let sb = Sandbox::new();
    std::fs::write(sb.root().join("server.py"), server).unwrap();
    dependent_waits_for_in(
        sb,
        &format!("http http://127.0.0.1:{port}/healthz"),
        "exec python3 \"$DIR/server.py\"",
    );
}

fn dependent_waits_for_in(sb: Sandbox, ready: &str, a_body: &str) {
    let work = sb.work("w");
    task(&work, "async.a", &[&format!("ready: {ready}"), "ready-interval: 50ms"], a_body);
    // b checks that a had signalled readiness before b started; its exit ends the group.
    let b = "test -e \"$DIR/a.signalled\" && echo b saw a ready || echo b started too early";
    task(&work, "async.b", &["after: a"], b);
    let out = sb.trc(&work, &["--verbose"]).run();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code(), 0, "{all}");
    assert!(all.contains("b: b saw a ready"), "{all}");
    let stdout = &out.stdout;
    let waiting = line_of(stdout, "Waiting for a to be ready");
    let ready = line_of(stdout, "Ready: ");
    assert!(stdout.lines().nth(ready).unwrap().contains("async.a"), "{all}");
    let b_launch = stdout
        .lines()
        .position(|l| l.contains("Launching in the background") && l.contains("async.b"))
        .unwrap_or_else(|| panic!("b was never launched:\n{all}"));
    assert!(waiting < ready && ready < b_launch, "b was launched before a's Ready line:\n{all}");
}

#[test]
fn a_start_not_ready_in_time_fails_and_the_restart_policy_decides() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    task(
        &work,
        "async.slow",
        &[
            "ready: file never-there",
            "ready-timeout: 300ms",
            "restart: on-failure",
            "restart-delay: 100ms",
            "start-limit: 2 in 60s",
        ],
        "echo started; exec sleep 30",
    );
    task(&work, "async.after", &["after: slow"], "echo must not run");
    let out = sb.trc(&work, &["--wait-policy", "wait_all"]).run();
    let all = format!("{}{}", out.stdout, out.stderr);
    // Twice started, twice not ready in time (said without --verbose), then it gives up.
    assert_eq!(all.matches("slow: started").count(), 2, "{all}");
    assert_eq!(out.stderr.matches("slow is not ready within 300ms (file never-there)").count(), 2, "{all}");
    assert!(out.stderr.contains("giving up after 2 starts"), "{all}");
    // The dependent never ran: finished with the status of its dependency (143: TERM).
    assert!(!all.contains("must not run"), "{all}");
    assert!(
        out.stderr.contains("after does not start: slow, which it starts after, has given up (exitcode=143)"),
        "{all}"
    );
    assert_eq!(out.code(), 143, "{all}");
}

#[test]
fn a_chain_starts_in_order_and_stops_in_reverse() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    // Each traps TERM and takes a while to stop: c the longest, so that without the reverse
    // order a would exit first.
    let body = |name: &str, delay: &str| {
        format!("trap 'sleep {delay}; echo {name} stopped; exit 0' TERM; echo {name} up; sleep 30 & wait")
    };
    task(&work, "async.a", &["ready: log ^a up$"], &body("a", "0"));
    task(&work, "async.b", &["after: a", "ready: log ^b up$"], &body("b", "0.2"));
    task(&work, "async.c", &["after: b", "ready: log ^c up$"], &body("c", "0.5"));
    // A sync task may wait for async ones: it runs once c is ready, and its exit ends the group.
    task(&work, "sync.client", &["after: c"], "echo client ran");
    let out = sb.trc(&work, &["--verbose"]).run();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code(), 0, "{all}");
    let order = |needles: &[&str]| needles.iter().map(|n| line_of(&all, n)).collect::<Vec<_>>();
    let started = order(&["a: a up", "b: b up", "c: c up", "client: client ran"]);
    assert!(started.windows(2).all(|w| w[0] < w[1]), "not started in order: {started:?}\n{all}");
    let stopped = order(&["c: c stopped", "b: b stopped", "a: a stopped"]);
    assert!(stopped.windows(2).all(|w| w[0] < w[1]), "not stopped in reverse: {stopped:?}\n{all}");
}

#[test]
fn cycles_and_unknown_names_are_config_errors_before_anything_starts() {
    for (files, expected) in [
        (
            vec![("async.a", "after: c"), ("async.b", "after: a"), ("async.c", "after: b")],
            "trc.d/async.a:2: a dependency cycle: a -> c -> b -> a",
        ),
        (
            vec![("async.web", "after: db")],
            "trc.d/async.web:2: \"after:\" names an unknown task \"db\" (async tasks: web)",
        ),
        (vec![("async.web", "after: web")], "trc.d/async.web:2: \"after:\" names the task itself"),
        (vec![("boot.setup", "ready: notify")], "trc.d/boot.setup:2: \"ready:\" is for async and sync tasks"),
    ] {
        let sb = Sandbox::new();
        let work = sb.work("w");
        for (file, directive) in &files {
            task(&work, file, &[directive], "touch \"$DIR/ran\"");
        }
        let out = sb.trc(&work, &["-B", "touch \"$DIR/booted\""]).run();
        assert_eq!(out.code(), 78, "{expected}: {out:?}");
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
        assert!(
            !sb.root().join("booted").exists() && !sb.root().join("ran").exists(),
            "something ran: {out:?}"
        );
    }
}

/// A socket standing in for systemd's notify socket.
struct Manager {
    socket: UnixDatagram,
    path: String,
    _dir: tempfile::TempDir,
    seen: Vec<String>,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        Manager { socket, path: path.to_str().unwrap().to_owned(), _dir: dir, seen: Vec::new() }
    }

    /// Takes every message queued now.
    fn take(&mut self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    fn has(&self, line: &str) -> Option<&String> {
        self.seen.iter().find(|m| m.lines().any(|l| l == line))
    }
}

#[test]
fn trc_is_ready_once_every_async_task_is_and_a_task_s_own_status_shows() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let mut manager = Manager::new();
    // `slow` says READY=1 (with a STATUS=) only once the test lets it; `quick` is ready at once.
    let notify = |msg: &str| {
        format!(
            "python3 -c \"import os, socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'{msg}', os.environ['NOTIFY_SOCKET'])\""
        )
    };
    task(
        &work,
        "async.slow",
        &["ready: notify"],
        &format!(
            "{}; while ! test -e \"$DIR/go\"; do sleep 0.05; done; {}; exec sleep 30",
            notify("STATUS=warming up"),
            notify("READY=1\\nSTATUS=serving")
        ),
    );
    task(&work, "async.quick", &[], "exec sleep 30");
    let sup = sb.start_trc(
        sb.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_forever").env("NOTIFY_SOCKET", &manager.path),
    );
    // Its STATUS= shows while it is starting, and trc has not said READY=1.
    wait_until("slow's STATUS= to show", || {
        sb.status("slow").is_some_and(|s| s["notify_status"] == "warming up")
    });
    let slow = sb.status("slow").unwrap();
    assert_eq!(
        (str_of(&slow["state"]).as_str(), &slow["ready"]),
        ("starting", &serde_json::json!(false)),
        "{slow}"
    );
    // The plain status shows it too, below the task's row.
    let plain = sb.ctl(&["status", "slow"]);
    assert_eq!(plain.code, 0, "{plain:?}");
    assert!(plain.stdout.contains("\n  ready: no\n"), "{plain:?}");
    assert!(plain.stdout.contains("\n  status: warming up\n"), "{plain:?}");
    let quick = sb.status("quick").unwrap();
    assert_eq!(
        (str_of(&quick["state"]).as_str(), &quick["ready"]),
        ("running", &serde_json::json!(true)),
        "{quick}"
    );
    manager.take();
    assert!(manager.has("READY=1").is_none(), "READY=1 before slow was ready: {:?}", manager.seen);
    let status = manager
        .seen
        .iter()
        .rev()
        .find_map(|m| m.lines().find_map(|l| l.strip_prefix("STATUS=")))
        .unwrap_or_default();
    assert!(status.contains("1 ready, 1 starting"), "{:?}", manager.seen);
    // Now slow says it is ready: so is trc.
    std::fs::write(sb.root().join("go"), "").unwrap();
    let until = Instant::now() + DEADLINE;
    while manager.has("READY=1").is_none() {
        assert!(Instant::now() < until, "no READY=1 within {DEADLINE:?}: {:?}", manager.seen);
        std::thread::sleep(Duration::from_millis(20));
        manager.take();
    }
    let ready = manager.has("READY=1").unwrap();
    assert!(ready.contains("STATUS=2 running: quick, slow; 2 ready"), "{ready:?}");
    let slow = sb.status("slow").unwrap();
    assert_eq!(slow["state"], "running", "{slow}");
    assert_eq!(slow["ready"], true, "{slow}");
    wait_until("slow's last STATUS= to show", || {
        sb.status("slow").is_some_and(|s| s["notify_status"] == "serving")
    });
    assert!(int_of(&slow["pid"]) > 0);
    drop(sup);
}

#[test]
fn a_dependent_waits_while_its_dependency_restarts_and_trcctl_says_so() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    task(
        &work,
        "async.db",
        &["ready: file db.ready", "restart: always", "restart-delay: 100ms"],
        "while ! test -e \"$DIR/go\"; do sleep 0.05; done; touch db.ready; exec sleep 30",
    );
    task(
        &work,
        "async.web",
        &["after: db", "restart: always", "restart-delay: 100ms"],
        "echo web up; exec sleep 30",
    );
    // trc's cwd is the sandbox root: the relative `db.ready` is found there.
    let trc: Trc = sb.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_forever");
    let _sup = sb.start_trc(trc);
    wait_until("web to wait for db", || {
        sb.status("web")
            .is_some_and(|s| s["state"] == "pending" && s["waiting_for"] == serde_json::json!(["db"]))
    });
    let check = sb.ctl(&["check", "--ready"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(check.stderr.contains("web: waiting for db to be ready"), "{check:?}");
    assert!(check.stderr.contains("db: starting, not ready yet (file db.ready)"), "{check:?}");
    // Held back, it has not been started yet; the plain status says what it waits for.
    assert_eq!(sb.status("web").unwrap()["starts"], 0);
    let plain = sb.ctl(&["status", "web"]);
    assert!(plain.stdout.contains("  waiting for: db to be ready"), "{plain:?}");
    std::fs::write(sb.root().join("go"), "").unwrap();
    wait_until("web to run", || sb.status("web").is_some_and(|s| s["state"] == "running"));
    assert_eq!(sb.status("web").unwrap()["starts"], 1);
    let check = sb.ctl(&["check", "--ready"]);
    assert_eq!(check.code, 0, "{check:?}");

    // db restarts and is not ready for a while; web crashes meanwhile: it waits for db again,
    // and comes back once db is ready.
    std::fs::remove_file(sb.root().join("go")).unwrap();
    std::fs::remove_file(sb.root().join("db.ready")).unwrap();
    let kill = |task: &str| {
        let pid = int_of(&sb.status(task).unwrap()["pid"]);
        // SAFETY: kill(2) on a task's process; no memory involved.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {task}");
    };
    kill("db");
    wait_until("db to start again", || {
        sb.status("db").is_some_and(|s| s["state"] == "starting" && s["starts"] == 2)
    });
    kill("web");
    wait_until("web to wait for db again", || {
        sb.status("web")
            .is_some_and(|s| s["state"] == "pending" && s["waiting_for"] == serde_json::json!(["db"]))
    });
    assert_eq!(sb.status("web").unwrap()["starts"], 1, "a start held back is not counted");
    std::fs::write(sb.root().join("go"), "").unwrap();
    wait_until("web to run again", || {
        sb.status("web").is_some_and(|s| s["state"] == "running" && s["starts"] == 2)
    });
}

#[test]
fn a_completed_one_shot_lets_its_dependent_restart_and_a_failed_one_does_not() {
    // A migration that completes (status 0) before the server: the server's restarts do
    // not wait for it again, nor are they refused.
    let sb = Sandbox::new();
    let work = sb.work("w");
    task(&work, "async.migrate", &["ready: log ^migrated$"], "echo migrated; sleep 0.2; exit 0");
    task(
        &work,
        "async.web",
        &["after: migrate", "restart: on-failure", "restart-delay: 50ms"],
        "echo run >> \"$DIR/runs\"; test \"$(wc -l < \"$DIR/runs\")\" -ge 3 || exit 1; echo web done",
    );
    let out = sb.trc(&work, &["--wait-policy", "wait_all"]).run();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code(), 0, "{all}");
    assert!(all.contains("web: web done"), "{all}");
    assert!(!all.contains("does not start"), "{all}");
    let runs = std::fs::read_to_string(sb.root().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 3, "{all}");

    // A dependency that fails for good (exit 3 under `restart: never`) before it is ready.
    let sb = Sandbox::new();
    let work = sb.work("w");
    task(&work, "async.db", &["ready: file never-there"], "exit 3");
    task(&work, "async.web", &["after: db"], "echo must not run");
    let out = sb.trc(&work, &["--wait-policy", "wait_all"]).run();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains("must not run"), "{all}");
    assert!(
        out.stderr
            .contains("web does not start: db, which it starts after, has finished for good (exitcode=3)"),
        "{all}"
    );
    assert_eq!(out.code(), 3, "{all}");
}

#[test]
fn reload_refuses_a_cycle_or_an_unknown_name_and_changes_nothing() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    task(&work, "async.web", &[], "exec sleep 30");
    let trc: Trc = sb.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_forever");
    let _sup = sb.start_trc(trc);
    wait_until("web to run", || sb.status("web").is_some_and(|s| s["state"] == "running"));
    let pid = sb.status("web").unwrap()["pid"].clone();
    for (files, expected) in [
        (vec![("async.x", "after: y"), ("async.y", "after: x")], "a dependency cycle: x -> y -> x"),
        (vec![("async.x", "after: nope")], "\"after:\" names an unknown task \"nope\""),
    ] {
        for (file, directive) in &files {
            task(&work, file, &[directive], "exec sleep 30");
        }
        let out = sb.ctl(&["reload"]);
        assert_eq!(out.code, 1, "{expected}: {out:?}");
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
        let names: Vec<String> = sb.list(&[]).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["web"], "{expected}: reload added tasks");
        assert_eq!(sb.status("web").unwrap()["pid"], pid, "{expected}: web was restarted");
        for (file, _) in &files {
            std::fs::remove_file(work.join("trc.d").join(file)).unwrap();
        }
    }
}

#[test]
fn trc_s_status_counts_an_unhealthy_task() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let mut manager = Manager::new();
    // Unhealthy at its first check; it then takes its time to stop (until $DIR/release).
    task(
        &work,
        "async.sick",
        &["health: check false", "health-interval: 50ms", "health-retries: 1", "stop-timeout: 10min"],
        "trap 'touch \"$DIR/termed\"' TERM\nwhile [ ! -e \"$DIR/release\" ]; do sleep 0.05 || :; done",
    );
    task(&work, "async.quick", &[], "exec sleep 30");
    let sup = sb.start_trc(
        sb.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_forever").env("NOTIFY_SOCKET", &manager.path),
    );
    struct Release(std::path::PathBuf);
    impl Drop for Release {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, "");
        }
    }
    let _release = Release(sb.root().join("release"));
    let until = Instant::now() + DEADLINE;
    loop {
        manager.take();
        let status =
            manager.seen.iter().filter_map(|m| m.lines().find_map(|l| l.strip_prefix("STATUS="))).next_back();
        if status.is_some_and(|s| s.contains("; 1 ready, 1 unhealthy")) {
            break;
        }
        assert!(
            Instant::now() < until,
            "no STATUS= with 1 unhealthy within {DEADLINE:?}: {:?}",
            manager.seen
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let sick end, then trc (`sup`, dropped after `_release`).
    let _ = &sup;
}
