//! What of the runtime dir a task running as another user may reach. The dir and its base
//! become searchable, not listable (0711); the task is given its own log pipes and notify
//! socket (0600, owned by it), and its own copies of what a shell task reads: the boot state
//! (`state.<id>.sh`) and the prelude (`prelude.<uid>.bash`), 0600 and owned by its user.
//! Everything else there is trc's alone, mode 0600: the boot tasks' saved state
//! (`boot-<id>.*`), the prelude trc's own tasks read, `groups`, `pid`, `lock`, the control
//! socket, other tasks' pipes and sockets.

use super::task::TaskId;
use super::Supervisor;
use std::path::{Path, PathBuf};
use tracing::{error, warn};

impl Supervisor {
    /// The uid and gid a task runs as, when either is not trc's.
    pub(super) fn other_user(&self, id: TaskId) -> Option<(u32, u32)> {
        let settings = self.tasks[id].settings();
        let (euid, egid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let uid = settings.user.as_ref().map_or(euid, |u| u.uid);
        let gid = settings.group.or(settings.user.as_ref().map(|u| u.gid)).unwrap_or(egid);
        (uid != euid || gid != egid).then_some((uid, gid))
    }

    /// A task running as another user reaches the runtime files it needs: the runtime dir
    /// (and its base) become searchable (not listable: 0711), and its own log pipes and notify
    /// socket are given to its user (0600). Nothing else there is readable to it.
    pub(super) fn open_runtime_files(&mut self, id: TaskId) -> std::io::Result<()> {
        let Some((uid, gid)) = self.other_user(id) else { return Ok(()) };
        if let Some(why) = unreachable_runtime_dir(self.runtime_dir.path(), uid, gid) {
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why));
        }
        if let Err(e) = self.runtime_dir.allow_traversal() {
            error!("cannot open the runtime dir to tasks of other users: {e}");
        }
        let mut paths = Vec::new();
        if let Some(logs) = self.logs.get(&id) {
            paths.push(logs.stdout.path().to_owned());
            paths.push(logs.stderr.path().to_owned());
        }
        paths.extend(self.notify_socket_path(id));
        for path in paths {
            if let Err(e) = nix::unistd::chown(&path, Some(uid.into()), Some(gid.into())) {
                error!("{}: cannot give {} to uid {uid}: {e}", self.tasks[id].name, path.display());
            }
        }
        Ok(())
    }

    /// The boot state and the prelude a shell task reads: `(None, trc's prelude)` for a task
    /// of trc's own user; for one of another user its own copy of the boot state (when boot
    /// saved one; a copy that cannot be made fails the start) and of the prelude (made once per
    /// uid; when it cannot be, the prelude goes inline).
    pub(super) fn shell_files_for(
        &mut self,
        id: TaskId,
    ) -> std::io::Result<(Option<PathBuf>, Option<PathBuf>)> {
        let Some((uid, gid)) = self.other_user(id) else {
            return Ok((None, self.prelude_file.clone()));
        };
        let state = match &self.boot_state {
            Some(state) => {
                let copy = self.runtime_dir.path().join(format!("state.{id}.sh"));
                give_copy(state, &copy, uid, gid)?;
                Some(copy)
            }
            None => None,
        };
        if uid == nix::unistd::geteuid().as_raw() {
            // Only its group differs: trc's own file is its user's.
            return Ok((state, self.prelude_file.clone()));
        }
        if let Some(path) = self.user_preludes.get(&uid) {
            return Ok((state, Some(path.clone())));
        }
        let path = self.runtime_dir.path().join(format!("prelude.{uid}.bash"));
        match give_file(&path, crate::shell::prelude().as_bytes(), uid, gid) {
            Ok(()) => {
                self.user_preludes.insert(uid, path.clone());
                Ok((state, Some(path)))
            }
            Err(e) => {
                warn!("cannot write the shell prelude for uid {uid} ({e}): its tasks get it inline");
                Ok((state, None))
            }
        }
    }
}

/// Copies the file `from` to `to` for `uid`:`gid` ([`give_file`]).
fn give_copy(from: &Path, to: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let contents = std::fs::read(from)?;
    give_file(to, &contents, uid, gid)
}

/// Writes `contents` to a new file `to` (one there is replaced) readable by `uid`:`gid` alone:
/// owned by it, mode 0600, from the moment it exists.
fn give_file(to: &Path, contents: &[u8], uid: u32, gid: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(to);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to)?;
    std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    file.write_all(contents)
}

/// Why a task running as `uid`:`gid` could not reach the runtime dir at `path` once trc has
/// made its own dirs searchable: a directory above them that is closed to it (a 0700
/// `$XDG_RUNTIME_DIR`, say; trc does not open up directories that are not its own).
pub(super) fn unreachable_runtime_dir(path: &Path, uid: u32, gid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let base = path.parent().unwrap_or(Path::new("/"));
    for dir in base.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        let passes = meta.mode() & 0o001 != 0
            || (meta.uid() == uid && meta.mode() & 0o100 != 0)
            || (meta.gid() == gid && meta.mode() & 0o010 != 0);
        if !passes {
            return Some(format!(
                "a task running as uid {uid} could not reach trc's runtime dir {}: {} (mode {:o}) is closed to it; give trc a runtime dir it can reach with --runtime-dir DIR or RC_RUNTIME_DIR=DIR",
                path.display(),
                dir.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    None
}
