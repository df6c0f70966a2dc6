//! The few Docker Engine API calls ds01 needs, over the daemon's unix socket:
//! a minimal HTTP/1.1 client (one request per connection, `Connection: close`).
//!
//! Why not bollard: it pulls in tokio and hyper, and the wrapper must add under
//! 10 ms to every `docker run`; two GETs over a unix socket need neither.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker daemon at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Docker API {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("Docker API {what}: HTTP {status}")]
    Status { what: String, status: u16 },
    #[error("Docker API {what}: unreadable answer ({why})")]
    Bad { what: String, why: String },
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub socket: PathBuf,
    pub timeout: Duration,
}

impl Engine {
    /// `DOCKER_HOST=unix:///path` if set, else `/var/run/docker.sock`.
    pub fn from_env() -> Engine {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        Engine::new(socket)
    }

    pub fn new(socket: impl Into<PathBuf>) -> Engine {
        Engine {
            socket: socket.into(),
            timeout: Duration::from_secs(3),
        }
    }

    /// GET `path` and parse the JSON body.
    pub fn get(&self, path: &str) -> Result<Value, EngineError> {
        let what = format!("GET {path}");
        let mut s = UnixStream::connect(&self.socket).map_err(|e| EngineError::Connect {
            path: self.socket.clone(),
            source: e,
        })?;
        let io = |e| EngineError::Io {
            what: what.clone(),
            source: e,
        };
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: ds01\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )
        .map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
        let (status, body) = split_response(&raw).map_err(|why| EngineError::Bad {
            what: what.clone(),
            why,
        })?;
        if !(200..300).contains(&status) {
            return Err(EngineError::Status { what, status });
        }
        serde_json::from_slice(&body).map_err(|e| EngineError::Bad {
            what,
            why: e.to_string(),
        })
    }

    /// Running containers with the label `ds01.user=<user>`.
    pub fn user_containers(&self, user: &str) -> Result<Vec<Value>, EngineError> {
        self.containers_labelled(&format!("ds01.user={user}"))
    }

    /// Running containers with the label `key=value`.
    pub fn containers_labelled(&self, label: &str) -> Result<Vec<Value>, EngineError> {
        let filters = serde_json::json!({"label": [label]}).to_string();
        let v = self.get(&format!(
            "/containers/json?filters={}",
            percent_encode(&filters)
        ))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// One container's full description (`HostConfig.DeviceRequests` is here).
    pub fn inspect(&self, id: &str) -> Result<Value, EngineError> {
        self.get(&format!("/containers/{}/json", percent_encode(id)))
    }

    /// `/info`: `CgroupDriver`, `CgroupVersion`, …
    pub fn info(&self) -> Result<Value, EngineError> {
        self.get("/info")
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Status code and (de-chunked) body of an HTTP/1.1 response.
fn split_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// Is the socket there at all (for fail-open messages)?
pub fn socket_exists(p: &Path) -> bool {
    p.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1,2]";
        assert_eq!(split_response(plain), Ok((200, b"[1,2]".to_vec())));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n";
        assert_eq!(split_response(chunked), Ok((200, b"[1,2]".to_vec())));
        assert!(split_response(b"garbage").is_err());
        assert_eq!(
            percent_encode(r#"{"label":["a=b"]}"#),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
    }
}
