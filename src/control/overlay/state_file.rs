//! The state file at start: the overlay as the last run saved it (saves are
//! [`super::OverlayShared::tick`]'s and `save_now`'s, written by [`super::store`]).

use super::store::Store;
use crate::datapath::PolicyCell;
use std::path::Path;

/// The runtime overlay, from `state_file` if there is one, and how many of its lines were
/// skipped (errors are logged: op25b starts with what could be read). Each skipped line
/// is logged with its number, and the file as found is kept beside it (`.bad`), since
/// the next save writes only the entries that loaded.
pub fn load(policy: &PolicyCell, state_file: Option<&Path>) -> (Store, u64) {
    let mut store = Store::new(&policy.load(), policy.generation());
    let Some(path) = state_file else {
        return (store, 0);
    };
    match store.load(path, crate::clock::unix_now()) {
        Ok(r) => {
            tracing::info!(
                state_file = %path.display(),
                loaded = r.loaded,
                expired = r.expired,
                inactive = r.inactive,
                bad_lines = r.bad_lines,
                "overlay: {} entries from {} ({} expired dropped, {} with a class the policy lacks, {} bad line(s) skipped)",
                r.loaded,
                path.display(),
                r.expired,
                r.inactive,
                r.bad_lines
            );
            for b in &r.bad {
                tracing::error!("overlay state file: line skipped: {b}");
            }
            if r.bad_lines > r.bad.len() {
                tracing::error!(
                    "overlay state file: {} more bad line(s) skipped",
                    r.bad_lines - r.bad.len()
                );
            }
            if let Some(e) = &r.read_error {
                tracing::error!(
                    "overlay state file: reading stopped at {e}; the entries after it are not loaded"
                );
            }
            if r.bad_lines > 0 || r.read_error.is_some() {
                let mut keep = path.as_os_str().to_owned();
                keep.push(".bad");
                match std::fs::copy(path, &keep) {
                    Ok(_) => tracing::warn!(
                        "overlay state file: kept as found in {} (the next save drops the bad lines)",
                        Path::new(&keep).display()
                    ),
                    Err(e) => tracing::error!(
                        "overlay state file: cannot keep a copy in {}: {e}",
                        Path::new(&keep).display()
                    ),
                }
            }
            (store, r.bad_lines as u64)
        }
        Err(e) => {
            tracing::error!(
                "control.state_file {}: {e}; starting with an empty overlay",
                path.display()
            );
            (store, 0)
        }
    }
}
