//! Each task's execution context (issue #14), with the real `trc` and `trcctl`: `user:` and
//! `group:` by name and by number (read back from `/proc/self/status`), the runtime files such a
//! task can and cannot reach, `env-file:`, `env:`, `cwd:`, `umask:`, `nice:` and `limit-*:`
//! (read back from `/proc/self/limits`), every bad value as a configuration error (78) naming
//! file:line before anything starts (and a limit or nice value the kernel would refuse), the
//! `RC_*` group defaults (not RC_USER/RC_GROUP for boot tasks), trc's own variables that no
//! `env:` or env file may set, a relative RC_RUNTIME_DIR, `success-exit-status` under each wait
//! policy and `restart: on-failure`, and `--stop-delay`. (`--forward-signals`: tests/forward.rs.)
//!
//! Every wait is on an event (a line, a file, a state, an exit) with the harness's generous
//! deadline; the one timing check is a lower bound.

mod common;

use common::sandbox::{int_of, python, run, wait_file, Out, Sandbox, Sup, TRCCTL};
use common::{skip, trc_bin, Output, Running, Trc, DEADLINE};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A supplementary group trc itself is given in the user tests: a task of another user must
/// not keep it.
const TRC_EXTRA_GROUP: u32 = 4444;
const NOBODY: u32 = 65534;

