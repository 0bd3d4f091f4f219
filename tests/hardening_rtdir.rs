//! The runtime dir against other users and full disks (README, "Runtime dir" and "Bad input"):
//! a base dir that is not trc's alone is refused, a symlink never redirects trc's clean-up, a
//! full runtime dir is a clear configuration error that leaves nothing behind, and trcctl says
//! "permission denied" when that is why it cannot reach an instance.

mod common;

use common::sandbox::{run, Sandbox, TRCCTL};
use common::{can_use_namespaces, skip, Trc};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn has_setpriv() -> bool {
    Command::new("setpriv").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// What is in `dir`, sorted (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_base_dir_writable_by_group_or_others_is_refused() {
    let sb = Sandbox::new();
    let work = sb.work("app");
    let base = sb.xdg().join("trc");
    std::fs::create_dir(&base).unwrap();
    chmod(&base, 0o777);
    let out = sb.trc(&work, &["true"]).run();
    assert_eq!(out.code(), 78, "{out:?}");
    assert!(out.stderr.contains(&format!("runtime dir {}:", base.display())), "{out:?}");
    assert!(out.stderr.contains("writable by group or others"), "{out:?}");
    assert_eq!(entries(&base), Vec::<String>::new(), "nothing is started or left");
}

#[test]
fn a_base_dir_of_another_user_is_refused() {
    if !is_root() {
        return skip("a_base_dir_of_another_user_is_refused", "root (to chown a dir to another user)");
    }
    let sb = Sandbox::new();
    let work = sb.work("app");
    let base = sb.xdg().join("trc");
    std::fs::create_dir(&base).unwrap();
    chmod(&base, 0o700);
    std::os::unix::fs::chown(&base, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = sb.trc(&work, &["true"]).run();
    assert_eq!(out.code(), 78, "{out:?}");
    assert!(
        out.stderr.contains(&format!("runtime dir {}: owned by uid {NOBODY}", base.display())),
        "{out:?}"
    );
    assert_eq!(entries(&base), Vec::<String>::new());
}

/// The `$TMPDIR/trc-<uid>` fallback: another user made it first (world-writable, so the
/// instance dir itself could be made) and could later swap what is inside.
#[test]
fn a_fallback_base_dir_made_by_another_user_is_refused() {
    if !is_root() || !has_setpriv() {
        return skip(
            "a_fallback_base_dir_made_by_another_user_is_refused",
            "root and setpriv(1) (to run trc as another user)",
        );
    }
    let root = tempfile::tempdir().unwrap();
    chmod(root.path(), 0o755);
    let tmp = root.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    chmod(&tmp, 0o1777);
    let work = root.path().join("app");
    std::fs::create_dir_all(work.join("trc.d")).unwrap();
    // Made by root (not trc's user) and left open to all.
    let base = tmp.join(format!("trc-{NOBODY}"));
    std::fs::create_dir(&base).unwrap();
    chmod(&base, 0o777);
    let mut trc = Trc::new(root.path(), ["-w", work.to_str().unwrap(), "true"]);
    let cmd = trc.command();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .current_dir(root.path())
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &tmp);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RC_") {
            wrapped.env_remove(key);
        }
    }
    let out = run(wrapped);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains(&format!("runtime dir {}:", base.display())), "{out:?}");
    assert!(out.stderr.contains("owned by uid 0"), "{out:?}");
    assert_eq!(entries(&base), Vec::<String>::new());
}

/// A base dir swapped for a symlink to another place: trc does not follow it, so the stale
/// clean-up of an instance dir there never removes the victim's files.
#[test]
fn a_base_dir_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let sb = Sandbox::new();
    let work = sb.work("app");
    let victim = sb.root().join("victim");
    // Looks like a stale instance dir: a lock nobody holds.
    std::fs::create_dir_all(victim.join("app")).unwrap();
    std::fs::write(victim.join("app/lock"), "").unwrap();
    std::fs::write(victim.join("app/precious"), "keep me").unwrap();
    let base = sb.xdg().join("trc");
    symlink(&victim, &base).unwrap();
    let out = sb.trc(&work, &["--instance", "app", "true"]).run();
    assert_eq!(out.code(), 78, "{out:?}");
    assert!(out.stderr.contains(&format!("runtime dir {}:", base.display())), "{out:?}");
    assert_eq!(std::fs::read_to_string(victim.join("app/precious")).unwrap(), "keep me");
}

/// An instance dir that is a symlink to another dir is refused (the error names it), and
/// nothing in the target is touched.
#[test]
fn an_instance_dir_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let sb = Sandbox::new();
    let work = sb.work("app");
    let victim = sb.root().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("lock"), "").unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();
    let base = sb.xdg().join("trc");
    std::fs::create_dir(&base).unwrap();
    symlink(&victim, base.join("app")).unwrap();
    let out = sb.trc(&work, &["--instance", "app", "true"]).run();
    assert_eq!(out.code(), 78, "{out:?}");
    assert!(out.stderr.contains(&base.join("app").display().to_string()), "{out:?}");
    assert_eq!(std::fs::read_to_string(victim.join("precious")).unwrap(), "keep me");
    assert_eq!(entries(&victim), ["lock", "precious"]);
}

