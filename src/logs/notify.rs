//! systemd's notify protocol (`sd_notify`): datagrams such as `READY=1` to `$NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace), and `WATCHDOG=1` pings at half of
//! `$WATCHDOG_USEC` when systemd asks for them.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; `None` when trc does not run under a notify-aware manager.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty())?;
        Notifier::new(&path.to_string_lossy()).ok()
    }

    pub fn new(path: &str) -> io::Result<Notifier> {
        let addr = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        // A manager that does not read must not stop the supervisor: a message that does not
        // fit is dropped (the next STATUS= line replaces it anyway).
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one message (e.g. `READY=1`, `STATUS=...`); failures are not fatal to trc.
    pub fn send(&self, message: &str) {
        let _ = self.socket.send_to_addr(message.as_bytes(), &self.addr);
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when `$WATCHDOG_PID` is unset or
/// names trc.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.to_str().unwrap()).unwrap().send("READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("trc-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        Notifier::new(&format!("@{name}")).unwrap().send("STOPPING=1");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
