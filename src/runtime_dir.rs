//! trc's runtime directory, one per running instance: boot state, task log pipes and the
//! control socket. `$XDG_RUNTIME_DIR/trc/<instance>`, or `/run/trc/<instance>` for root, else
//! `$TMPDIR/trc-<uid>/<instance>`; mode 0700, removed when trc exits.
//!
//! An instance owns its directory by holding an exclusive lock on the file `lock` inside it for
//! as long as it runs: an open-file-description lock (`F_OFD_SETLK`), which, unlike `flock`,
//! others can test without taking it (`F_OFD_GETLK`), so a `trcctl` looking for instances never
//! makes a starting trc think its name is taken. So two instances (nested ones too) never share one: the second takes the
//! next free name (`app-2`), or refuses to start when its name was asked for explicitly. The
//! directory of a trc that died without cleaning up has a lock nobody holds: it is stale, and
//! the next instance of that name empties and reuses it.

use nix::fcntl::{fcntl, FcntlArg};
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file whose lock marks a directory as in use.
pub const LOCK_FILE: &str = "lock";
/// The file that holds the owner's pid (for messages and `trcctl`).
pub const PID_FILE: &str = "pid";
/// The control socket's name in the directory.
pub const SOCKET_FILE: &str = "control.sock";
/// The process groups of the owner's tasks (`supervisor/leftovers.rs`).
pub const GROUPS_FILE: &str = "groups";

#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    name: String,
    /// Held for the whole run; released (by closing) only after the directory is removed.
    lock: Option<File>,
    /// The `groups` file of the trc that died and left this directory stale, read before it
    /// was emptied.
    stale_groups: Option<String>,
}

impl RuntimeDir {
    /// Takes the directory of instance `requested`, or of the first free name derived from
    /// `default_name` (`name`, `name-2`, `name-3`...) when none was requested.
    pub fn create(requested: Option<&str>, default_name: &str) -> io::Result<RuntimeDir> {
        let base = base_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(|e| io::Error::new(e.kind(), format!("runtime dir {}: {e}", base.display())))?;
        if let Some(name) = requested {
            check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            return match take(&base, name)? {
                Some(dir) => Ok(dir),
                None => Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("instance \"{name}\" is already running{}", owner_note(&base.join(name))),
                )),
            };
        }
        for n in 1..=1000 {
            let name = if n == 1 { default_name.to_owned() } else { format!("{default_name}-{n}") };
            if let Some(dir) = take(&base, &name)? {
                return Ok(dir);
            }
        }
        Err(io::Error::other(format!("no free instance name like \"{default_name}\" in {}", base.display())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `groups` file a dead owner left, once (None when the directory was not stale).
    pub fn take_stale_groups(&mut self) -> Option<String> {
        self.stale_groups.take()
    }

    /// The instance's name (the directory's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the directory and everything in it, then lets go of the lock.
    pub fn remove(&mut self) {
        let Some(lock) = self.lock.take() else { return };
        empty_dir(&self.path);
        let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
        // Fails (harmlessly) when a new instance of the same name has taken it meanwhile.
        let _ = std::fs::remove_dir(&self.path);
        drop(lock);
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Takes `base/name` if no running instance holds it: `None` when one does.
fn take(base: &Path, name: &str) -> io::Result<Option<RuntimeDir>> {
    let path = base.join(name);
    let annotate = |e: io::Error| io::Error::new(e.kind(), format!("runtime dir {}: {e}", path.display()));
    loop {
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(annotate(e)),
        }
        let meta = std::fs::symlink_metadata(&path).map_err(annotate)?;
        if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(annotate(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a directory of trc's own user",
            )));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path.join(LOCK_FILE))
            .map_err(annotate)?;
        if !lock_file(&file, libc::F_WRLCK as libc::c_short).map_err(annotate)? {
            return Ok(None);
        }
        let lock = file;
        // The owner before us may have removed the directory between our open and our lock:
        // then the lock is on a file that is no longer there, and we try again.
        let held = lock.metadata().map_err(annotate)?;
        match std::fs::symlink_metadata(path.join(LOCK_FILE)) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
            _ => continue,
        }
        // A stale directory of a trc that is gone: start it afresh.
        let stale_groups = std::fs::read_to_string(path.join(GROUPS_FILE)).ok();
        empty_dir(&path);
        std::fs::write(path.join(PID_FILE), format!("{}\n", std::process::id())).map_err(annotate)?;
        return Ok(Some(RuntimeDir { path, name: name.to_owned(), lock: Some(lock), stale_groups }));
    }
}

