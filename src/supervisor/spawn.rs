//! Fork and exec, alone in this file. A task's process gets its own process group, default
//! signal dispositions, an empty signal mask, only fds 0-2 and (for the trailing command on a
//! terminal) the terminal's foreground.
//!
//! The parent never waits for the child: an exec error comes back through a pipe that the
//! supervisor reads once it has reaped the child ([`ExecReport`]). A child spawned with `hold`
//! waits for its [`GoSignal`] before it execs (the trailing command, which writes to trc's own
//! stdout, must not write before trc's "Launching" line is out). All signals are blocked
//! around the fork, so no handler of trc's ever runs in the child. trc never waits on a
//! specific child here: all reaping is `waitpid(-1)` in `reap.rs`.

use nix::unistd::{ForkResult, Pid};
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What to run and how.
#[derive(Debug, Default)]
pub struct SpawnSpec {
    /// A path, or a name looked up in `$PATH`.
    pub program: OsString,
    /// `argv[1..]`.
    pub args: Vec<OsString>,
    /// Variables set on top of trc's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// stdin from /dev/null (async tasks) instead of trc's own.
    pub stdin_null: bool,
    /// Make the child's process group the foreground group of the terminal on stdin.
    pub foreground: bool,
    /// The child's stdout and stderr (trc's own when `None`).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The child waits for [`Spawned::go`] before it execs.
    pub hold: bool,
}

/// A forked child.
pub struct Spawned {
    pub pid: Pid,
    /// With `hold`: lets the child exec.
    pub go: Option<GoSignal>,
    pub exec_report: ExecReport,
}

/// Lets a held child exec; dropped without [`GoSignal::release`], the child exits with 127
/// without running anything.
#[derive(Debug)]
pub struct GoSignal(OwnedFd);

impl GoSignal {
    pub fn release(self) {
        let _ = nix::unistd::write(&self.0, b"g");
    }
}

/// The child's word on its exec: nothing (end of file) when exec succeeded, its errno when it
/// failed.
#[derive(Debug)]
pub struct ExecReport(OwnedFd);