/// Writes `trc.d/<file>` in `work`: a header block of `directives` (the first on line 2), then
/// `body`.
fn task_file(work: &Path, file: &str, directives: &[&str], body: &str) {
    let header: String = directives.iter().map(|d| format!("# {d}\n")).collect();
    let text = format!("### BEGIN TRC\n{header}### END TRC\n{body}\n");
    std::fs::write(work.join("trc.d").join(file), text).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Lets other users reach the sandbox: its root (task files, trc's cwd) readable, the runtime
/// base above trc's own dirs searchable (as `/run` is). trc makes the rest reachable itself.
fn open_to_others(s: &Sandbox) {
    chmod(s.root(), 0o755);
    chmod(&s.xdg(), 0o711);
}

/// trc starts with one supplementary group of its own ([`TRC_EXTRA_GROUP`]), still as root.
fn with_extra_group(trc: &mut Trc) {
    // SAFETY: only setgroups(2), on a constant, between fork and exec.
    unsafe {
        trc.command().pre_exec(|| {
            let groups = [TRC_EXTRA_GROUP as libc::gid_t];
            if libc::setgroups(1, groups.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether this run may start tasks as other users: root, with setpriv(1) and a python3
/// another uid can run. Under `CI=true` a skip is a failure.
fn may_switch(test: &str) -> bool {
    common::sandbox::can_switch_uid(test)
}

/// The words after `<task>: <key>:` on the task's line of `text` (a line it printed).
fn field(text: &str, task: &str, key: &str) -> Vec<String> {
    let start = format!("{task}: {key}:");
    let line = text
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{text}"));
    line[start.len()..].split_whitespace().map(str::to_owned).collect()
}

fn ids(words: &[String]) -> Vec<u32> {
    let mut ids: Vec<u32> = words.iter().map(|w| w.parse().unwrap()).collect();
    ids.sort_unstable();
    ids
}

/// Shell code that prints who the task is (`/proc/self/status`), its HOME/USER/LOGNAME,
/// writes a line through `$TRC_LOG_PIPE` and tries to list its runtime dir.
const REPORT: &str = r#"grep -E '^(Uid|Gid|Groups):' /proc/self/status
echo "env: HOME=${HOME-unset} USER=${USER-unset} LOGNAME=${LOGNAME-unset}"
echo "through the log pipe" > "$TRC_LOG_PIPE"
if ls "${TRC_LOG_PIPE%/*}" > /dev/null 2>&1; then echo "ls: listed"; else echo "ls: refused"; fi"#;

fn status_of(s: &Sandbox, task: &str) -> Value {
    s.status(task).unwrap_or_else(|| panic!("status {task} refused"))
}

/// `trcctl --json status TASK` once it satisfies `pred` (a task not known yet is "not yet").
fn wait_status(s: &Sandbox, task: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let last = s.status(task).unwrap_or(Value::Null);
        if pred(&last) {
            return last;
        }
        assert!(Instant::now() < until, "timed out waiting for {task} to be {what}; last status: {last}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_finished(s: &Sandbox, task: &str) -> Value {
    wait_status(s, task, "finished", |st| st["state"] == "finished")
}

/// The trc handle of a `Sup`.
fn handle(sup: &mut Sup) -> &mut Running {
    sup.running.as_mut().expect("trc handle")
}

/// Waits for the trc of `sup` to exit.
fn wait_exit(mut sup: Sup) -> Output {
    sup.running.take().expect("trc handle").wait()
}

fn touch(path: &Path) {
    std::fs::write(path, "").unwrap();
}

/// Shell code that waits for `$DIR/<name>` (a gate the test opens).
fn gate(name: &str) -> String {
    format!("until [ -e \"$DIR/{name}\" ]; do sleep 0.05 || :; done")
}

// ----- user: and group: ---------------------------------------------------------------------

/// `user: nobody` (and `group: nogroup`): the task runs with nobody's uid, gid and groups (not
/// trc's own extra group), gets HOME, USER and LOGNAME, writes through `$TRC_LOG_PIPE`, becomes
/// ready through its NOTIFY_SOCKET, but cannot list trc's runtime dir. `user: 65534` (a number that names a user) is that user too.
#[test]
fn user_by_name_runs_with_its_ids_groups_and_home_and_reaches_its_runtime_files() {
    if !may_switch("user_by_name_runs_with_its_ids_groups_and_home_and_reaches_its_runtime_files") {
        return;
    }
    let s = Sandbox::new();
    open_to_others(&s);
    let work = s.work("app");
    let py = python().unwrap();
    let notify = format!(
        "{py} -c \"import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
         s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\""
    );
    task_file(
        &work,
        "async.who",
        &["user: nobody", "group: nogroup", "ready: notify"],
        &format!("{REPORT}\n{notify}\n{}", gate("after-ran")),
    );
    task_file(&work, "async.num", &["user: 65534"], REPORT);
    // Starts only once who is ready: its READY=1 came through.
    task_file(&work, "async.after", &["after: who"], "touch \"$DIR/after-ran\"");
    let mut trc = s
        .trc(&work, &[])
        .env("RC_WAIT_POLICY", "wait_all")
        .env("HOME", "/trc-home")
        .env("USER", "trc-user")
        .env("LOGNAME", "trc-user");
    with_extra_group(&mut trc);
    let out = trc.run();
    assert_eq!(out.code(), 0, "{out:?}");

    let nobody = nix::unistd::User::from_uid(NOBODY.into()).unwrap().expect("a passwd entry for 65534");
    let name = std::ffi::CString::new(nobody.name.clone()).unwrap();
    let mut groups: Vec<u32> =
        nix::unistd::getgrouplist(&name, nobody.gid).unwrap().into_iter().map(|g| g.as_raw()).collect();
    groups.sort_unstable();
    groups.dedup();
    assert!(!groups.contains(&TRC_EXTRA_GROUP), "nobody is in group {TRC_EXTRA_GROUP}: {groups:?}");
    let home = nobody.dir.display();
    for task in ["who", "num"] {
        let text = &out.stdout;
        assert_eq!(ids(&field(text, task, "Uid")), [NOBODY; 4], "{task}: {out:?}");
        assert_eq!(ids(&field(text, task, "Gid")), [nobody.gid.as_raw(); 4], "{task}: {out:?}");
        let mut got = ids(&field(text, task, "Groups"));
        got.dedup();
        assert_eq!(got, groups, "{task}: the user's groups, not trc's: {out:?}");
        let env = format!("{task}: env: HOME={home} USER={0} LOGNAME={0}\n", nobody.name);
        assert!(text.contains(&env), "{task}: want {env:?}: {out:?}");
        assert!(text.contains(&format!("{task}: through the log pipe\n")), "{task}: {out:?}");
        assert!(text.contains(&format!("{task}: ls: refused\n")), "{task}: {out:?}");
    }
    assert!(s.root().join("after-ran").exists(), "{out:?}");
}

/// `user: 4242` (no passwd entry: as in a scratch image) and `user: 4242:4343`: those ids, no
/// supplementary groups at all (not trc's), and HOME=/, USER and LOGNAME the number (there is
/// no user to take them from, and trc's own, root's say, are not the task's). The runtime files are reachable as for a named user,
/// and so is its own copy of the boot state.
#[test]
fn user_by_number_needs_no_passwd_entry_and_has_no_groups() {
    if !may_switch("user_by_number_needs_no_passwd_entry_and_has_no_groups") {
        return;
    }
    for id in [4242, 4343] {
        assert!(nix::unistd::User::from_uid(id.into()).unwrap().is_none(), "uid {id} has a passwd entry");
    }
    let s = Sandbox::new();
    open_to_others(&s);
    let work = s.work("app");
    task_file(&work, "async.bare", &["user: 4242"], &format!("{REPORT}\necho \"boot: $FROM_BOOT\""));
    task_file(&work, "async.pair", &["user: 4242:4343"], REPORT);
    task_file(&work, "async.grp", &["user: 4242", "group: 4343"], REPORT);
    let mut trc = s
        .trc(&work, &["-B", "FROM_BOOT=saved"])
        .env("RC_WAIT_POLICY", "wait_all")
        .env("HOME", "/trc-home")
        .env("USER", "trc-user")
        .env("LOGNAME", "trc-user");
    with_extra_group(&mut trc);
    let out = trc.run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("bare: boot: saved\n"), "{out:?}");
    for (task, gid) in [("bare", 4242), ("pair", 4343), ("grp", 4343)] {
        let text = &out.stdout;
        assert_eq!(ids(&field(text, task, "Uid")), [4242; 4], "{task}: {out:?}");
        assert_eq!(ids(&field(text, task, "Gid")), [gid; 4], "{task}: {out:?}");
        assert_eq!(field(text, task, "Groups"), Vec::<String>::new(), "{task}: {out:?}");
        let env = format!("{task}: env: HOME=/ USER=4242 LOGNAME=4242\n");
        assert!(text.contains(&env), "{task}: not trc's: {out:?}");
        assert!(text.contains(&format!("{task}: through the log pipe\n")), "{task}: {out:?}");
        assert!(text.contains(&format!("{task}: ls: refused\n")), "{task}: {out:?}");
    }
}

/// With the runtime base as the XDG spec has `$XDG_RUNTIME_DIR` (0700, owned by trc's user:
/// root's `/run/user/0` in a login session), a task of another user could not reach its files:
/// trc does not open up a directory that is not its own, and says so before anything starts
/// (78, naming the dir and the option). With `--runtime-dir` on a dir it can pass, the task
/// reaches its log pipe and its notify socket.
#[test]
fn a_task_of_another_user_and_a_private_xdg_runtime_dir_is_78_and_runtime_dir_fixes_it() {
    if !may_switch("a_task_of_another_user_and_a_private_xdg_runtime_dir_is_78_and_runtime_dir_fixes_it") {
        return;
    }
    let s = Sandbox::new();
    chmod(s.root(), 0o755);
    assert_eq!(std::fs::metadata(s.xdg()).unwrap().permissions().mode() & 0o777, 0o700);
    let work = s.work("app");
    let py = python().unwrap();
    let notify = format!(
        "{py} -c \"import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
         s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\""
    );
    task_file(
        &work,
        "async.who",
        &["user: nobody", "ready: notify", "ready-timeout: 20s"],
        &format!("echo \"through the log pipe\" > \"$TRC_LOG_PIPE\"\n{notify}\n{}", gate("after-ran")),
    );
    task_file(&work, "async.after", &["after: who"], "touch \"$DIR/after-ran\"");
    let out = s.trc(&work, &["-B", "touch \"$DIR/booted\""]).env("RC_WAIT_POLICY", "wait_all").run();
    assert_eq!(out.code(), 78, "{out:?}");
    let want = format!("could not reach trc's runtime dir {}", s.xdg().join("trc/app").display());
    assert!(out.stderr.contains(&want), "{out:?}");
    assert!(out.stderr.contains(&format!("{} (mode 700) is closed to it", s.xdg().display())), "{out:?}");
    assert!(out.stderr.contains("--runtime-dir DIR"), "{out:?}");
    assert!(!s.root().join("booted").exists(), "something ran: {out:?}");
    // A runtime dir the task can pass through.
    let open = s.root().join("rt");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o755);
    let out =
        s.trc(&work, &["--runtime-dir", open.to_str().unwrap()]).env("RC_WAIT_POLICY", "wait_all").run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("who: through the log pipe\n"), "{out:?}");
    assert!(s.root().join("after-ran").exists(), "{out:?}");
}

/// Shell code that prints, on one line after `<what>`, who the task is and where: its uid and
/// gid (`/proc/self/status`), its directory, umask and nice value (`/proc/self/stat`), its open
/// files limit and `$GROUPVAR`.
fn whoami_line(what: &str) -> String {
    format!(
        r#"echo "{what} uid=$(awk '/^Uid:/ {{print $2}}' /proc/self/status) gid=$(awk '/^Gid:/ {{print $2}}' /proc/self/status) pwd=$(pwd -P) umask=$(umask) nice=$(cut -d' ' -f19 /proc/self/stat) nofile=$(ulimit -n) var=${{GROUPVAR-unset}}""#
    )
}

/// The group-wide defaults RC_USER, RC_GROUP, RC_CWD, RC_UMASK, RC_NICE, RC_LIMIT_NOFILE and
/// RC_ENV_FILE hold for async and sync tasks (a file and a `-D`/`-F` each) and the trailing
/// command. A boot task runs as trc's user all the same (it refuses `user:`; what it sets
/// becomes trc's, its saved state too) and takes the others.
#[test]
fn rc_context_defaults_hold_for_the_tasks_and_boot_runs_as_trcs_user() {
    if !may_switch("rc_context_defaults_hold_for_the_tasks_and_boot_runs_as_trcs_user") {
        return;
    }
    let s = Sandbox::new();
    open_to_others(&s);
    let work = s.work("app");
    let place = s.root().join("place");
    std::fs::create_dir(&place).unwrap();
    chmod(&place, 0o755);
    let env_file = s.root().join("group.env");
    std::fs::write(&env_file, "GROUPVAR=from-group\n").unwrap();
    chmod(&env_file, 0o644);
    task_file(&work, "boot.file", &[], &whoami_line("boot"));
    task_file(&work, "async.file", &[], &whoami_line("async"));
    task_file(&work, "sync.file", &[], &whoami_line("sync"));
    let (boot, async_, sync) = (whoami_line("boot"), whoami_line("async"), whoami_line("sync"));
    let out = s
        .trc(
            &work,
            &[
                "-B",
                &boot,
                "-D",
                &async_,
                "-F",
                &sync,
                "awk",
                "/^Uid:/ { print \"cmd uid=\" $2 }",
                "/proc/self/status",
            ],
        )
        .env("RC_WAIT_POLICY", "wait_all")
        .env("RC_USER", "nobody")
        .env("RC_GROUP", "4343")
        .env("RC_CWD", place.to_str().unwrap())
        .env("RC_UMASK", "027")
        .env("RC_NICE", "7")
        .env("RC_LIMIT_NOFILE", "100:200")
        .env("RC_ENV_FILE", env_file.to_str().unwrap())
        .run();
    assert_eq!(out.code(), 0, "{out:?}");
    let place = place.canonicalize().unwrap();
    let rest = format!("pwd={} umask=0027 nice=7 nofile=100 var=from-group\n", place.display());
    for task in ["file", "boot-1"] {
        let want = format!("{task}: boot uid=0 gid=0 {rest}");
        assert!(out.stdout.contains(&want), "want {want:?}: {out:?}");
    }
    for (task, what) in [("file", "async"), ("async-1", "async"), ("file", "sync"), ("sync-1", "sync")] {
        let want = format!("{task}: {what} uid={NOBODY} gid=4343 {rest}");
        assert!(out.stdout.contains(&want), "want {want:?}: {out:?}");
    }
    assert!(out.stdout.contains(&format!("cmd uid={NOBODY}\n")), "{out:?}");
}

/// Whether `path` passes `test OP` (`-r`, `-w`) for uid and gid 65534 with no groups.
fn nobody_may(op: &str, path: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "test", op])
        .arg(path)
        .status()
        .unwrap()
        .success()
}

/// With tasks of other users (nobody, and 4242) and a boot task: nobody's task cannot read
/// trc's private files by name (`groups`, `pid`, `lock`, the prelude trc's own tasks read, the
/// boot state boot saved), yet restores its own copy of that state and writes its log pipe; and
/// of every file in the runtime dir, nobody can read or write exactly those given to it (owned
/// by it, mode 0600): not trc's files, not the other user's state copy, pipes or prelude.
#[test]
fn a_task_of_another_user_reaches_only_the_runtime_files_given_to_it() {
    if !may_switch("a_task_of_another_user_reaches_only_the_runtime_files_given_to_it") {
        return;
    }
    let s = Sandbox::new();
    open_to_others(&s);
    let work = s.work("app");
    let tries = "groups pid lock prelude.bash boot-0.sh boot-0.vars boot-0.opts boot-0.funcs boot-0.nul";
    task_file(
        &work,
        "async.who",
        &["user: nobody"],
        &format!(
            r#"rt=${{TRC_LOG_PIPE%/*}}
for f in {tries}; do
    if cat "$rt/$f" > /dev/null 2>&1; then echo "read $f: yes"; else echo "read $f: no"; fi
done
echo "boot: $FROM_BOOT"
echo "through the log pipe" > "$TRC_LOG_PIPE"
exec sleep 1000"#
        ),
    );
    task_file(&work, "async.other", &["user: 4242"], "echo \"other: $FROM_BOOT\"\nexec sleep 1000");
    let mut sup = s.start_trc(
        s.trc(&work, &["-B", "FROM_BOOT=saved; export EXPORTED=too"]).env("RC_WAIT_POLICY", "wait_forever"),
    );
    let trc = handle(&mut sup);
    trc.wait_for_line("who: through the log pipe");
    common::wait_for(trc, "other: saved");
    let text = format!("{}{}", trc.stdout, trc.stderr);
    for f in tries.split(' ') {
        assert!(text.contains(&format!("who: read {f}: no\n")), "{f}: {text}");
    }
    assert!(text.contains("who: boot: saved\n"), "its own copy of the boot state: {text}");

    let rt = s.runtime_dir(&sup.name);
    assert!(rt.join("boot-0.sh").exists(), "the boot state is where the task looked for it");
    let mut given = Vec::new();
    for entry in std::fs::read_dir(&rt).unwrap() {
        let path = entry.unwrap().path();
        // A temporary file may come and go.
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        use std::os::unix::fs::MetadataExt;
        let (mode, uid) = (meta.mode() & 0o777, meta.uid());
        let (r, w) = (nobody_may("-r", &path), nobody_may("-w", &path));
        if uid == NOBODY {
            given.push(path.file_name().unwrap().to_string_lossy().into_owned());
            assert_eq!((mode, r, w), (0o600, true, true), "{}", path.display());
        } else {
            assert!(!r && !w, "nobody may read or write {} (uid {uid}, mode {mode:o})", path.display());
        }
    }
    given.sort();
    // Its two log pipes, its copy of the boot state and of the prelude.
    assert_eq!(given.len(), 4, "{given:?}");
    assert!(given.iter().any(|g| g.starts_with("state.") && g.ends_with(".sh")), "{given:?}");
    assert!(given.contains(&format!("prelude.{NOBODY}.bash")), "{given:?}");
    assert!(given.contains(&"async.who.stdout".to_owned()) && given.contains(&"async.who.stderr".to_owned()));
}

// ----- env-file:, env:, cwd:, umask:, nice:, limit-* ----------------------------------------

const ENV_FILE: &str = r#"# a comment
; another comment

PLAIN=plain value
export EXPORTED=exported
SINGLE='single $HOME "quoted"'
DOUBLE="double \"quoted\" \\ value"
  SPACED  =  spaced
CONT=first \
second
OVERRIDDEN=from-file
"#;

/// Writes what the task sees to `$DIR/ctx.out` (atomically), then sleeps.
const CTX_REPORT: &str = r#"{
    for v in PLAIN EXPORTED SINGLE DOUBLE SPACED CONT OVERRIDDEN GROUPVAR; do
        printf '%s=[%s]\n' "$v" "${!v-unset}"
    done
    echo "pwd=$(pwd -P)"
    echo "umask=$(umask)"
    rm -f made; touch made; echo "mode=$(stat -c %a made)"
    echo "nice=$(nice)"
    grep -E '^Max (open files|core file size)' /proc/self/limits
} > "$DIR/ctx.tmp"
mv "$DIR/ctx.tmp" "$DIR/ctx.out"
exec sleep 1000"#;

/// The soft and hard limit of a `/proc/self/limits` line starting with `name`.
fn limit(report: &str, name: &str) -> (String, String) {
    let line = report
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{report}"));
    let words: Vec<&str> = line[name.len()..].split_whitespace().collect();
    (words[0].to_owned(), words[1].to_owned())
}

/// `env-file:` in systemd's syntax (comments, quotes, `export`, a continuation line), an
/// optional one that is missing, the group's RC_ENV_FILE before it and `env:` over both;
/// `cwd:`, `umask:`, `nice:`, `limit-nofile:` and RC_LIMIT_CORE. The env file is read again at
/// every start.
#[test]
fn env_file_env_cwd_umask_nice_and_limits() {
    let s = Sandbox::new();
    let work = s.work("app");
    let root = s.root().to_path_buf();
    std::fs::write(root.join("app.env"), ENV_FILE).unwrap();
    std::fs::write(root.join("group.env"), "GROUPVAR=from-group\nOVERRIDDEN=from-group\n").unwrap();
    std::fs::create_dir(root.join("place")).unwrap();
    let env_file = format!("env-file: {}", root.join("app.env").display());
    let optional = format!("env-file: -{}", root.join("missing.env").display());
    let cwd = format!("cwd: {}", root.join("place").display());
    task_file(
        &work,
        "async.ctx",
        &[
            &env_file,
            &optional,
            "env: OVERRIDDEN=from-env",
            &cwd,
            "umask: 027",
            "nice: 5",
            "limit-nofile: 100:200",
        ],
        CTX_REPORT,
    );
    let _trc = s.start_trc(
        s.trc(&work, &[])
            .env("RC_WAIT_POLICY", "wait_forever")
            .env("RC_ENV_FILE", root.join("group.env").to_str().unwrap())
            .env("RC_LIMIT_CORE", "1M:infinity")
            .env("OVERRIDDEN", "from-trc"),
    );
    let report = wait_file(&root.join("ctx.out"));
    for want in [
        "PLAIN=[plain value]",
        "EXPORTED=[exported]",
        "SINGLE=[single $HOME \"quoted\"]",
        "DOUBLE=[double \"quoted\" \\ value]",
        "SPACED=[spaced]",
        "CONT=[first second]",
        "OVERRIDDEN=[from-env]",
        "GROUPVAR=[from-group]",
        &format!("pwd={}", root.join("place").canonicalize().unwrap().display()),
        "umask=0027",
        "mode=640",
        "nice=5",
    ] {
        assert!(report.lines().any(|l| l == want), "want {want:?} in:\n{report}");
    }
    assert_eq!(limit(&report, "Max open files"), ("100".into(), "200".into()), "{report}");
    assert_eq!(limit(&report, "Max core file size"), ("1048576".into(), "unlimited".into()), "{report}");

    // Read again at the next start.
    std::fs::write(root.join("app.env"), ENV_FILE.replace("plain value", "changed")).unwrap();
    std::fs::remove_file(root.join("ctx.out")).unwrap();
    let out = s.ctl(&["restart", "ctx"]);
    assert_eq!(out.code, 0, "{out:?}");
    let report = wait_file(&root.join("ctx.out"));
    assert!(report.lines().any(|l| l == "PLAIN=[changed]"), "{report}");
    assert!(report.lines().any(|l| l == "OVERRIDDEN=[from-env]"), "{report}");
}

/// A relative work dir (`-w app`, RC_WORK_DIR=app) and a task with `cwd:`: the task still
/// runs its own file, a shell fragment or an executable.
#[test]
fn cwd_works_with_a_relative_work_dir() {
    let s = Sandbox::new();
    let work = s.work("app");
    std::fs::create_dir(s.root().join("place")).unwrap();
    let place = s.root().join("place").canonicalize().unwrap();
    let cwd = format!("cwd: {}", place.display());
    task_file(&work, "async.sh", &[&cwd], "echo \"pwd=$(pwd -P)\"");
    let py = python().unwrap_or("/usr/bin/python3");
    let exe = work.join("trc.d/async.py");
    std::fs::write(
        &exe,
        format!("#!{py}\n### BEGIN TRC\n# {cwd}\n### END TRC\nimport os\nprint('pwd=' + os.getcwd())\n"),
    )
    .unwrap();
    chmod(&exe, 0o755);
    let out = Trc::new(s.root(), ["-w", "app"])
        .env("XDG_RUNTIME_DIR", s.xdg().to_str().unwrap())
        .env("RC_WAIT_POLICY", "wait_all")
        .run();
    assert_eq!(out.code(), 0, "{out:?}");
    for task in ["sh", "py"] {
        let want = format!("{task}: pwd={}\n", place.display());
        assert!(out.stdout.contains(&want), "want {want:?}: {out:?}");
    }
}

/// A boot task ran (its state is restored in every later shell task): the task's own `cwd:`,
/// `umask:`, `env:` and, for `user:`, HOME still hold.
#[test]
fn a_boot_state_does_not_override_the_task_context() {
    let s = Sandbox::new();
    let work = s.work("app");
    std::fs::create_dir(s.root().join("place")).unwrap();
    let place = s.root().join("place").canonicalize().unwrap();
    let cwd = format!("cwd: {}", place.display());
    task_file(
        &work,
        "async.ctx",
        &[&cwd, "umask: 027", "env: FOO=from-env", "user: root"],
        "echo \"pwd=$(pwd -P) umask=$(umask) FOO=$FOO HOME=$HOME booted=$BOOTED\"",
    );
    let out = s.trc(&work, &["-B", "BOOTED=yes"]).env("FOO", "from-trc").env("HOME", "/trc-home").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let want = format!("ctx: pwd={} umask=0027 FOO=from-env HOME=/root booted=yes\n", place.display());
    assert!(out.stdout.contains(&want), "want {want:?}: {out:?}");
}

/// trc's own variables (TRC_*, MAINPID, NOTIFY_SOCKET, RC_RUNTIME_DIR...) cannot be set by a
/// task: an `env:` line naming one is a configuration error (78, file:line) for a shell task
/// and a `command:` task alike, before anything starts.
#[test]
fn env_naming_one_of_trcs_own_variables_is_78() {
    let s = Sandbox::new();
    let cases: [(&[&str], &str); 6] = [
        (&[], "TRC_TASK=fake"),
        (&[], "TRC_LOG_PIPE=/tmp/x"),
        (&[], "MAINPID=1"),
        (&["command: /bin/true"], "MAINPID=1"),
        (&["command: /bin/true"], "NOTIFY_SOCKET=/tmp/x"),
        (&[], "RC_RUNTIME_DIR=/tmp/x"),
    ];
    for (i, (extra, var)) in cases.into_iter().enumerate() {
        let work = s.work(&format!("case{i}"));
        task_file(&work, "async.marker", &[], "touch \"$DIR/started\"");
        let env = format!("env: {var}");
        let mut directives = vec![env.as_str()];
        directives.extend_from_slice(extra);
        task_file(&work, "async.bad", &directives, "touch \"$DIR/started\"");
        let out = s.trc(&work, &[]).run();
        assert_eq!(out.code(), 78, "{var}: {out:?}");
        let key = var.split('=').next().unwrap();
        let want =
            format!("{}:2: {key} is one of trc's own variables", work.join("trc.d/async.bad").display());
        assert!(out.stderr.contains(&want), "{var}: want {want:?}: {out:?}");
        assert!(!s.root().join("started").exists(), "{var}: a task ran: {out:?}");
    }
}

/// In an env file, a line that sets one of trc's own variables is ignored: the task sees
/// trc's value (a shell task and a `command:` task alike); the file's other lines hold.
#[test]
fn an_env_file_cannot_override_trcs_own_variables() {
    let s = Sandbox::new();
    let work = s.work("app");
    let env_file = s.root().join("app.env");
    std::fs::write(
        &env_file,
        "TRC_TASK=fake\nTRC_LOG_PIPE=/tmp/x\nMAINPID=1\nSELF_NAME=fake\nNOTIFY_SOCKET=/tmp/x\nOWN=yes\n",
    )
    .unwrap();
    let env_file = format!("env-file: {}", env_file.display());
    let report = r#"echo "task=$TRC_TASK mainpid=$MAINPID self=$SELF_NAME notify=${NOTIFY_SOCKET-unset} own=$OWN pipe=$TRC_LOG_PIPE""#;
    task_file(&work, "async.sh", &[&env_file], report);
    let command = format!("command: /bin/sh -c {}", shlex::try_quote(report).unwrap());
    task_file(&work, "async.cmd", &[&env_file, &command], "");
    let trc = s.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_all").spawn();
    let pid = trc.pid();
    let out = trc.wait();
    assert_eq!(out.code(), 0, "{out:?}");
    let rt = s.runtime_dir("app");
    for task in ["sh", "cmd"] {
        let pipe = rt.join(format!("async.{task}.stdout"));
        let want = format!(
            "{task}: task={task} mainpid={pid} self=trc notify=unset own=yes pipe={}\n",
            pipe.display()
        );
        assert!(out.stdout.contains(&want), "want {want:?}: {out:?}");
    }
}

/// A relative RC_RUNTIME_DIR is taken from trc's directory at start, as `--runtime-dir` is: a
/// task with a `cwd:` elsewhere still runs (its prelude is found), gets absolute TRC_LOG_PIPE
/// and RC_RUNTIME_DIR, writes through its pipe, and trcctl in it reaches trc.
#[test]
fn a_relative_runtime_dir_variable_is_made_absolute() {
    let s = Sandbox::new();
    let work = s.work("app");
    let place = s.root().join("place");
    std::fs::create_dir(&place).unwrap();
    let body = format!(
        r#"echo "pipe=$TRC_LOG_PIPE rt=$RC_RUNTIME_DIR"
echo "through the log pipe" > "$TRC_LOG_PIPE"
if {TRCCTL} --manager trc status t > /dev/null; then echo "trcctl: reached"; fi"#
    );
    task_file(&work, "async.t", &[&format!("cwd: {}", place.display())], &body);
    let out = s.trc(&work, &[]).env("RC_RUNTIME_DIR", "relrt").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let rt = s.root().join("relrt");
    let pipe = rt.join("trc/app/async.t.stdout");
    let want = format!("t: pipe={} rt={}\n", pipe.display(), rt.display());
    assert!(out.stdout.contains(&want), "want {want:?}: {out:?}");
    assert!(out.stdout.contains("t: through the log pipe\n"), "{out:?}");
    assert!(out.stdout.contains("t: trcctl: reached\n"), "{out:?}");
}

// ----- bad values: 78 naming file:line ------------------------------------------------------

/// Every bad value of a context directive is a configuration error (78) naming the file and
/// line, before anything starts; the same for the group-wide variables and options.
#[test]
fn bad_values_are_config_errors_naming_file_and_line() {
    let s = Sandbox::new();
    let root = s.root().to_path_buf();
    std::fs::write(root.join("bad.env"), "OK=1\nnot a variable\n").unwrap();
    std::fs::write(root.join("a-file"), "").unwrap();
    let missing_env = root.join("missing.env");
    let cases: Vec<(String, String)> = vec![
        ("user: no-such-user-trc".into(), "no user \"no-such-user-trc\"".into()),
        ("group: no-such-group-trc".into(), "no group \"no-such-group-trc\"".into()),
        ("user: nobody:no-such-group-trc".into(), "no group \"no-such-group-trc\"".into()),
        (
            format!("env-file: {}", missing_env.display()),
            format!("env file {}: No such file or directory", missing_env.display()),
        ),
        (
            format!("env-file: {}", root.join("bad.env").display()),
            format!("env file {}:2: \"not a variable\" is not KEY=VALUE", root.join("bad.env").display()),
        ),
        (format!("env-file: {}", root.display()), "Is a directory".into()),
        ("env-file: -".into(), "needs a path".into()),
        ("env: 1BAD=x".into(), "is not KEY=VALUE".into()),
        ("env: NOEQUALS".into(), "is not KEY=VALUE".into()),
        ("umask: 0999".into(), "\"0999\" is not an octal umask".into()),
        ("umask: 1777".into(), "\"1777\" is not an octal umask".into()),
        ("nice: 20".into(), "\"20\" is not a nice value from -20 to 19".into()),
        ("nice: -21".into(), "\"-21\" is not a nice value".into()),
        ("nice: high".into(), "\"high\" is not a nice value".into()),
        ("limit-nofile: 200:100".into(), "the soft limit is above the hard one".into()),
        ("limit-nofile: lots".into(), "\"lots\" is not a limit".into()),
        ("limit-core: 1X".into(), "\"1X\" is not a limit".into()),
        ("limit-bogus: 1".into(), "unknown directive \"limit-bogus\"".into()),
        (format!("cwd: {}", root.join("a-file").display()), "is not a directory".into()),
        (format!("cwd: {}", root.join("no-such-dir").display()), "No such file or directory".into()),
        ("success-exit-status: 0 zero".into(), "\"zero\" is not an exit status".into()),
        ("success-exit-status: 256".into(), "\"256\" is not an exit status".into()),
        ("success-exit-status: -1".into(), "\"-1\" is not an exit status".into()),
        ("forward-signals: KILL".into(), "SIGKILL cannot be forwarded".into()),
        ("forward-signals: STOP".into(), "SIGSTOP cannot be forwarded".into()),
        ("forward-signals: NOPE".into(), "unknown signal \"NOPE\"".into()),
    ];
    for (i, (directive, needle)) in cases.iter().enumerate() {
        let work = s.work(&format!("case{i}"));
        // Would mark that something ran.
        task_file(&work, "async.marker", &[], "touch \"$DIR/started\"");
        task_file(&work, "async.bad", &["restart: never", directive], "touch \"$DIR/started\"");
        let out = s.trc(&work, &[]).run();
        let path = work.join("trc.d/async.bad");
        assert_eq!(out.code(), 78, "{directive}: {out:?}");
        let line = out.stderr.lines().find(|l| l.contains(needle.as_str())).unwrap_or_else(|| {
            panic!("{directive}: no {needle:?} in stderr: {out:?}");
        });
        assert!(line.contains(&format!("{}:3: ", path.display())), "{directive}: {line}");
        assert!(!root.join("started").exists(), "{directive}: a task ran: {out:?}");
    }

    // The group-wide defaults, and the options.
    let work = s.work("vars");
    task_file(&work, "async.marker", &[], "touch \"$DIR/started\"");
    let vars = [
        ("RC_USER", "no-such-user-trc", "no user"),
        ("RC_GROUP", "no-such-group-trc", "no group"),
        ("RC_CWD", "/nonexistent/dir", "No such file or directory"),
        ("RC_ENV_FILE", "/nonexistent/app.env", "env file /nonexistent/app.env"),
        ("RC_UMASK", "9", "is not an octal umask"),
        ("RC_NICE", "20", "is not a nice value"),
        ("RC_LIMIT_NOFILE", "2:1", "the soft limit is above the hard one"),
        ("RC_LIMIT_NPROC", "many", "is not a limit"),
        ("RC_SUCCESS_EXIT_STATUS", "ok", "is not an exit status"),
        ("RC_FORWARD_SIGNALS", "KILL", "SIGKILL cannot be forwarded"),
        ("RC_STOP_DELAY", "soon", "not a duration"),
    ];
    for (var, value, needle) in vars {
        let out = s.trc(&work, &[]).env(var, value).run();
        assert_eq!(out.code(), 78, "{var}={value}: {out:?}");
        let want = format!("{var}=\"{value}\": ");
        assert!(
            out.stderr.lines().any(|l| l.contains(&want) && l.contains(needle)),
            "{var}={value}: want {want:?} and {needle:?}: {out:?}"
        );
        assert!(!root.join("started").exists(), "{var}={value}: a task ran: {out:?}");
    }
    for (option, value, needle) in
        [("--forward-signals", "KILL", "cannot be forwarded"), ("--stop-delay", "soon", "not a duration")]
    {
        let out = s.trc(&work, &[option, value]).run();
        assert_eq!(out.code(), 78, "{option} {value}: {out:?}");
        assert!(out.stderr.contains(needle), "{option} {value}: {out:?}");
        assert!(!root.join("started").exists(), "{option} {value}: a task ran: {out:?}");
    }
}

/// A sandbox (its root readable by all) and a runtime dir `rt` owned by nobody, for a trc run
/// as nobody; `None` (said) when this run cannot switch users.
fn nobody_sandbox(test: &str) -> Option<(Sandbox, std::path::PathBuf)> {
    let root_and_setpriv = nix::unistd::geteuid().is_root()
        && Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !root_and_setpriv {
        skip(test, "root and setpriv(1) (to run trc as another user)");
        return None;
    }
    let s = Sandbox::new();
    chmod(s.root(), 0o755);
    let rt = s.root().join("rt");
    std::fs::create_dir(&rt).unwrap();
    nix::unistd::chown(&rt, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    Some((s, rt))
}

/// `trc -w WORK` run to its end as nobody (no supplementary groups), with RC_RUNTIME_DIR=rt.
fn as_nobody(s: &Sandbox, rt: &Path, work: &Path) -> Out {
    as_nobody_with(s, rt, work, &[])
}

/// [`as_nobody`] under `prlimit ARGS` (its limits), when given.
fn as_nobody_with(s: &Sandbox, rt: &Path, work: &Path, prlimit: &[&str]) -> Out {
    let mut cmd = if prlimit.is_empty() {
        Command::new("setpriv")
    } else {
        let mut cmd = Command::new("prlimit");
        cmd.args(prlimit).args(["--", "setpriv"]);
        cmd
    };
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(trc_bin())
        .arg("-w")
        .arg(work)
        .current_dir(s.root())
        .env_remove("XDG_RUNTIME_DIR")
        .env("RC_RUNTIME_DIR", rt)
        .env("DIR", s.root());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if (k.starts_with("RC_") && k != "RC_RUNTIME_DIR") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" {
            cmd.env_remove(&key);
        }
    }
    run(cmd)
}

/// Runs `directive` as nobody and checks the 78 saying that `what:` needs root.
fn needs_root(s: &Sandbox, rt: &Path, name: &str, directive: &str, what: &str) {
    let work = s.work(name);
    task_file(&work, "async.bad", &["restart: never", directive], "echo ran");
    let out = as_nobody(s, rt, &work);
    assert_eq!(out.code, 78, "{directive}: {out:?}");
    let want = format!(
        "{}:3: \"{what}:\" needs trc to run as root (it runs as uid 65534)",
        work.join("trc.d/async.bad").display()
    );
    assert!(out.stderr.contains(&want), "{directive}: want {want:?}: {out:?}");
    assert!(!out.stdout.contains("ran"), "{directive}: {out:?}");
}

/// `user:` or `group:` naming another id while trc is not root: 78 before anything starts,
/// saying that it needs root.
#[test]
fn user_needs_trc_to_run_as_root() {
    let Some((s, rt)) = nobody_sandbox("user_needs_trc_to_run_as_root") else { return };
    for (i, (directive, what)) in
        [("user: root", "user"), ("user: 4242", "user"), ("group: 0", "group")].into_iter().enumerate()
    {
        needs_root(&s, &rt, &format!("case{i}"), directive, what);
    }
}

/// `user: NAME:GROUP` whose group is not trc's, while trc is not root: as `group:`, 78.
#[test]
fn user_with_another_group_needs_trc_to_run_as_root() {
    let Some((s, rt)) = nobody_sandbox("user_with_another_group_needs_trc_to_run_as_root") else { return };
    needs_root(&s, &rt, "app", "user: nobody:0", "user");
}

/// `user:` and `group:` naming trc's own user and group while trc is not root: nothing to
/// switch, the task runs.
#[test]
fn user_naming_trcs_own_user_runs_without_root() {
    let Some((s, rt)) = nobody_sandbox("user_naming_trcs_own_user_runs_without_root") else { return };
    let work = s.work("same");
    task_file(&work, "async.same", &["user: nobody", "group: 65534"], "echo \"ran as $(id -u)\"");
    let out = as_nobody(&s, &rt, &work);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("same: ran as 65534\n"), "{out:?}");
}

