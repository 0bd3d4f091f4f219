//! A task's execution context: `user:`, `group:`, `cwd:`, `env:`, `env-file:`, `umask:`,
//! `nice:` and the `limit-*:` resource limits. Parsed and checked here (a user that does not
//! exist, a bad limit: an error before anything starts); `supervisor::spawn` applies them in the
//! child between fork and exec.

use std::path::{Path, PathBuf};

/// Who a task runs as: resolved when the directive is read.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAs {
    pub uid: u32,
    /// The user's primary group (or the number's own, for a bare uid).
    pub gid: u32,
    /// Supplementary groups (the user's, from `/etc/group`; none for a bare uid).
    pub groups: Vec<u32>,
    /// For a named user: `HOME`, `USER`, `LOGNAME`.
    pub name: Option<String>,
    pub home: Option<PathBuf>,
}

/// `user: NAME|UID[:GID]`.
pub fn parse_user(text: &str) -> Result<RunAs, String> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let mut run_as = if let Ok(uid) = user.parse::<u32>() {
        // A number needs no /etc/passwd (a scratch image); when it names a user, that user's
        // groups and home come along.
        match nix::unistd::User::from_uid(uid.into()) {
            Ok(Some(u)) => named(&u)?,
            _ => RunAs { uid, gid: uid, groups: Vec::new(), name: None, home: None },
        }
    } else {
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => named(&u)?,
            Ok(None) => {
                return Err(format!("no user \"{user}\" (not in /etc/passwd; a number works without it)"))
            }
            Err(e) => return Err(format!("cannot look up user \"{user}\": {e}")),
        }
    };
    if let Some(group) = group {
        run_as.gid = parse_group(group)?;
    }
    Ok(run_as)
}

fn named(u: &nix::unistd::User) -> Result<RunAs, String> {
    let name =
        std::ffi::CString::new(u.name.as_str()).map_err(|_| format!("bad user name \"{}\"", u.name))?;
    let groups = nix::unistd::getgrouplist(&name, u.gid)
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![u.gid.as_raw()]);
    Ok(RunAs {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
        name: Some(u.name.clone()),
        home: Some(u.dir.clone()),
    })
}

/// `group: NAME|GID`.
pub fn parse_group(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(text) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no group \"{text}\" (not in /etc/group; a number works without it)")),
        Err(e) => Err(format!("cannot look up group \"{text}\": {e}")),
    }
}

/// `cwd: DIR`: must be a directory now.
pub fn parse_cwd(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(format!("\"{text}\" is not a directory")),
        Err(e) => Err(format!("\"{text}\": {e}")),
    }
}

/// `env: KEY=VALUE`. A variable of trc's own ([`is_trc_own`]) is refused.
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, _)) if is_trc_own(key) => Err(format!(
            "{key} is one of trc's own variables, which trc sets for every task and no \"env:\" may set ({}, every TRC_* name)",
            TRC_OWN_VARS.join(", ")
        )),
        Some((key, value)) if is_env_name(key) => Ok((key.to_owned(), unquote(value.trim()))),
        _ => Err(format!("\"{text}\" is not KEY=VALUE (a name of letters, digits and _, then =)")),
    }
}

/// The variables trc sets for its tasks itself (with every `TRC_*` name: `TRC_TASK`,
/// `TRC_STAGE`, `TRC_LOG_PIPE`, `TRC_INSTANCE`, `TRC_EXIT_STATUS`...). A task cannot change
/// them: an `env:` line naming one is a configuration error, and an env file's line is ignored.
pub const TRC_OWN_VARS: [&str; 7] = [
    "MAINPID",
    "SELF_NAME",
    "RC_WORK_DIR",
    "RC_WAIT_POLICY",
    "RC_RUNTIME_DIR",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
];

