//! A fake Docker daemon for the integration tests: the Engine API calls ds01
//! makes (list, inspect, stop, remove), served from a map of inspect documents.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Daemon {
    /// id → inspect document.
    pub containers: BTreeMap<String, Value>,
    /// `stop?t=N` calls: (id, N).
    pub stops: Vec<(String, u64)>,
    pub removed: Vec<String>,
}

pub fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

/// Serve the Engine API from `d` until the test process ends.
pub fn serve(socket: &Path, d: Arc<Mutex<Daemon>>) {
    let listener = UnixListener::bind(socket).expect("bind");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).map_or(true, |n| n == 0) || l == "\r\n" {
                    break;
                }
                if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut st = d.lock().expect("lock");
            let (status, answer) = if method == "GET" && path.starts_with("/containers/json") {
                assert!(path.contains("all=1"), "{path}");
                let list: Vec<Value> = st
                    .containers
                    .values()
                    .map(|c| json!({"Id": c["Id"], "State": c["State"]["Status"], "Names": [c["Name"]]}))
                    .collect();
                (200, Value::Array(list).to_string())
            } else if let Some(rest) = path.strip_prefix("/containers/") {
                let (id, tail) = rest.split_once(['/', '?']).unwrap_or((rest, ""));
                let id = id.to_string();
                match (method.as_str(), tail) {
                    ("GET", "json") => match st.containers.get(&id) {
                        Some(c) => (200, c.to_string()),
                        None => (404, "{}".into()),
                    },
                    ("POST", t) if t.starts_with("stop") => {
                        let grace = path
                            .split("t=")
                            .nth(1)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(99);
                        st.stops.push((id.clone(), grace));
                        if let Some(c) = st.containers.get_mut(&id) {
                            c["State"]["Status"] = json!("exited");
                            c["State"]["FinishedAt"] = json!(now_text());
                        }
                        (204, String::new())
                    }
                    ("DELETE", _) => {
                        st.containers.remove(&id);
                        st.removed.push(id);
                        (204, String::new())
                    }
                    _ => (404, "{}".into()),
                }
            } else {
                (404, "{}".into())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
}

pub fn inspect(
    id: &str,
    name: &str,
    user: &str,
    ctype: &str,
    started_ago_s: i64,
    pid: u32,
) -> Value {
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(started_ago_s);
    json!({
        "Id": id, "Name": format!("/{name}"), "Created": started.to_string(),
        "Config": {"Labels": {"ds01.user": user, "ds01.container_type": ctype}},
        "State": {"Status": "running", "StartedAt": started.to_string(),
                  "FinishedAt": "0001-01-01T00:00:00Z", "Pid": pid},
        "HostConfig": {}
    })
}
