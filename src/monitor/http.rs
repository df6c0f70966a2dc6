//! The monitor's HTTP endpoint: `GET /metrics` (Prometheus) and `GET /healthz`.
//! A plain blocking server on its own thread, a short-lived thread per connection
//! (at most [`MAX_CONNECTIONS`] at once), HTTP/1.1 with `Connection: close`: a
//! scraper makes one request every few seconds, so nothing more is needed — and no
//! async runtime in a binary that is also the login greeting.

use super::metrics;
use crate::config::Config;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MAX_CONNECTIONS: usize = 16;
const MAX_HEAD: usize = 16 * 1024;

/// What the monitor loop shares with the endpoint.
#[derive(Debug)]
pub struct Shared {
    pub cgroup_root: PathBuf,
    /// The limits of the last config that loaded without errors (none yet: no
    /// limit gauges).
    pub limits: Mutex<Option<Arc<metrics::Limits>>>,
    pub pressure_triggers: AtomicUsize,
    /// The kernel files `/metrics` reads, kept open between scrapes.
    pub open_files: Arc<crate::cgroup::OpenFiles>,
    /// When the monitor last finished a pass; `/healthz` fails when that is older
    /// than two intervals (the loop is stuck).
    pub last_pass: Mutex<Option<Instant>>,
    pub interval: Duration,
}

impl Shared {
    pub fn new(cgroup_root: PathBuf, interval: Duration) -> Shared {
        Shared {
            cgroup_root,
            limits: Mutex::new(None),
            pressure_triggers: AtomicUsize::new(0),
            open_files: Arc::default(),
            last_pass: Mutex::new(None),
            interval,
        }
    }

    /// A (re)loaded config: its limits are resolved once, here. The same config
    /// again costs nothing.
    pub fn set_config(&self, cfg: Option<Arc<Config>>) {
        if let Ok(mut c) = self.limits.lock() {
            let same = match (&*c, &cfg) {
                (Some(l), Some(n)) => l.is_for(n),
                (None, None) => true,
                _ => false,
            };
            if !same {
                *c = cfg.map(|cfg| Arc::new(metrics::Limits::new(cfg)));
            }
        }
    }

    pub fn pass_done(&self, at: Instant) {
        if let Ok(mut p) = self.last_pass.lock() {
            *p = Some(at);
        }
    }

    fn health(&self) -> (u16, String) {
        let last = self.last_pass.lock().ok().and_then(|p| *p);
        let allowed = self.interval * 2 + Duration::from_secs(5);
        match last {
            Some(t) if t.elapsed() <= allowed => (
                200,
                format!("ok: last pass {:.1} s ago\n", t.elapsed().as_secs_f64()),
            ),
            Some(t) => (
                503,
                format!(
                    "stale: last pass {:.0} s ago (interval {} s)\n",
                    t.elapsed().as_secs_f64(),
                    self.interval.as_secs()
                ),
            ),
            None => (503, "starting: no pass finished yet\n".to_string()),
        }
    }
}

/// Bind `addr` and serve on a thread of its own. Returns the bound address (port 0
/// picks a free one).
pub fn serve(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("ds01-http".into())
        .spawn(move || accept_loop(listener, shared))?;
    Ok(local)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else {
            // EMFILE and friends: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&mut stream, 503, "text/plain", b"busy\n", false);
            continue;
        }
        let shared = Arc::clone(&shared);
        let guard = Arc::clone(&busy);
        let spawned = std::thread::Builder::new()
            .name("ds01-http-conn".into())
            .spawn(move || {
                handle(stream, &shared);
                guard.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The request line and the `Accept` header, from the head of a request.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub accept: String,
}

pub fn parse_request(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    first.next()?.strip_prefix("HTTP/")?;
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Some(Request {
        method,
        path,
        accept,
    })
}

fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8(buf).ok()
}

fn handle(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_head(&mut stream).as_deref().and_then(parse_request) else {
        let _ = respond(&mut stream, 400, "text/plain", b"bad request\n", false);
        return;
    };
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        let _ = respond(
            &mut stream,
            405,
            "text/plain",
            b"only GET and HEAD\n",
            false,
        );
        return;
    }
    match req.path.as_str() {
        "/metrics" => {
            let openmetrics = req.accept.contains("application/openmetrics-text");
            let limits = shared.limits.lock().ok().and_then(|c| c.clone());
            let body = metrics::render(
                &shared.cgroup_root,
                &shared.open_files,
                limits,
                shared.pressure_triggers.load(Ordering::SeqCst),
                openmetrics,
            );
            let ty = if openmetrics {
                metrics::OPENMETRICS_TYPE
            } else {
                metrics::CLASSIC_TYPE
            };
            let _ = respond(&mut stream, 200, ty, body.as_bytes(), head_only);
        }
        "/healthz" => {
            let (code, text) = shared.health();
            let _ = respond(&mut stream, code, "text/plain", text.as_bytes(), head_only);
        }
        "/" => {
            let page = b"ds01 monitor: /metrics (Prometheus), /healthz\n";
            let _ = respond(&mut stream, 200, "text/plain", page, head_only);
        }
        _ => {
            let _ = respond(&mut stream, 404, "text/plain", b"not found\n", head_only);
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    code: u16,
    ty: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_path_and_accept() {
        let r = parse_request(
            "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert!(r.accept.starts_with("application/openmetrics-text"));
        assert_eq!(parse_request("garbage"), None);
        assert_eq!(parse_request("GET /x FTP/1\r\n\r\n"), None);
    }
}