/// `trc -w WORK` as root but without CAP_SYS_RESOURCE (neither inheritable nor in the bounding
/// set, so the exec does not give it back), under `prlimit ARGS` (trc's own limits).
fn without_cap_sys_resource(s: &Sandbox, work: &Path, prlimit: &[&str]) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.args(prlimit)
        .args(["--", "setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--"])
        .arg(trc_bin())
        .arg("-w")
        .arg(work)
        .current_dir(s.root())
        .env("XDG_RUNTIME_DIR", s.xdg())
        .env("DIR", s.root());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("RC_") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" {
            cmd.env_remove(&key);
        }
    }
    cmd
}

fn may_drop_caps(test: &str) -> bool {
    let tools = ["setpriv", "prlimit"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()));
    if nix::unistd::geteuid().is_root() && tools {
        return true;
    }
    skip(test, "root, setpriv(1) and prlimit(1)");
    false
}

/// A hard limit above trc's own when trc may not raise it (no CAP_SYS_RESOURCE) is a
/// configuration error (78) naming file:line and the limit, before anything starts; the same
/// for RC_LIMIT_*. A limit within trc's own runs.
#[test]
fn a_limit_trc_may_not_raise_is_78_naming_file_line_and_limit() {
    if !may_drop_caps("a_limit_trc_may_not_raise_is_78_naming_file_line_and_limit") {
        return;
    }
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "async.marker", &[], "touch \"$DIR/started\"");
    task_file(&work, "async.bad", &["restart: never", "limit-nproc: 500:infinity"], "touch \"$DIR/started\"");
    let out = run(without_cap_sys_resource(&s, &work, &["--nproc=1000:1000"]));
    assert_eq!(out.code, 78, "{out:?}");
    let want = format!(
        "{}:3: limit-nproc: a hard limit of infinity is above trc's own (1000), and trc may not raise it (it lacks CAP_SYS_RESOURCE)",
        work.join("trc.d/async.bad").display()
    );
    assert!(out.stderr.contains(&want), "want {want:?}: {out:?}");
    assert!(!s.root().join("started").exists(), "a task ran: {out:?}");

    // The group-wide default names its variable.
    std::fs::remove_file(work.join("trc.d/async.bad")).unwrap();
    let mut cmd = without_cap_sys_resource(&s, &work, &["--nproc=1000:1000"]);
    cmd.env("RC_LIMIT_NPROC", "500:2000");
    let out = run(cmd);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("RC_LIMIT_NPROC=\"500:2000\": limit-nproc: a hard limit of 2000"), "{out:?}");
    assert!(!s.root().join("started").exists(), "a task ran: {out:?}");

    // Within trc's own hard limit: it runs.
    task_file(&work, "async.marker", &["limit-nproc: 500:1000"], "echo \"nproc=$(ulimit -Hu)\"");
    let out = run(without_cap_sys_resource(&s, &work, &["--nproc=1000:1000"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("marker: nproc=1000\n"), "{out:?}");
}

/// A limit that the kernel refuses at start (trc's own hard limit was lowered after the check)
/// fails the start, and the message names the limit.
#[test]
fn a_limit_refused_at_start_is_named() {
    if !may_drop_caps("a_limit_refused_at_start_is_named") {
        return;
    }
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "async.t", &["limit-nofile: 100:200"], "exec sleep 1000");
    let mut cmd = without_cap_sys_resource(&s, &work, &["--nofile=1024:1024"]);
    cmd.env("RC_WAIT_POLICY", "wait_forever");
    let mut sup = Sup { running: Some(Running::start(cmd)), name: String::new() };
    sup.name = s.wait_instance(&mut sup);
    s.wait_sleeping("t");
    let status =
        Command::new("prlimit").arg(format!("--pid={}", sup.pid())).arg("--nofile=150:150").status().unwrap();
    assert!(status.success(), "prlimit on trc");
    // The child is forked (trcctl may see it run, or already failed), then fails before its
    // exec: what trcctl says depends on which came first; trc's line does not.
    s.ctl(&["restart", "t"]);
    handle(&mut sup).wait_for_line("cannot set its resource limit limit-nofile: Operation not permitted");
}

