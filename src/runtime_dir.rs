//! trc's runtime directory, one per running instance: boot state, task log pipes and the
//! control socket. `DIR/trc/<instance>` with `--runtime-dir DIR` or `RC_RUNTIME_DIR=DIR`; else
//! the first of `$XDG_RUNTIME_DIR/trc/<instance>`, `/run/trc/<instance>` (root) and
//! `$TMPDIR/trc-<uid>/<instance>` that can be made; mode 0700, removed when trc exits.
//!
//! An instance owns its directory by holding an exclusive lock on the file `lock` inside it for
//! as long as it runs: an open-file-description lock (`F_OFD_SETLK`), which, unlike `flock`,
//! others can test without taking it (`F_OFD_GETLK`), so a `trcctl` looking for instances never
//! makes a starting trc think its name is taken. So two instances (nested ones too) never share one: the second takes the
//! next free name (`app-2`), or refuses to start when its name was asked for explicitly. The
//! directory of a trc that died without cleaning up has a lock nobody holds: it is stale, and
//! the next instance of that name empties and reuses it.

use nix::errno::Errno;
use nix::fcntl::{fcntl, openat, AtFlags, FcntlArg, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
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
    /// The directory and its base, opened without following symlinks: trc's own clean-up
    /// works through them, so a path swapped meanwhile cannot redirect it.
    dir: OwnedFd,
    base: OwnedFd,
    /// The `groups` file of the trc that died and left this directory stale, read before it
    /// was emptied.
    stale_groups: Option<String>,
}

