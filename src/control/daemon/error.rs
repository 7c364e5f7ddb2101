//! Why `op25b run` stops with an error: one typed error for start, reload refusals and
//! the report.

use crate::config;
use crate::control::export::fallback;
use crate::datapath;
use std::path::PathBuf;

/// Why `op25b run` stopped with an error (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Start(#[from] datapath::StartError),
    #[error("pid file {path}: another op25b is running as pid {pid} (stop it first)")]
    AlreadyRunning { path: PathBuf, pid: u32 },
    #[error("pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cleanup: {0}")]
    Cleanup(#[from] datapath::nic::NicError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("report file {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a worker stopped unexpectedly; see the log above")]
    WorkerDied,
    #[error("control endpoint thread: {0}")]
    Listen(std::io::Error),
    // The message carries the cause (no `#[source]`: a report printing the error chain
    // would show it twice).
    #[error("reload refused: {0}")]
    ReloadConfig(config::ConfigError),
    #[error("reload refused: {0}")]
    ReloadFastPath(datapath::fast_path::FastPathError),
    #[error("reload refused: {0}")]
    ReloadShrink(config::diff::PolicyShrink),
    /// `datapath.fast_path` set to a mode the interfaces' MTU does not allow (as at start).
    #[error("reload refused: {0}")]
    ReloadMtu(datapath::StartError),
    #[error(transparent)]
    Fallback(#[from] fallback::FallbackError),
}
