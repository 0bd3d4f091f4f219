//! A `trc.d` without a shell, and the runtime dir where you say (issue #14): ELF task files (and
//! symlinks to them) and `command:` headers run in a root that holds no bash at all; a shell task
//! there, or a `-D` string with no bash on the PATH, is a configuration error (78) naming it;
//! `--runtime-dir` / `RC_RUNTIME_DIR` make a read-only root work for `nobody`, and trcctl finds
//! the instance there; a boot task that needs no shell lets the boot go on.

mod common;

use common::sandbox::{python, run, str_of, Out, TRCCTL};
use common::{can_use_namespaces, skip, trc_bin, Running, Trc};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NOBODY: u32 = 65534;

/// A static program for tasks: prints its task name (`TRC_TASK`), uid, cwd and each argument
/// in brackets, and exits with N when an argument is `exit=N`.
const HELLO_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char cwd[4096];
    int status = 0;
    const char *task = getenv("TRC_TASK");
    printf("hello task=%s uid=%d cwd=%s argv:", task ? task : "-", (int)getuid(),
           getcwd(cwd, sizeof cwd) ? cwd : "?");
    for (int i = 1; i < argc; i++) {
        printf(" [%s]", argv[i]);
        if (strncmp(argv[i], "exit=", 5) == 0) status = atoi(argv[i] + 5);
    }
    printf("\n");
    return status;
}
"#;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    chmod(path, mode);
}

/// Compiles [`HELLO_C`] statically into `dir/hello`; `None` (the test is skipped, which fails
/// under `CI=true`) when gcc or a static libc is missing.
fn static_hello(test: &str, dir: &Path) -> Option<PathBuf> {
    let src = dir.join("hello.c");
    let bin = dir.join("hello");
    std::fs::write(&src, HELLO_C).unwrap();
    let out = Command::new("gcc").arg("-static").arg("-O").arg("-o").arg(&bin).arg(&src).output();
    match out {
        Ok(out) if out.status.success() => Some(bin),
        Ok(out) => {
            skip(test, &format!("gcc -static (it failed: {})", String::from_utf8_lossy(&out.stderr)));
            None
        }
        Err(e) => {
            skip(test, &format!("gcc ({e})"));
            None
        }
    }
}

/// The error of the last failed call, with `what` failed, for a `pre_exec` closure.
fn fail(what: &str) -> std::io::Result<()> {
    let e = std::io::Error::last_os_error();
    Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn cstr(path: &Path) -> CString {
    CString::new(path.to_str().unwrap()).unwrap()
}

/// A command with none of the caller's `RC_*`/`TRC_*` variables (so a developer's shell cannot
/// change the outcome), stdin from /dev/null.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("RC_") || name.starts_with("TRC_") || name == "NOTIFY_SOCKET" {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

// --- A root without bash --------------------------------------------------------------------

/// Copies `bin` to `root/bin/NAME` with the shared libraries `ldd` lists for it, each at its
/// own path under `root` (none for a static binary).
fn install_with_libs(bin: &Path, root: &Path, name: &str) {
    let target = root.join("bin").join(name);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(bin, &target).unwrap();
    let ldd = Command::new("ldd").arg(bin).output().expect("run ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`.
        let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) else { continue };
        let to = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, &to).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
}

/// `/bin/trc ARGS` chrooted into `root`, in a private mount namespace (it ends with its last
/// process) where the host's /dev/null and /proc are bound into `root`; run in `/`, with
/// `PATH=/bin` and no other variable (but the harness's mark).
fn in_chroot(root: &Path, args: &[&str]) -> Command {
    let (null, proc_dir) = (root.join("dev/null"), root.join("proc"));
    std::fs::create_dir_all(&proc_dir).unwrap();
    if !null.exists() {
        write(&null, "", 0o666);
    }
    let (root_c, null_c, proc_c) = (cstr(root), cstr(&null), cstr(&proc_dir));
    let mut cmd = Command::new("/bin/trc");
    cmd.args(args).env_clear().env("PATH", "/bin").stdin(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe syscalls run, on data prepared before.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail("unshare");
            }
            let none = c"none".as_ptr();
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(none, c"/".as_ptr(), std::ptr::null(), private, std::ptr::null()) != 0 {
                return fail("make / private");
            }
            let bind = |from: *const libc::c_char, to: &CString, flags| {
                libc::mount(from, to.as_ptr(), std::ptr::null(), libc::MS_BIND | flags, std::ptr::null())
            };
            if bind(c"/dev/null".as_ptr(), &null_c, 0) != 0 {
                return fail("bind /dev/null");
            }
            if bind(c"/proc".as_ptr(), &proc_c, libc::MS_REC) != 0 {
                return fail("bind /proc");
            }
            if libc::chroot(root_c.as_ptr()) != 0 {
                return fail("chroot");
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return fail("chdir /");
            }
            Ok(())
        });
    }
    cmd
}

