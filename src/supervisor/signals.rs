//! Which signal means what to trc.

use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use signal_hook_tokio::Signals;
use std::io::ErrorKind;
use std::os::fd::IntoRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::task::{Context, Poll};
use tokio::net::unix::pipe;

/// Signals that end the group gracefully with status 128+N. TrivialRC traps the same ones
/// (plus QUIT, which bash ignores there). The fault signals ([`FAULTS`]) do too when another
/// process sends them; they have a handler of their own.
pub const TERMINATING: [i32; 11] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
];

/// Prepares trc's own signal state before any handler is registered: nothing blocked (a
/// parent may hand us a mask), SIGPIPE ignored (a closed stdout must not kill the supervisor),
/// SIGTTOU/SIGTTIN ignored (trc takes the terminal back from a foreground task).
pub fn prepare() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    for sig in [Signal::SIGPIPE, Signal::SIGTTOU, Signal::SIGTTIN] {
        // SAFETY: setting SIG_IGN installs no handler code, so no async-signal-safety concern.
        unsafe { signal(sig, SigHandler::SigIgn) }?;
    }
    Ok(())
}

/// The signal's name without `SIG`, for log lines.
pub fn name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().trim_start_matches("SIG").to_owned())
        .unwrap_or_else(|_| sig.to_string())
}

// ----- fault signals ----------------------------------------------------------------------

/// The signals the kernel sends when a program faults. TrivialRC traps them like the others,
/// and SPEC section 6 asks for every signal TrivialRC traps to end the group gracefully: sent
/// by another process (`kill -SEGV`), they do, with 128+N. A real fault of trc's own code is
/// another matter: a handler that returns re-runs the faulting instruction, and nothing trc
/// does after it can be trusted; trc then kills every task's process group with SIGKILL and
/// dies of the signal (with a core dump, as usual), so that its tasks do not outlive it.
pub const FAULTS: [i32; 6] =
    [libc::SIGILL, libc::SIGTRAP, libc::SIGBUS, libc::SIGFPE, libc::SIGSEGV, libc::SIGSYS];

/// How many task process groups the fault handler can know of at once (running tasks, which
/// are few; a task past this number is simply not killed by a fault).
const MAX_GROUPS: usize = 4096;

/// The process groups of the tasks whose leader has not been reaped yet, for the fault
/// handler (which can neither lock nor allocate); 0 is a free slot.
static GROUPS: [AtomicI32; MAX_GROUPS] = [const { AtomicI32::new(0) }; MAX_GROUPS];

/// The write end of the pipe on which the fault handler hands a signal sent with kill(2) over
/// to the event loop ([`Watch`]); -1 before there is one.
static FAULT_PIPE: AtomicI32 = AtomicI32::new(-1);

/// trc's pid when the handler was installed: a child between fork and exec still has the
/// handler, and must neither talk to trc's loop nor kill trc's tasks.
static OWNER: AtomicI32 = AtomicI32::new(0);