impl RuntimeDir {
    /// Takes the directory of instance `requested`, or of the first free name derived from
    /// `default_name` (`name`, `name-2`, `name-3`...) when none was requested.
    /// The base is `DIR/trc` when `explicit` (`--runtime-dir`) or `RC_RUNTIME_DIR` gives DIR,
    /// else the first place of [`base_dirs`] where trc can make its base; the error names every
    /// place tried.
    pub fn create(
        requested: Option<&str>,
        default_name: &str,
        explicit: Option<&Path>,
    ) -> io::Result<RuntimeDir> {
        if let Some(name) = requested {
            check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let places = match explicit {
            Some(dir) => vec![("--runtime-dir", dir.join("trc"))],
            None => base_dirs(),
        };
        let mut tried = Vec::new();
        if explicit.is_none() {
            if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
                if !Path::new(&xdg).is_dir() {
                    tried.push(format!("$XDG_RUNTIME_DIR: {} is not a directory", Path::new(&xdg).display()));
                }
            }
        }
        for (source, path) in places {
            // A base that exists is used or refused (another user's, a symlink...): trc never
            // goes elsewhere for it. Only one that cannot be made sends trc to the next place.
            // A read-only file system sends trc to the next place in any case.
            let existed = path.symlink_metadata().is_ok();
            let read_only = |e: &io::Error| e.kind() == io::ErrorKind::ReadOnlyFilesystem;
            let base = match Base::open(path) {
                Ok(base) => base,
                Err(e) if existed && !read_only(&e) => return Err(e),
                Err(e) => {
                    tried.push(format!("{source}: {e}"));
                    continue;
                }
            };
            let taken = base.take_one(requested, default_name);
            if taken.is_err() {
                // Nothing left behind: not even a base dir this call made.
                base.remove_if_made();
            }
            match taken {
                Err(e) if read_only(&e) => tried.push(format!("{source}: {e}")),
                taken => return taken,
            }
        }
        Err(io::Error::other(format!(
            "cannot make a runtime dir; tried {}. Give a writable directory with --runtime-dir DIR or RC_RUNTIME_DIR=DIR (trc makes its own private dirs below it)",
            tried.join("; ")
        )))
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

    /// Makes the directory and its base searchable by others (0711: not listable), so that a
    /// task running as another user reaches the files given to it by name.
    pub fn allow_traversal(&self) -> io::Result<()> {
        let mode = Mode::from_bits_truncate(0o711);
        nix::sys::stat::fchmod(&self.dir, mode)?;
        nix::sys::stat::fchmod(&self.base, mode)?;
        Ok(())
    }

    /// Removes the directory and everything in it, then lets go of the lock.
    pub fn remove(&mut self) {
        let Some(lock) = self.lock.take() else { return };
        empty_dir(&self.dir);
        let _ = unlinkat(&self.dir, LOCK_FILE, UnlinkatFlags::NoRemoveDir);
        // Fails (harmlessly) when a new instance of the same name has taken it meanwhile.
        let _ = unlinkat(&self.base, self.name.as_str(), UnlinkatFlags::RemoveDir);
        drop(lock);
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Takes `base/name` if no running instance holds it: `None` when one does.
fn take(base: &Base, name: &str) -> io::Result<Option<RuntimeDir>> {
    let path = base.path.join(name);
    let annotate = |e: io::Error| io::Error::new(e.kind(), format!("runtime dir {}: {e}", path.display()));
    let not_ours =
        || annotate(io::Error::new(io::ErrorKind::PermissionDenied, "not a directory of trc's own user"));
    loop {
        match mkdirat(&base.fd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(annotate(e.into())),
        }
        let dir = match open_dir_at(&base.fd, name) {
            Ok(dir) => dir,
            Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(not_ours()),
            Err(e) => return Err(annotate(e.into())),
        };
        let held_dir = fstat(&dir).map_err(|e| annotate(e.into()))?;
        if held_dir.st_uid != nix::unistd::geteuid().as_raw() || held_dir.st_mode & 0o022 != 0 {
            return Err(not_ours());
        }
        let file = File::from(
            openat(
                &dir,
                LOCK_FILE,
                OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| annotate(e.into()))?,
        );
        if !lock_file(&file, libc::F_WRLCK as libc::c_short).map_err(annotate)? {
            return Ok(None);
        }
        let lock = file;
        // The owner before us may have removed the directory between our open and our lock:
        // then the lock is on a file that is no longer there, and we try again. Likewise when
        // `base/name` is no longer the directory we hold.
        let held = lock.metadata().map_err(annotate)?;
        match fstatat(&dir, LOCK_FILE, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(now) if now.st_ino == held.ino() && now.st_dev == held.dev() => {}
            _ => continue,
        }
        match fstatat(&base.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(now) if now.st_ino == held_dir.st_ino && now.st_dev == held_dir.st_dev => {}
            _ => continue,
        }
        let base_fd = base.fd.try_clone().map_err(annotate)?;
        let mut taken = RuntimeDir {
            path: path.clone(),
            name: name.to_owned(),
            lock: Some(lock),
            dir,
            base: base_fd,
            stale_groups: None,
        };
        // A stale directory of a trc that is gone: start it afresh.
        taken.stale_groups = read_regular(&taken.dir, GROUPS_FILE);
        empty_dir(&taken.dir);
        if let Err(e) = write_pid(&taken.dir) {
            // Nothing left behind: no pid, no lock, no directory (a full disk, say).
            taken.remove();
            return Err(annotate(e));
        }
        return Ok(Some(taken));
    }
}

/// Writes this process's pid into the directory's pid file.
fn write_pid(dir: &OwnedFd) -> io::Result<()> {
    use std::io::Write;
    let fd = openat(
        dir,
        PID_FILE,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    File::from(fd).write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// The content of the regular file `name` in `dir`, if it is one (never through a symlink).
fn read_regular(dir: &OwnedFd, name: &str) -> Option<String> {
    use std::io::Read;
    let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let mut text = String::new();
    File::from(fd).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Removes everything in `dir` but the lock file, through the directory's fd: never
/// following a symlink (one is removed, not what it points to).
fn empty_dir(dir: &OwnedFd) {
    let Ok(names) = dir_entries(dir) else { return };
    for name in names {
        if name.as_bytes() == LOCK_FILE.as_bytes() {
            continue;
        }
        remove_entry(dir, &name);
    }
}

/// Removes the entry `name` of `dir`, and a directory's contents first.
fn remove_entry(dir: &OwnedFd, name: &CStr) {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Err(Errno::EISDIR | Errno::EPERM) => {}
        _ => return,
    }
    if let Ok(sub) = open_dir_at(dir, name) {
        if let Ok(names) = dir_entries(&sub) {
            for name in names {
                remove_entry(&sub, &name);
            }
        }
    }
    let _ = unlinkat(dir, name, UnlinkatFlags::RemoveDir);
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
    probe(dir).unwrap_or(false)
}

/// Like [`is_running`], but says why it cannot tell: `Err` when the lock file cannot be
/// opened for another reason than its absence (permission denied, say).
pub fn probe(dir: &Path) -> io::Result<bool> {
    let file = match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    let mut probe = whole_file(libc::F_RDLCK as libc::c_short);
    // Asks whether a read lock could be taken, without taking one.
    match fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)) {
        Ok(_) => Ok(probe.l_type != libc::F_UNLCK as libc::c_short),
        Err(_) => Ok(false),
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

/// Where the instance directories of this user live: the first of [`base_dirs`].
pub fn base_dir() -> PathBuf {
    base_dirs().swap_remove(0).1
}

/// The places [`base_dirs`] names, for messages ("looked in ...").
pub fn base_dirs_text() -> String {
    base_dirs().iter().map(|(_, p)| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The places instance directories may live, in trc's order of preference, each with what
/// chose it: `RC_RUNTIME_DIR/trc` alone when it is set; else `$XDG_RUNTIME_DIR/trc`,
/// `/run/trc` (root), `$TMPDIR/trc-<uid>`.
pub fn base_dirs() -> Vec<(&'static str, PathBuf)> {
    if let Some(dir) = std::env::var_os("RC_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return vec![("RC_RUNTIME_DIR", Path::new(&dir).join("trc"))];
    }
    let mut places = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        if Path::new(&xdg).is_dir() {
            places.push(("$XDG_RUNTIME_DIR", Path::new(&xdg).join("trc")));
        }
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() && Path::new("/run").is_dir() {
        places.push(("/run", PathBuf::from("/run/trc")));
    }
    places.push(("$TMPDIR", std::env::temp_dir().join(format!("trc-{uid}"))));
    places
}

/// The base dir of the instance directories, opened without following a symlink, and checked
/// to be trc's alone: owned by trc's euid and not writable by group or others (as tmux checks
/// its socket dir). Otherwise another user could swap an instance directory for a symlink.
struct Base {
    path: PathBuf,
    fd: OwnedFd,
    /// Whether this process made it (so that a failed start can remove it again).
    made: bool,
}

impl Base {
    fn open(path: PathBuf) -> io::Result<Base> {
        let annotate =
            |e: io::Error| io::Error::new(e.kind(), format!("runtime dir {}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(annotate)?;
        }
        let made = match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(annotate(e)),
        };
        let refuse = |why: String| annotate(io::Error::new(io::ErrorKind::PermissionDenied, why));
        let fd = match open_dir_at(CWD, path.as_path()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(refuse(
                    "not a directory (a symlink?); it must be a directory of trc's own user".into(),
                ))
            }
            Err(e) => return Err(annotate(e.into())),
        };
        let stat = fstat(&fd).map_err(|e| annotate(e.into()))?;
        let euid = nix::unistd::geteuid().as_raw();
        if stat.st_uid != euid {
            return Err(refuse(format!("owned by uid {}, not by trc's user (uid {euid})", stat.st_uid)));
        }
        if stat.st_mode & 0o022 != 0 {
            return Err(refuse(format!(
                "writable by group or others (mode {:o}); it must be writable by trc's user alone",
                stat.st_mode & 0o7777
            )));
        }
        Ok(Base { path, fd, made })
    }

    /// Takes the directory of instance `requested`, or of the first free name derived from
    /// `default_name`.
    fn take_one(&self, requested: Option<&str>, default_name: &str) -> io::Result<RuntimeDir> {
        if let Some(name) = requested {
            return match take(self, name)? {
                Some(dir) => Ok(dir),
                None => Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("instance \"{name}\" is already running{}", owner_note(&self.path.join(name))),
                )),
            };
        }
        for n in 1..=1000 {
            let name = if n == 1 { default_name.to_owned() } else { format!("{default_name}-{n}") };
            if let Some(dir) = take(self, &name)? {
                return Ok(dir);
            }
        }
        Err(io::Error::other(format!(
            "no free instance name like \"{default_name}\" in {}",
            self.path.display()
        )))
    }

    /// Removes the base dir if this process made it and it is empty.
    fn remove_if_made(&self) {
        if self.made {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// The current directory, for `*at` calls on a path given whole.
const CWD: BorrowedFd<'static> = {
    // SAFETY: AT_FDCWD is not a real fd but is valid wherever the `*at` calls take a dir fd.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
};

/// Opens the directory `name` in `dir`, refusing a symlink (`ELOOP`) or a non-directory.
fn open_dir_at<P: ?Sized + nix::NixPath>(dir: impl AsFd, name: &P) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The names in directory `dir`, but `.` and `..`.
fn dir_entries(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    // Its own open file description, so that reading it moves no offset of `dir`.
    let fd = open_dir_at(dir, ".")?;
    // SAFETY: `fd` is an open directory fd we own; on success fdopendir takes it over (closed
    // by closedir below), on failure we still own it and close it.
    let stream = unsafe { libc::fdopendir(fd.as_raw_fd()) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    let _ = fd.into_raw_fd();
    let mut names = Vec::new();
    loop {
        // SAFETY: `stream` is a valid DIR* until closedir; the entry it returns stays valid
        // until the next readdir on it, and we copy its name before that.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated string inside the entry readdir returned.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    // SAFETY: `stream` came from fdopendir and is closed once, here.
    unsafe { libc::closedir(stream) };
    Ok(names)
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
            let base = Base::open(base.path().to_path_buf()).unwrap();
            let mut dir = take(&base, "app").unwrap().expect("the name was taken by a probe");
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
        let mut first = RuntimeDir::create(None, "app", None).unwrap();
        assert_eq!(first.name(), "app");
        assert!(is_running(first.path()));
        let second = RuntimeDir::create(None, "app", None).unwrap();
        assert_eq!(second.name(), "app-2");
        let err = RuntimeDir::create(Some("app"), "x", None).unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        // A stale dir (its lock not held, leftovers inside) is emptied and reused.
        let stale = xdg.path().join("trc/old");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join(LOCK_FILE), "").unwrap();
        std::fs::write(stale.join("leftover"), "").unwrap();
        assert!(!is_running(&stale));
        let reused = RuntimeDir::create(Some("old"), "x", None).unwrap();
        assert!(!stale.join("leftover").exists());
        assert!(is_running(&stale));
        drop(reused);
        assert!(!stale.exists());
        first.remove();
        assert!(!xdg.path().join("trc/app").exists());
        assert!(second.path().exists());
    }
}
