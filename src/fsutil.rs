//! Small file-system helpers shared by trc and trcctl: the `PATH` search and atomic writes.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The first executable file named `name` in `$PATH`.
pub fn find_in_path(name: &OsStr) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable_file(p))
}

/// A regular file this process may execute.
pub fn is_executable_file(path: &Path) -> bool {
    path.is_file() && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// Writes `contents` to `path` so that a reader sees either the old file or the new one, never
/// a part: a temporary file next to it (a dot name, so runsvdir and systemd skip it), synced,
/// given `mode`, then renamed over `path`.
pub fn write_atomically(path: &std::path::Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp-{}-{}", std::process::id(), unique_suffix()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        file.write_all(contents)?;
        // The mode given to open(2) is masked by the umask; scripts must be executable.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// A number that differs between calls (in this process and, very likely, between processes):
/// for names of temporary files and dirs.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{:x}{:x}", nanos.subsec_nanos(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
