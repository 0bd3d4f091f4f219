//! The values of the `ready:` and `health:` directives: how trc knows a task is ready, and how
//! it checks that a running task is still healthy. Parsing only; `supervisor::probe` runs them.
//!
//! ```text
//! ready: none | notify | fd N | log REGEX | check CMD | tcp HOST:PORT | http URL | file PATH
//! health: check CMD | tcp HOST:PORT | http URL
//! ```

use std::fmt;
use std::path::PathBuf;

/// A way of probing a task.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Probe {
    /// Started = ready.
    #[default]
    None,
    /// `READY=1` over the task's own `NOTIFY_SOCKET`.
    Notify,
    /// A newline written on this fd (s6's notification-fd).
    Fd(i32),
    /// A line of the task's output (stdout or stderr) matches.
    Log(LogPattern),
    /// A command that exits 0.
    Check(String),
    /// A TCP connect that succeeds.
    Tcp(String),
    /// A GET that answers 2xx.
    Http(HttpUrl),
    /// The file exists.
    File(PathBuf),
}

impl Probe {
    /// Parses `KIND [ARG]` for `ready:`.
    pub fn parse_ready(text: &str) -> Result<Probe, String> {
        let text = text.trim();
        let (kind, arg) = match text.split_once(char::is_whitespace) {
            Some((kind, arg)) => (kind, arg.trim()),
            None => (text, ""),
        };
        let needs_arg = |what: &str| {
            if arg.is_empty() {
                Err(format!("\"{kind}\" needs {what} (write e.g. \"{kind} {}\")", example(kind)))
            } else {
                Ok(())
            }
        };
        let no_arg = || {
            if arg.is_empty() {
                Ok(())
            } else {
                Err(format!("\"{kind}\" takes no argument (got \"{arg}\")"))
            }
        };
        match kind {
            "none" => no_arg().map(|()| Probe::None),
            "notify" => no_arg().map(|()| Probe::Notify),
            "fd" => {
                needs_arg("a file descriptor number")?;
                match arg.parse::<i32>() {
                    Ok(n) if (3..=1023).contains(&n) => Ok(Probe::Fd(n)),
                    _ => Err(format!("\"{arg}\" is not a file descriptor number from 3 to 1023 (0-2 are stdio)")),
                }
            }
            "log" => {
                needs_arg("a regular expression")?;
                LogPattern::new(arg).map(Probe::Log)
            }
            "file" => needs_arg("a path").map(|()| Probe::File(PathBuf::from(arg))),
            _ => Probe::parse_check(kind, arg).map_err(|e| {
                if e.is_empty() {
                    format!(
                        "unknown readiness kind \"{kind}\" (expected none, notify, fd N, log REGEX, check CMD, tcp HOST:PORT, http URL or file PATH)"
                    )
                } else {
                    e
                }
            }),
        }
    }

    /// Parses `KIND ARG` for `health:`.
    pub fn parse_health(text: &str) -> Result<Probe, String> {
        let text = text.trim();
        let (kind, arg) = match text.split_once(char::is_whitespace) {
            Some((kind, arg)) => (kind, arg.trim()),
            None => (text, ""),
        };
        Probe::parse_check(kind, arg).map_err(|e| {
            if e.is_empty() {
                format!("unknown health check \"{kind}\" (expected check CMD, tcp HOST:PORT or http URL)")
            } else {
                e
            }
        })
    }

    /// The kinds both directives take. An empty error: not one of them.
    fn parse_check(kind: &str, arg: &str) -> Result<Probe, String> {
        if matches!(kind, "check" | "tcp" | "http") && arg.is_empty() {
            return Err(format!("\"{kind}\" needs an argument (write e.g. \"{kind} {}\")", example(kind)));
        }
        match kind {
            "check" => {
                if shlex::split(arg).is_none_or(|words| words.is_empty()) {
                    return Err(format!("\"{arg}\" is not a command (unbalanced quotes?)"));
                }
                Ok(Probe::Check(arg.to_owned()))
            }
            "tcp" => check_host_port(arg).map(|()| Probe::Tcp(arg.to_owned())),
            "http" => HttpUrl::parse(arg).map(Probe::Http),
            _ => Err(String::new()),
        }
    }

    /// Whether trc polls it (every `ready-interval` or `health-interval`).
    pub fn is_polled(&self) -> bool {
        matches!(self, Probe::Check(_) | Probe::Tcp(_) | Probe::Http(_) | Probe::File(_))
    }
}

