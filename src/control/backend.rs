//! Helpers shared by the backends that drive another process manager (runit, tmux,
//! systemd): finding their tools and running them, atomic file writes, directives read with
//! trc's own parsing. They run in `trcctl`, on the client side, where a short poll is fine.

use super::manager::{EnsureSpec, ManagerError, Result};
use std::path::PathBuf;

/// Where `program` is found in `$PATH`, as a shell would run it.
pub fn find_program(program: &str) -> Option<PathBuf> {
    crate::fsutil::find_in_path(std::ffi::OsStr::new(program))
}

pub use crate::fsutil::{unique_suffix, write_atomically};

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
