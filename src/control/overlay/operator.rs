//! The operator socket (`control.socket`): reloads, the abuse-desk list and runtime
//! exemptions (`op25b reload`, `op25b top`, `op25b exempt add|del`, `op25b sessions`)
//! over a local Unix socket that only root and op25b's user and group may open (mode
//! 0660), never over the TCP metrics endpoint: no HTTP client can hold up a reload or
//! read subscriber addresses.
//!
//! One JSON request per connection, one JSON line back:
//! `{"op":"reload","force":false}` (answers `started`, the count of reloads begun before
//! it: the one that answers it is the next), `{"op":"reload_status"}`,
//! `{"op":"top","n":20}`,
//! `{"op":"exempt_add","prefix":"198.51.100.10","class":"static","ttl_secs":86400,"note":"ticket 4711"}`,
//! `{"op":"exempt_del","prefix":"198.51.100.10"}`, `{"op":"sessions"}`.

use super::OverlayShared;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the operator socket asks of the rest of op25b, which this room does not know:
/// the daemon's reloads and observation's top list. The daemon hands one in.
pub trait Desk: Send + Sync {
    /// Asks for a reload (`force`: past the reload guard). Returns how many reloads
    /// began before the request: the one that answers it is the next.
    fn request_reload(&self, force: bool) -> u64;
    /// The reload status that `op25b reload` waits on.
    fn reload_status(&self) -> serde_json::Value;
    /// The top `n` blocked sources (`op25b top`).
    fn top(&self, n: usize) -> serde_json::Value;
}

/// What the operator socket serves: the overlay's operations, and through the [`Desk`]
/// reload requests, the reload status and the top list.
pub struct Operator {
    pub overlay: Arc<OverlayShared>,
    pub desk: Arc<dyn Desk>,
}

impl Operator {
    /// Handles one request; returns the answer.
    pub fn handle(&self, req: &serde_json::Value, now: u64) -> serde_json::Value {
        let ok = |mut v: serde_json::Value| {
            v["ok"] = serde_json::json!(true);
            v
        };
        match req["op"].as_str() {
            Some("reload") => {
                let force = req["force"].as_bool().unwrap_or(false);
                let started = self.desk.request_reload(force);
                serde_json::json!({
                    "ok": true,
                    "pid": std::process::id(),
                    "started": started,
                    "force": force,
                })
            }
            Some("reload_status") => ok(self.desk.reload_status()),
            Some("top") => {
                let n = req["n"].as_u64().unwrap_or(20).clamp(1, 1000) as usize;
                ok(self.desk.top(n))
            }
            Some("exempt_add" | "exempt_del" | "sessions") => self.overlay.handle(req, now),
            _ => {
                serde_json::json!({"ok": false, "error": "unknown op; expected reload, reload_status, top, exempt_add, exempt_del or sessions"})
            }
        }
    }
}

/// The socket's mode: read-write for op25b's user and group (`op25b reload` run by
/// ExecReload as the service's user, an operator in its group), nothing for others.
pub const SOCKET_MODE: u32 = 0o660;

/// Binds `path` (replacing a stale socket file), mode [`SOCKET_MODE`], and serves until
/// `stop`.
pub fn serve(
    path: &Path,
    shared: Arc<Operator>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another process answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Bound under a temporary name, given its mode, then renamed into place: nobody
    // can connect while the mode is still the umask's.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    std::fs::rename(&tmp, path)?;
    listener.set_nonblocking(true)?;
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("op25b-operator".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &shared);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            let _ = std::fs::remove_file(&owned);
        })
}

fn answer(stream: UnixStream, shared: &Operator) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(&stream, 64 * 1024)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(req) => shared.handle(&req, crate::clock::unix_now()),
        Err(e) => serde_json::json!({"ok": false, "error": format!("not a JSON request: {e}")}),
    };
    let mut w = &stream;
    serde_json::to_writer(&mut w, &reply)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Client side: sends `req` to the socket at `path`, returns the answer.
pub fn request(path: &Path, req: &serde_json::Value) -> std::io::Result<serde_json::Value> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = &stream;
    serde_json::to_writer(&mut w, req)?;
    w.write_all(b"\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::other(format!("bad answer: {e}")))
}
