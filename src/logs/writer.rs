//! Output off the supervisor's thread. Everything trc writes to its stdout, its stderr and
//! journald goes through a *lane*: a bounded queue and a thread of its own that does the
//! blocking writes, so a reader that stops reading (a full pipe, a paused terminal, a stuck log
//! driver, a busy journald) stalls that thread, never the loop that reaps, takes signals, tears
//! down and answers trcctl.
//!
//! - Order: a lane keeps the order of everything queued to it, trc's own lines and its tasks'
//!   lines alike. When trc's stdout and stderr are the same file (`2>&1`, a terminal) they share
//!   one lane, so that their lines keep their order and never mix.
//! - Backpressure: a lane holds about [`QUEUE_BYTES`] (counting the batch being written). When
//!   it is full, the log pumps stop reading their pipes ([`Lane::room`]), so the tasks feel it
//!   in their own writes, until the thread has made room: no line is dropped while trc runs.
//!   A task's drain at its exit and trc's own lines always go in (see `LogStream::drain` for the
//!   bound on that overshoot).
//! - Errors: a line that cannot be written (EPIPE: the reader is gone) is dropped and counted;
//!   trc goes on.
//! - Exit: [`finish`] waits a short while for the lanes to empty, then lets trc exit; what is
//!   still queued then is lost, and counted.

use super::journal::{Delivery, JournalSocket};
use super::pipe::Output;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Bytes a lane queues (with the batch being written) before the pumps stop reading.
pub const QUEUE_BYTES: usize = 512 * 1024;
/// How long trc waits at its exit for its queued output to be written.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);
/// The most a lane's thread takes out of the queue for one write: a part of the bound, so that
/// the pumps go on filling the queue while a batch is written.
const BATCH_BYTES: usize = QUEUE_BYTES / 4;
/// Buffers in one `writev`.
const BATCH_ITEMS: usize = 64;
/// Written buffers kept for reuse by the pumps (a fresh 64 KiB buffer costs page faults).
const SPARE_BUFFERS: usize = 4;
/// A buffer larger than this is not kept for reuse.
const SPARE_CAPACITY: usize = 256 * 1024;

/// Something queued on a lane.
pub(crate) enum Item {
    /// Whole lines for trc's stdout or stderr.
    Console { to: Output, data: Vec<u8>, lines: usize },
    /// One encoded journal record, and the console line to write instead if journald is gone.
    Record { data: Vec<u8>, instead: Option<(Output, Vec<u8>)> },
    /// Runs once everything queued before it has been written.
    Then(Box<dyn FnOnce() + Send>),
}

impl Item {
    fn bytes(&self) -> usize {
        match self {
            Item::Console { data, .. } | Item::Record { data, .. } => data.len(),
            Item::Then(_) => 0,
        }
    }

    fn lines(&self) -> usize {
        match self {
            Item::Console { lines, .. } => *lines,
            Item::Record { .. } => 1,
            Item::Then(_) => 0,
        }
    }
}

/// Where a lane's thread writes.
pub(crate) enum Sink {
    /// trc's stdout and stderr (one lane for both when they are the same file).
    Console,
    Journal(JournalSocket),
    /// The bytes of console items, to a function (unit tests).
    #[cfg(test)]
    Test(Box<TestSink>),
}

#[cfg(test)]
type TestSink = dyn FnMut(&[u8]) + Send;

/// A bounded queue and the thread that empties it.
pub struct Lane {
    queue: Mutex<Queue>,
    /// Wakes the thread when there is work.
    work: Condvar,
    /// Wakes [`finish`] when the lane is empty.
    emptied: Condvar,
    /// Wakes the pumps when there is room again.
    room: Notify,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Bytes, lines and items queued or being written.
    bytes: usize,
    lines: usize,
    pending: usize,
    /// The thread waits for work.
    idle: bool,
    /// A pump found the lane full: the thread wakes the pumps once there is room.
    starved: bool,
    /// Lines (or records) dropped because they could not be written.
    lost: usize,
    spare: Vec<Vec<u8>>,
    /// No thread could be started: whoever queues an item writes it.
    direct: Option<Sink>,
}

/// Every lane, for [`finish`].
static LANES: Mutex<Vec<Arc<Lane>>> = Mutex::new(Vec::new());
/// The lanes of trc's stdout and stderr (the same one twice when they are the same file).
static CONSOLE: OnceLock<[Arc<Lane>; 2]> = OnceLock::new();

/// The lane of trc's stdout or stderr.
pub fn console(output: Output) -> &'static Lane {
    let lanes = CONSOLE.get_or_init(|| {
        let stdout = Lane::start("trc-stdout", Sink::Console);
        let stderr = if same_file(io::stdout().as_fd(), io::stderr().as_fd()) {
            stdout.clone()
        } else {
            Lane::start("trc-stderr", Sink::Console)
        };
        [stdout, stderr]
    });
    match output {
        Output::Stdout => &lanes[0],
        Output::Stderr => &lanes[1],
    }
}

