//! Fork and exec, alone in this file. A task's process gets its own process group, default
//! signal dispositions, an empty signal mask, only fds 0-2 and (for the trailing command on a
//! terminal) the terminal's foreground.
//!
//! Nothing here waits for the child. [`spawn`] forks and returns at once with the pid:
//! - with [`SpawnSpec::hold`], the child waits for [`GoSignal::release`] before it execs, so
//!   that trc can log "Launching ... [async/PID]" with the real pid before the task can write
//!   anything (TrivialRC's order); a `GoSignal` dropped unreleased makes it `_exit(127)`
//!   without running anything;
//! - without it, the child execs at once.
//!
//! Either way an exec that fails is reported through [`ExecReport`]: the child writes its errno
//! and the step that failed (the exec, or one of the [`Context`]'s: limits, nice, groups,
//! uid, cwd) into a close-on-exec pipe and exits 127 (not found) or 126. By the time the reaper
//! has collected the child, the pipe holds those 8 bytes, or nothing (exec succeeded), so
//! [`ExecReport::take`] never has to wait. All reaping is `waitpid(-1)` in `reap.rs`.
//!
//! The [`Context`] (a task's `user:`, `group:`, `cwd:`, `umask:`, `nice:`, `limit-*:`) is
//! applied in the child in this order: resource limits (while still privileged, so hard limits
//! may be raised), nice, umask, supplementary groups, gid, uid, then the working directory (as
//! the task's user: it must be allowed in).
//!
//! Signals: every signal (32 and 33 included) is blocked in the parent around the fork, and
//! the child sets every disposition to the default before it unblocks any. So none of trc's
//! handlers (signal-hook's self-pipe, the fault handler) ever runs in the child: a signal sent
//! to it in that window waits, and then has its default action on the child alone.
//!
//! A task never outlives a trc that dies suddenly (SIGKILL, the OOM killer): the child asks
//! for SIGKILL on its parent's death (`PR_SET_PDEATHSIG`) before it unblocks signals, then
//! checks that its parent is still the trc that forked it (which may have died before the
//! request was made) and `_exit`s at once if not. SIGKILL, not the task's stop signal: a dead
//! supervisor cannot follow a stop signal that is trapped or ignored with a SIGKILL after the
//! stop-timeout. The request reaches the task's leader only (the kernel clears it in the
//! leader's children, and at the exec of a set-user-ID program): what the leader started is
//! found through the runtime dir by the next trc of the instance (`leftovers.rs`).

use nix::unistd::Pid;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What to run and how.
#[derive(Debug, Default)]
pub struct SpawnSpec {
    /// A path, or a name looked up in `$PATH`.
    pub program: OsString,
    /// argv[0] when not `program` (a shell task's process title).
    pub arg0: Option<OsString>,
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
    /// An fd the child gets as this number (`ready: fd N`: the write end of its readiness
    /// pipe). 3 or more.
    pub extra_fd: Option<(OwnedFd, i32)>,
    /// Who and where it runs as.
    pub context: Context,
}

/// A task's execution context, applied between fork and exec.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Context {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Supplementary groups (set whenever `uid` or `gid` is).
    pub groups: Vec<u32>,
    pub cwd: Option<PathBuf>,
    pub umask: Option<u32>,
    pub nice: Option<i32>,
    pub limits: Vec<crate::config::context::Limit>,
}

/// The steps of the child that can fail, as reported with their errno.
const STEP_EXEC: u32 = 0;
const STEP_NICE: u32 = 2;
const STEP_GROUPS: u32 = 3;
const STEP_GID: u32 = 4;
const STEP_UID: u32 = 5;
const STEP_CWD: u32 = 6;
/// A resource limit that failed: this plus its resource number (so the message names it).
const STEP_LIMIT_OF: u32 = 0x100;

/// What failed in the child before (or at) its exec.
#[derive(Debug)]
pub struct ChildError {
    pub error: io::Error,
    /// The exec itself failed (not a step of the context before it).
    pub at_exec: bool,
    step: u32,
}

