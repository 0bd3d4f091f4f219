//! TrivialRC compatibility points of issue #15 that fixtures cannot show (their pids are
//! normalised): U3, a boot task's `log` shows trc's own pid, as TrivialRC's boot runs in its main
//! shell; and every shell task's process title names it (`trc: async web`), so `ps`, `pgrep -f`
//! and `systemctl status` tell tasks apart.

mod common;

use common::{wait_until, Trc};

#[test]
fn a_boot_task_logs_with_trc_s_pid() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Trc::new(dir.path(), ["-B", "log from boot", "-F", "log from sync"]).env("RC_VERBOSE", "true").run();
    assert_eq!(out.code(), 0, "{out:?}");
    let pid_of = |needle: &str| -> i32 {
        let line = out.stdout.lines().find(|l| l.ends_with(needle)).unwrap_or_else(|| panic!("{out:?}"));
        let inside = line.split('[').nth(1).and_then(|r| r.split(']').next()).unwrap();
        inside.split('/').nth(1).unwrap().parse().unwrap()
    };
    let trc_pid = out
        .stdout
        .lines()
        .find(|l| l.contains("The wait policy"))
        .and_then(|l| l.split("[main/").nth(1))
        .and_then(|r| r.split(']').next())
        .and_then(|p| p.parse::<i32>().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(pid_of("]: from boot"), trc_pid, "{out:?}");
    assert_ne!(pid_of("]: from sync"), trc_pid, "a sync task logs with its own pid: {out:?}");
}

#[test]
fn shell_tasks_have_a_process_title_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("trc.d")).unwrap();
    // Not `exec`: bash stays the task's leader, with its title.
    std::fs::write(dir.path().join("trc.d/async.web"), "echo $$ > \"$DIR/web.pid\"; sleep 1000; true\n")
        .unwrap();
    let running = Trc::new(dir.path(), ["--wait-policy", "wait_forever"])
        .env("DIR", dir.path().to_str().unwrap())
        .spawn();
    let pid_file = dir.path().join("web.pid");
    wait_until("web to write its pid", || {
        pid_file.exists() && std::fs::read_to_string(&pid_file).unwrap().ends_with('\n')
    });
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let title = String::from_utf8_lossy(cmdline.split(|&b| b == 0).next().unwrap()).into_owned();
    assert_eq!(title, "trc: async web");
    assert!(cmdline.len() < 1024, "the prelude is not on the command line: {} bytes", cmdline.len());
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
}

#[test]
fn a_task_s_command_line_holds_none_of_the_others_and_its_arguments_still_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Two command-line tasks, told apart by `pgrep -f`: neither's command line holds the
    // other's text (trc's argv, which is "$@" in a task, has both). A word with quotes, spaces
    // and a non-UTF-8 byte reaches "$@" whole.
    let a = format!(
        "echo $$ > {d}/a.pid; printf '%s\\n' \"$@\" > {d}/a.tmp; mv {d}/a.tmp {d}/a.args; sleep 1000; true"
    );
    let b = format!("echo $$ > {d}/b.pid; sleep 1001; true");
    let mut trc = Trc::new(dir.path(), ["-D", &a, "-D", &b, "--wait-policy", "wait_forever"]);
    use std::os::unix::ffi::OsStrExt;
    trc.command().arg(std::ffi::OsStr::from_bytes(b"it's a \"word\" \xff"));
    let running = trc.spawn();
    let read_pid = |name: &str| -> i32 {
        let file = dir.path().join(name);
        wait_until(name, || std::fs::read_to_string(&file).is_ok_and(|t| t.ends_with('\n')));
        std::fs::read_to_string(&file).unwrap().trim().parse().unwrap()
    };
    let (a_pid, b_pid) = (read_pid("a.pid"), read_pid("b.pid"));
    let cmdline = |pid: i32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains(&cmdline(a_pid), "trc: async async-1"),
        "{:?}",
        String::from_utf8_lossy(&cmdline(a_pid))
    );
    assert!(!contains(&cmdline(a_pid), "sleep 1001"), "{:?}", String::from_utf8_lossy(&cmdline(a_pid)));
    assert!(!contains(&cmdline(b_pid), "sleep 1000"), "{:?}", String::from_utf8_lossy(&cmdline(b_pid)));
    // `top` and `ps -e` show the kernel's short name.
    let comm = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim_end().to_owned();
    assert_eq!((comm(a_pid), comm(b_pid)), ("trc:async-1".to_owned(), "trc:async-2".to_owned()));
    let args_file = dir.path().join("a.args");
    wait_until("a's arguments", || args_file.exists()); // written whole, then renamed
                                                        // "$@" is trc's command line, as TrivialRC's tasks see its own; the last word, whole.
    let args = std::fs::read(&args_file).unwrap();
    assert!(args.starts_with(b"-D\n"), "{:?}", String::from_utf8_lossy(&args));
    assert!(args.ends_with(b"\nit's a \"word\" \xff\n"), "{:?}", String::from_utf8_lossy(&args));
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
}