/// Whether `key` is one of trc's own variables: [`TRC_OWN_VARS`], a `TRC_*` name, or one of
/// the `_TRC_*` names its shell prelude is called with.
pub fn is_trc_own(key: &str) -> bool {
    TRC_OWN_VARS.contains(&key) || key.starts_with("TRC_") || key.starts_with("_TRC_")
}

fn is_env_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `env-file: [-]PATH`: the path and whether it is optional (`-`). The file is read (and
/// checked) now and again at every start.
pub fn parse_env_file(text: &str) -> Result<(PathBuf, bool), String> {
    let (optional, path) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.trim()),
        None => (false, text),
    };
    if path.is_empty() {
        return Err("\"env-file:\" needs a path".to_owned());
    }
    let path = PathBuf::from(path);
    read_env_file(&path, optional)?;
    Ok((path, optional))
}

/// The variables of an env file in systemd's `EnvironmentFile=` syntax: `KEY=VALUE` lines
/// (`export ` allowed before), `#` and `;` comment lines, blank lines, values in single or
/// double quotes (double quotes take `\"`, `\\`, `\n`), a backslash at the end of a line
/// continuing it. A missing optional file is empty.
pub fn read_env_file(path: &Path, optional: bool) -> Result<Vec<(String, String)>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("env file {}: {e}", path.display())),
    };
    parse_env_text(&text).map_err(|(line, problem)| format!("env file {}:{line}: {problem}", path.display()))
}

/// The lines of an env file; the error has the 1-based line.
pub fn parse_env_text(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut vars = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let mut line = line.to_owned();
        // Continuation lines.
        while line.ends_with('\\') && !line.ends_with("\\\\") {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next),
                None => break,
            }
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").map(str::trim_start).unwrap_or(trimmed);
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err((n + 1, format!("\"{trimmed}\" is not KEY=VALUE")));
        };
        let key = key.trim();
        if !is_env_name(key) {
            return Err((n + 1, format!("\"{key}\" is not a variable name")));
        }
        vars.push((key.to_owned(), unquote(value.trim())));
    }
    Ok(vars)
}

/// A value without its quotes: `'...'` literally, `"..."` with `\"`, `\\`, `\n`, `\$` taken.
fn unquote(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        return value[1..value.len() - 1].to_owned();
    }
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        let inner = &value[1..value.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    value.to_owned()
}

/// `umask: 027` (octal).
pub fn parse_umask(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mask) if mask <= 0o777 => Ok(mask),
        _ => Err(format!("\"{text}\" is not an octal umask (write e.g. 022 or 0027)")),
    }
}

/// `nice: N`, -20 to 19.
pub fn parse_nice(text: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(n) if (-20..=19).contains(&n) => Ok(n),
        _ => Err(format!("\"{text}\" is not a nice value from -20 to 19")),
    }
}

/// The `limit-*` keys and their resources.
pub const LIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("limit-as", libc::RLIMIT_AS),
    ("limit-core", libc::RLIMIT_CORE),
    ("limit-cpu", libc::RLIMIT_CPU),
    ("limit-data", libc::RLIMIT_DATA),
    ("limit-fsize", libc::RLIMIT_FSIZE),
    ("limit-locks", libc::RLIMIT_LOCKS),
    ("limit-memlock", libc::RLIMIT_MEMLOCK),
    ("limit-msgqueue", libc::RLIMIT_MSGQUEUE),
    ("limit-nice", libc::RLIMIT_NICE),
    ("limit-nofile", libc::RLIMIT_NOFILE),
    ("limit-nproc", libc::RLIMIT_NPROC),
    ("limit-rss", libc::RLIMIT_RSS),
    ("limit-rtprio", libc::RLIMIT_RTPRIO),
    ("limit-rttime", libc::RLIMIT_RTTIME),
    ("limit-sigpending", libc::RLIMIT_SIGPENDING),
    ("limit-stack", libc::RLIMIT_STACK),
];

/// One resource limit of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

