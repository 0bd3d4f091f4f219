//! The control socket inside trc: accepts clients, checks who they are, reads their requests
//! and hands each one to the supervisor's event loop as a [`Call`], which answers it. Every
//! connection is a task of its own, so a slow or stuck client holds up nobody but itself.
//!
//! What clients may hold, so that trc's fds and memory stay bounded whatever they do:
//! - at most [`MAX_CONNECTIONS`] connections, followers apart. One more takes the place of
//!   the connection that has waited longest for a request (it gets an error line and is
//!   closed); when none waits (all are being answered), the newcomer gets the error line;
//! - a connection has [`REQUEST_TIMEOUT`] to send a complete request, from its start or from
//!   the previous reply, and [`WRITE_TIMEOUT`] to take each reply; then it is closed;
//! - a request is at most [`MAX_REQUEST`] bytes;
//! - at most [`MAX_FOLLOWERS`] `logs -f` followers. They have no timeout (a quiet task is
//!   followed for as long as the client likes); what one has queued is bounded by the log
//!   ring ([`crate::control::ring::FOLLOW_BYTES`]), and a follower that reads too slowly loses
//!   lines and is told how many.
//!
//! So trc holds at most `MAX_CONNECTIONS + MAX_FOLLOWERS + 2` fds for clients (the listener,
//! and a newcomer while the connection it replaces closes).

use super::protocol::{Command, LogMessage, Reply, Request, MAX_REQUEST, VERSION};
use crate::control::ring::{Follow, Followed};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tracing::debug;

/// Connections open at once, followers apart.
pub const MAX_CONNECTIONS: usize = 64;
/// `logs -f` followers at once.
pub const MAX_FOLLOWERS: usize = 64;
/// How long a connection may take to send a complete request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to read one reply.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One request for the supervisor, and where its answer goes.
pub struct Call {
    pub request: Request,
    pub answer: oneshot::Sender<Answer>,
}

pub enum Answer {
    Reply(Reply),
    /// A reply, then the task's new lines until the client goes away.
    Follow(Reply, Follow),
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
    tokio::task::spawn_local(accept_loop(listener, tx));
    Ok(rx)
}

async fn accept_loop(listener: UnixListener, calls: mpsc::UnboundedSender<Call>) {
    let clients = Rc::new(RefCell::new(Clients::default()));
    let freed = Rc::new(Notify::new());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                debug!("control socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if clients.borrow().open() >= MAX_CONNECTIONS {
            let evicted = clients.borrow_mut().evict_longest_idle();
            if !evicted {
                debug!("control socket: {MAX_CONNECTIONS} connections, all busy: one refused");
                let message =
                    format!("too many connections: {MAX_CONNECTIONS} are being answered; try again later");
                refuse(&stream, &message);
                continue;
            }
            // Wait until the replaced connection has closed its fd.
            while clients.borrow().open() >= MAX_CONNECTIONS {
                freed.notified().await;
            }
        }
        let slot = Slot::new(&clients, &freed);
        tokio::task::spawn_local(serve(stream, calls.clone(), slot));
    }
}

/// Writes `message` as an error reply if the socket takes it at once, and closes.
fn refuse(stream: &UnixStream, message: &str) {
    if let Ok(mut line) = serde_json::to_vec(&Reply::error(message)) {
        line.push(b'\n');
        let _ = stream.try_write(&line);
    }
}

/// The connections open, for the limits.
#[derive(Default)]
struct Clients {
    next_id: u64,
    /// Every connection but the followers.
    conns: HashMap<u64, Conn>,
    /// Followers, and `logs -f` requests on their way to the supervisor.
    followers: usize,
}

struct Conn {
    /// Since when it has been waiting for a request (`None`: its request is being answered).
    idle_since: Option<Instant>,
    /// Tells it to close, to make room for a newcomer.
    evict: Rc<Notify>,
    evicted: bool,
}

impl Clients {
    fn open(&self) -> usize {
        self.conns.len()
    }