/// Records a task's new process group (its leader's pid), for the fault handler.
pub fn track_group(pgid: i32) {
    for slot in &GROUPS {
        if slot.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
}

/// Forgets a process group when its leader has been reaped: from then on its number may be
/// reused by an unrelated process. (Members a group may still have then are stopped by the
/// teardown as usual, but not by the fault handler.)
pub fn untrack_group(pgid: i32) {
    for slot in &GROUPS {
        let _ = slot.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Installs [`on_fault`] for every fault signal. Without a handler, a fault signal sent with
/// kill(2) would kill trc with its default action and leave the tasks running; and as PID 1,
/// the kernel would drop it (PID 1 only gets the signals it handles, from inside its
/// namespace or from outside), where TrivialRC, which traps them, ends the group.
pub fn install_fault_handlers() -> std::io::Result<()> {
    OWNER.store(std::process::id() as i32, Ordering::SeqCst);
    for sig in FAULTS {
        // SAFETY: a zeroed sigaction is valid; the handler only makes async-signal-safe calls
        // (see `on_fault`). SA_ONSTACK: a stack overflow can still run it, on the alternate
        // stack the Rust runtime set up for the main thread.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The handler of the fault signals. `si_code` tells who sent the signal: zero or less is a
/// process (kill, sigqueue, tgkill); above zero is the kernel, for a real fault (another
/// process cannot fake that: the kernel refuses a positive `si_code` from it, even from root).
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: only async-signal-safe system calls (getpid, write, kill, sigaction, raise) on
    // static atomics and stack memory; `info` is the kernel's, valid during the handler.
    unsafe {
        let errno = *libc::__errno_location();
        let ours = libc::getpid() == OWNER.load(Ordering::SeqCst);
        let sent = !info.is_null() && (*info).si_code <= 0;
        if ours && sent {
            // Graceful: the event loop ends the group with 128+N, as for TERM.
            let fd = FAULT_PIPE.load(Ordering::SeqCst);
            if fd >= 0 {
                let byte = sig as u8;
                libc::write(fd, (&byte as *const u8).cast(), 1);
            }
            *libc::__errno_location() = errno;
            return;
        }
        if ours {
            let say = |text: &[u8]| {
                libc::write(2, text.as_ptr().cast(), text.len());
            };
            say(b"trc: fatal ");
            say(fault_name(sig));
            say(b" (a bug in trc): killing every task\n");
            for slot in &GROUPS {
                let pgid = slot.load(Ordering::SeqCst);
                if pgid > 0 {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            // Orphans trc adopted as a subreaper are not killed here: finding them means
            // reading /proc, which a signal handler cannot do. As PID 1 the kernel kills
            // every process of the namespace when trc dies.
        }
        // Die of the signal with its default action. The signal is blocked while this handler
        // runs, so the raised one is delivered as it returns; a real fault would also come
        // back at once. As PID 1, the kernel drops the raised one (PID 1 gets no default
        // action from a sender), but not the fault when the instruction runs again.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &default, std::ptr::null_mut());
        libc::raise(sig);
        *libc::__errno_location() = errno;
    }
}

fn fault_name(sig: libc::c_int) -> &'static [u8] {
    match sig {
        libc::SIGILL => b"SIGILL",
        libc::SIGTRAP => b"SIGTRAP",
        libc::SIGBUS => b"SIGBUS",
        libc::SIGFPE => b"SIGFPE",
        libc::SIGSEGV => b"SIGSEGV",
        libc::SIGSYS => b"SIGSYS",
        _ => b"signal",
    }
}

/// Every signal the event loop acts on, as one stream: the `watched` signals through
/// signal-hook, and the fault signals sent with kill(2), which signal-hook refuses to handle,
/// through the pipe their own handler writes to.
pub struct Watch {
    signals: Signals,
    faults: pipe::Receiver,
}

impl Watch {
    /// Installs every handler. Must run inside the event loop's runtime.
    pub fn new(watched: &[i32]) -> std::io::Result<Watch> {
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let faults = pipe::Receiver::from_owned_fd(read)?;
        // The write end stays open for the life of trc: the handler may write at any time.
        FAULT_PIPE.store(write.into_raw_fd(), Ordering::SeqCst);
        install_fault_handlers()?;
        Ok(Watch { signals: Signals::new(watched)?, faults })
    }
}

impl futures_core::Stream for Watch {
    type Item = libc::c_int;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<libc::c_int>> {
        let this = self.get_mut();
        if let Poll::Ready(sig) = Pin::new(&mut this.signals).poll_next(cx) {
            return Poll::Ready(sig);
        }
        loop {
            let Poll::Ready(Ok(())) = this.faults.poll_read_ready(cx) else {
                return Poll::Pending;
            };
            let mut byte = [0u8; 1];
            match this.faults.try_read(&mut byte) {
                Ok(1) => return Poll::Ready(Some(libc::c_int::from(byte[0]))),
                // Not ready after all (the readiness is cleared): poll again to be woken.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => continue,
                // End of file or an error: cannot happen while trc holds the write end.
                Ok(_) | Err(_) => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    #[test]
    fn groups_are_tracked_until_their_leader_is_reaped() {
        let _forks = crate::fork_lock();
        let tracked = |g: i32| GROUPS.iter().any(|slot| slot.load(Ordering::SeqCst) == g);
        track_group(999_991);
        track_group(999_992);
        assert!(tracked(999_991) && tracked(999_992));
        untrack_group(999_991);
        assert!(!tracked(999_991) && tracked(999_992));
        untrack_group(999_992);
        assert!(!tracked(999_992));
    }

    /// The fault handler in a forked child, which stands for trc: a SIGILL sent with kill(2)
    /// is handed to the (absent) loop and kills nothing; then a SIGSEGV that the kernel would
    /// send for a real fault (`si_code` SEGV_MAPERR, which a process may only give itself)
    /// SIGKILLs the tracked task group and the child dies of SIGSEGV.
    #[test]
    fn a_real_fault_kills_every_task_group_and_then_trc() {
        let _forks = crate::fork_lock();
        let mut task = std::process::Command::new("sleep").arg("100").process_group(0).spawn().unwrap();
        let pgid = task.id() as i32;
        let devnull = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: the child makes only async-signal-safe calls (dup2, prctl, sigaction, kill,
        // the system calls of the handler, _exit) before it dies.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
        if child == 0 {
            // SAFETY: see above.
            unsafe {
                use std::os::fd::AsRawFd;
                libc::dup2(devnull.as_raw_fd(), 2);
                libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
                if install_fault_handlers().is_err() {
                    libc::_exit(90);
                }
                track_group(pgid);
                libc::kill(libc::getpid(), libc::SIGILL);
                if libc::kill(-pgid, 0) != 0 {
                    libc::_exit(91);
                }
                let mut info: libc::siginfo_t = std::mem::zeroed();
                info.si_signo = libc::SIGSEGV;
                info.si_code = 1; // SEGV_MAPERR
                libc::syscall(
                    libc::SYS_rt_tgsigqueueinfo,
                    libc::getpid(),
                    libc::syscall(libc::SYS_gettid),
                    libc::SIGSEGV,
                    &info as *const libc::siginfo_t,
                );
                libc::_exit(92);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        let killed_by = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
        let exited = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        if killed_by.is_none() {
            let _ = task.kill();
        }
        assert_eq!(killed_by, Some(libc::SIGSEGV), "the child exited with {exited:?}");
        assert_eq!(task.wait().unwrap().signal(), Some(libc::SIGKILL), "the task group was not killed");
    }
}