/// `soft[:hard]`, each a number (with K, M, G suffixes: 1024-based) or `infinity`; one value
/// sets both.
pub fn parse_limit(key: &str, text: &str) -> Result<Limit, String> {
    let resource = LIMITS.iter().find(|(k, _)| *k == key).map(|(_, r)| *r).ok_or("unknown limit")?;
    let value = |v: &str| -> Result<u64, String> {
        let v = v.trim();
        if matches!(v, "infinity" | "unlimited") {
            return Ok(libc::RLIM_INFINITY);
        }
        let (digits, factor) = match v.char_indices().last() {
            Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
            Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
            Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
            Some((i, 'T' | 't')) => (&v[..i], 1 << 40),
            _ => (v, 1),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .filter(|&n| n != libc::RLIM_INFINITY)
            .ok_or_else(|| format!("\"{v}\" is not a limit (a number, with K, M, G or T, or infinity)"))
    };
    let (soft, hard) = match text.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => {
            let v = value(text)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(format!("\"{text}\": the soft limit is above the hard one"));
    }
    Ok(Limit { resource, soft, hard })
}

/// The `limit-*` key of a resource.
pub fn limit_key(resource: libc::__rlimit_resource_t) -> &'static str {
    LIMITS.iter().find(|(_, r)| *r == resource).map_or("limit-?", |(k, _)| k)
}

/// A limit value as the directive writes it.
fn limit_text(value: u64) -> String {
    if value == libc::RLIM_INFINITY {
        "infinity".to_owned()
    } else {
        value.to_string()
    }
}

/// trc's own limit of `resource` (soft, hard).
fn own_limit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    (rc == 0).then_some((limit.rlim_cur, limit.rlim_max))
}

/// `CAP_SYS_NICE` and `CAP_SYS_RESOURCE`, as numbered in `capability.h`.
const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether trc has capability `cap` in its effective set (`CapEff` of `/proc/self/status`).
fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// Whether the kernel will let trc give a task `limit` (set in the child, before it changes
/// user: with trc's own privileges). A hard limit above trc's own needs `CAP_SYS_RESOURCE`;
/// no hard limit of open files may pass the kernel's `fs.nr_open`, whoever asks.
pub fn check_limit_allowed(limit: &Limit) -> Result<(), String> {
    let key = limit_key(limit.resource);
    if limit.resource == libc::RLIMIT_NOFILE {
        let nr_open =
            std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|t| t.trim().parse().ok());
        if let Some(nr_open) = nr_open.filter(|&n: &u64| limit.hard > n) {
            return Err(format!(
                "{key}: a hard limit of {} is above the kernel's maximum number of open files (fs.nr_open = {nr_open})",
                limit_text(limit.hard)
            ));
        }
    }
    let Some((_, own_hard)) = own_limit(limit.resource) else { return Ok(()) };
    if limit.hard > own_hard && !has_capability(CAP_SYS_RESOURCE) {
        return Err(format!(
            "{key}: a hard limit of {} is above trc's own ({}), and trc may not raise it (it lacks CAP_SYS_RESOURCE)",
            limit_text(limit.hard),
            limit_text(own_hard)
        ));
    }
    Ok(())
}

/// Whether the kernel will let trc give a task nice value `nice` (set in the child with trc's
/// privileges, after its limits): a value below trc's own needs `CAP_SYS_NICE`, or an
/// `RLIMIT_NICE` (the task's `limit-nice:`, else trc's) of at least 20 - `nice`.
pub fn check_nice_allowed(nice: i32, task_nice_limit: Option<u64>) -> Result<(), String> {
    let own = own_nice();
    if nice >= own || has_capability(CAP_SYS_NICE) {
        return Ok(());
    }
    let needed = (20 - nice) as u64;
    let allowed = task_nice_limit.or_else(|| own_limit(libc::RLIMIT_NICE).map(|(soft, _)| soft)).unwrap_or(0);
    if needed <= allowed {
        return Ok(());
    }
    Err(format!(
        "nice: {nice} is below trc's own nice value ({own}), and trc may not lower it (it lacks CAP_SYS_NICE, and limit-nice is {} where {needed} is needed)",
        limit_text(allowed)
    ))
}