/// A root in `tmp` without any shell: trc and the static test program (`/bin/hello`, also
/// returned as the host's path), with its libraries, `/run`, a sticky `/tmp` and `/app/trc.d`.
/// `None` (said) when no static program can be built.
fn bashless_root(test: &str, tmp: &Path) -> Option<(PathBuf, PathBuf)> {
    let hello = static_hello(test, tmp)?;
    let root = tmp.join("root");
    install_with_libs(&trc_bin(), &root, "trc");
    install_with_libs(&hello, &root, "hello");
    for dir in ["run", "tmp", "app/trc.d"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    chmod(&root.join("tmp"), 0o1777);
    Some((root, hello))
}

#[test]
fn elf_and_command_tasks_run_in_a_root_without_bash_and_a_shell_task_there_is_78() {
    let test = "elf_and_command_tasks_run_in_a_root_without_bash_and_a_shell_task_there_is_78";
    if !can_use_namespaces(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, hello)) = bashless_root(test, tmp.path()) else { return };
    let tasks = root.join("app/trc.d");
    std::fs::copy(&hello, tasks.join("async.elf")).unwrap();
    symlink("/bin/hello", tasks.join("async.link")).unwrap();
    // Not executable, and its body is no script of any kind: the header alone says what runs.
    write(
        &tasks.join("async.argv"),
        "### BEGIN TRC\n# command: /bin/hello \"two words\" '$HOME' exit=5\n### END TRC\n\
         this is ( not { a script\n\x01\x02 at all\n",
        0o644,
    );
    for shell in ["bin/bash", "bin/sh", "usr/bin/bash", "usr/bin/sh"] {
        assert!(!root.join(shell).exists(), "{shell} in the root");
    }

    // wait_all: every task runs to its end; the status is the failed one's (5).
    let out = Running::start(in_chroot(&root, &["-w", "/app", "--wait-policy", "wait_all"])).wait();
    assert_eq!(out.code(), 5, "{out:?}");
    for line in [
        "elf: hello task=elf uid=0 cwd=/ argv:\n",
        "link: hello task=link uid=0 cwd=/ argv:\n",
        "argv: hello task=argv uid=0 cwd=/ argv: [two words] [$HOME] [exit=5]\n",
    ] {
        assert!(out.stdout.contains(line), "no line {line:?}: {out:?}");
    }
    assert!(!out.stderr.contains("bash"), "{out:?}");

    // The trailing command found on the PATH (/bin) is a program too: no shell for it either.
    let out = Running::start(in_chroot(&root, &["-w", "/app", "--wait-policy", "wait_all", "hello", "last"]))
        .wait();
    assert_eq!(out.code(), 5, "{out:?}");
    assert!(out.stdout.contains("hello task=cmd uid=0 cwd=/ argv: [last]\n"), "{out:?}");
    assert!(out.stdout.contains("elf: hello task=elf"), "{out:?}");

    // A shell fragment among them: nothing starts, 78, naming that file and bash.
    write(&tasks.join("async.shell"), "echo from the shell\n", 0o644);
    let out = Running::start(in_chroot(&root, &["-w", "/app", "--wait-policy", "wait_all"])).wait();
    assert_eq!(out.code(), 78, "{out:?}");
    assert!(out.stderr.contains("/app/trc.d/async.shell: a shell task"), "{out:?}");
    assert!(out.stderr.contains("bash is not on the PATH (/bin)"), "{out:?}");
    assert!(!out.stdout.contains("hello"), "nothing started: {out:?}");
}

