//! Console log formats (README, "Log formats for collectors"): with `--log-format json` every
//! line trc writes on its stdout and stderr is one JSON object, task lines with `time`, `task`,
//! `stage`, `stream`, `pid`, `message` and trc's own with `time`, `level`, `message` (and the
//! task's keys when about one); bytes that are not UTF-8 survive in `message_base64`;
//! `--log-timestamps` puts a UTC time in front of each task line of the text format; bad values
//! are usage or config errors.

mod common;

use common::{Spawned, Trc, DEADLINE};
use serde_json::{Map, Value};
use std::path::Path;
use std::process::Stdio;

/// One parsed line.
type Object = Map<String, Value>;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Runs trc to its end and returns its exit code and the raw bytes of its stdout and stderr.
fn run_bytes(mut trc: Trc) -> (i32, Vec<u8>, Vec<u8>) {
    let cmd = trc.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::spawn(cmd);
    let stdout = common::collect(child.stdout.take().unwrap());
    let stderr = common::collect(child.stderr.take().unwrap());
    let status = child.wait_deadline(DEADLINE);
    let stdout = stdout.recv_timeout(DEADLINE).expect("trc's stdout did not end");
    let stderr = stderr.recv_timeout(DEADLINE).expect("trc's stderr did not end");
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (code, stdout, stderr)
}

/// Every line of `bytes` as a JSON object; fails on a line that is not one (or not UTF-8).
fn objects(bytes: &[u8], what: &str) -> Vec<Map<String, Value>> {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what} is not UTF-8 ({e}): {bytes:?}"));
    assert!(text.is_empty() || text.ends_with('\n'), "{what} does not end with a newline: {text}");
    text.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(other) => panic!("{what}: not an object: {other}\n{text}"),
            Err(e) => panic!("{what}: not JSON ({e}): {line:?}\n{text}"),
        })
        .collect()
}

fn rfc3339_micros() -> regex::Regex {
    regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").unwrap()
}

fn str_of<'a>(o: &'a Map<String, Value>, key: &str) -> &'a str {
    o.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("no string {key} in {o:?}"))
}

/// Checks the keys of every record of one stream; returns (task lines, trc's own records).
fn check_records(records: Vec<Map<String, Value>>, stream: &str) -> (Vec<Object>, Vec<Object>) {
    let time = rfc3339_micros();
    let (own, tasks): (Vec<_>, Vec<_>) = records.into_iter().partition(|o| o.contains_key("level"));
    for o in &tasks {
        assert!(time.is_match(str_of(o, "time")), "{o:?}");
        for key in ["task", "stage", "message"] {
            str_of(o, key);
        }
        assert_eq!(str_of(o, "stream"), stream, "{o:?}");
        assert!(o["pid"].as_i64().is_some_and(|p| p > 1), "{o:?}");
        let extra: Vec<&String> = o
            .keys()
            .filter(|k| {
                !["time", "task", "stage", "stream", "pid", "message", "message_base64"].contains(&k.as_str())
            })
            .collect();
        assert!(extra.is_empty(), "unexpected keys {extra:?} in {o:?}");
    }
    for o in &own {
        assert!(time.is_match(str_of(o, "time")), "{o:?}");
        str_of(o, "message");
        assert!(["error", "warn", "info", "debug"].contains(&str_of(o, "level")), "{o:?}");
        assert!(!o.contains_key("stream"), "{o:?}");
        if o.contains_key("task") {
            str_of(o, "stage");
        }
    }
    (tasks, own)
}

fn task_file(dir: &Path, name: &str, body: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("trc.d")).unwrap();
    let path = dir.join("trc.d").join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ----- JSON ------------------------------------------------------------------------------------

