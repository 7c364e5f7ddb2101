//! Logging set-up: `tracing` to stderr, shaped for where stderr goes.
//!
//! - A terminal: colours and timestamps.
//! - Not a terminal (a file, a pipe): no colours.
//! - journald (`JOURNAL_STREAM` names stderr, as systemd sets it): no colours, no
//!   timestamp of our own (the journal stamps each entry), and each line starts with its
//!   syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug/trace), which
//!   journald turns into the entry's priority: `journalctl -u op25b -p warning` finds
//!   the warnings.
//!
//! The level is reloadable ([`LogHandle::set_level`]); `RUST_LOG`, when set, overrides it.

use crate::config::{LogFormat, LogLevel};
use std::io::IsTerminal;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Where stderr goes, as far as the log format cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Terminal,
    Plain,
    Journal,
}

impl Sink {
    /// Detects stderr's sink. `JOURNAL_STREAM` is `device:inode` of the stream systemd
    /// connected; it counts only while stderr is still that stream.
    pub fn detect() -> Self {
        if let Ok(v) = std::env::var("JOURNAL_STREAM") {
            if stream_is_stderr(&v) {
                return Sink::Journal;
            }
        }
        if std::io::stderr().is_terminal() {
            Sink::Terminal
        } else {
            Sink::Plain
        }
    }
}

fn stream_is_stderr(journal_stream: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Prefixes every event with `<priority>`.
struct JournalPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Changes the level of the installed subscriber.
pub struct LogHandle {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    /// RUST_LOG was set: it wins over the config.
    env_override: bool,
    pub sink: Sink,
}

impl LogHandle {
    /// Applies `level` (a reload); a no-op under RUST_LOG.
    pub fn set_level(&self, level: LogLevel) -> Result<(), String> {
        if self.env_override {
            return Err("RUST_LOG is set and overrides logging.level".into());
        }
        match &self.handle {
            Some(h) => h
                .reload(EnvFilter::new(level_str(level)))
                .map_err(|e| e.to_string()),
            None => Err("logging was set up by someone else".into()),
        }
    }
}

fn level_str(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

type Fmt = Box<
    dyn Layer<tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>>
        + Send
        + Sync,
>;

/// Installs the global subscriber (once; later calls return a handle that cannot
/// change the level).
pub fn init(level: LogLevel, format: LogFormat) -> LogHandle {
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = env
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level_str(level)));
    let (filter, handle) = reload::Layer::new(filter);
    let sink = Sink::detect();
    let ansi = sink == Sink::Terminal;
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt: Fmt = match (format, sink) {
        (LogFormat::Text, Sink::Journal) => Box::new(
            base.event_format(JournalPrefix(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            )),
        ),
        (LogFormat::Json, Sink::Journal) => Box::new(
            base.fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(JournalPrefix(
                    tracing_subscriber::fmt::format().json().without_time(),
                )),
        ),
        (LogFormat::Text, _) => Box::new(base),
        (LogFormat::Json, _) => Box::new(base.json()),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok();
    LogHandle {
        handle: installed.then_some(handle),
        env_override: env.is_some(),
        sink,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_the_syslog_ones() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        use std::os::unix::fs::MetadataExt;
        assert!(!stream_is_stderr("garbage"));
        assert!(!stream_is_stderr("1:x"));
        let m = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert!(stream_is_stderr(&format!("{}:{}", m.dev(), m.ino())));
        assert!(!stream_is_stderr(&format!("{}:{}", m.dev(), m.ino() + 1)));
    }
}
