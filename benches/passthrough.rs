//! Pass-through cost of `ds01 proxy`, side by side in one run with the direct socket
//! and HAProxy (Debian's package, `mode http` between two unix sockets — what the
//! common docker-socket-proxy images are built on).
//!
//! The "daemon" is a fake Engine API (hyper, on a unix socket, its own thread) so
//! that the three paths differ only by what sits in between; the proxy is the real
//! `ds01` binary, started as `ds01 proxy`. Measured, for each path:
//! - latency of `GET /_ping` and `GET /containers/json` (a 20-container list), on
//!   one keep-alive connection and with a new connection per request (median, p99);
//! - a 1 GiB stream each way (`GET /containers/x/export`, `PUT /containers/x/archive`);
//! - resident memory of the process in between with 200 open `logs -f` streams.
//!
//! `cargo bench --bench passthrough` runs the full sizes and prints a markdown table
//! (BENCHMARKS.md). Without `--bench` (what `cargo test --all-targets` does) it runs
//! small sizes and checks that every byte went through each path — no timing is
//! judged. HAProxy missing is reported, loudly, as skipped.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};

type Body = BoxBody<Bytes, std::convert::Infallible>;

const CHUNK: usize = 256 * 1024;

struct Scale {
    requests_keepalive: usize,
    requests_new_conn: usize,
    stream_bytes: u64,
    streams: usize,
    rounds: usize,
}

/// A body of `left` bytes, sent in 256 KiB frames of one shared buffer.
struct Sized {
    chunk: Bytes,
    left: u64,
}
impl hyper::body::Body for Sized {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }
}

/// One line, then open forever: a `logs -f` of a quiet container.
struct Follow(bool);
impl hyper::body::Body for Follow {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.0 {
            return Poll::Pending;
        }
        self.0 = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"started\n")))))
    }
}

fn sized(left: u64) -> Body {
    Sized {
        chunk: Bytes::from(vec![b'x'; CHUNK]),
        left,
    }
    .boxed()
}

fn text(s: String) -> Body {
    http_body_util::Full::new(Bytes::from(s)).boxed()
}

/// The fake daemon: bytes received by `PUT …/archive` are counted in `received`.
async fn engine(listener: UnixListener, export_bytes: u64, received: Arc<AtomicU64>) {
    let list: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            serde_json::json!({"Id": format!("{i:064x}"), "Names": [format!("/c{i}")],
            "Image": "ubuntu", "Command": "sleep infinity", "State": "running",
            "Status": "Up 2 hours", "Labels": {"ds01.user": "alice", "ds01.managed": "true"}})
        })
        .collect();
    let list = serde_json::Value::Array(list).to_string();
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let list = list.clone();
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let list = list.clone();
                let received = Arc::clone(&received);
                async move {
                    let path = req.uri().path().to_string();
                    let body = if path.ends_with("/_ping") {
                        text("OK".into())
                    } else if path.ends_with("/containers/json") {
                        text(list)
                    } else if path.ends_with("/export") {
                        sized(export_bytes)
                    } else if path.ends_with("/logs") {
                        Follow(false).boxed()
                    } else if path.ends_with("/archive") {
                        let mut b = req.into_body();
                        while let Some(Ok(f)) = b.frame().await {
                            if let Some(d) = f.data_ref() {
                                received.fetch_add(d.len() as u64, Ordering::Relaxed);
                            }
                        }
                        text(String::new())
                    } else {
                        text(format!("no such path {path}"))
                    };
                    Ok::<_, std::convert::Infallible>(Response::new(body))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .with_upgrades()
                .await;
        });
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Body>;

async fn connect(sock: &Path) -> Sender {
    let s = UnixStream::connect(sock).await.expect("connect");
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    tx
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "docker")
        .body(Empty::new().boxed())
        .expect("request")
}

/// Send one request, read the whole body; returns its length.
async fn exchange(tx: &mut Sender, req: Request<Body>) -> u64 {
    let resp = tx.send_request(req).await.expect("response");
    assert!(resp.status().is_success(), "status {}", resp.status());
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        if let Some(d) = f.expect("body").data_ref() {
            n += d.len() as u64;
        }
    }
    n
}

