//! Control: the socket server inside trc, the protocol it speaks, and the process-manager
//! interface `trcctl` offers over trc, systemd, runit and tmux.

pub mod backend;
pub mod manager;
pub mod protocol;
pub mod runit;
pub mod systemd;
pub mod tail;
pub mod tmux;
