//! The control socket inside trc: accepts clients, checks who they are, reads their requests
//! and hands each one to the supervisor's event loop as a [`Call`], which answers it. Every
//! connection is a task of its own, so a slow or stuck client holds up nobody but itself.

use super::protocol::{LogMessage, Reply, Request, MAX_REQUEST, VERSION};
use crate::logs::ring::Followed;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

/// One request for the supervisor, and where its answer goes.
pub struct Call {
    pub request: Request,
    pub answer: oneshot::Sender<Answer>,
}

pub enum Answer {
    Reply(Reply),
    /// A reply, then the task's new lines until the client goes away.
    Follow(Reply, mpsc::Receiver<Followed>),
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer::Reply(reply)
    }
}

/// Binds the socket at `path` (mode 0600) and serves it on local tasks; calls come out of the
/// returned receiver.
pub fn listen(path: &Path) -> io::Result<mpsc::UnboundedReceiver<Call>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: bind: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::task::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::task::spawn_local(serve(stream, tx.clone()));
                }
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    debug!("control socket: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(rx)
}

/// Whether a peer may talk to trc: root, or trc's own user.
fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let cred = stream.peer_cred().map_err(|e| format!("cannot check the peer: {e}"))?;
    let own = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == own {
        Ok(())
    } else {
        Err(format!(
            "permission denied: uid {} may not control this trc (only root and uid {own})",
            cred.uid()
        ))
    }
}

async fn serve(mut stream: UnixStream, calls: mpsc::UnboundedSender<Call>) {
    let mut buf: Vec<u8> = Vec::new();
    if let Err(e) = peer_allowed(&stream) {
        debug!("control socket: {e}");
        // Its request is read first (for a while), so that the refusal is what it gets back,
        // not a broken pipe while it writes.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), read_line(&mut stream, &mut buf)).await;
        let _ = send(&mut stream, &Reply::error(e)).await;
        return;
    }
    loop {
        let line = match read_line(&mut stream, &mut buf).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                let _ = send(&mut stream, &Reply::error(e)).await;
                return;
            }
        };
        let request = match parse(&line) {
            Ok(request) => request,
            Err(e) => {
                if send(&mut stream, &Reply::error(e)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let (answer, rx) = oneshot::channel();
        if calls.send(Call { request, answer }).is_err() {
            let _ = send(&mut stream, &Reply::error("trc is exiting")).await;
            return;
        }
        let answer = rx.await.unwrap_or_else(|_| Reply::error("trc is exiting").into());
        match answer {
            Answer::Reply(reply) => {
                if send(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
            Answer::Follow(reply, lines) => {
                if send(&mut stream, &reply).await.is_ok() {
                    follow(stream, lines).await;
                }
                return;
            }
        }
    }
}

/// Reads the next request line (without its newline); `None` at the end of the stream. A line
/// longer than `MAX_REQUEST` is an error.
async fn read_line(stream: &mut UnixStream, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = buf.drain(..=end).collect();
            line.pop();
            return Ok(Some(line));
        }
        if buf.len() > MAX_REQUEST {
            return Err(format!("request too long (more than {MAX_REQUEST} bytes)"));
        }
        match stream.read(&mut chunk).await {
            Ok(0) if buf.iter().all(u8::is_ascii_whitespace) => return Ok(None),
            // A last request without its newline.
            Ok(0) => return Ok(Some(std::mem::take(buf))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn parse(line: &[u8]) -> Result<Request, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => return Err(format!("unsupported protocol version {v} (this trc speaks {VERSION})")),
        None => return Err("malformed request: no \"v\" (protocol version) field".to_owned()),
    }
    serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))
}

async fn send<T: serde::Serialize>(stream: &mut UnixStream, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

/// Sends followed lines until the client closes its end (or trc exits).
async fn follow(stream: UnixStream, mut lines: mpsc::Receiver<Followed>) {
    let (mut reader, mut writer) = stream.into_split();
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            item = lines.recv() => {
                let message = match item {
                    Some(Followed::Line(line)) => LogMessage { v: VERSION, line: Some(line), dropped: None },
                    Some(Followed::Dropped(n)) => LogMessage { v: VERSION, line: None, dropped: Some(n) },
                    None => return,
                };
                let mut bytes = match serde_json::to_vec(&message) {
                    Ok(bytes) => bytes,
                    Err(_) => return,
                };
                bytes.push(b'\n');
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            read = reader.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::Command;

    #[test]
    fn requests_need_the_version() {
        assert_eq!(parse(br#"{"v":1,"cmd":"list"}"#).unwrap().command, Command::List);
        assert!(parse(br#"{"cmd":"list"}"#).unwrap_err().contains("\"v\""));
        assert!(parse(br#"{"v":2,"cmd":"list"}"#).unwrap_err().contains("version 2"));
        assert!(parse(b"{").unwrap_err().starts_with("malformed request"));
        assert!(parse(br#"{"v":1,"cmd":"fly"}"#).unwrap_err().starts_with("bad request"));
    }
}
