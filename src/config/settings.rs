//! The `RC_*` settings that apply to the whole group. Long options are turned into the same
//! variables by the caller, so this is the one place that reads them.

use super::directives::TaskSettings;
use super::ConfigError;

/// When the group is finished, and with which status (see `supervisor::policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitPolicy {
    #[default]
    Any,
    All,
    Err,
    Forever,
}

impl WaitPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitPolicy::Any => "wait_any",
            WaitPolicy::All => "wait_all",
            WaitPolicy::Err => "wait_err",
            WaitPolicy::Forever => "wait_forever",
        }
    }

    pub fn parse(s: &str) -> Option<WaitPolicy> {
        Some(match s {
            "wait_any" => WaitPolicy::Any,
            "wait_all" => WaitPolicy::All,
            "wait_err" => WaitPolicy::Err,
            "wait_forever" => WaitPolicy::Forever,
            _ => return None,
        })
    }
}

/// Group-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub wait_policy: WaitPolicy,
    /// `RC_VERBOSE=true`: trc's own log lines on stdout.
    pub verbose: bool,
    /// `RC_VERBOSE_EXTRA=true`: debug lines too (only shown when verbose).
    pub verbose_extra: bool,
    /// `RC_DEBUG=true`: shell tasks run with `set -x`.
    pub debug: bool,
    /// The defaults of every task's directives (`RC_RESTART`, `RC_STOP_TIMEOUT`, ...).
    pub task: TaskSettings,
    /// `RC_FORWARD_SIGNALS`: signals passed to the tasks instead of ending the group.
    pub forward_signals: Vec<nix::sys::signal::Signal>,
    /// `RC_STOP_DELAY`: how long trc waits, not ready, between the first terminating signal
    /// and the stop of the tasks.
    pub stop_delay: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wait_policy: WaitPolicy::Any,
            verbose: false,
            verbose_extra: false,
            debug: false,
            task: TaskSettings::default(),
            forward_signals: Vec::new(),
            stop_delay: std::time::Duration::ZERO,
        }
    }
}

impl Settings {
    /// Reads the settings through `lookup` (the environment with the command line's overrides,
    /// or the variables a boot task left behind). As in TrivialRC, a flag is on only when its
    /// value is exactly `true`, and an empty `RC_WAIT_POLICY` means the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let flag = |name: &str| lookup(name).as_deref() == Some("true");
        let mut settings = Settings {
            verbose: flag("RC_VERBOSE"),
            verbose_extra: flag("RC_VERBOSE_EXTRA"),
            debug: flag("RC_DEBUG"),
            ..Settings::default()
        };
        if let Some(value) = lookup("RC_WAIT_POLICY").filter(|v| !v.is_empty()) {
            settings.wait_policy = WaitPolicy::parse(&value).ok_or_else(|| ConfigError::BadVariable {
                name: "RC_WAIT_POLICY",
                value: value.clone(),
                problem: "unknown wait policy (expected wait_any, wait_all, wait_err or wait_forever)"
                    .to_owned(),
            })?;
        }
        settings.task = TaskSettings::from_lookup(&lookup).map_err(ConfigError::Variable)?;
        if let Some(value) = lookup("RC_FORWARD_SIGNALS").filter(|v| !v.is_empty()) {
            settings.forward_signals = super::directives::parse_forwardable(&value).map_err(|problem| {
                ConfigError::BadVariable { name: "RC_FORWARD_SIGNALS", value: value.clone(), problem }
            })?;
        }
        if let Some(value) = lookup("RC_STOP_DELAY").filter(|v| !v.is_empty()) {
            settings.stop_delay = super::directives::parse_duration(&value).map_err(|problem| {
                ConfigError::BadVariable { name: "RC_STOP_DELAY", value: value.clone(), problem }
            })?;
        }
        Ok(settings)
    }
}

/// The console style, `RC_LOG_FORMAT` (`text`, the default when unset or empty, or `json`)
/// and `RC_LOG_TIMESTAMPS=true`. Read once, at start, apart from the other settings: what boot
/// sets does not change it (the lines written so far keep one shape), and the errors of the
/// other settings are written in it.
pub fn log_style(lookup: impl Fn(&str) -> Option<String>) -> Result<crate::logs::format::Style, ConfigError> {
    use crate::logs::format::{LogFormat, Style};
    let mut style =
        Style { timestamps: lookup("RC_LOG_TIMESTAMPS").as_deref() == Some("true"), ..Style::default() };
    if let Some(value) = lookup("RC_LOG_FORMAT").filter(|v| !v.is_empty()) {
        style.format = LogFormat::parse(&value).ok_or_else(|| ConfigError::BadVariable {
            name: "RC_LOG_FORMAT",
            value: value.clone(),
            problem: "unknown log format (expected text or json)".to_owned(),
        })?;
    }
    Ok(style)
}

#[cfg(test)]
mod tests {
    use super::super::directives::parse_duration;
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn log_style_from_variables() {
        use crate::logs::format::{LogFormat, Style};
        let style = |vars: &[(&str, &str)]| {
            let map: HashMap<String, String> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            log_style(|name| map.get(name).cloned())
        };
        assert_eq!(style(&[]).unwrap(), Style::default());
        assert_eq!(style(&[("RC_LOG_FORMAT", "")]).unwrap(), Style::default());
        let s = style(&[("RC_LOG_FORMAT", "json"), ("RC_LOG_TIMESTAMPS", "true")]).unwrap();
        assert_eq!(s, Style { format: LogFormat::Json, timestamps: true });
        assert!(!style(&[("RC_LOG_TIMESTAMPS", "yes")]).unwrap().timestamps);
        let err = style(&[("RC_LOG_FORMAT", "xml")]).unwrap_err().to_string();
        assert!(err.starts_with("RC_LOG_FORMAT=\"xml\": unknown log format"), "{err}");
    }

    #[test]
    fn defaults_match_trivialrc() {
        assert_eq!(settings(&[]).unwrap(), Settings::default());
        assert_eq!(settings(&[("RC_WAIT_POLICY", "")]).unwrap().wait_policy, WaitPolicy::Any);
    }

    #[test]
    fn flags_need_exactly_true() {
        let s =
            settings(&[("RC_VERBOSE", "true"), ("RC_DEBUG", "yes"), ("RC_VERBOSE_EXTRA", "TRUE")]).unwrap();
        assert!(s.verbose);
        assert!(!s.debug);
        assert!(!s.verbose_extra);
    }

    #[test]
    fn policies_and_timeouts_parse() {
        let s = settings(&[("RC_WAIT_POLICY", "wait_forever"), ("RC_STOP_TIMEOUT", "1m 30s")]).unwrap();
        assert_eq!(s.wait_policy, WaitPolicy::Forever);
        assert_eq!(s.task.stop_timeout, Duration::from_secs(90));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = settings(&[("RC_WAIT_POLICY", "wait_some")]).unwrap_err().to_string();
        assert!(err.starts_with("RC_WAIT_POLICY=\"wait_some\": unknown wait policy"), "{err}");
        let err = settings(&[("RC_STOP_TIMEOUT", "soon")]).unwrap_err().to_string();
        assert!(err.starts_with("RC_STOP_TIMEOUT=\"soon\": not a duration"), "{err}");
        assert!(parse_duration("-1").is_err());
    }
}