#[test]
fn json_every_line_is_an_object_with_its_keys() {
    let dir = tmp();
    let d = dir.path().display();
    // A task that cannot start: an error record, always shown. (No boot task here: after boot,
    // bash would run it and say why.)
    task_file(dir.path(), "async.broken", "#!/nonexistent/interpreter\n", 0o755);
    task_file(
        dir.path(),
        "async.web",
        &format!("echo $$ > {d}/web.pid\necho 'web: says hi'\nlog 'by log'\n"),
        0o644,
    );
    let trc = Trc::new(
        dir.path(),
        [
            "--log-format",
            "json",
            "--verbose",
            "--verbose-extra",
            "--wait-policy",
            "wait_all",
            "-D",
            "echo \"out $$\"; echo \"err $$\" >&2; printf 'no newline'",
            "-F",
            "echo sync-line",
            "-H",
            "echo halting >&2",
            "echo",
            "the trailing command",
        ],
    );
    let (code, stdout, stderr) = run_bytes(trc);
    let show = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )
    };
    assert_eq!(code, 0, "the status of the last halt task\n{}", show());
    let (out_tasks, out_own) = check_records(objects(&stdout, "stdout"), "stdout");
    let (err_tasks, err_own) = check_records(objects(&stderr, "stderr"), "stderr");

    let find = |records: &[Map<String, Value>], task: &str, message: &str| -> Map<String, Value> {
        records
            .iter()
            .find(|o| o.get("task").and_then(Value::as_str) == Some(task) && str_of(o, "message") == message)
            .cloned()
            .unwrap_or_else(|| panic!("no {task:?} record {message:?}\n{}", show()))
    };
    // The task lines: the message without trc's prefix, the pid the task's $$.
    let out = out_tasks.iter().find(|o| str_of(o, "message").starts_with("out ")).expect("the out line");
    let pid = out["pid"].as_i64().unwrap();
    assert_eq!(str_of(out, "message"), format!("out {pid}"), "pid is the task's $$");
    assert_eq!((str_of(out, "task"), str_of(out, "stage")), ("async-1", "async"));
    let err = find(&err_tasks, "async-1", &format!("err {pid}"));
    assert_eq!(err["pid"], pid);
    find(&out_tasks, "async-1", "no newline");
    assert_eq!(find(&out_tasks, "sync-1", "sync-line")["stage"], "sync");
    assert_eq!(find(&err_tasks, "halt-1", "halting")["stage"], "halt");
    // The trailing command's lines are objects too (task "cmd").
    assert_eq!(find(&out_tasks, "cmd", "the trailing command")["stage"], "sync");
    // A line that looks prefixed keeps its text; a `log` line is a task line with its text.
    let web_pid: i64 = std::fs::read_to_string(dir.path().join("web.pid")).unwrap().trim().parse().unwrap();
    assert_eq!(find(&out_tasks, "web", "web: says hi")["pid"], web_pid);
    let logged = out_tasks
        .iter()
        .find(|o| str_of(o, "message").ends_with(&format!(" trc [async/{web_pid}]: by log")))
        .unwrap_or_else(|| panic!("no log line\n{}", show()));
    assert_eq!(logged["task"], "web");

    // trc's own records, on stdout (info, debug) and stderr (errors).
    let own = |records: &[Map<String, Value>], text: &str| -> Map<String, Value> {
        records
            .iter()
            .find(|o| str_of(o, "message").contains(text))
            .cloned()
            .unwrap_or_else(|| panic!("no own record with {text:?}\n{}", show()))
    };
    let policy = own(&out_own, "The wait policy: wait_all");
    assert_eq!(policy["level"], "info");
    assert!(!policy.contains_key("task") && !policy.contains_key("pid"), "{policy:?}");
    let launch = own(&out_own, "Launching in the background: echo \"out $$\"");
    assert_eq!((str_of(&launch, "task"), str_of(&launch, "stage")), ("async-1", "async"));
    assert_eq!(launch["pid"], pid);
    let exit = own(&out_own, "Exiting in the background (exitcode=0): echo \"out $$\"");
    assert_eq!(exit["pid"], pid);
    let halt = own(&out_own, "Exiting from the shutdown command (exitcode=0)");
    assert_eq!((str_of(&halt, "task"), str_of(&halt, "stage")), ("halt-1", "halt"));
    let debug = own(&out_own, "Looking for `async` scripts");
    assert_eq!(debug["level"], "debug");
    assert!(str_of(&debug, "message").starts_with("Looking"), "no TrivialRC ` - ` in JSON: {debug:?}");
    let error = own(&err_own, "cannot start");
    assert_eq!(error["level"], "error");
    assert!(str_of(&error, "message").contains("async.broken"), "{error:?}");
    own(&out_own, "Exited (exitcode=");
}