fn example(kind: &str) -> &'static str {
    match kind {
        "fd" => "3",
        "log" => "listening on",
        "check" => "pg_isready -q",
        "tcp" => "127.0.0.1:5432",
        "http" => "http://127.0.0.1:8080/healthz",
        _ => "/run/app.pid",
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::None => f.write_str("none"),
            Probe::Notify => f.write_str("notify"),
            Probe::Fd(n) => write!(f, "fd {n}"),
            Probe::Log(p) => write!(f, "log {}", p.source()),
            Probe::Check(cmd) => write!(f, "check {cmd}"),
            Probe::Tcp(addr) => write!(f, "tcp {addr}"),
            Probe::Http(url) => write!(f, "http {}", url.text),
            Probe::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// `HOST:PORT` (`[::1]:80` for an IPv6 address).
fn check_host_port(text: &str) -> Result<(), String> {
    let bad = || format!("\"{text}\" is not HOST:PORT (write e.g. 127.0.0.1:5432 or [::1]:5432)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// A regular expression a line of output is matched against (regex-lite's syntax).
#[derive(Debug, Clone)]
pub struct LogPattern(regex_lite::Regex);

impl LogPattern {
    pub fn new(source: &str) -> Result<LogPattern, String> {
        regex_lite::Regex::new(source)
            .map(LogPattern)
            .map_err(|e| format!("\"{source}\" is not a regular expression: {e}"))
    }

    pub fn source(&self) -> &str {
        self.0.as_str()
    }

    /// Whether `line` (without its newline; bytes that are not UTF-8 replaced) matches.
    pub fn matches(&self, line: &[u8]) -> bool {
        self.0.is_match(&String::from_utf8_lossy(line))
    }
}

impl PartialEq for LogPattern {
    fn eq(&self, other: &LogPattern) -> bool {
        self.source() == other.source()
    }
}

/// A plain-HTTP URL: `http://HOST[:PORT][/PATH]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpUrl {
    /// As written.
    pub text: String,
    /// `HOST:PORT`, to connect to.
    pub addr: String,
    /// The `Host:` header.
    pub host: String,
    /// The request target (`/` when the URL has no path).
    pub path: String,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            if text.starts_with("https://") {
                format!("\"{text}\": https is not supported (a probe speaks plain HTTP; use http:// on loopback, or tcp)")
            } else {
                format!("\"{text}\" is not an http:// URL (write e.g. http://127.0.0.1:8080/healthz)")
            }
        })?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
        if authority.is_empty() || authority.contains('@') || path.chars().any(char::is_whitespace) {
            return Err(format!(
                "\"{text}\" is not an http:// URL (write e.g. http://127.0.0.1:8080/healthz)"
            ));
        }
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let addr = if has_port { authority.to_owned() } else { format!("{authority}:80") };
        check_host_port(&addr).map_err(|_| format!("\"{text}\": bad host or port \"{authority}\""))?;
        Ok(HttpUrl { text: text.to_owned(), addr, host: authority.to_owned(), path })
    }
}

/// `after:` names: async task names, separated by spaces or commas.
pub fn parse_names(text: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err("\"after:\" needs at least one task name".to_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ready_kind_parses() {
        assert_eq!(Probe::parse_ready("none").unwrap(), Probe::None);
        assert_eq!(Probe::parse_ready("notify").unwrap(), Probe::Notify);
        assert_eq!(Probe::parse_ready("fd 3").unwrap(), Probe::Fd(3));
        assert!(
            matches!(Probe::parse_ready("log ^listening on .*:80$").unwrap(), Probe::Log(p) if p.matches(b"listening on 0.0.0.0:80"))
        );
        assert_eq!(Probe::parse_ready("check pg_isready -q").unwrap(), Probe::Check("pg_isready -q".into()));
        assert_eq!(Probe::parse_ready("tcp 127.0.0.1:5432").unwrap(), Probe::Tcp("127.0.0.1:5432".into()));
        assert_eq!(Probe::parse_ready("tcp [::1]:80").unwrap(), Probe::Tcp("[::1]:80".into()));
        assert_eq!(Probe::parse_ready("file /run/x.pid").unwrap(), Probe::File("/run/x.pid".into()));
        let Probe::Http(url) = Probe::parse_ready("http http://localhost:8080/healthz?deep=1").unwrap()
        else {
            panic!("not http")
        };
        assert_eq!((url.addr.as_str(), url.path.as_str()), ("localhost:8080", "/healthz?deep=1"));
        let Probe::Http(url) = Probe::parse_ready("http http://127.0.0.1").unwrap() else {
            panic!("not http")
        };
        assert_eq!(
            (url.addr.as_str(), url.path.as_str(), url.host.as_str()),
            ("127.0.0.1:80", "/", "127.0.0.1")
        );
        assert!(Probe::parse_ready("http://localhost/x").is_err());
    }

    #[test]
    fn bad_values_say_why() {
        for (text, needle) in [
            ("sometimes", "unknown readiness kind \"sometimes\""),
            ("fd", "needs a file descriptor number"),
            ("fd 1", "from 3 to 1023"),
            ("fd x", "not a file descriptor"),
            ("log (", "not a regular expression"),
            ("log", "needs a regular expression"),
            ("tcp localhost", "not HOST:PORT"),
            ("tcp :80", "not HOST:PORT"),
            ("http https://x/", "https is not supported"),
            ("http ftp://x/", "not an http:// URL"),
            ("check 'unbalanced", "unbalanced quotes"),
            ("none please", "takes no argument"),
            ("file", "needs a path"),
        ] {
            let err = Probe::parse_ready(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(Probe::parse_health("log x").unwrap_err().contains("unknown health check \"log\""));
        assert!(Probe::parse_health("notify").unwrap_err().contains("unknown health check"));
        assert_eq!(Probe::parse_health("tcp 127.0.0.1:1").unwrap(), Probe::Tcp("127.0.0.1:1".into()));
    }

    #[test]
    fn names_split_on_spaces_and_commas() {
        assert_eq!(parse_names("db, cache  queue").unwrap(), ["db", "cache", "queue"]);
        assert!(parse_names(" , ").is_err());
    }
}