/// Queues bytes (whole lines) for trc's stdout or stderr; never blocks.
pub fn write(output: Output, data: Vec<u8>) {
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    console(output).push(Item::Console { to: output, data, lines });
}

/// Runs `f` on the writer's thread once everything queued so far for `output` has been written
/// (or dropped, when the output is broken); at once when nothing is queued. If trc exits first
/// (see [`finish`]), `f` never runs.
pub fn after_written(output: Output, f: Box<dyn FnOnce() + Send>) {
    console(output).push(Item::Then(f));
}

/// Waits at most `grace` for everything queued to be written, then returns the number of lines
/// (and journal records) that were not: those still queued, which are lost when trc exits, and
/// those dropped before because their output was broken. Records that could not be sent to
/// journald are reported on stderr first. Called once, as trc exits.
pub fn finish(grace: Duration) -> usize {
    let deadline = Instant::now() + grace;
    let lanes: Vec<Arc<Lane>> = LANES.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let is_console = |lane: &Arc<Lane>| CONSOLE.get().is_some_and(|c| c.iter().any(|l| Arc::ptr_eq(l, lane)));
    // journald first: the report of its losses goes to the console.
    let mut journal_lost = 0;
    for lane in lanes.iter().filter(|l| !is_console(l)) {
        journal_lost += lane.settle(deadline);
    }
    if journal_lost > 0 {
        let text = format!("{journal_lost} records could not be sent to journald");
        write(Output::Stderr, super::format::plain_line("warn", &text));
    }
    let mut console_lost = 0;
    if let Some([stdout, stderr]) = CONSOLE.get() {
        console_lost += stdout.settle(deadline);
        if !Arc::ptr_eq(stdout, stderr) {
            console_lost += stderr.settle(deadline);
        }
    }
    journal_lost + console_lost
}

