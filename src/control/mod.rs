//! Control: the socket server inside trc, the protocol it speaks, and the process-manager
//! interface `trcctl` offers over trc, systemd, runit and tmux, here or (remote.rs) on a target
//! machine through ssh.

pub mod backend;
pub mod cli;
pub mod client;
pub mod follow;
pub mod manager;
pub mod protocol;
pub mod remote;
pub mod ring;
pub mod runit;
pub mod server;
pub mod systemd;
pub mod tail;
pub mod tmux;

use manager::{Manager, ManagerError};

/// Which process manager to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManagerKind {
    /// trc when one answers, then systemd (PID 1), then runit (runsvdir runs), else tmux.
    Auto,
    Trc,
    Systemd,
    Runit,
    Tmux,
}

/// What selects and configures a manager.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The trc instance: a name or a runtime dir's path.
    pub instance: Option<String>,
    /// systemd: user units.
    pub user: bool,
    /// trc: how long to wait for its answer (none: [`client::DEFAULT_TIMEOUT`]).
    pub timeout: Option<std::time::Duration>,
}

/// Opens the manager `kind`; a forced one that is not available is `Unavailable`.
pub fn open(kind: ManagerKind, options: &Options) -> Result<Box<dyn Manager>, ManagerError> {
    match kind {
        ManagerKind::Trc => match &options.instance {
            Some(name) => Ok(Box::new(client::Trc::named(name)?.timeout(options.timeout))),
            None => Err(ManagerError::Unavailable(format!(
                "no trc instance is running (looked in {})",
                crate::runtime_dir::base_dirs_text()
            ))),
        },
        ManagerKind::Systemd => Ok(Box::new(systemd::Systemd::detect(options.user)?)),
        ManagerKind::Runit => Ok(Box::new(runit::Runit::detect()?)),
        ManagerKind::Tmux => Ok(Box::new(tmux::Tmux::detect()?)),
        ManagerKind::Auto => {
            // trc when one answers (the caller found its instance), then systemd as PID 1,
            // then a running runsvdir, else tmux.
            if let Some(name) = &options.instance {
                return Ok(Box::new(client::Trc::named(name)?.timeout(options.timeout)));
            }
            if let Ok(systemd) = systemd::Systemd::detect(options.user) {
                return Ok(Box::new(systemd));
            }
            if let Ok(runit) = runit::Runit::detect() {
                return Ok(Box::new(runit));
            }
            tmux::Tmux::detect()
                .map(|tmux| Box::new(tmux) as Box<dyn Manager>)
                .map_err(|e| ManagerError::Unavailable(format!("no process manager found: no trc instance, systemd is not PID 1, no runsvdir runs, and {e}")))
        }
    }
}