impl std::fmt::Display for ChildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(resource) = self.step.checked_sub(STEP_LIMIT_OF) {
            let key = crate::config::context::limit_key(resource);
            return write!(f, "cannot set its resource limit {key}: {}", self.error);
        }
        let step = match self.step {
            STEP_NICE => "cannot set its nice value: ",
            STEP_GROUPS => "cannot set its groups: ",
            STEP_GID => "cannot set its group: ",
            STEP_UID => "cannot set its user: ",
            STEP_CWD => "cannot enter its cwd: ",
            _ => "",
        };
        write!(f, "{step}{}", self.error)
    }
}

/// A forked child: the leader of its own process group by the time [`spawn`] returns.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    /// Lets a held child exec (`Some` only with [`SpawnSpec::hold`]).
    pub go: Option<GoSignal>,
    /// Whether exec failed; read it once the child has been reaped.
    pub exec_report: ExecReport,
}

/// The word a held child waits for. Dropping it unreleased makes the child `_exit(127)`
/// without running anything.
#[derive(Debug)]
pub struct GoSignal(OwnedFd);

impl GoSignal {
    /// Lets the child exec. Never blocks (one byte into an empty pipe); an error (the child is
    /// gone already) is ignored: the reaper reports the child as usual.
    pub fn release(self) {
        let _ = nix::unistd::write(&self.0, b"g");
    }
}

/// The parent's end of the pipe on which the child reports a failed exec (non-blocking).
#[derive(Debug)]
pub struct ExecReport(OwnedFd);

impl ExecReport {
    /// The error of a failed exec (or of a step before it), if the child reported one. Never
    /// blocks: call it after the child has been reaped, when the report (if any) is complete.
    /// Before that, `None` can also mean "not known yet". The report is consumed: a second
    /// call gives `None`.
    pub fn take(&self) -> Option<ChildError> {
        let mut report = [0u8; 8];
        let mut got = 0;
        while got < report.len() {
            match nix::unistd::read(&self.0, &mut report[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => continue,
                // EAGAIN: no report (yet).
                Err(_) => break,
            }
        }
        // 8 bytes into a pipe are written at once: all or nothing.
        if got != report.len() {
            return None;
        }
        let errno = i32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
        let step = u32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
        Some(ChildError { error: io::Error::from_raw_os_error(errno), at_exec: step == STEP_EXEC, step })
    }
}

/// Readable once the child has exec'd (end of file) or reported a failure (4 bytes): an
/// event loop may watch it to learn of a failed exec before the child is reaped.
impl AsFd for ExecReport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Forks the child that will run `spec`; see the module's comment.
pub fn spawn(spec: &SpawnSpec) -> io::Result<Spawned> {
    let prepared = Prepared::new(spec)?;
    let pid = fork_child(&prepared.plan())?;
    Ok(prepared.parent(pid))
}

/// Everything the child needs, made before the fork (the child must not allocate), and the
/// parent's ends of the pipes.
struct Prepared<'a> {
    spec: &'a SpawnSpec,
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    devnull: Option<OwnedFd>,
    /// (read end for the child, write end for the parent).
    go: Option<(OwnedFd, OwnedFd)>,
    /// (read end for the parent, write end for the child).
    report: (OwnedFd, OwnedFd),
    groups: Vec<libc::gid_t>,
    cwd: Option<CString>,
    limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
}

/// What the child does, in plain values and pointers into a [`Prepared`].
struct ChildPlan {
    foreground: bool,
    stdio: [Option<i32>; 3],
    go: Option<i32>,
    report: i32,
    /// (the fd, the number it must have).
    extra: Option<(i32, i32)>,
    /// The context: -1 or null where not set.
    uid: i64,
    gid: i64,
    set_groups: bool,
    groups: *const libc::gid_t,
    groups_len: usize,
    cwd: *const libc::c_char,
    umask: i64,
    nice: Option<i32>,
    limits: *const (libc::__rlimit_resource_t, libc::rlimit),
    limits_len: usize,
    sigrtmax: i32,
    /// trc's pid, to check after `PR_SET_PDEATHSIG` that trc has not died already.
    parent: libc::pid_t,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
}