// --- No bash on the PATH --------------------------------------------------------------------

#[test]
fn a_shell_option_without_bash_on_the_path_is_78_and_a_program_runs_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-path");
    let work = tmp.path().join("app");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(work.join("trc.d")).unwrap();
    let trc = |args: &[&str]| {
        let mut all = vec!["-w", work.to_str().unwrap()];
        all.extend_from_slice(args);
        Trc::new(tmp.path(), all).env("PATH", empty.to_str().unwrap()).run()
    };

    for (args, named) in [
        (&["-D", "echo hi", "/bin/echo", "never"][..], "-D \"echo hi\": a shell task"),
        (&["-B", "true", "/bin/echo", "never"][..], "-B \"true\": a shell task"),
        (&["-F", "true"][..], "-F \"true\": a shell task"),
        (&["-H", "true", "/bin/echo", "never"][..], "-H \"true\": a shell task"),
        // Not a program trc can find (the PATH is empty): bash would run it, or say 127.
        (&["echo", "never"][..], "the command \"echo\": a shell task"),
    ] {
        let out = trc(args);
        assert_eq!(out.code(), 78, "{args:?}: {out:?}");
        assert!(out.stderr.contains(named), "{args:?}: {out:?}");
        assert!(out.stderr.contains("bash is not on the PATH"), "{args:?}: {out:?}");
        assert!(out.stderr.contains(empty.to_str().unwrap()), "names the PATH: {out:?}");
        assert!(!out.stdout.contains("never"), "{args:?}: nothing started: {out:?}");
    }

    let out = trc(&["/bin/echo", "a program", "needs no shell"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "a program needs no shell\n", "{out:?}");
}

// --- A read-only root, as nobody ------------------------------------------------------------

/// `mount_setattr(2)`'s argument.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 1;

/// Runs `cmd` in a private mount namespace where every mount is read-only, but a fresh tmpfs
/// (mode 1777, as a Kubernetes `emptyDir`) on `writable`, when given.
fn read_only_root(cmd: &mut Command, writable: Option<&Path>) {
    let writable = writable.map(cstr);
    // SAFETY: between fork and exec only async-signal-safe syscalls run, on data prepared before.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail("unshare");
            }
            let none = c"none".as_ptr();
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(none, c"/".as_ptr(), std::ptr::null(), private, std::ptr::null()) != 0 {
                return fail("make / private");
            }
            let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
            if libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                c"/".as_ptr(),
                libc::AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            ) != 0
            {
                return fail("make every mount read-only (mount_setattr)");
            }
            if let Some(dir) = &writable {
                let tmpfs = c"tmpfs".as_ptr();
                let data = c"mode=1777,size=4m".as_ptr().cast();
                if libc::mount(tmpfs, dir.as_ptr(), tmpfs, 0, data) != 0 {
                    return fail("mount the tmpfs");
                }
            }
            Ok(())
        });
    }
}

/// `PROGRAM ARGS` as uid/gid 65534 with no supplementary groups (setpriv).
fn as_nobody(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut cmd = clean("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(program).args(args);
    cmd
}

/// A world of its own for a `nobody` run: a temp dir that `nobody` may search, with a work dir
/// `app` (an empty `trc.d`), an existing `xdg` and `tmp` (1777, so only the read-only root
/// keeps trc from them) and `rt`, where the tmpfs goes.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        chmod(tmp.path(), 0o755);
        let world = World { tmp };
        std::fs::create_dir_all(world.work().join("trc.d")).unwrap();
        for dir in ["xdg", "tmp", "rt"] {
            std::fs::create_dir(world.path(dir)).unwrap();
            chmod(&world.path(dir), 0o1777);
        }
        world
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn work(&self) -> PathBuf {
        self.path("app")
    }

    /// trc as nobody on the work dir, with `XDG_RUNTIME_DIR` and `TMPDIR` in this world.
    fn trc(&self, args: &[&str]) -> Command {
        let work = self.work();
        let mut all = vec!["-w", work.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut cmd = as_nobody(trc_bin(), &all);
        cmd.current_dir(self.tmp.path())
            .env("XDG_RUNTIME_DIR", self.path("xdg"))
            .env("TMPDIR", self.path("tmp"));
        cmd
    }
}

/// trcctl ARGS as nobody, in the mount namespace of process `pid`, with `RC_RUNTIME_DIR=dir`.
fn trcctl_in_namespace_of(pid: i32, dir: &Path, args: &[&str]) -> Out {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).unwrap();
    let mut all = vec!["--manager", "trc"];
    all.extend_from_slice(args);
    let mut cmd = as_nobody(TRCCTL, &all);
    cmd.env_remove("TRC_INSTANCE")
        .env_remove("TRCCTL_MANAGER")
        .env_remove("XDG_RUNTIME_DIR")
        .env("RC_RUNTIME_DIR", dir)
        .current_dir("/");
    let fd = ns.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe syscalls run; `ns` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                return fail("setns");
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return fail("chdir /");
            }
            Ok(())
        });
    }
    let out = run(cmd);
    drop(ns);
    out
}

