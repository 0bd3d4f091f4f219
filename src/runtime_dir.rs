//! trc's private runtime directory: boot state now, task log pipes and the control socket later.
//! `$XDG_RUNTIME_DIR/trc/<instance>`, or `/run/trc/<instance>` for root, else
//! `$TMPDIR/trc-<uid>/<instance>`; created with mode 0700 and removed when trc exits.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Creates the directory of this instance (named after trc's pid for now).
    pub fn create() -> io::Result<RuntimeDir> {
        let base = base_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(|e| io::Error::new(e.kind(), format!("runtime dir {}: {e}", base.display())))?;
        let path = base.join(std::process::id().to_string());
        // A directory left by a crashed trc whose pid we now have is stale: start afresh.
        if path.exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("runtime dir {}: {e}", path.display())))?;
        Ok(RuntimeDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn base_dir() -> PathBuf {
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