/// Removes everything in `dir` but the lock file.
fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// " (pid N)" from a running instance's pid file, when it can be read.
fn owner_note(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default()
}

/// Whether the instance directory `dir` is held by a running trc (its lock is taken).
pub fn is_running(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else { return false };
    let mut probe = whole_file(libc::F_RDLCK as libc::c_short);
    // Asks whether a read lock could be taken, without taking one.
    match fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)) {
        Ok(_) => probe.l_type != libc::F_UNLCK as libc::c_short,
        Err(_) => false,
    }
}

/// A lock of `kind` on the whole file.
fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers; all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Takes a lock of `kind` on `file` without waiting: false when another holds a conflicting one.
fn lock_file(file: &File, kind: libc::c_short) -> io::Result<bool> {
    match fcntl(file, FcntlArg::F_OFD_SETLK(&whole_file(kind))) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An instance name: letters, digits, `.`, `_`, `-` and `@`, not starting with `.`, at most
/// 64 bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad instance name \"{name}\": use letters, digits, '.', '_', '-' or '@' (at most 64, not starting with '.')"
        ))
    }
}

/// The default instance name: the work dir's last component, made a valid name (`/` gives
/// `root`).
pub fn default_name(work_dir: &Path) -> String {
    let abs = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    let last = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() || "._-@".contains(c) { c } else { '_' }).collect();
    name = name.trim_start_matches('.').to_owned();
    name.truncate(48);
    if name.is_empty() {
        "root".to_owned()
    } else {
        name
    }
}

/// Where the instance directories of this user live.
pub fn base_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        if Path::new(&xdg).is_dir() {
            return Path::new(&xdg).join("trc");
        }
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root()
        && Path::new("/run").is_dir()
        && nix::unistd::access("/run", nix::unistd::AccessFlags::W_OK).is_ok()
    {
        return PathBuf::from("/run/trc");
    }
    std::env::temp_dir().join(format!("trc-{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let _forks = crate::fork_lock();
        assert_eq!(default_name(Path::new("/")), "root");
        assert_eq!(default_name(Path::new("/nonexistent/my app")), "my_app");
        assert_eq!(default_name(Path::new("/nonexistent/.hidden")), "hidden");
        assert!(check_name("web-1@x.y_z").is_ok());
        assert!(check_name(".x").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("").is_err());
    }

    /// Looking for instances (as `trcctl` does, all the time) never makes a starting trc think
    /// its name is taken: the probe takes no lock.
    #[test]
    fn probing_does_not_take_the_name() {
        let _forks = crate::fork_lock();
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(LOCK_FILE), "").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let prober = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    is_running(&dir);
                }
            })
        };
        for _ in 0..200 {
            let mut dir = take(base.path(), "app").unwrap().expect("the name was taken by a probe");
            assert!(is_running(dir.path()));
            // Let go of the lock but keep the directory for the next round.
            drop(dir.lock.take());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        prober.join().unwrap();
    }

    #[test]
    fn a_held_name_is_skipped_and_a_stale_one_reused() {
        let _forks = crate::fork_lock();
        let xdg = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_RUNTIME_DIR", xdg.path());
        let mut first = RuntimeDir::create(None, "app").unwrap();
        assert_eq!(first.name(), "app");
        assert!(is_running(first.path()));
        let second = RuntimeDir::create(None, "app").unwrap();
        assert_eq!(second.name(), "app-2");
        let err = RuntimeDir::create(Some("app"), "x").unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        // A stale dir (its lock not held, leftovers inside) is emptied and reused.
        let stale = xdg.path().join("trc/old");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join(LOCK_FILE), "").unwrap();
        std::fs::write(stale.join("leftover"), "").unwrap();
        assert!(!is_running(&stale));
        let reused = RuntimeDir::create(Some("old"), "x").unwrap();
        assert!(!stale.join("leftover").exists());
        assert!(is_running(&stale));
        drop(reused);
        assert!(!stale.exists());
        first.remove();
        assert!(!xdg.path().join("trc/app").exists());
        assert!(second.path().exists());
    }
}