#[test]
fn a_runtime_dir_option_makes_a_read_only_root_work_for_nobody() {
    let test = "a_runtime_dir_option_makes_a_read_only_root_work_for_nobody";
    if !can_use_namespaces(test) {
        return;
    }
    if !Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return skip(test, "setpriv(1)");
    }
    let world = World::new();
    let rt = world.path("rt");
    for (how, extra) in
        [("--runtime-dir", vec!["--runtime-dir", rt.to_str().unwrap()]), ("RC_RUNTIME_DIR", vec![])]
    {
        let mut args = extra.clone();
        args.extend(["--wait-policy", "wait_forever", "-D", "echo up as $(id -u); exec sleep 1000"]);
        let mut cmd = world.trc(&args);
        if how == "RC_RUNTIME_DIR" {
            cmd.env("RC_RUNTIME_DIR", &rt);
        }
        read_only_root(&mut cmd, Some(&rt));
        let mut trc = Running::start(cmd);
        trc.wait_for_line(&format!("async-1: up as {NOBODY}"));
        let pid = trc.pid();

        // trcctl finds it where RC_RUNTIME_DIR says, and talks to it.
        let found = trcctl_in_namespace_of(pid, &rt, &["--json", "instances"]).json();
        let instances = found.as_array().unwrap_or_else(|| panic!("{how}: not an array: {found}"));
        let me = instances
            .iter()
            .find(|i| i["pid"] == pid)
            .unwrap_or_else(|| panic!("{how}: trc {pid} not among {found}"));
        let name = str_of(&me["name"]);
        assert_eq!(name, "app", "{how}: {found}");
        let list = trcctl_in_namespace_of(pid, &rt, &["--instance", &name, "--json", "list"]).json();
        assert!(list.to_string().contains("\"async-1\""), "{how}: {list}");

        // Its own private dirs below DIR, seen through trc's root (the tmpfs is in its
        // namespace only).
        let seen = PathBuf::from(format!("/proc/{pid}/root")).join(rt.strip_prefix("/").unwrap());
        for dir in [seen.join("trc"), seen.join("trc").join(&name)] {
            let meta = std::fs::symlink_metadata(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            assert!(meta.is_dir(), "{how}: {}", dir.display());
            assert_eq!(meta.mode() & 0o7777, 0o700, "{how}: {}", dir.display());
            assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{how}: {}", dir.display());
        }
        trc.signal(libc::SIGTERM);
        let out = trc.wait();
        assert_eq!(out.code(), 143, "{how}: {out:?}");
    }
}

#[test]
fn no_writable_place_for_the_runtime_dir_is_78_naming_every_place_tried_and_the_option() {
    let test = "no_writable_place_for_the_runtime_dir_is_78_naming_every_place_tried_and_the_option";
    if !can_use_namespaces(test) {
        return;
    }
    if !Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return skip(test, "setpriv(1)");
    }
    let world = World::new();
    let (xdg, tmp) = (world.path("xdg"), world.path("tmp"));
    let mut cmd = world.trc(&["-D", "echo never", "true"]);
    read_only_root(&mut cmd, None);
    let out = run(cmd);
    assert_eq!(out.code, 78, "{out:?}");
    for part in [
        "cannot make a runtime dir; tried ".to_owned(),
        format!("$XDG_RUNTIME_DIR: runtime dir {}: ", xdg.join("trc").display()),
        format!("$TMPDIR: runtime dir {}: ", tmp.join(format!("trc-{NOBODY}")).display()),
        "Read-only file system".to_owned(),
        "--runtime-dir DIR".to_owned(),
        "RC_RUNTIME_DIR=DIR".to_owned(),
    ] {
        assert!(out.stderr.contains(&part), "no {part:?} in: {out:?}");
    }
    assert!(!out.stdout.contains("never"), "{out:?}");

    // A runtime dir given that cannot be used is named, as the option.
    let ro = world.path("rt");
    let mut cmd = world.trc(&["--runtime-dir", ro.to_str().unwrap(), "true"]);
    read_only_root(&mut cmd, None);
    let out = run(cmd);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(
        out.stderr.contains(&format!("--runtime-dir: runtime dir {}: ", ro.join("trc").display())),
        "{out:?}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
}

