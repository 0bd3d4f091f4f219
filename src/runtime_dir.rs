//! trc's private runtime directory: boot state now, task log pipes and the control socket later.
//! `$XDG_RUNTIME_DIR/trc/<instance>`, or `/run/trc/<instance>` for root, else
//! `$TMPDIR/trc-<uid>/<instance>` (`<pid>-<random>`); created with mode 0700 and removed when trc exits.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Creates the directory of this instance: `<pid>-<random>`.
    pub fn create() -> io::Result<RuntimeDir> {
        let base = base_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(|e| io::Error::new(e.kind(), format!("runtime dir {}: {e}", base.display())))?;
        // Unique per instance, created exclusively: two trc with the same pid (PID 1 of two
        // containers sharing /run, say) never share or delete each other's dir.
        let mut attempt = 0;
        let path = loop {
            let path = base.join(format!("{}-{:08x}", std::process::id(), random_u32()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(e) => {
                    return Err(io::Error::new(e.kind(), format!("runtime dir {}: {e}", path.display())))
                }
            }
        };
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

/// A random number: std's hasher keys are random per process (and per `RandomState`).
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
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
