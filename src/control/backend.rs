//! Helpers shared by the backends that drive another process manager (runit, tmux,
//! systemd): finding their tools and running them, atomic file writes, directives read with
//! trc's own parsing. They run in `trcctl`, on the client side, where a short poll is fine.

use super::manager::{EnsureSpec, ManagerError, Result};
use std::path::PathBuf;

/// Where `program` is found in `$PATH` (the first executable file of that name), as a shell
/// would run it.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
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

/// Checks `cond` every 50 ms until it holds (true) or `timeout` has passed (false).
pub fn poll_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The directives of an `ensure` read with trc's own parsing, on top of `defaults` (the
/// manager's own behaviour), so a bad value is refused in trc's words. A key outside
/// `supported` is refused, naming `manager` and what it does support; `log-prefix: no` is
/// always taken (every other manager passes output through untouched), `yes` never.
pub fn directive_settings(
    directives: &[(String, String)],
    defaults: crate::config::TaskSettings,
    supported: &[&str],
    manager: &str,
) -> Result<crate::config::TaskSettings> {
    let mut settings = defaults;
    for (key, value) in directives {
        settings.set(key, value).map_err(|e| ManagerError::Refused(format!("directive {key}: {e}")))?;
        if key == "log-prefix" {
            if settings.log_prefix {
                return Err(ManagerError::Refused(format!(
                    "{manager} passes output through untouched: it cannot honour \"log-prefix: {value}\""
                )));
            }
        } else if !supported.contains(&key.as_str()) {
            return Err(ManagerError::Refused(format!(
                "{manager} cannot honour the directive \"{key}\" (it takes: {}, log-prefix: no)",
                supported.join(", ")
            )));
        }
    }
    Ok(settings)
}

/// The working directory of `spec` made absolute against the caller's current directory (a
/// relative one would otherwise be taken relative to wherever the manager runs the service).
pub fn absolute_cwd(spec: &EnsureSpec) -> Result<EnsureSpec> {
    let mut spec = spec.clone();
    if let Some(cwd) = &spec.cwd {
        let absolute = std::path::absolute(cwd)
            .map_err(|e| ManagerError::Refused(format!("working directory {}: {e}", cwd.display())))?;
        spec.cwd = Some(absolute);
    }
    Ok(spec)
}

/// Runs a manager's command-line tool and returns its stdout. It cannot be started:
/// `Unavailable`; it fails: `Refused` with what it printed.
pub fn run_tool(command: &mut std::process::Command) -> Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ManagerError::Unavailable(format!("cannot run {program}: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = [stderr.trim(), stdout.trim()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
    let mut args: String = command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = args.char_indices().nth(120) {
        args.truncate(cut);
        args.push_str("...");
    }
    Err(ManagerError::Refused(format!(
        "{program} {args} failed ({}){}{}",
        output.status,
        if said.is_empty() { "" } else { ": " },
        said.join("; ")
    )))
}
