//! The Docker Engine API calls ds01 makes itself (container lists, inspects, `/info`),
//! over the daemon's unix socket, on hyper — the same HTTP stack the proxy forwards
//! with, so the project has one HTTP implementation. Async for the proxy; the
//! blocking methods (the wrapper, `ds01 check`) run the same code on a
//! current-thread runtime.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
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
    #[error("Docker API {what}: {why}")]
    Io { what: String, why: String },
    #[error("Docker API {what}: HTTP {status}")]
    Status { what: String, status: u16 },
    #[error("Docker API {what}: unreadable answer ({why})")]
    Bad { what: String, why: String },
    #[error("Docker API {what}: no answer within {secs} s")]
    Timeout { what: String, secs: u64 },
}

impl EngineError {
    /// The HTTP status, when the daemon answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            EngineError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub socket: PathBuf,
    pub timeout: Duration,
}

/// Run a future to completion on a fresh current-thread runtime (the blocking API).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, EngineError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Io {
            what: "runtime".into(),
            why: e.to_string(),
        })?;
    Ok(rt.block_on(f))
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
    pub async fn get_async(&self, path: &str) -> Result<Value, EngineError> {
        self.request(hyper::Method::GET, path, None).await
    }

    /// POST a JSON body to `path` and parse the JSON answer.
    pub async fn post_json_async(&self, path: &str, body: &Value) -> Result<Value, EngineError> {
        self.request(hyper::Method::POST, path, Some(body.to_string()))
            .await
    }

    /// POST with no body; the status (the body is read and dropped).
    pub async fn post_empty_async(&self, path: &str) -> Result<u16, EngineError> {
        Ok(self.exchange(hyper::Method::POST, path, None).await?.0)
    }

    /// DELETE `path`; the status.
    pub async fn delete_async(&self, path: &str) -> Result<u16, EngineError> {
        Ok(self.exchange(hyper::Method::DELETE, path, None).await?.0)
    }

    /// `GET /_ping`: the value of the `ds01-proxy` header (`None`: the daemon itself
    /// answered, not ds01's proxy). Blocking.
    pub fn proxy_header(&self) -> Result<Option<String>, EngineError> {
        let (_, headers, _) = block_on(self.exchange(hyper::Method::GET, "/_ping", None))??;
        Ok(headers
            .get(crate::proxy::PROXY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// One request; a 2xx answer's body parsed as JSON.
    async fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Value, EngineError> {
        let what = format!("{method} {path}");
        let (status, _, body) = self.exchange(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(EngineError::Status { what, status });
        }
        serde_json::from_slice(&body).map_err(|e| EngineError::Bad {
            what,
            why: e.to_string(),
        })
    }

    /// One request on a fresh connection, within `timeout`: status, headers, whole
    /// body.
    async fn exchange(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), EngineError> {
        let what = format!("{method} {path}");
        let fut = self.exchange_inner(method, path, body, &what);
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(EngineError::Timeout {
                what,
                secs: self.timeout.as_secs(),
            }),
        }
    }

    async fn exchange_inner(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
        what: &str,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), EngineError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| EngineError::Connect {
                path: self.socket.clone(),
                source: e,
            })?;
        let io = |e: hyper::Error| EngineError::Io {
            what: what.to_string(),
            why: e.to_string(),
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io)?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "docker")
            .header("User-Agent", "ds01")
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| EngineError::Bad {
                what: what.to_string(),
                why: e.to_string(),
            })?;
        let resp = send.send_request(req).await.map_err(io)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map_err(io)?.to_bytes();
        Ok((status, headers, body))
    }

    /// GET `path` and parse the JSON body (blocking).
    pub fn get(&self, path: &str) -> Result<Value, EngineError> {
        block_on(self.get_async(path))?
    }

    /// Running containers with the label `ds01.user=<user>`.
    pub async fn user_containers_async(&self, user: &str) -> Result<Vec<Value>, EngineError> {
        self.containers_labelled_async(&format!("ds01.user={user}"))
            .await
    }

    /// Running containers with the label `key=value`.
    pub async fn containers_labelled_async(&self, label: &str) -> Result<Vec<Value>, EngineError> {
        let filters = serde_json::json!({ "label": [label] }).to_string();
        let v = self
            .get_async(&format!(
                "/containers/json?filters={}",
                percent_encode(&filters)
            ))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Every container, running or not, with the label `key=value`.
    pub async fn containers_labelled_all_async(
        &self,
        label: &str,
    ) -> Result<Vec<Value>, EngineError> {
        let filters = serde_json::json!({ "label": [label] }).to_string();
        let v = self
            .get_async(&format!(
                "/containers/json?all=1&filters={}",
                percent_encode(&filters)
            ))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Running containers with the label `ds01.user=<user>` (blocking).
    pub fn user_containers(&self, user: &str) -> Result<Vec<Value>, EngineError> {
        block_on(self.user_containers_async(user))?
    }

    /// Running containers with the label `key=value` (blocking).
    pub fn containers_labelled(&self, label: &str) -> Result<Vec<Value>, EngineError> {
        block_on(self.containers_labelled_async(label))?
    }

    /// One container's full description (`HostConfig.DeviceRequests` is here).
    pub async fn inspect_async(&self, id: &str) -> Result<Value, EngineError> {
        self.get_async(&format!("/containers/{}/json", percent_encode(id)))
            .await
    }

    /// One container's full description (blocking).
    pub fn inspect(&self, id: &str) -> Result<Value, EngineError> {
        block_on(self.inspect_async(id))?
    }

    /// `/info`: `CgroupDriver`, `CgroupVersion`, … (blocking).
    pub fn info(&self) -> Result<Value, EngineError> {
        self.get("/info")
    }
}

/// Percent-encode everything but unreserved characters (query values, path segments).
pub fn percent_encode(s: &str) -> String {
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

/// Is the socket there at all (for fail-open messages)?
pub fn socket_exists(p: &Path) -> bool {
    p.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_unreachable_daemon() {
        assert_eq!(
            percent_encode(r#"{"label":["a=b"]}"#),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
        let e = Engine::new("/nonexistent/ds01-test.sock")
            .get("/_ping")
            .expect_err("no daemon there");
        assert!(
            e.to_string().contains("cannot reach the Docker daemon"),
            "{e}"
        );
    }
}