/// As root under a read-only root, `/run/trc` is one of the places (README, "Runtime dir"): the
/// error names it too, not only `$TMPDIR`.
#[test]

fn as_root_under_a_read_only_root_the_error_names_run_too() {
    if !can_use_namespaces("as_root_under_a_read_only_root_the_error_names_run_too") {
        return;
    }
    let world = World::new();
    let tmp = world.path("tmp");
    let mut cmd = clean(trc_bin());
    cmd.args(["-w", world.work().to_str().unwrap(), "true"])
        .current_dir(world.path(""))
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &tmp);
    read_only_root(&mut cmd, None);
    let out = run(cmd);
    assert_eq!(out.code, 78, "{out:?}");
    for part in [
        "/run/trc".to_owned(),
        format!("$TMPDIR: runtime dir {}: ", tmp.join("trc-0").display()),
        "--runtime-dir DIR".to_owned(),
    ] {
        assert!(out.stderr.contains(&part), "no {part:?} in: {out:?}");
    }
}

// --- Boot tasks that need no shell ----------------------------------------------------------

/// A work dir with these task files (path under `trc.d`, content, mode).
fn work_dir(tmp: &Path, files: &[(&str, &str, u32)]) -> PathBuf {
    let work = tmp.join("app");
    std::fs::create_dir_all(work.join("trc.d")).unwrap();
    for (name, text, mode) in files {
        write(&work.join("trc.d").join(name), text, *mode);
    }
    work
}