/// trc's own nice value (the 19th field of `/proc/self/stat`).
fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // After the name: state is field 3, nice field 19.
    fields.split_whitespace().nth(16).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_and_number() {
        let root = parse_user("root").unwrap();
        assert_eq!((root.uid, root.gid, root.name.as_deref()), (0, 0, Some("root")));
        assert_eq!(root.home.as_deref(), Some(Path::new("/root")));
        let bare = parse_user("4242").unwrap();
        assert_eq!((bare.uid, bare.gid, bare.groups.len(), bare.name), (4242, 4242, 0, None));
        assert_eq!(parse_user("4242:100").unwrap().gid, 100);
        assert!(parse_user("no-such-user-here").unwrap_err().contains("no user \"no-such-user-here\""));
        assert!(parse_group("no-such-group-here").unwrap_err().contains("no group"));
        assert_eq!(parse_group("0").unwrap(), 0);
    }

    #[test]
    fn env_files_take_comments_quotes_and_export() {
        let text = "# a comment\n; another\n\nA=1\nexport B = 'two words'\nC=\"say \\\"hi\\\"\\nbye\"\nD=x\\\ny\nE=\n";
        let vars = parse_env_text(text).unwrap();
        assert_eq!(
            vars,
            [("A", "1"), ("B", "two words"), ("C", "say \"hi\"\nbye"), ("D", "xy"), ("E", "")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(parse_env_text("ok=1\nnot a var\n").unwrap_err().0, 2);
        assert_eq!(parse_env_text("1X=2\n").unwrap_err().0, 1);
        assert!(read_env_file(Path::new("/nonexistent/env"), true).unwrap().is_empty());
        assert!(read_env_file(Path::new("/nonexistent/env"), false).is_err());
    }

    #[test]
    fn limits_umask_nice() {
        assert_eq!(parse_limit("limit-nofile", "1024:4096").unwrap().soft, 1024);
        assert_eq!(parse_limit("limit-core", "0").unwrap().hard, 0);
        assert_eq!(parse_limit("limit-as", "1G").unwrap().soft, 1 << 30);
        assert_eq!(parse_limit("limit-nproc", "infinity").unwrap().hard, libc::RLIM_INFINITY);
        assert!(parse_limit("limit-nofile", "10:5").unwrap_err().contains("above the hard"));
        assert!(parse_limit("limit-nofile", "lots").is_err());
        assert_eq!(parse_umask("027").unwrap(), 0o27);
        assert!(parse_umask("9").is_err());
        assert_eq!(parse_nice("-5").unwrap(), -5);
        assert!(parse_nice("20").is_err());
        // trc's own values are always allowed.
        assert!(check_nice_allowed(own_nice(), None).is_ok());
        let (soft, hard) = own_limit(libc::RLIMIT_CORE).unwrap();
        assert!(check_limit_allowed(&Limit { resource: libc::RLIMIT_CORE, soft, hard }).is_ok());
        let too_many = Limit { resource: libc::RLIMIT_NOFILE, soft: 1, hard: libc::RLIM_INFINITY };
        assert!(check_limit_allowed(&too_many).unwrap_err().contains("fs.nr_open"));
        assert_eq!(parse_env("K=\"v w\"").unwrap(), ("K".to_owned(), "v w".to_owned()));
        assert!(parse_env("=v").is_err());
        for own in ["TRC_TASK=x", "TRC_LOG_PIPE=/tmp/x", "MAINPID=1", "NOTIFY_SOCKET=/x", "_TRC_KIND=x"] {
            assert!(parse_env(own).unwrap_err().contains("one of trc's own variables"), "{own}");
        }
        assert!(parse_env("TRCX=1").is_ok());
    }
}