impl Lane {
    /// A lane for `sink`, with its thread running.
    pub(crate) fn start(name: &str, sink: Sink) -> Arc<Lane> {
        let lane = Arc::new(Lane {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            emptied: Condvar::new(),
            room: Notify::new(),
        });
        // The sink goes to the thread, or stays here if no thread can be started.
        let slot = Arc::new(Mutex::new(Some(sink)));
        let (worker, handed) = (lane.clone(), slot.clone());
        let spawned =
            std::thread::Builder::new().name(name.to_owned()).stack_size(256 * 1024).spawn(move || {
                block_signals();
                let sink = handed.lock().ok().and_then(|mut s| s.take());
                if let Some(sink) = sink {
                    worker.run(sink);
                }
            });
        if spawned.is_err() {
            // Out of threads at start-up: write on the loop as trc used to rather than not at all.
            lane.lock().direct = slot.lock().ok().and_then(|mut s| s.take());
        }
        LANES.lock().unwrap_or_else(|p| p.into_inner()).push(lane.clone());
        lane
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic on a lane's thread must not take trc's output with it.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item`, whatever the bound: never blocks (unless the lane has no thread).
    pub(crate) fn push(&self, item: Item) {
        let mut queue = self.lock();
        if let Some(sink) = &mut queue.direct {
            let mut batch = vec![item];
            let lost = write_batch(sink, &mut batch);
            queue.lost += lost;
            return;
        }
        queue.bytes += item.bytes();
        queue.lines += item.lines();
        queue.pending += 1;
        queue.items.push_back(item);
        if std::mem::take(&mut queue.idle) {
            self.work.notify_one();
        }
    }

    /// Whether the lane is below its bound. When it is not, the thread wakes the waiters of
    /// [`Lane::room`] once it is.
    pub fn has_room(&self) -> bool {
        let mut queue = self.lock();
        let room = queue.bytes < QUEUE_BYTES;
        queue.starved |= !room;
        room
    }

    /// Waits until the lane is below its bound.
    pub async fn room(&self) {
        loop {
            let mut notified = std::pin::pin!(self.room.notified());
            // Registered before the check, so that a wake between the two is not lost.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// An empty buffer to fill and queue, one that was written before when there is one.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.lock().spare.pop().unwrap_or_default()
    }

    /// Takes back a buffer that was not queued.
    pub(crate) fn give_back(&self, buffer: Vec<u8>) {
        self.lock().keep_spare(buffer);
    }

    /// Waits until the lane is empty or `deadline` has passed; returns the lines lost: dropped
    /// before, and still queued.
    fn settle(&self, deadline: Instant) -> usize {
        let mut queue = self.lock();
        while queue.pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self.emptied.wait_timeout(queue, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        queue.lost + queue.lines
    }

    /// The thread: takes a batch, writes it, counts it done, again and again.
    fn run(&self, mut sink: Sink) {
        let mut batch: Vec<Item> = Vec::with_capacity(BATCH_ITEMS);
        loop {
            self.take_batch(&mut batch);
            let bytes = batch.iter().map(Item::bytes).sum::<usize>();
            let lines = batch.iter().map(Item::lines).sum::<usize>();
            let count = batch.len();
            let lost = write_batch(&mut sink, &mut batch);
            let wake_pumps = {
                let mut queue = self.lock();
                queue.bytes -= bytes;
                queue.lines -= lines;
                queue.pending -= count;
                queue.lost += lost;
                for item in batch.drain(..) {
                    if let Item::Console { data, .. } = item {
                        queue.keep_spare(data);
                    }
                }
                if queue.pending == 0 {
                    self.emptied.notify_all();
                }
                let wake = queue.starved && queue.bytes < QUEUE_BYTES;
                queue.starved &= !wake;
                wake
            };
            if wake_pumps {
                self.room.notify_waiters();
            }
        }
    }

    /// Waits for work and moves the next batch into `batch`: items up to [`BATCH_BYTES`], or
    /// one callback alone.
    fn take_batch(&self, batch: &mut Vec<Item>) {
        let mut queue = self.lock();
        while queue.items.is_empty() {
            queue.idle = true;
            queue = self.work.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
        let mut bytes = 0;
        while let Some(item) = queue.items.front() {
            let full = batch.len() == BATCH_ITEMS || bytes + item.bytes() > BATCH_BYTES;
            if !batch.is_empty() && (full || matches!(item, Item::Then(_))) {
                break;
            }
            bytes += item.bytes();
            let is_then = matches!(item, Item::Then(_));
            batch.extend(queue.items.pop_front());
            if is_then {
                break;
            }
        }
    }
}

impl Queue {
    fn keep_spare(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && (1..=SPARE_CAPACITY).contains(&buffer.capacity()) {
            buffer.clear();
            self.spare.push(buffer);
        }
    }
}

/// Writes `batch` in order (emptying no item; the caller recycles them) and returns the lines
/// that could not be written.
fn write_batch(sink: &mut Sink, batch: &mut [Item]) -> usize {
    let mut lost = 0;
    let mut rest = &mut batch[..];
    while let Some(first) = rest.first_mut() {
        match (sink as &mut Sink, first) {
            (_, Item::Then(f)) => {
                // Taken out: the item stays in the batch, empty.
                let f = std::mem::replace(f, Box::new(|| {}));
                // A callback that panics must not take the lane's thread (and trc's output) down.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                rest = &mut rest[1..];
            }
            (Sink::Console, Item::Console { to, .. }) => {
                let to = *to;
                let run =
                    rest.iter().take_while(|i| matches!(i, Item::Console { to: t, .. } if *t == to)).count();
                let (group, tail) = rest.split_at_mut(run);
                if write_all_vectored(to, group).is_err() {
                    lost += group.iter().map(Item::lines).sum::<usize>();
                }
                rest = tail;
            }
            (Sink::Journal(socket), Item::Record { data, instead }) => {
                match socket.deliver(data) {
                    Delivery::Sent => {}
                    Delivery::Dropped => lost += 1,
                    Delivery::Failed => {
                        // journald is gone (not just busy): the line goes to the console.
                        if let Some((output, line)) = instead.take() {
                            write(output, line);
                        }
                    }
                }
                rest = &mut rest[1..];
            }
            #[cfg(test)]
            (Sink::Test(f), Item::Console { data, .. }) => {
                f(data);
                rest = &mut rest[1..];
            }
            // An item on the wrong lane: a bug; it is dropped, not written somewhere else.
            _ => {
                debug_assert!(false, "an item on the wrong lane");
                rest = &mut rest[1..];
            }
        }
    }
    lost
}

/// Writes the bytes of consecutive console items to `to`, with as few `writev`s as it takes.
fn write_all_vectored(to: Output, items: &[Item]) -> io::Result<()> {
    let mut slices: Vec<IoSlice> = items
        .iter()
        .filter_map(|i| match i {
            Item::Console { data, .. } if !data.is_empty() => Some(IoSlice::new(data)),
            _ => None,
        })
        .collect();
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let fd = match to {
        Output::Stdout => stdout.as_fd(),
        Output::Stderr => stderr.as_fd(),
    };
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match nix::sys::uio::writev(fd, slices) {
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(nix::errno::Errno::EINTR) => {}
            // Someone handed trc a non-blocking stdout: wait here, on this thread.
            Err(nix::errno::Errno::EAGAIN) => {
                wait_writable(fd, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Waits until `fd` can be written, or `timeout` has passed (None: no limit); true when it can.
pub(crate) fn wait_writable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> bool {
    let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    // SAFETY: one pollfd on the stack, for an fd borrowed for the whole call.
    let n = unsafe { libc::poll(&mut pollfd, 1, ms) };
    n > 0 && pollfd.revents & libc::POLLOUT != 0
}

/// Leaves the signals to the supervisor's thread, whose loop acts on them (and would never see
/// one that a signalfd waits for if it went to this thread), except the faults that this
/// thread's own code could raise: those must reach trc's fault handler.
fn block_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::all();
    for fault in
        [Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGILL, Signal::SIGFPE, Signal::SIGTRAP, Signal::SIGSYS]
    {
        signals.remove(fault);
    }
    let _ = signals.thread_block();
}

/// Whether two fds are the same file (a pipe, a terminal, a file).
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (nix::sys::stat::fstat(a), nix::sys::stat::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn console_item(data: Vec<u8>) -> Item {
        let lines = data.iter().filter(|&&b| b == b'\n').count();
        Item::Console { to: Output::Stdout, data, lines }
    }

    /// A lane whose sink waits for `gate` to open, then sends what it gets to `written`, taking
    /// `pace` for each write (a slow reader).
    fn gated_lane(pace: Duration) -> (Arc<Lane>, mpsc::Sender<()>, mpsc::Receiver<Vec<u8>>) {
        let (open, gate) = mpsc::channel::<()>();
        let (tx, written) = mpsc::channel();
        let mut opened = false;
        let sink = Sink::Test(Box::new(move |data| {
            if !opened {
                let _ = gate.recv();
                opened = true;
            }
            std::thread::sleep(pace);
            let _ = tx.send(data.to_vec());
        }));
        (Lane::start("trc-test", sink), open, written)
    }

    #[test]
    fn a_full_lane_holds_the_producer_back_and_loses_nothing() {
        // A slow reader: the queue stays over its bound for several batches after the producer
        // has started to wait.
        let (lane, open, written) = gated_lane(Duration::from_millis(1));
        const CHUNKS: usize = 100;
        let producer = lane.clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let held_back = std::sync::atomic::AtomicBool::new(false);
        let produce = async {
            for i in 0..CHUNKS {
                if !producer.has_room() {
                    held_back.store(true, std::sync::atomic::Ordering::SeqCst);
                    // The reader starts reading only once the producer has had to wait.
                    let _ = open.send(());
                }
                producer.room().await;
                // Bursts that overshoot the bound by more than one batch, as a pump's read can.
                for j in 0..6 {
                    producer.push(console_item(format!("{i}.{j}\n").repeat(11000).into_bytes()));
                }
            }
        };
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), produce)
                .await
                .expect("the producer was never woken")
        });
        assert!(held_back.load(std::sync::atomic::Ordering::SeqCst), "the bound never held the producer");
        let mut got = Vec::new();
        while got.len() < CHUNKS * 6 {
            got.push(written.recv_timeout(Duration::from_secs(60)).expect("a chunk was lost"));
        }
        for (n, chunk) in got.iter().enumerate() {
            assert_eq!(chunk, &format!("{}.{}\n", n / 6, n % 6).repeat(11000).into_bytes(), "chunk {n}");
        }
        assert_eq!(lane.settle(Instant::now() + Duration::from_secs(60)), 0);
    }

    #[test]
    fn a_callback_runs_after_what_was_queued_before_it() {
        let (lane, open, written) = gated_lane(Duration::ZERO);
        let (ran_tx, ran) = mpsc::channel();
        lane.push(console_item(b"first\n".to_vec()));
        lane.push(Item::Then(Box::new(move || ran_tx.send(()).unwrap())));
        lane.push(console_item(b"second\n".to_vec()));
        assert!(ran.recv_timeout(Duration::from_millis(100)).is_err(), "ran before its line was written");
        open.send(()).unwrap();
        assert_eq!(written.recv_timeout(Duration::from_secs(60)).unwrap(), b"first\n");
        ran.recv_timeout(Duration::from_secs(60)).expect("the callback did not run");
        assert_eq!(written.recv_timeout(Duration::from_secs(60)).unwrap(), b"second\n");
    }

    #[test]
    fn settling_a_stuck_lane_gives_up_at_the_deadline_and_counts_the_lines() {
        let (lane, _open, _written) = gated_lane(Duration::ZERO);
        lane.push(console_item(b"one\ntwo\n".to_vec()));
        lane.push(console_item(b"three\n".to_vec()));
        let start = Instant::now();
        assert_eq!(lane.settle(start + Duration::from_millis(200)), 3);
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