impl<'a> Prepared<'a> {
    fn new(spec: &'a SpawnSpec) -> io::Result<Prepared<'a>> {
        use nix::fcntl::OFlag;
        let path = resolve(&spec.program)?;
        let path = cstring(path.as_os_str())?;
        let mut argv = vec![cstring(spec.arg0.as_ref().unwrap_or(&spec.program))?];
        for arg in &spec.args {
            argv.push(cstring(arg)?);
        }
        let envp = environment(&spec.env)?;
        let devnull =
            if spec.stdin_null { Some(OwnedFd::from(std::fs::File::open("/dev/null")?)) } else { None };
        let go = if spec.hold { Some(nix::unistd::pipe2(OFlag::O_CLOEXEC)?) } else { None };
        // Non-blocking: the parent reads it without waiting; 4 bytes into an empty pipe are
        // never refused.
        let report = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let context = &spec.context;
        let cwd = context.cwd.as_ref().map(|p| cstring(p.as_os_str())).transpose()?;
        let limits = context
            .limits
            .iter()
            .map(|l| (l.resource, libc::rlimit { rlim_cur: l.soft, rlim_max: l.hard }))
            .collect();
        Ok(Prepared {
            groups: context.groups.clone(),
            cwd,
            limits,
            spec,
            path,
            argv_ptrs: null_terminated(&argv),
            envp_ptrs: null_terminated(&envp),
            _argv: argv,
            _envp: envp,
            devnull,
            go,
            report,
        })
    }

    /// The child's plan; its pointers are valid while `self` lives.
    fn plan(&self) -> ChildPlan {
        let raw = |fd: &Option<OwnedFd>| fd.as_ref().map(|fd| fd.as_raw_fd());
        ChildPlan {
            foreground: self.spec.foreground,
            stdio: [raw(&self.devnull), raw(&self.spec.stdout), raw(&self.spec.stderr)],
            go: self.go.as_ref().map(|(read, _)| read.as_raw_fd()),
            report: self.report.1.as_raw_fd(),
            extra: self.spec.extra_fd.as_ref().map(|(fd, target)| (fd.as_raw_fd(), *target)),
            uid: self.spec.context.uid.map_or(-1, i64::from),
            gid: self.spec.context.gid.map_or(-1, i64::from),
            set_groups: self.spec.context.uid.is_some() || self.spec.context.gid.is_some(),
            groups: self.groups.as_ptr(),
            groups_len: self.groups.len(),
            cwd: self.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            umask: self.spec.context.umask.map_or(-1, i64::from),
            nice: self.spec.context.nice,
            limits: self.limits.as_ptr(),
            limits_len: self.limits.len(),
            sigrtmax: libc::SIGRTMAX(),
            parent: std::process::id() as libc::pid_t,
            path: self.path.as_ptr(),
            argv: self.argv_ptrs.as_ptr(),
            envp: self.envp_ptrs.as_ptr(),
        }
    }

    /// The parent's side once the child exists: closes the child's ends of the pipes.
    fn parent(self, pid: Pid) -> Spawned {
        // Also here, so the group exists whichever process runs first (an error means the
        // child has exec'd or exited already, after its own setpgid).
        let _ = nix::unistd::setpgid(pid, pid);
        super::signals::track_group(pid.as_raw());
        let (report, _child_end) = self.report;
        Spawned { pid, go: self.go.map(|(_child_end, go)| GoSignal(go)), exec_report: ExecReport(report) }
    }
}

/// Forks with every signal blocked, so that no handler of trc's runs in the child before it
/// has reset them; the parent's mask is restored right after.
fn fork_child(plan: &ChildPlan) -> io::Result<Pid> {
    let old = set_signal_mask(!0);
    // SAFETY: the child runs only `run_child`, which makes async-signal-safe system calls on
    // memory prepared before the fork and then execs or `_exit`s: no allocation, no locks.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the freshly forked child; `plan` points into memory that stays valid
        // (our copy of the parent's) until exec.
        unsafe { run_child(plan) }
    }
    let result = if pid < 0 { Err(io::Error::last_os_error()) } else { Ok(Pid::from_raw(pid)) };
    set_signal_mask(old);
    result.map_err(|e| io::Error::new(e.kind(), format!("fork: {e}")))
}