#[test]
fn json_records_about_a_task_carry_its_fields() {
    let dir = tmp();
    // A boot task, and an async task stopped at teardown (async-2's exit ends the group).
    let trc = Trc::new(
        dir.path(),
        [
            "--log-format",
            "json",
            "--verbose",
            "--wait-policy",
            "wait_any",
            "-B",
            "true",
            "-D",
            "exec sleep 100",
            "-D",
            "true",
        ],
    );
    let (code, stdout, stderr) = run_bytes(trc);
    let text = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    assert_eq!(code, 0, "{text}");
    let records = objects(&stdout, "stdout");
    let find = |start: &str| {
        records
            .iter()
            .find(|o| str_of(o, "message").starts_with(start))
            .cloned()
            .unwrap_or_else(|| panic!("no record {start:?}\n{text}"))
    };
    let boot = find("Launching in the boot: true");
    assert_eq!((str_of(&boot, "task"), str_of(&boot, "stage")), ("boot-1", "boot"), "{boot:?}");
    let term = find("terminating the child process <pid=");
    assert_eq!((str_of(&term, "task"), str_of(&term, "stage")), ("async-1", "async"), "{term:?}");
    let pid = str_of(&term, "message").split("<pid=").nth(1).unwrap().trim_end_matches('>').to_owned();
    assert_eq!(term["pid"].to_string(), pid, "{term:?}");
}

#[test]
fn json_keeps_bytes_that_are_not_utf8_in_base64() {
    let dir = tmp();
    let trc = Trc::new(
        dir.path(),
        ["--log-format", "json", "-F", r"printf 'ok\nbad \377\376 \303(\000nul\n'; printf 'e\351\n' >&2"],
    );
    let (code, stdout, stderr) = run_bytes(trc);
    assert_eq!(code, 0);
    let (out, _) = check_records(objects(&stdout, "stdout"), "stdout");
    let (err, _) = check_records(objects(&stderr, "stderr"), "stderr");
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["message"], "ok");
    assert!(!out[0].contains_key("message_base64"), "only for lines that are not UTF-8");
    for (record, want) in [(&out[1], &b"bad \xff\xfe \xc3(\x00nul"[..]), (&err[0], b"e\xe9")] {
        assert_eq!(str_of(record, "message"), String::from_utf8_lossy(want), "{record:?}");
        let got = decode_base64(str_of(record, "message_base64"));
        assert_eq!(got, want, "{record:?}");
    }
}

/// Standard base64 with padding, as the README says `message_base64` is.
fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_eq!(text.len() % 4, 0, "padded: {text}");
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap_or_else(|| panic!("not base64: {text}"));
        bits = (bits << 6) | v as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn json_pid_follows_the_task_across_restarts() {
    let dir = tmp();
    let marker = dir.path().join("marker");
    let script = format!("echo \"run $$\"; [ -e {m} ] || {{ touch {m}; exit 1; }}", m = marker.display());
    let trc = Trc::new(
        dir.path(),
        ["--log-format", "json", "--restart", "on-failure", "--restart-delay", "100ms", "-D", &script],
    );
    let (code, stdout, _) = run_bytes(trc);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&stdout));
    let (out, _) = check_records(objects(&stdout, "stdout"), "stdout");
    assert_eq!(out.len(), 2, "{out:?}");
    for o in &out {
        assert_eq!(str_of(o, "message"), format!("run {}", o["pid"]), "{o:?}");
    }
    assert_ne!(out[0]["pid"], out[1]["pid"], "a new run, a new pid");
}

#[test]
fn json_from_the_environment_frames_untouched_tasks_too() {
    let dir = tmp();
    task_file(
        dir.path(),
        "async.raw",
        "### BEGIN TRC\n# log-prefix: no\n### END TRC\nprintf 'one\\ntwo'\n",
        0o644,
    );
    let trc =
        Trc::new(dir.path(), ["--wait-policy", "wait_all", "-B", "echo booting", "-D", "echo prefixed"])
            .env("RC_LOG_FORMAT", "json");
    let (code, stdout, stderr) = run_bytes(trc);
    assert_eq!(code, 0);
    assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
    let (out, _) = check_records(objects(&stdout, "stdout"), "stdout");
    let mut got: Vec<(&str, &str)> = out.iter().map(|o| (str_of(o, "task"), str_of(o, "message"))).collect();
    got.sort();
    assert_eq!(got, [("async-1", "prefixed"), ("boot-1", "booting"), ("raw", "one"), ("raw", "two")]);
    assert!(out.iter().any(|o| o["task"] == "boot-1" && o["stage"] == "boot"), "{out:?}");
}

