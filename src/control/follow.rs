//! `logs -f` must not outlive its reader. A follower blocked reading its source (trc's socket,
//! or ssh) for a task that has gone quiet would only notice a closed stdout when the next line
//! fails to write: `trcctl logs -f web | head -1` would hang, and a remote follower left behind
//! by a dropped ssh connection would hold one of trc's follower slots. So the follower waits
//! with poll(2) on its source and on its stdout at once: a pipe whose reader went away, a
//! socket closed by its peer or a terminal hung up reports POLLERR or POLLHUP with no events
//! asked for (a regular file or /dev/null reports nothing, and is never "gone").

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, BorrowedFd};

/// What ended a [`wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The source can be read: data, its end, or an error (the read says which).
    Input,
    /// Our stdout's reader is gone: nothing the follower reads could be shown.
    OutputGone,
}

/// Waits until `source` can be read or this process's stdout is gone, whichever comes first.
/// A caller reading `source` through a buffer waits only when the buffer is empty.
pub fn wait(source: BorrowedFd<'_>) -> std::io::Result<Wake> {
    let stdout = std::io::stdout();
    let gone = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
    loop {
        let mut fds =
            [PollFd::new(source, PollFlags::POLLIN), PollFd::new(stdout.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[1].revents().is_some_and(|r| r.intersects(gone)) {
            return Ok(Wake::OutputGone);
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(Wake::Input);
        }
    }
}
