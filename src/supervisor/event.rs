//! The one wait of the event loop, and what it yields: a [`Batch`] of everything that was ready
//! when the loop woke up.
//!
//! Fairness: the wait takes every pending signal, reaps every exited child in one pass, and
//! takes at most [`MAX_CALLS`] control requests; the dispatch (`group.rs`) acts on terminating
//! signals first, then exits, requests, finished file work and due deadlines (starting at most
//! [`MAX_STARTS`] tasks), and the loop yields to the log pumps and control connections between
//! two batches. However many tasks exit, restart or write, a terminating signal is acted on
//! within one pass (bounded by MAX_STARTS spawns and one reap pass), and a control request
//! within a few.

use super::files::JobDone;
use super::reap;
use super::Supervisor;
use crate::control::server::Call;
use nix::unistd::Pid;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::time::Instant;

/// Control requests taken in one pass.
pub const MAX_CALLS: usize = 32;
/// Tasks started in one pass (restarts due); the rest wait for the next pass.
pub const MAX_STARTS: usize = 64;

/// Everything that happened since the last pass.
#[derive(Default)]
pub struct Batch {
    /// Signals that end the group (SIGCHLD is not one: it makes the reap pass).
    pub signals: Vec<i32>,
    /// Children reaped, with their shell-style status.
    pub reaped: Vec<(Pid, i32)>,
    /// Children stopped by a signal (SIGTSTP, SIGTTIN, SIGSTOP...).
    pub stopped: Vec<(Pid, nix::sys::signal::Signal)>,
    pub calls: Vec<Call>,
    pub jobs: Vec<JobDone>,
    /// What readiness readers, log pumps and network probes saw.
    pub probes: Vec<super::probe::ProbeEvent>,
    /// When the batch was taken: deadlines up to this are due.
    pub now: Option<Instant>,
}

impl Batch {
    fn signal(&mut self, sig: Option<i32>) {
        match sig {
            Some(libc::SIGCHLD) => {}
            Some(sig) => self.signals.push(sig),
            // The signal stream cannot end while trc runs; if it did, stop as for TERM.
            None => self.signals.push(libc::SIGTERM),
        }
    }
}

impl Supervisor {
    /// The earliest deadline of any task, lingering group or sweep.
    fn next_deadline(&self) -> Option<Instant> {
        let tasks = self.tasks.iter().filter_map(|(_, t)| t.machine.deadline());
        let drain = self.group.draining.map(|d| d.until);
        tasks.chain(self.teardown_deadline()).chain(self.probe_deadline()).chain(drain).min()
    }

    /// Sleeps until something happens, then takes everything that is ready.
    pub(super) async fn wait(&mut self) -> Batch {
        let deadline = self.next_deadline();
        let mut batch = Batch::default();
        let mut control_closed = false;
        let due_now = deadline.is_some_and(|d| d <= Instant::now());
        if !due_now {
            let signals = &mut self.signals;
            let next_signal =
                std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *signals), cx));
            let control = &mut self.control;
            let next_call = async {
                match control {
                    Some(calls) => calls.recv().await,
                    None => std::future::pending().await,
                }
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                sig = next_signal => batch.signal(sig),
                call = next_call => match call {
                    Some(call) => batch.calls.push(call),
                    None => control_closed = true,
                },
                job = self.jobs.recv() => batch.jobs.extend(job),
                event = self.probe_rx.recv() => batch.probes.extend(event),
                () = sleep => {}
            }
        }
        if control_closed {
            self.control = None;
        }
        // Everything else that is ready now, without waiting.
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(sig) = futures_core::Stream::poll_next(Pin::new(&mut self.signals), &mut cx) {
            batch.signal(sig);
            if sig.is_none() {
                break;
            }
        }
        if let Some(calls) = &mut self.control {
            while batch.calls.len() < MAX_CALLS {
                match calls.try_recv() {
                    Ok(call) => batch.calls.push(call),
                    Err(_) => break,
                }
            }
        }
        while let Ok(job) = self.jobs.try_recv() {
            batch.jobs.push(job);
        }
        while let Ok(event) = self.probe_rx.try_recv() {
            batch.probes.push(event);
        }
        // One reap pass whether or not SIGCHLD was seen: signals of one kind coalesce.
        batch.reaped = reap::reap_exited(&mut batch.stopped);
        batch.now = Some(Instant::now());
        batch
    }
}