#[derive(Default)]
struct Row {
    name: &'static str,
    cells: Vec<String>,
}

fn summary(mut us: Vec<f64>) -> String {
    us.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| us[((us.len() as f64 - 1.0) * q).round() as usize];
    format!("{:.0} / {:.0}", at(0.5), at(0.99))
}

async fn latency(sock: &Path, path: &str, n: usize, keepalive: bool) -> Vec<f64> {
    let mut times = Vec::with_capacity(n);
    let mut tx = connect(sock).await;
    for _ in 0..n {
        let t = Instant::now();
        if !keepalive {
            tx = connect(sock).await;
        }
        let len = exchange(&mut tx, get(path)).await;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(len > 0, "{path}: empty body");
    }
    times
}

async fn download(sock: &Path, bytes: u64) -> f64 {
    let mut tx = connect(sock).await;
    let t = Instant::now();
    let got = exchange(&mut tx, get("/v1.41/containers/x/export")).await;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, bytes, "export: bytes lost on the way");
    bytes as f64 / secs / (1 << 20) as f64
}

async fn upload(sock: &Path, bytes: u64, received: &AtomicU64) -> f64 {
    let mut tx = connect(sock).await;
    let before = received.load(Ordering::Relaxed);
    let req = Request::put("/v1.41/containers/x/archive?path=/tmp")
        .header("host", "docker")
        .header("content-type", "application/x-tar")
        .body(sized(bytes))
        .expect("request");
    let t = Instant::now();
    exchange(&mut tx, req).await;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        received.load(Ordering::Relaxed) - before,
        bytes,
        "archive: bytes lost on the way"
    );
    bytes as f64 / secs / (1 << 20) as f64
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open `n` `logs -f` streams, wait for each to start, then read the RSS of `pid`.
async fn rss_with_streams(sock: &Path, n: usize, pid: u32) -> (u64, u64) {
    let before = rss_kib(pid).unwrap_or(0);
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let mut tx = connect(sock).await;
        let resp = tx
            .send_request(get(&format!(
                "/v1.41/containers/c{i}/logs?follow=1&stdout=1"
            )))
            .await
            .expect("logs");
        let mut body = resp.into_body();
        let first = body.frame().await.expect("first frame").expect("body");
        assert!(first.data_ref().is_some_and(|d| d.starts_with(b"started")));
        open.push((tx, body));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = rss_kib(pid).unwrap_or(0);
    drop(open);
    (before, during)
}