#[test]
fn json_errors_before_the_start_are_objects() {
    let dir = tmp();
    let trc = Trc::new(dir.path(), ["echo", "x"]).env("RC_LOG_FORMAT", "json").env("RC_WAIT_POLICY", "soon");
    let (code, stdout, stderr) = run_bytes(trc);
    assert_eq!(code, 78);
    assert!(stdout.is_empty());
    let (_, own) = check_records(objects(&stderr, "stderr"), "stderr");
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["level"], "error");
    assert!(str_of(&own[0], "message").starts_with("RC_WAIT_POLICY=\"soon\""), "{own:?}");
}

// ----- bad values ------------------------------------------------------------------------------

#[test]
fn bad_log_formats_are_usage_and_config_errors() {
    let dir = tmp();
    let out = Trc::new(dir.path(), ["--log-format", "xml", "echo", "x"]).run();
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("--log-format") && out.stderr.contains("text, json"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = Trc::new(dir.path(), ["echo", "x"]).env("RC_LOG_FORMAT", "JSON").run();
    assert_eq!(out.code(), 78, "{out:?}");
    assert_eq!(
        out.stderr, "trc: RC_LOG_FORMAT=\"JSON\": unknown log format (expected text or json)\n",
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "nothing ran: {out:?}");
    // Empty is the default, as for the other variables.
    let out = Trc::new(dir.path(), ["echo", "x"]).env("RC_LOG_FORMAT", "").run();
    assert_eq!((out.code(), out.stdout.as_str()), (0, "x\n"), "{out:?}");
}

// ----- timestamps ------------------------------------------------------------------------------

#[test]
fn timestamps_lead_every_task_line_and_never_go_back() {
    let dir = tmp();
    const LINES: usize = 3000;
    let burst = format!("for i in $(seq {LINES}); do echo \"line $i\"; done");
    let trc = Trc::new(
        dir.path(),
        [
            "--log-timestamps",
            "--verbose",
            "--wait-policy",
            "wait_all",
            "-D",
            &burst,
            "-D",
            "seq 500 >&2",
            "-F",
            "log logged",
        ],
    );
    let out = trc.run();
    assert_eq!(out.code(), 0, "{out:?}");
    let stamped = regex::Regex::new(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([\w-]+): (.*)$").unwrap();
    let trivialrc = regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trc \[\w+/\d+\]: ").unwrap();
    let now = chrono::Utc::now();
    for (stream, text, task, count) in
        [("stdout", &out.stdout, "async-1", LINES), ("stderr", &out.stderr, "async-2", 500)]
    {
        let mut last = String::new();
        let mut n = 0;
        for line in text.lines() {
            if trivialrc.is_match(line) {
                // trc's own lines and `log` lines carry their time already: left as they are.
                continue;
            }
            let caps = stamped.captures(line).unwrap_or_else(|| panic!("{stream}: no timestamp: {line:?}"));
            let time = caps[1].to_owned();
            let parsed = chrono::DateTime::parse_from_rfc3339(&time).unwrap();
            assert!((now - parsed.to_utc()).num_seconds().abs() < 600, "{time} is not now ({now})");
            assert!(time >= last, "{stream}: time went back: {last} then {time}");
            last = time;
            if &caps[2] == task {
                n += 1;
                assert_eq!(caps[3], if stream == "stdout" { format!("line {n}") } else { n.to_string() });
            }
        }
        assert_eq!(n, count, "{stream}: every line of {task}");
    }
    assert!(out.stdout.lines().any(|l| l.ends_with("]: logged") && trivialrc.is_match(l)), "{out:?}");
    assert!(out.stdout.lines().any(|l| l.ends_with("]: Launching in the background: seq 500 >&2")));
}

#[test]
fn timestamps_from_the_environment_and_in_json_times_never_go_back() {
    let dir = tmp();
    let burst = "for i in $(seq 2000); do echo \"line $i\"; done";
    let out = Trc::new(dir.path(), ["-D", burst]).env("RC_LOG_TIMESTAMPS", "true").run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.lines().count(), 2000);
    assert!(out.stdout.lines().all(|l| l.len() > 25 && l[24..].starts_with(" async-1: line ")), "{out:?}");
    let (code, stdout, _) = run_bytes(Trc::new(dir.path(), ["--log-format", "json", "-D", burst]));
    assert_eq!(code, 0);
    let (out, _) = check_records(objects(&stdout, "stdout"), "stdout");
    assert_eq!(out.len(), 2000);
    for (n, pair) in out.windows(2).enumerate() {
        assert!(str_of(&pair[0], "time") <= str_of(&pair[1], "time"), "{pair:?}");
        assert_eq!(str_of(&pair[1], "message"), format!("line {}", n + 2));
    }
}
