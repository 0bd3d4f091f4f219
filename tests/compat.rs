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