fn wait_for(sock: &Path, child: &mut Child) {
    for _ in 0..200 {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{} exited: {st}", sock.display());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} never came up", sock.display());
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ds01(dir: &Path, engine: &Path) -> (PathBuf, Killed) {
    let cfg = ds01::demo::write_generated(dir, 1000).expect("config");
    let sock = dir.join("ds01.sock");
    let cg = dir.join("cgroup");
    std::fs::create_dir_all(&cg).expect("cgroup dir");
    // The socket's group: ours, whoever runs the bench.
    let me = Command::new("id")
        .arg("-gn")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ds01"))
        .arg("proxy")
        .arg("--listen")
        .arg(&sock)
        .arg("--upstream")
        .arg(engine)
        .args(["--socket-group", &me])
        .arg("--state-dir")
        .arg(dir)
        .arg("--events-log")
        .arg(dir.join("events.jsonl"))
        .arg("--cgroup-root")
        .arg(&cg)
        .env("DS01_CONFIG", &cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ds01 proxy");
    wait_for(&sock, &mut child);
    (sock, Killed(child))
}

fn start_haproxy(dir: &Path, engine: &Path) -> Option<(PathBuf, Killed)> {
    let sock = dir.join("haproxy.sock");
    let cfg = dir.join("haproxy.cfg");
    let text = format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 5s\n  \
         timeout client 1h\n  timeout server 1h\n  timeout tunnel 1h\n\n\
         frontend docker\n  bind unix@{}\n  default_backend engine\n\n\
         backend engine\n  server daemon unix@{}\n",
        sock.display(),
        engine.display()
    );
    std::fs::write(&cfg, text).expect("haproxy.cfg");
    let mut child = match Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "SKIPPED: HAProxy column — cannot run `haproxy` ({e}); `apt-get install haproxy` for the full comparison"
            );
            return None;
        }
    };
    wait_for(&sock, &mut child);
    Some((sock, Killed(child)))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full {
        Scale {
            requests_keepalive: 5000,
            requests_new_conn: 2000,
            stream_bytes: 1 << 30,
            streams: 200,
            rounds: 5,
        }
    } else {
        Scale {
            requests_keepalive: 50,
            requests_new_conn: 20,
            stream_bytes: 8 << 20,
            streams: 20,
            rounds: 1,
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let engine_sock = dir.path().join("engine.sock");
    let received = Arc::new(AtomicU64::new(0));
    {
        let listener = std::os::unix::net::UnixListener::bind(&engine_sock).expect("bind engine");
        listener.set_nonblocking(true).expect("nonblocking");
        let received = Arc::clone(&received);
        let bytes = scale.stream_bytes;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = UnixListener::from_std(listener).expect("listener");
                engine(l, bytes, received).await
            })
        });
    }
    let (ds01_sock, ds01) = start_ds01(dir.path(), &engine_sock);
    let haproxy = start_haproxy(dir.path(), &engine_sock);

    let mut paths: Vec<(&'static str, PathBuf, Option<u32>)> = vec![
        ("direct socket", engine_sock.clone(), None),
        ("ds01 proxy", ds01_sock, Some(ds01.0.id())),
    ];
    if let Some((s, k)) = &haproxy {
        paths.push(("HAProxy 2.6 (mode http)", s.clone(), Some(k.0.id())));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Rounds, each path in turn within a round, so that a noisy moment of a small
    // machine falls on all of them alike.
    const LAT: [(&str, bool); 4] = [
        ("/_ping", true),
        ("/_ping", false),
        ("/v1.41/containers/json", true),
        ("/v1.41/containers/json", false),
    ];
    let mut lat: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); LAT.len()]; paths.len()];
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut inn: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..scale.rounds {
        for (pi, (_, sock, _)) in paths.iter().enumerate() {
            rt.block_on(async {
                for (li, (path, keep)) in LAT.iter().enumerate() {
                    let n = if *keep {
                        scale.requests_keepalive
                    } else {
                        scale.requests_new_conn
                    } / scale.rounds;
                    lat[pi][li].extend(latency(sock, path, n, *keep).await);
                }
                out[pi].push(download(sock, scale.stream_bytes).await);
                inn[pi].push(upload(sock, scale.stream_bytes, &received).await);
            });
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut rows = Vec::new();
    for (pi, (name, sock, pid)) in paths.iter().enumerate() {
        let mut r = Row {
            name,
            ..Row::default()
        };
        for t in std::mem::take(&mut lat[pi]) {
            r.cells.push(summary(t));
        }
        r.cells
            .push(format!("{:.0}", median(std::mem::take(&mut out[pi]))));
        r.cells
            .push(format!("{:.0}", median(std::mem::take(&mut inn[pi]))));
        match pid {
            Some(pid) => {
                let (before, during) = rt.block_on(rss_with_streams(sock, scale.streams, *pid));
                r.cells.push(format!(
                    "{:.1} → {:.1}",
                    before as f64 / 1024.0,
                    during as f64 / 1024.0
                ));
            }
            None => r.cells.push("(the daemon's)".into()),
        }
        rows.push(r);
    }
    println!(
        "\nLatency µs p50 / p99; throughput the median of {} rounds of {} MiB each way.",
        scale.rounds,
        scale.stream_bytes >> 20
    );
    println!(
        "\n| path | `/_ping` keep-alive µs p50 / p99 | `/_ping` new conn | `/containers/json` keep-alive | `/containers/json` new conn | MiB/s out (export) | MiB/s in (archive) | RSS MiB idle → {} `logs -f` |",
        scale.streams
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("| {} | {} |", r.name, r.cells.join(" | "));
    }
    if !full {
        println!("(smoke sizes: run `cargo bench --bench passthrough` for the real numbers)");
    }
}