/// As nobody, a nice value below trc's own (no CAP_SYS_NICE, RLIMIT_NICE 0) is a
/// configuration error naming file:line; a higher one runs.
#[test]
fn a_nice_value_trc_may_not_give_is_78() {
    let Some((s, rt)) = nobody_sandbox("a_nice_value_trc_may_not_give_is_78") else { return };
    let work = s.work("low");
    task_file(&work, "async.bad", &["restart: never", "nice: -5"], "echo ran");
    let out = as_nobody_with(&s, &rt, &work, &["--nice=0:0"]);
    assert_eq!(out.code, 78, "{out:?}");
    let want = format!(
        "{}:3: nice: -5 is below trc's own nice value (0), and trc may not lower it (it lacks CAP_SYS_NICE",
        work.join("trc.d/async.bad").display()
    );
    assert!(out.stderr.contains(&want), "want {want:?}: {out:?}");
    assert!(!out.stdout.contains("ran"), "{out:?}");
    let work = s.work("high");
    task_file(&work, "async.ok", &["nice: 5"], "echo \"nice=$(cut -d' ' -f19 /proc/self/stat)\"");
    let out = as_nobody_with(&s, &rt, &work, &["--nice=0:0"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("ok: nice=5\n"), "{out:?}");
}

// ----- success-exit-status ------------------------------------------------------------------

/// wait_any: the first task's status is the group's, a success status counted as 0 (a status
/// number, or a signal name for death by that signal).
#[test]
fn success_exit_status_under_wait_any() {
    let s = Sandbox::new();
    let cases: [(&[&str], &str, i32); 5] = [
        (&["success-exit-status: 0 TERM"], "kill -TERM $$", 0),
        (&[], "kill -TERM $$", 143),
        (&["success-exit-status: 143"], "exit 143", 0),
        (&["success-exit-status: 3, 143"], "exit 3", 0),
        (&["success-exit-status: 3 143"], "exit 4", 4),
    ];
    for (i, (directives, body, want)) in cases.into_iter().enumerate() {
        let work = s.work(&format!("case{i}"));
        task_file(&work, "async.t", directives, body);
        task_file(&work, "async.other", &[], "exec sleep 1000");
        let out = s.trc(&work, &[]).run();
        assert_eq!(out.code(), want, "{directives:?} {body}: {out:?}");
    }
}

/// wait_err: a task that exits with one of its success statuses does not end the group; a
/// real failure then does, with its status.
#[test]
fn success_exit_status_under_wait_err() {
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "async.a", &["success-exit-status: 3"], "exit 3");
    task_file(&work, "async.b", &[], &format!("{}\nexit 5", gate("fail-b")));
    let mut sup = s.start_trc(s.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_err"));
    let st = wait_finished(&s, "a");
    assert_eq!(st["last_status"], 3, "{st}");
    // The policy decided when a finished: b would be stopping by now.
    let st = status_of(&s, "b");
    assert_eq!(st["state"], "running", "{st}");
    assert!(sup.alive());
    touch(&s.root().join("fail-b"));
    let out = wait_exit(sup);
    assert_eq!(out.code(), 5, "{out:?}");
}

/// wait_all: the group's status is the first failure, and a success status is none.
#[test]
fn success_exit_status_under_wait_all() {
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "async.a", &["success-exit-status: 3"], &format!("{}\nexit 3", gate("go-a")));
    task_file(&work, "async.b", &[], &format!("{}\nexit 5", gate("go-b")));
    task_file(&work, "async.c", &[], &format!("{}\nexit 6", gate("go-c")));
    let mut sup = s.start_trc(s.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_all"));
    for (task, status) in [("a", 3), ("b", 5)] {
        touch(&s.root().join(format!("go-{task}")));
        let st = wait_finished(&s, task);
        assert_eq!(st["last_status"], status, "{st}");
        assert!(sup.alive());
    }
    touch(&s.root().join("go-c"));
    let out = wait_exit(sup);
    assert_eq!(out.code(), 5, "the first failure, not a's 3 nor c's 6: {out:?}");
}

/// `restart: on-failure` does not restart a task that exits with one of its success statuses
/// (a failure status still restarts it).
#[test]
fn on_failure_does_not_restart_a_success_status() {
    let s = Sandbox::new();
    let work = s.work("app");
    let restart = ["restart: on-failure", "restart-delay: 100ms", "success-exit-status: 3"];
    task_file(&work, "async.ok", &restart, "echo run >> \"$DIR/runs-ok\"; exit 3");
    task_file(&work, "async.bad", &restart, "echo run >> \"$DIR/runs-bad\"; exit 4");
    let _trc = s.start(&work);
    // A restart is decided with the exit: "finished" is final.
    let st = wait_finished(&s, "ok");
    assert_eq!((st["last_status"].as_i64(), st["starts"].as_i64()), (Some(3), Some(1)), "{st}");
    wait_status(&s, "bad", "restarted", |st| st["starts"].as_i64() >= Some(2));
    let st = status_of(&s, "ok");
    assert_eq!((st["state"].as_str(), st["starts"].as_i64()), (Some("finished"), Some(1)), "{st}");
    let runs = std::fs::read_to_string(s.root().join("runs-ok")).unwrap();
    assert_eq!(runs.lines().count(), 1, "{runs}");
}

/// RC_SUCCESS_EXIT_STATUS is every task's default (command-line tasks too); a task's own
/// `success-exit-status:` replaces it.
#[test]
fn rc_success_exit_status_is_the_group_default() {
    let s = Sandbox::new();
    let work = s.work("cli");
    let out = s.trc(&work, &["-D", "exit 3"]).env("RC_SUCCESS_EXIT_STATUS", "3 USR1").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let out = s.trc(&work, &["-D", "kill -USR1 $$"]).env("RC_SUCCESS_EXIT_STATUS", "3 USR1").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let work = s.work("file");
    task_file(&work, "async.default", &[], "exit 3");
    let out = s.trc(&work, &[]).env("RC_SUCCESS_EXIT_STATUS", "3").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let work = s.work("own");
    task_file(&work, "async.own", &["success-exit-status: 4"], "exit 3");
    let out = s.trc(&work, &[]).env("RC_SUCCESS_EXIT_STATUS", "3").run();
    assert_eq!(out.code(), 3, "the task's own list replaces the default: {out:?}");
}

// ----- --stop-delay -------------------------------------------------------------------------

/// `--stop-delay`: after the first TERM trc says it is not ready (draining) while the tasks
/// still run; a second TERM stops at once (the delay, 10 minutes, is far longer than the
/// harness waits for the exit).
#[test]
fn stop_delay_reports_not_ready_and_a_second_signal_stops_at_once() {
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "async.app", &[], "exec sleep 1000");
    let mut sup = s.start_trc(s.trc(&work, &["--stop-delay", "10min", "--verbose"]));
    let pid = s.wait_sleeping("app");
    let out = s.ctl(&["check", "--ready"]);
    assert_eq!(out.code, 0, "ready before the signal: {out:?}");

    sup.running.as_ref().unwrap().signal(libc::SIGTERM);
    handle(&mut sup).wait_for_line("got SIGTERM: stopping in 10m");
    let out = s.ctl(&["check", "--ready"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("draining"), "{out:?}");
    let st = status_of(&s, "app");
    assert_eq!((st["state"].as_str(), int_of(&st["pid"])), (Some("running"), pid), "{st}");
    assert!(common::process_alive(pid));

    sup.running.as_ref().unwrap().signal(libc::SIGTERM);
    handle(&mut sup).wait_for_line("got SIGTERM while draining: stopping now");
    let out = wait_exit(sup);
    assert_eq!(out.code(), 143, "{out:?}");
}

/// RC_STOP_DELAY=1s: trc exits no earlier than 1 s after the TERM (a lower bound only).
#[test]
fn stop_delay_holds_the_stop_for_at_least_the_delay() {
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "async.app", &[], &common::sleeper(s.root(), "app"));
    let mut trc = s.trc(&work, &[]).env("RC_STOP_DELAY", "1s").env("RC_VERBOSE", "true").spawn();
    common::wait_sleeping(s.root(), "app");
    let sent = Instant::now();
    trc.signal(libc::SIGTERM);
    trc.wait_for_line("got SIGTERM: stopping in 1s");
    let out = trc.wait();
    let took = sent.elapsed();
    assert_eq!(out.code(), 143, "{out:?}");
    assert!(took >= Duration::from_secs(1), "trc stopped {took:?} after the TERM: {out:?}");
    let said = out.stdout.find("stopping in 1s").unwrap();
    let exited = out.stdout.find("Exiting in the background").expect("the task's exit line");
    assert!(said < exited, "{out:?}");
}