impl ExecReport {
    /// The exec error, if there was one. Never blocks; call it once the child has been reaped
    /// (its report is complete then).
    pub fn take(&self) -> Option<io::Error> {
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            match nix::unistd::read(&self.0, &mut errno[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        (got == errno.len()).then(|| io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
    }
}

/// Forks the child that will run `spec`. It is the leader of a new process group by the time
/// this returns.
pub fn spawn(spec: &SpawnSpec) -> io::Result<Spawned> {
    // Everything the child needs is made before the fork: it must not allocate.
    let path = resolve(&spec.program)?;
    let path = cstring(path.as_os_str())?;
    let mut argv = vec![cstring(&spec.program)?];
    for arg in &spec.args {
        argv.push(cstring(arg)?);
    }
    let envp = environment(&spec.env)?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    let devnull = if spec.stdin_null { Some(OwnedFd::from(std::fs::File::open("/dev/null")?)) } else { None };
    let go = if spec.hold { Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?) } else { None };
    let (err_read, err_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // The child's end blocks: its one write must not fail.
    nix::fcntl::fcntl(&err_write, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()))?;
    let foreground = spec.foreground;

    // Every signal blocked across the fork: the child must not run trc's handlers (they would
    // write into trc's own signal pipes) before it has reset them.
    let all = nix::sys::signal::SigSet::all();
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut old))?;
    // SAFETY: in the child we only make async-signal-safe system calls on memory prepared
    // before the fork, then exec or _exit; no allocation, no locks.
    let forked = unsafe { nix::unistd::fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        let _ =
            nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    match forked? {
        ForkResult::Child => unsafe {
            let code = child(
                foreground,
                [
                    devnull.as_ref().map(|fd| fd.as_raw_fd()),
                    spec.stdout.as_ref().map(|fd| fd.as_raw_fd()),
                    spec.stderr.as_ref().map(|fd| fd.as_raw_fd()),
                ],
                go.as_ref().map_or(-1, |(read, _)| read.as_raw_fd()),
                path.as_ptr(),
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            );
            let errno = *libc::__errno_location();
            libc::write(err_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
            libc::_exit(code)
        },
        ForkResult::Parent { child } => {
            // Also here, so the group exists whichever process runs first.
            let _ = nix::unistd::setpgid(child, child);
            super::signals::track_group(child.as_raw());
            let go = go.map(|(read, write)| {
                drop(read);
                GoSignal(write)
            });
            drop((err_write, devnull));
            Ok(Spawned { pid: child, go, exec_report: ExecReport(err_read) })
        }
    }
}

/// The child's side, between fork and exec. Returns the exit status to use if exec fails.
///
/// # Safety
/// Called only in the freshly forked child, with pointers that stay valid until exec.
unsafe fn child(
    foreground: bool,
    stdio: [Option<i32>; 3],
    go: i32,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> i32 {
    // SAFETY: plain system calls on our own process (see `spawn`).
    unsafe {
        libc::setpgid(0, 0);
        for (target, fd) in stdio.into_iter().enumerate() {
            if let Some(fd) = fd {
                libc::dup2(fd, target as i32);
            }
        }
        if foreground {
            // A background process group that calls tcsetpgrp gets SIGTTOU unless it blocks it.
            let mut ttou: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut ttou);
            libc::sigaddset(&mut ttou, libc::SIGTTOU);
            libc::sigprocmask(libc::SIG_BLOCK, &ttou, std::ptr::null_mut());
            libc::tcsetpgrp(0, libc::getpid());
        }
        // Default dispositions for every signal, 1 to SIGRTMAX included: trc ignores some, and
        // may itself have been started with others ignored (glibc's posix_spawn leaves 32 and
        // 33 ignored); an ignored signal stays ignored across exec.
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                reset_disposition(sig);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Wait for the parent's word when held (EOF means: do not run at all).
        let mut byte = 0u8;
        if go >= 0 {
            loop {
                let n = libc::read(go, (&mut byte as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n == 0 || *libc::__errno_location() != libc::EINTR {
                    libc::_exit(127);
                }
            }
        }
        // Only fds 0-2 survive exec: mark every other one close-on-exec.
        let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_long;
        if libc::syscall(libc::SYS_close_range, 3 as libc::c_long, libc::c_long::from(u32::MAX), flags) != 0 {
            let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(1024, 65536) as libc::c_int;
            for fd in 3..max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        libc::execve(path, argv, envp);
        match *libc::__errno_location() {
            libc::ENOENT | libc::ENOTDIR => 127,
            _ => 126,
        }
    }
}

/// The kernel's `struct sigaction`, as the `rt_sigaction` system call takes it.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets `sig` to its default action with the `rt_sigaction` system call itself: glibc's
/// `signal()` and `sigaction()` refuse signals 32 and 33, which it reserves for its threads.
/// An all-zero action is SIG_DFL with no flags and an empty mask whatever the order of the
/// fields on the architecture (those without `sa_restorer` read the mask from its place).
///
/// # Safety
/// Only a system call on stack memory: async-signal-safe, fit for the child between fork
/// and exec.
unsafe fn reset_disposition(sig: libc::c_int) {
    let action = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: `action` lives across the call; the kernel only reads it (no old action asked
    // for); 8 is the size of the kernel's signal set.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            libc::c_long::from(sig),
            &action as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8 as libc::c_long,
        );
    }
}

/// Finds the program as `execvp` would: a name with a slash is a path, else the first
/// executable file of that name in `$PATH`.
fn resolve(program: &OsStr) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    find_in_path(program).ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{}: command not found", program.to_string_lossy()))
    })
}

/// The first executable file named `name` in `$PATH`.
pub fn find_in_path(name: &OsStr) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable_file(p))
}

pub fn is_executable_file(path: &Path) -> bool {
    path.is_file() && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// trc's environment with `overrides` applied (later entries win), as `KEY=VALUE` strings.
fn environment(overrides: &[(OsString, OsString)]) -> io::Result<Vec<CString>> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (key, value) in overrides {
        match vars.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => vars.push((key.clone(), value.clone())),
        }
    }
    vars.iter()
        .map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            CString::new(entry).map_err(|_| nul_error(k))
        })
        .collect()
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| nul_error(s))
}

fn nul_error(s: &OsStr) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{:?} contains a NUL byte", s))
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}
