//! The monitor's HTTP endpoint: `GET /metrics` (Prometheus) and `GET /healthz`.
//! hyper 1 (the same HTTP stack as the proxy and the Engine client) on a
//! current-thread tokio runtime of its own thread, so the monitor loop stays plain
//! blocking code. HTTP/1.1 with `Connection: close`, at most [`MAX_CONNECTIONS`]
//! at once (more get 503), 10 s to send the head, 30 s per connection: a scraper
//! makes one request every few seconds, nothing more is needed.

use super::metrics;
use crate::config::Config;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub const MAX_CONNECTIONS: usize = 16;

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
    /// The GPU thread's newest report and when it was made.
    /// `(made at, good for, report)`.
    pub gpu: Mutex<Option<(Instant, Duration, Arc<crate::gpu::report::Report>)>>,
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
            gpu: Mutex::new(None),
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

    /// The GPU thread's newest report, sampled every `interval`.
    pub fn set_gpu(&self, r: Option<Arc<crate::gpu::report::Report>>, interval: Duration) {
        if let Ok(mut g) = self.gpu.lock() {
            *g = r.map(|r| (Instant::now(), interval * 3 + Duration::from_secs(5), r));
        }
    }

    /// The GPU report if it is at most three sampling intervals old (an older one
    /// says nothing about now).
    pub fn gpu_fresh(&self) -> Option<Arc<crate::gpu::report::Report>> {
        let g = self.gpu.lock().ok()?;
        let (at, good_for, r) = g.as_ref()?;
        (at.elapsed() <= *good_for).then(|| Arc::clone(r))
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

/// Bind `addr` and serve on a thread of its own (a current-thread tokio runtime
/// with hyper, the project's one HTTP stack). Returns the bound address (port 0
/// picks a free one).
pub fn serve(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ds01-http".into())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(l) => accept_loop(l, shared).await,
                    Err(e) => eprintln!("ds01 monitor: /metrics listener: {e}"),
                }
            })
        })?;
    Ok(local)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let permit = Arc::clone(&slots).try_acquire_owned().ok();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = Arc::clone(&shared);
                let busy = permit.is_none();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &shared, busy)) }
            });
            let conn = http1::Builder::new()
                .keep_alive(false)
                .header_read_timeout(Duration::from_secs(10))
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

/// The response to one request. `busy`: more than [`MAX_CONNECTIONS`] are open.
pub fn answer<B>(req: &Request<B>, shared: &Shared, busy: bool) -> Response<Full<Bytes>> {
    let head_only = req.method() == Method::HEAD;
    if busy {
        return respond(503, "text/plain", b"busy\n".to_vec(), head_only);
    }
    if req.method() != Method::GET && !head_only {
        return respond(405, "text/plain", b"only GET and HEAD\n".to_vec(), false);
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let limits = shared.limits.lock().ok().and_then(|c| c.clone());
            let body = metrics::render(
                &shared.cgroup_root,
                &shared.open_files,
                limits,
                shared.pressure_triggers.load(Ordering::SeqCst),
                shared.gpu_fresh(),
                openmetrics,
            );
            let ty = if openmetrics {
                metrics::OPENMETRICS_TYPE
            } else {
                metrics::CLASSIC_TYPE
            };
            respond(200, ty, body.into_bytes(), head_only)
        }
        "/healthz" => {
            let (code, text) = shared.health();
            respond(code, "text/plain", text.into_bytes(), head_only)
        }
        "/" => {
            let page = b"ds01 monitor: /metrics (Prometheus), /healthz\n".to_vec();
            respond(200, "text/plain", page, head_only)
        }
        _ => respond(404, "text/plain", b"not found\n".to_vec(), head_only),
    }
}

fn respond(code: u16, ty: &str, body: Vec<u8>, head_only: bool) -> Response<Full<Bytes>> {
    let len = body.len();
    let body = if head_only { Vec::new() } else { body };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(ty) {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, accept: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(Method::GET).uri(path);
        if let Some(a) = accept {
            b = b.header(ACCEPT, a);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn routes_content_types_and_busy() {
        let dir = tempfile::tempdir().expect("tmp");
        let shared = Shared::new(dir.path().to_path_buf(), Duration::from_secs(60));
        let r = answer(&get("/metrics?x=1", None), &shared, false);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CONTENT_TYPE], metrics::CLASSIC_TYPE);
        let om = "application/openmetrics-text;version=1.0.0";
        let r = answer(&get("/metrics", Some(om)), &shared, false);
        assert_eq!(r.headers()[CONTENT_TYPE], metrics::OPENMETRICS_TYPE);
        assert_eq!(answer(&get("/nope", None), &shared, false).status(), 404);
        assert_eq!(answer(&get("/healthz", None), &shared, false).status(), 503);
        shared.pass_done(Instant::now());
        assert_eq!(answer(&get("/healthz", None), &shared, false).status(), 200);
        assert_eq!(answer(&get("/metrics", None), &shared, true).status(), 503);
        let post = Request::builder()
            .method(Method::POST)
            .uri("/metrics")
            .body(())
            .expect("request");
        assert_eq!(answer(&post, &shared, false).status(), 405);
    }
}