    /// Tells the connection that has waited longest for a request to close; false when none
    /// waits.
    fn evict_longest_idle(&mut self) -> bool {
        let longest = self
            .conns
            .values_mut()
            .filter(|c| !c.evicted && c.idle_since.is_some())
            .min_by_key(|c| c.idle_since);
        match longest {
            Some(conn) => {
                conn.evicted = true;
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place among the clients, given back when it is dropped.
struct Slot {
    clients: Rc<RefCell<Clients>>,
    /// Notified when a place is given back.
    freed: Rc<Notify>,
    id: u64,
    evict: Rc<Notify>,
    /// It counts among the followers (a `logs -f` on its way, or being followed).
    follower: bool,
}

/// How a wait for the client ended.
enum Waited<T> {
    Done(T),
    TimedOut,
    Evicted,
}

impl Slot {
    fn new(clients: &Rc<RefCell<Clients>>, freed: &Rc<Notify>) -> Slot {
        let evict = Rc::new(Notify::new());
        let mut all = clients.borrow_mut();
        let id = all.next_id;
        all.next_id += 1;
        all.conns.insert(id, Conn { idle_since: None, evict: evict.clone(), evicted: false });
        Slot { clients: clients.clone(), freed: freed.clone(), id, evict, follower: false }
    }

    /// Waits for the client (`what` reads from it) at most `limit`; meanwhile the connection
    /// may be evicted.
    async fn idle<F: Future>(&self, limit: Duration, what: F) -> Waited<F::Output> {
        self.set_idle(Some(Instant::now()));
        let waited = tokio::select! {
            biased;
            _ = self.evict.notified() => Waited::Evicted,
            done = tokio::time::timeout(limit, what) => done.map_or(Waited::TimedOut, Waited::Done),
        };
        self.set_idle(None);
        waited
    }

    fn set_idle(&self, since: Option<Instant>) {
        if let Some(conn) = self.clients.borrow_mut().conns.get_mut(&self.id) {
            conn.idle_since = since;
        }
    }

    /// Counts a `logs -f` among the followers; false when there are enough.
    fn reserve_follower(&mut self) -> bool {
        let mut clients = self.clients.borrow_mut();
        if !self.follower {
            if clients.followers >= MAX_FOLLOWERS {
                return false;
            }
            clients.followers += 1;
            self.follower = true;
        }
        true
    }

    /// The request was not a follow after all.
    fn cancel_follower(&mut self) {
        if std::mem::take(&mut self.follower) {
            self.clients.borrow_mut().followers -= 1;
        }
    }

    /// From now on a follower: its connection's place is free for another client.
    fn become_follower(&mut self) {
        if !self.follower {
            self.clients.borrow_mut().followers += 1;
            self.follower = true;
        }
        self.clients.borrow_mut().conns.remove(&self.id);
        self.freed.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.cancel_follower();
        self.clients.borrow_mut().conns.remove(&self.id);
        self.freed.notify_one();
    }
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

async fn serve(mut stream: UnixStream, calls: mpsc::UnboundedSender<Call>, mut slot: Slot) {
    let mut buf: Vec<u8> = Vec::new();
    if let Err(e) = peer_allowed(&stream) {
        debug!("control socket: {e}");
        // Its request is read first (for a while), so that the refusal is what it gets back,
        // not a broken pipe while it writes.
        match slot.idle(Duration::from_secs(5), read_line(&mut stream, &mut buf)).await {
            Waited::Evicted => refuse(&stream, &e),
            _ => drop(send(&mut stream, &Reply::error(e)).await),
        }
        return;
    }
    loop {
        let line = match slot.idle(REQUEST_TIMEOUT, read_line(&mut stream, &mut buf)).await {
            Waited::Done(Ok(Some(line))) => line,
            Waited::Done(Ok(None)) => return,
            Waited::Done(Err(e)) => {
                let _ = send(&mut stream, &Reply::error(e)).await;
                return;
            }
            Waited::TimedOut => {
                let secs = REQUEST_TIMEOUT.as_secs();
                return refuse(&stream, &format!("no complete request within {secs} s: connection closed"));
            }
            Waited::Evicted => {
                let message = format!(
                    "connection closed to make room for a new one ({MAX_CONNECTIONS} were open, \
                     and this one had waited longest for a request)"
                );
                return refuse(&stream, &message);
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
        if matches!(request.command, Command::Logs { follow: true, .. }) && !slot.reserve_follower() {
            let e = format!("too many followers: {MAX_FOLLOWERS} `logs -f` are running already");
            if send(&mut stream, &Reply::error(e)).await.is_err() {
                return;
            }
            continue;
        }
        let (answer, rx) = oneshot::channel();
        if calls.send(Call { request, answer }).is_err() {
            let _ = send(&mut stream, &Reply::error("trc is exiting")).await;
            return;
        }
        match rx.await.unwrap_or_else(|_| Reply::error("trc is exiting").into()) {
            Answer::Reply(reply) => {
                slot.cancel_follower();
                if send(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
            Answer::Follow(reply, lines) => {
                slot.become_follower();
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
    let too_long = || format!("request too long (more than {MAX_REQUEST} bytes)");
    let mut chunk = [0u8; 8192];
    let mut searched = 0;
    loop {
        if let Some(end) = buf[searched..].iter().position(|&b| b == b'\n').map(|i| searched + i) {
            if end > MAX_REQUEST {
                return Err(too_long());
            }
            let mut line: Vec<u8> = buf.drain(..=end).collect();
            line.pop();
            return Ok(Some(line));
        }
        if buf.len() > MAX_REQUEST {
            return Err(too_long());
        }
        searched = buf.len();
        match stream.read(&mut chunk).await {
            Ok(0) if buf.iter().all(u8::is_ascii_whitespace) => return Ok(None),
            // A last request without its newline.
            Ok(0) => return Ok(Some(std::mem::take(buf))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Decodes one request line as the server does: JSON, an object, `v` equal to [`VERSION`], then
/// a [`Request`]. The error is the message the client gets. Public for the fuzz targets.
pub fn parse(line: &[u8]) -> Result<Request, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    if !value.is_object() {
        return Err(format!("malformed request: a request is a JSON object, not {}", kind(&value)));
    }
    match value.get("v") {
        Some(Value::Number(v)) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(Value::Number(v)) => {
            return Err(format!("unsupported protocol version {v} (this trc speaks {VERSION})"))
        }
        Some(other) => {
            return Err(format!(
                "malformed request: \"v\" must be a number, the protocol version ({VERSION}), not {}",
                kind(other)
            ))
        }
        None => return Err("malformed request: no \"v\" (protocol version) field".to_owned()),
    }
    serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))
}

/// What a JSON value is, for error messages.
fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes one message line; a client that has not taken it within [`WRITE_TIMEOUT`] is an
/// error.
async fn send<T: serde::Serialize>(stream: &mut UnixStream, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&line)).await {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read its replies")),
    }
}

/// How much a follower's write may gather from its queue at once.
const FOLLOW_WRITE: usize = 64 * 1024;

/// Sends followed lines until the client closes its end (or the task's ring goes away). No
/// timeout: the ring bounds what waits for a slow reader.
async fn follow(stream: UnixStream, mut lines: Follow) {
    let (mut reader, mut writer) = stream.into_split();
    let mut scratch = [0u8; 256];
    let mut bytes = Vec::new();
    loop {
        tokio::select! {
            item = lines.recv() => {
                let Some(item) = item else { return };
                // What else is queued goes in the same write.
                bytes.clear();
                let mut next = Some(item);
                while let Some(item) = next.take() {
                    if serde_json::to_writer(&mut bytes, &message(item)).is_err() {
                        return;
                    }
                    bytes.push(b'\n');
                    if bytes.len() < FOLLOW_WRITE {
                        next = lines.try_recv().flatten();
                    }
                }
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

fn message(item: Followed) -> LogMessage {
    match item {
        Followed::Line(line) => LogMessage { v: VERSION, line: Some(line), dropped: None },
        Followed::Dropped(n) => LogMessage { v: VERSION, line: None, dropped: Some(n) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_the_version() {
        assert_eq!(parse(br#"{"v":1,"cmd":"list"}"#).unwrap().command, Command::List);
        assert!(parse(br#"{"cmd":"list"}"#).unwrap_err().contains("no \"v\""));
        assert!(parse(br#"{"v":2,"cmd":"list"}"#).unwrap_err().contains("unsupported protocol version 2"));
        assert!(parse(br#"{"v":-1,"cmd":"list"}"#).unwrap_err().contains("unsupported protocol version -1"));
        assert!(parse(br#"{"v":1.5,"cmd":"list"}"#).unwrap_err().contains("version 1.5"));
        let e = parse(br#"{"v":"1","cmd":"list"}"#).unwrap_err();
        assert!(e.contains("\"v\" must be a number") && e.ends_with("not a string"), "{e}");
        assert!(parse(br#"{"v":null,"cmd":"list"}"#).unwrap_err().contains("must be a number"));
        assert!(parse(b"[1]").unwrap_err().contains("JSON object, not an array"));
        assert!(parse(b"{").unwrap_err().starts_with("malformed request"));
        assert!(parse(br#"{"v":1,"cmd":"fly"}"#).unwrap_err().starts_with("bad request"));
    }
}