/// Sets the calling thread's signal mask with the system call itself, and returns the old one.
/// glibc's `sigprocmask` leaves out signals 32 and 33 (its own); the kernel's takes all 64.
fn set_signal_mask(mask: u64) -> u64 {
    let mut old: u64 = 0;
    // SAFETY: both sets live across the call; 8 is the size of the kernel's signal set on the
    // architectures trc is built for (64 signals).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::c_long::from(libc::SIG_SETMASK),
            &mask as *const u64,
            &mut old as *mut u64,
            8 as libc::c_long,
        );
    }
    old
}

/// The child's side, between fork and exec; it never returns.
///
/// # Safety
/// Called only in a freshly forked child (every signal blocked), with a plan whose pointers
/// stay valid until exec.
unsafe fn run_child(plan: &ChildPlan) -> ! {
    // SAFETY: plain system calls on our own process and on memory prepared before the fork.
    unsafe {
        // Default dispositions for every signal, 1 to SIGRTMAX included: trc handles or
        // ignores some, and may itself have been started with others ignored (glibc's
        // posix_spawn leaves 32 and 33 ignored); an ignored signal stays ignored across exec.
        // All are still blocked, so none of trc's handlers can run here.
        for sig in 1..=plan.sigrtmax {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                reset_disposition(sig);
            }
        }
        libc::setpgid(0, 0);
        // Die with trc (see the module's comment). The kernel sends it when the parent
        // *thread* exits: trc forks only from its main thread (the event loop), which lives
        // as long as trc. A trc that died before this call left us to another parent already:
        // then nobody supervises us, and we must not run.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != plan.parent {
            libc::_exit(127);
        }
        for (target, fd) in plan.stdio.into_iter().enumerate() {
            if let Some(fd) = fd {
                libc::dup2(fd, target as i32);
            }
        }
        if plan.foreground {
            // Allowed from a background group because SIGTTOU is blocked (still all are).
            libc::tcsetpgrp(0, libc::getpid());
        }
        let (mut go, mut report) = (plan.go, plan.report);
        if let Some((fd, target)) = plan.extra {
            // The pipe ends we still need move out of the target's way first (to numbers above
            // it, close-on-exec as before).
            if go == Some(target) {
                go = Some(libc::fcntl(target, libc::F_DUPFD_CLOEXEC, target + 1));
            }
            if report == target {
                report = libc::fcntl(target, libc::F_DUPFD_CLOEXEC, target + 1);
            }
            if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else {
                libc::dup2(fd, target);
            }
        }
        // Only fds 0-2 (and the extra one) survive: the two pipe ends we still need are
        // close-on-exec. Closing the rest now (not only at exec) also drops our copies of the
        // write ends of other children's go pipes, whose end of file must not wait for us.
        close_fds_except(&mut [go.unwrap_or(report), report, plan.extra.map_or(report, |(_, t)| t)]);
        set_signal_mask(0);
        if let Some(go) = go {
            // Wait for the parent's word (end of file: the parent dropped it, do not run).
            let mut byte = 0u8;
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
        if let Err(step) = apply_context(plan) {
            fail(report, step);
        }
        libc::execve(plan.path, plan.argv, plan.envp);
        fail(report, STEP_EXEC)
    }
}

/// Reports the errno of `step` on the report pipe and exits (127 for a program not found).
///
/// # Safety
/// Only system calls: fit for the child between fork and exec.
unsafe fn fail(report: i32, step: u32) -> ! {
    // SAFETY: plain system calls on our own fds; the buffer lives on our stack.
    unsafe {
        let errno = *libc::__errno_location();
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&errno.to_ne_bytes());
        bytes[4..].copy_from_slice(&step.to_ne_bytes());
        libc::write(report, bytes.as_ptr().cast(), 8);
        libc::_exit(match (step, errno) {
            (STEP_EXEC, libc::ENOENT | libc::ENOTDIR) => 127,
            _ => 126,
        })
    }
}