/// A stale instance dir with a symlink inside (to a victim dir): emptying it removes the
/// link, never what it points to.
#[test]
fn emptying_a_stale_dir_never_follows_a_symlink_in_it() {
    let sb = Sandbox::new();
    let work = sb.work("app");
    let victim = sb.root().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();
    let stale = sb.runtime_dir("app");
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    std::fs::write(stale.join("lock"), "").unwrap();
    symlink(&victim, stale.join("link")).unwrap();
    symlink(&victim, stale.join("sub/link")).unwrap();
    let out = sb.trc(&work, &["--instance", "app", "true"]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(std::fs::read_to_string(victim.join("precious")).unwrap(), "keep me");
    assert!(!stale.exists(), "removed at the end");
}

/// Runs `script` as `sh -c` in a private mount namespace where `$X` is a fresh 32 KiB tmpfs
/// (eight pages: trc's `lock`, `pid` and `groups` take some, a failed boot save's marker fits,
/// a 200 kB boot state does not) used as `XDG_RUNTIME_DIR`; `$TRC` is the trc binary and `$W` a work dir.
fn in_tiny_tmpfs(script: &str) -> common::sandbox::Out {
    let sb = Sandbox::new();
    let work = sb.work("app");
    let x = sb.root().join("x");
    std::fs::create_dir(&x).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount -t tmpfs -o size=32k,mode=0700 tmpfs \"$X\" || exit 99\n{script}"))
        .env("X", &x)
        .env("XDG_RUNTIME_DIR", &x)
        .env("TRC", common::trc_bin())
        .env("W", &work)
        .current_dir(sb.root());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RC_") {
            cmd.env_remove(key);
        }
    }
    let out = run(cmd);
    assert_ne!(out.code, 99, "mount failed: {out:?}");
    out
}

#[test]
fn a_full_runtime_dir_at_start_is_a_config_error_that_leaves_nothing() {
    if !can_use_namespaces("a_full_runtime_dir_at_start_is_a_config_error_that_leaves_nothing") {
        return;
    }
    let out = in_tiny_tmpfs(
        "head -c 262144 /dev/zero > \"$X/fill\" 2>/dev/null\n\
         \"$TRC\" -w \"$W\" true; echo \"status=$?\"\n\
         cd \"$X\" && find . -mindepth 1 | sort",
    );
    assert!(out.stdout.contains("status=78"), "{out:?}");
    assert!(out.stderr.contains("runtime dir "), "{out:?}");
    assert!(out.stderr.contains("No space left on device"), "{out:?}");
    let left: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("./")).collect();
    assert_eq!(left, ["./fill"], "nothing but the filler is left: {out:?}");
}

#[test]
fn a_boot_state_that_cannot_be_saved_is_a_config_error_naming_the_task_and_dir() {
    if !can_use_namespaces("a_boot_state_that_cannot_be_saved_is_a_config_error_naming_the_task_and_dir") {
        return;
    }
    let out = in_tiny_tmpfs(
        "\"$TRC\" -w \"$W\" -B 'X=$(head -c 200000 /dev/zero | tr \"\\0\" x)' -D 'echo never' true\n\
         echo \"status=$?\"\n\
         cd \"$X\" && find . -mindepth 1 | sort",
    );
    assert!(out.stdout.contains("status=78"), "{out:?}");
    assert!(!out.stdout.contains("never"), "{out:?}");
    assert!(out.stderr.contains("boot task"), "{out:?}");
    assert!(out.stderr.contains("cannot save its state in the runtime dir"), "{out:?}");
    assert!(out.stderr.contains("/trc/app"), "names the runtime dir: {out:?}");
    assert!(out.stderr.contains("No space left on device"), "{out:?}");
    assert!(!out.stderr.contains("write error"), "no bash noise: {out:?}");
    let left: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("./")).collect();
    assert_eq!(left, ["./trc"], "only the base dir is left: {out:?}");
}

/// trcctl run by a user who may not open the runtime dir says "permission denied", naming
/// it, not that the instance is not running.
#[test]
fn trcctl_says_permission_denied_for_a_runtime_dir_it_cannot_open() {
    if !is_root() || !has_setpriv() {
        return skip(
            "trcctl_says_permission_denied_for_a_runtime_dir_it_cannot_open",
            "root and setpriv(1) (to run trcctl as another user)",
        );
    }
    let sb = Sandbox::new();
    chmod(sb.root(), 0o755);
    chmod(&sb.xdg(), 0o755);
    let work = sb.work("app");
    let sup = sb.start(&work);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", TRCCTL])
        .args(["--manager", "trc", "--instance", &sup.name, "list"])
        .env_remove("TRC_INSTANCE")
        .env_remove("TRCCTL_MANAGER")
        .env("XDG_RUNTIME_DIR", sb.xdg())
        .current_dir("/");
    let out = run(cmd);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("permission denied"), "{out:?}");
    assert!(out.stderr.contains(&sb.runtime_dir(&sup.name).display().to_string()), "{out:?}");
    assert!(!out.stderr.contains("is running"), "{out:?}");
}
