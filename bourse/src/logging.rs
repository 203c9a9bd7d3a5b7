//! Process logging: `tracing` events to stderr, human-readable text by
//! default, one JSON object per line for machines (`--log-format json`).
//!
//! Invariants: text logs carry ANSI colour codes only when stderr is a
//! terminal; nothing on the per-command hot path logs; engine and journal
//! threads log only on start-up, shutdown and faults, and the watchdog logs
//! once per alarm transition, never once per sample. A log line that cannot
//! be written (standard error closed, or a pipe whose reader is gone) is
//! dropped silently: tracing-subscriber would otherwise report the failure
//! on standard error itself, and that report panics (`eprintln!`) on the
//! thread that logged, killing an engine, a journal or the server.

use serde::{Deserialize, Serialize};
use std::str::FromStr;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LogFormat {
    type Err = engine::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(engine::UnknownName::new(
                "log format",
                other,
                "text or json",
            )),
        }
    }
}

/// The environment variable whose value, when set, replaces the configured
/// filter (`tracing_subscriber::EnvFilter` directives, e.g. `info,gateway=debug`).
pub const LOG_ENV: &str = "BOURSE_LOG";

/// Builds the filter: `BOURSE_LOG` when set and valid, else `filter`, else `info`.
pub fn env_filter(filter: &str) -> EnvFilter {
    EnvFilter::try_from_env(LOG_ENV)
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber writing to stderr (every command's: `serve`
/// from its configuration, the others as text at `info`). Returns `false`
/// (and changes nothing) when one was already installed.
pub fn init_logging(format: LogFormat, filter: &str) -> bool {
    use std::io::IsTerminal;
    // Colour codes only on a terminal: redirected logs stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_env_filter(env_filter(filter));
    match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.name().parse::<LogFormat>(), Ok(f));
        }
        assert!("xml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