/// Applies the task's context (see the module's comment for the order); `Err` is the step
/// that failed, with errno set.
///
/// # Safety
/// Only system calls on memory prepared before the fork: fit for the child.
unsafe fn apply_context(plan: &ChildPlan) -> Result<(), u32> {
    // SAFETY: plain system calls; the pointers come from a `Prepared` that outlives the child's
    // use of them (our copy of the parent's memory).
    unsafe {
        for i in 0..plan.limits_len {
            let (resource, limit) = &*plan.limits.add(i);
            if libc::setrlimit(*resource, limit) != 0 {
                return Err(STEP_LIMIT_OF + *resource);
            }
        }
        if let Some(nice) = plan.nice {
            if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                return Err(STEP_NICE);
            }
        }
        if plan.umask >= 0 {
            libc::umask(plan.umask as libc::mode_t);
        }
        if plan.set_groups && libc::setgroups(plan.groups_len, plan.groups) != 0 {
            return Err(STEP_GROUPS);
        }
        if plan.gid >= 0 && libc::setgid(plan.gid as libc::gid_t) != 0 {
            return Err(STEP_GID);
        }
        if plan.uid >= 0 && libc::setuid(plan.uid as libc::uid_t) != 0 {
            return Err(STEP_UID);
        }
        if !plan.cwd.is_null() && libc::chdir(plan.cwd) != 0 {
            return Err(STEP_CWD);
        }
    }
    Ok(())
}