#[test]
fn a_python_boot_task_then_an_async_task_both_run() {
    let Some(py) = python() else {
        return skip("a_python_boot_task_then_an_async_task_both_run", "python3");
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = work_dir(
        tmp.path(),
        &[
            ("boot.py", &format!("#!{py}\nprint('boot py ran')\n"), 0o755),
            ("async.after", "echo async ran\n", 0o644),
        ],
    );
    let out = Trc::new(tmp.path(), ["-w", work.to_str().unwrap()]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("py: boot py ran\n"), "{out:?}");
    assert!(out.stdout.contains("after: async ran\n"), "{out:?}");
}

#[test]
fn elf_and_command_boot_tasks_then_an_async_task_all_run() {
    let test = "elf_and_command_boot_tasks_then_an_async_task_all_run";
    let tmp = tempfile::tempdir().unwrap();
    let Some(hello) = static_hello(test, tmp.path()) else { return };
    let hello = hello.to_str().unwrap();
    let work = work_dir(
        tmp.path(),
        &[
            ("boot.1-cmd", &format!("# BEGIN TRC\n# command: {hello} from-command\n# END TRC\n"), 0o644),
            ("async.after", "echo async ran\n", 0o644),
            ("halt.end", "echo halt ran\n", 0o644),
        ],
    );
    std::fs::copy(hello, work.join("trc.d/boot.2-elf")).unwrap();
    let out = Trc::new(tmp.path(), ["-w", work.to_str().unwrap()]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    for line in [
        "1-cmd: hello task=1-cmd",
        "[from-command]\n",
        "2-elf: hello task=2-elf",
        "after: async ran\n",
        "end: halt ran\n",
    ] {
        assert!(out.stdout.contains(line), "no {line:?}: {out:?}");
    }
}

/// A non-shell boot task after a shell boot task: the boot goes on, and what the shell boot
/// tasks set (before and after it) reaches the async task.
#[test]

fn a_non_shell_boot_task_after_a_shell_boot_task_lets_the_boot_go_on() {
    let test = "a_non_shell_boot_task_after_a_shell_boot_task_lets_the_boot_go_on";
    let tmp = tempfile::tempdir().unwrap();
    let Some(hello) = static_hello(test, tmp.path()) else { return };
    let hello = hello.to_str().unwrap();
    let mut files = vec![
        ("boot.0-shell", "export FROM_BOOT=kept\nPLAIN=too\n".to_owned(), 0o644),
        ("boot.1-cmd", format!("# BEGIN TRC\n# command: {hello} from-command\n# END TRC\n"), 0o644),
        ("boot.3-shell", "SECOND=also\n".to_owned(), 0o644),
        ("async.after", "echo \"async ran: $FROM_BOOT $PLAIN $SECOND\"\n".to_owned(), 0o644),
        ("halt.end", "echo \"halt ran: $FROM_BOOT\"\n".to_owned(), 0o644),
    ];
    if let Some(py) = python() {
        files.push(("boot.4-py", format!("#!{py}\nprint('boot py ran')\n"), 0o755));
    }
    let files: Vec<(&str, &str, u32)> = files.iter().map(|(n, t, m)| (*n, t.as_str(), *m)).collect();
    let work = work_dir(tmp.path(), &files);
    std::fs::copy(hello, work.join("trc.d/boot.2-elf")).unwrap();
    let out = Trc::new(tmp.path(), ["-w", work.to_str().unwrap()]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    for line in [
        "1-cmd: hello task=1-cmd",
        "2-elf: hello task=2-elf",
        "after: async ran: kept too also\n",
        "end: halt ran: kept\n",
    ] {
        assert!(out.stdout.contains(line), "no {line:?}: {out:?}");
    }
    if python().is_some() {
        assert!(out.stdout.contains("4-py: boot py ran\n"), "{out:?}");
    }
}

// --- trcctl ensure in a root without bash ---------------------------------------------------

/// `trcctl ensure` in a root without bash: a word with `#` (`a#b`, `c #d`) is quoted in a
/// `command:` header, which needs no shell, and the task runs; a command that could only be a
/// shell fragment (a newline in a word) is refused, not written to fail at every start.
#[test]
fn ensure_in_a_root_without_bash_writes_a_command_header_even_with_hashes() {
    let test = "ensure_in_a_root_without_bash_writes_a_command_header_even_with_hashes";
    if !can_use_namespaces(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, _)) = bashless_root(test, tmp.path()) else { return };
    for shell in ["bin/bash", "bin/sh"] {
        assert!(!root.join(shell).exists(), "{shell} in the root");
    }
    let mut trc = Running::start(in_chroot(&root, &["-w", "/app", "--wait-policy", "wait_forever"]));
    // trc's runtime dir is /run/trc/app in its root: trcctl finds it from outside.
    let ctl = |args: &[&str]| {
        let mut cmd = clean(TRCCTL);
        cmd.env_remove("TRC_INSTANCE")
            .env_remove("TRCCTL_MANAGER")
            .env_remove("XDG_RUNTIME_DIR")
            .env("RC_RUNTIME_DIR", root.join("run"))
            .args(["--manager", "trc", "--instance", "app"])
            .args(args);
        run(cmd)
    };
    common::wait_until("trc in the chroot to answer", || ctl(&["list"]).code == 0);

    let out = ctl(&["ensure", "h", "--", "/bin/hello", "a#b", "c #d", "#"]);
    assert_eq!(out.code, 0, "{out:?}");
    trc.wait_for_line("h: hello task=h uid=0 cwd=/ argv: [a#b] [c #d] [#]");
    let text = std::fs::read_to_string(root.join("app/trc.d/async.h")).unwrap();
    assert!(text.contains("# command: /bin/hello "), "{text}");

    let out = ctl(&["ensure", "nl", "--", "/bin/hello", "a\nb"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("bash, which is not on trc's PATH (/bin)"), "{out:?}");
    assert!(!root.join("app/trc.d/async.nl").exists(), "written: {out:?}");

    trc.signal(libc::SIGTERM);
    let out = trc.wait();
    assert_eq!(out.code(), 143, "{out:?}");
}