/// Closes every fd from 3 up but those of `keep` (sorted in place; no allocation).
///
/// # Safety
/// Only system calls: async-signal-safe, fit for the child between fork and exec.
unsafe fn close_fds_except(keep: &mut [i32; 3]) {
    keep.sort_unstable();
    let [a, b, c] = *keep;
    // SAFETY: close_range and close only act on our own fd table.
    unsafe {
        for (first, last) in [(3, a - 1), (a + 1, b - 1), (b + 1, c - 1), (c + 1, i32::MAX)] {
            let first = first.max(3);
            if first > last {
                continue;
            }
            if libc::syscall(libc::SYS_close_range, first as libc::c_uint, last as libc::c_uint, 0u32) != 0 {
                // Before Linux 5.9: one by one, up to the usual limit.
                let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(1024, 65536) as i32;
                for fd in first..=last.min(max) {
                    libc::close(fd);
                }
            }
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
    crate::fsutil::find_in_path(program).ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{}: command not found", program.to_string_lossy()))
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::io::Read;
    use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

    fn spec(program: &str, args: &[&str]) -> SpawnSpec {
        SpawnSpec {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            stdin_null: true,
            ..SpawnSpec::default()
        }
    }

    /// Waits for our own child (never another test's) and forgets its group.
    fn reap(pid: Pid) -> WaitStatus {
        let status = waitpid(pid, None).expect("waitpid");
        super::super::signals::untrack_group(pid.as_raw());
        status
    }

    /// A pipe whose write end becomes the child's stdout.
    fn stdout_pipe(spec: &mut SpawnSpec) -> std::fs::File {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        spec.stdout = Some(write);
        std::fs::File::from(read)
    }

    /// The one-letter state in /proc/PID/stat.
    fn state(pid: Pid) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()).unwrap_or('?')
    }

    #[test]
    fn a_failed_exec_is_reported_with_its_errno_and_status() {
        let _forks = crate::fork_lock();
        for (program, errno, status) in
            [("/nonexistent/trc-test", libc::ENOENT, 127), ("/", libc::EACCES, 126)]
        {
            let spawned = spawn(&spec(program, &[])).unwrap();
            assert!(spawned.go.is_none());
            assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, status), "{program}");
            let error = spawned.exec_report.take().expect("an exec error");
            assert_eq!(
                (error.error.raw_os_error(), error.at_exec),
                (Some(errno), true),
                "{program}: {error}"
            );
            assert!(spawned.exec_report.take().is_none(), "the report is taken once");
        }
        // A step of the context that fails is reported as that step, with status 126.
        let mut bad_cwd = spec("/bin/true", &[]);
        bad_cwd.context.cwd = Some("/nonexistent/trc-test-dir".into());
        let spawned = spawn(&bad_cwd).unwrap();
        assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, 126));
        let error = spawned.exec_report.take().expect("a cwd error");
        assert!(!error.at_exec);
        assert_eq!(error.to_string(), "cannot enter its cwd: No such file or directory (os error 2)");
        // A limit the kernel refuses (even to root: open files past fs.nr_open) is named.
        let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
        let mut bad_limit = spec("/bin/true", &[]);
        let limit =
            crate::config::context::Limit { resource: libc::RLIMIT_NOFILE, soft: 64, hard: nr_open + 1 };
        bad_limit.context.limits = vec![limit];
        let spawned = spawn(&bad_limit).unwrap();
        assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, 126));
        let error = spawned.exec_report.take().expect("a limit error");
        assert!(error.to_string().starts_with("cannot set its resource limit limit-nofile: "), "{error}");
        // A name not in $PATH fails before the fork.
        let error = spawn(&spec("trc-test-no-such-program", &[])).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn without_hold_the_child_runs_at_once() {
        let _forks = crate::fork_lock();
        let mut spec = spec("sh", &["-c", "echo ran; exit 7"]);
        let mut out = stdout_pipe(&mut spec);
        let spawned = spawn(&spec).unwrap();
        drop(spec);
        assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, 7));
        assert!(spawned.exec_report.take().is_none());
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        assert_eq!(text, "ran\n");
    }

    #[test]
    fn a_held_child_runs_only_once_released() {
        let _forks = crate::fork_lock();
        let mut spec = spec("sh", &["-c", "echo ran"]);
        spec.hold = true;
        let mut out = stdout_pipe(&mut spec);
        let spawned = spawn(&spec).unwrap();
        drop(spec);
        // Asleep waiting for its word, and still this test's program.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while state(spawned.pid) != 'S' {
            assert!(std::time::Instant::now() < deadline, "the held child never waited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let exe = std::fs::read_link(format!("/proc/{}/exe", spawned.pid)).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap(), "the held child has exec'd");
        spawned.go.unwrap().release();
        assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, 0));
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        assert_eq!(text, "ran\n");
        assert!(spawned.exec_report.take().is_none());
    }

    #[test]
    fn a_held_child_whose_go_is_dropped_exits_127_without_running() {
        let _forks = crate::fork_lock();
        let mut spec = spec("sh", &["-c", "echo ran"]);
        spec.hold = true;
        let mut out = stdout_pipe(&mut spec);
        let spawned = spawn(&spec).unwrap();
        drop(spec);
        drop(spawned.go);
        assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, 127));
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        assert_eq!(text, "", "the child ran");
        assert!(spawned.exec_report.take().is_none());
    }

    /// Times the parent's handler of SIGUSR1 ran in this process.
    static USR1_HERE: AtomicUsize = AtomicUsize::new(0);
    /// The write end of a pipe the handler writes to, as signal-hook's self-pipe does: a
    /// handler that ran in a child would show there.
    static USR1_PIPE: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn count_usr1(_: libc::c_int) {
        USR1_HERE.fetch_add(1, Ordering::SeqCst);
        let fd = USR1_PIPE.load(Ordering::SeqCst);
        // SAFETY: write(2) of one byte from a static: async-signal-safe.
        unsafe { libc::write(fd, b"u".as_ptr().cast(), 1) };
    }

    #[test]
    fn a_signal_sent_to_the_child_right_after_the_fork_never_runs_a_handler_of_the_parent() {
        let _forks = crate::fork_lock();
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        USR1_PIPE.store(std::os::fd::IntoRawFd::into_raw_fd(write), Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is valid; the handler only makes async-signal-safe calls.
        // No other test of this binary uses SIGUSR1.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = count_usr1 as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
        }
        // Many times, to hit the child early, before it has reset its dispositions.
        for _ in 0..200 {
            let mut spec = spec("true", &[]);
            spec.hold = true;
            let spawned = spawn(&spec).unwrap();
            nix::sys::signal::kill(spawned.pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
            // The child dies of it (default action) before it reads its word: had a handler
            // taken the signal, it would run `true` and exit 0.
            spawned.go.unwrap().release();
            let status = reap(spawned.pid);
            assert_eq!(status, WaitStatus::Signaled(spawned.pid, nix::sys::signal::Signal::SIGUSR1, false));
        }
        // SAFETY: back to the default action; the fd is ours.
        unsafe {
            libc::signal(libc::SIGUSR1, libc::SIG_DFL);
            libc::close(USR1_PIPE.swap(-1, Ordering::SeqCst));
        }
        assert_eq!(USR1_HERE.load(Ordering::SeqCst), 0, "the parent's handler ran in the parent");
        let mut byte = [0u8; 1];
        // End of file: nothing was written, and no child holds the write end any more.
        let in_pipe = nix::unistd::read(&read, &mut byte);
        assert_eq!(in_pipe, Ok(0), "the parent's handler ran in a child");
    }

    /// `cargo test --release --lib spawn_benchmark -- --ignored --nocapture`: 2000 spawns of
    /// /bin/true and their waitpid, held and not.
    #[test]
    #[ignore]
    fn spawn_benchmark() {
        let _forks = crate::fork_lock();
        for hold in [false, true] {
            let mut spec = spec("/bin/true", &[]);
            spec.hold = hold;
            let (start, mut in_spawn) = (std::time::Instant::now(), std::time::Duration::ZERO);
            for _ in 0..2000 {
                let call = std::time::Instant::now();
                let spawned = spawn(&spec).unwrap();
                in_spawn += call.elapsed();
                if let Some(go) = spawned.go {
                    go.release();
                }
                assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, 0));
            }
            let (per, blocked) = (start.elapsed() / 2000, in_spawn / 2000);
            println!("fork, hold={hold}: {per:?} per spawn+waitpid, {blocked:?} in spawn()");
        }
        let spec = spec("/bin/true", &[]);
        let (start, mut in_spawn) = (std::time::Instant::now(), std::time::Duration::ZERO);
        for _ in 0..2000 {
            let call = std::time::Instant::now();
            let spawned = spawn_vfork(&spec).unwrap();
            in_spawn += call.elapsed();
            assert_eq!(reap(spawned.pid), WaitStatus::Exited(spawned.pid, 0));
        }
        let (per, blocked) = (start.elapsed() / 2000, in_spawn / 2000);
        println!("clone(CLONE_VM|CLONE_VFORK): {per:?} per spawn+waitpid, {blocked:?} in spawn()");
        let start = std::time::Instant::now();
        for _ in 0..2000 {
            let status = std::process::Command::new("/bin/true").stdin(std::process::Stdio::null()).status();
            assert!(status.unwrap().success());
        }
        println!("std::process::Command (posix_spawn): {:?} per spawn+wait", start.elapsed() / 2000);
    }

    /// The same child as [`spawn`]'s, started the way posix_spawn does (the parent waits
    /// until the child has exec'd, and shares its memory until then): for the benchmark only,
    /// since a held child would never let its parent go on.
    fn spawn_vfork(spec: &SpawnSpec) -> io::Result<Spawned> {
        extern "C" fn entry(plan: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `plan` is the ChildPlan below, alive while the parent waits for us.
            unsafe { run_child(&*(plan as *const ChildPlan)) }
        }
        assert!(!spec.hold);
        let prepared = Prepared::new(spec)?;
        let plan = prepared.plan();
        let mut stack = vec![0u8; 64 * 1024];
        let old = set_signal_mask(!0);
        // SAFETY: the child runs on its own stack, makes only system calls and execs or
        // exits; the parent is suspended until then (CLONE_VFORK).
        let pid = unsafe {
            let top = stack.as_mut_ptr().add(stack.len() - 64);
            let top = top.sub(top as usize % 16);
            libc::clone(
                entry,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &plan as *const ChildPlan as *mut libc::c_void,
            )
        };
        set_signal_mask(old);
        assert!(pid > 0, "clone: {}", io::Error::last_os_error());
        Ok(prepared.parent(Pid::from_raw(pid)))
    }
}
