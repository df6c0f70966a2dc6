//! What a Docker Engine API request is about, from its method and path alone (pure).
//!
//! Every API version prefix (`/v1.NN/`) and none route alike. Paths that are not in
//! canonical form (`//`, `.` or `..` segments, percent-encoded `/`, `.` or `\`) are
//! refused instead of guessed at: no Docker client sends them, and a proxy that reads
//! a path differently from the daemon is a way around it.

/// What the proxy has to decide for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /containers/create`
    Create,
    /// `GET /containers/json`
    ListContainers,
    /// `POST /containers/prune`
    PruneContainers,
    /// `POST /containers/{id}/update`
    Update(String),
    /// Any other request on `/containers/{id}[/…]`.
    Container(String),
    /// `/exec/{id}/…`: an exec instance, owned by its container's owner.
    Exec(String),
    /// `POST /commit?container=…`
    Commit(Option<String>),
    /// `GET /events`
    Events,
    /// `POST /build`
    Build,
    /// `POST /volumes/create`
    CreateVolume,
    /// `GET /volumes`
    ListVolumes,
    /// `POST /volumes/prune`
    PruneVolumes,
    /// `GET|DELETE /volumes/{name}`
    Volume(String),
    /// Everything else: forwarded unchanged.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "ds01: the request path {0:?} is not in canonical form (//, . or .. segments, or an encoded / . \\); refused"
    )]
    NotCanonical(String),
    #[error("ds01: method {0:?} is not an HTTP method the Docker API uses; refused")]
    Method(String),
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];

/// Percent-decode one path segment (after the canonical-form check).
fn decode(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(h) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(h);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path's segments without the API version prefix, after the canonical-form check.
pub fn segments(path: &str) -> Result<Vec<String>, RouteError> {
    let bad = || RouteError::NotCanonical(path.to_string());
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad());
    };
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%2e", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
        || path.contains('\\')
    {
        return Err(bad());
    }
    let mut segs: Vec<&str> = rest.split('/').collect();
    // One trailing slash is tolerated (`/containers/json/`), as Docker's router does.
    if segs.len() > 1 && segs.last() == Some(&"") {
        segs.pop();
    }
    if segs
        .iter()
        .any(|s| s.is_empty() && segs.len() > 1 || *s == "." || *s == "..")
    {
        return Err(bad());
    }
    if let Some(first) = segs.first()
        && is_version(first)
    {
        segs.remove(0);
    }
    Ok(segs.into_iter().map(decode).collect())
}

fn is_version(s: &str) -> bool {
    let Some(v) = s.strip_prefix('v') else {
        return false;
    };
    let mut parts = v.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// One query parameter's (decoded) value.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(k) == key).then(|| decode(&v.replace('+', " ")))
    })
}

/// Classify a request.
pub fn classify(method: &str, path: &str, query: Option<&str>) -> Result<Route, RouteError> {
    if !METHODS.contains(&method) {
        return Err(RouteError::Method(method.to_string()));
    }
    let segs = segments(path)?;
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Ok(match (method, s.as_slice()) {
        ("POST", ["containers", "create"]) => Route::Create,
        (_, ["containers", "json"]) => Route::ListContainers,
        (_, ["containers", "prune"]) => Route::PruneContainers,
        ("POST", ["containers", id, "update"]) => Route::Update((*id).to_string()),
        (_, ["containers", id, ..]) if !id.is_empty() => Route::Container((*id).to_string()),
        (_, ["exec", id, ..]) if !id.is_empty() => Route::Exec((*id).to_string()),
        (_, ["commit"]) => Route::Commit(query_param(query, "container")),
        (_, ["events"]) => Route::Events,
        (_, ["build"]) => Route::Build,
        ("POST", ["volumes", "create"]) => Route::CreateVolume,
        (_, ["volumes"]) => Route::ListVolumes,
        (_, ["volumes", "prune"]) => Route::PruneVolumes,
        (_, ["volumes", name]) if !name.is_empty() => Route::Volume((*name).to_string()),
        _ => Route::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(m: &str, p: &str) -> Route {
        let (path, q) = p.split_once('?').map_or((p, None), |(a, b)| (a, Some(b)));
        classify(m, path, q).unwrap_or_else(|e| panic!("{m} {p}: {e}"))
    }

    #[test]
    fn every_container_endpoint_targets_its_container() {
        for (m, sub) in [
            ("GET", "json"),
            ("POST", "start"),
            ("POST", "stop"),
            ("POST", "restart"),
            ("POST", "kill"),
            ("POST", "pause"),
            ("POST", "unpause"),
            ("DELETE", ""),
            ("POST", "exec"),
            ("POST", "attach"),
            ("GET", "attach/ws"),
            ("GET", "logs"),
            ("POST", "wait"),
            ("GET", "top"),
            ("GET", "stats"),
            ("GET", "changes"),
            ("GET", "export"),
            ("GET", "archive"),
            ("PUT", "archive"),
            ("HEAD", "archive"),
            ("POST", "resize"),
            ("POST", "rename"),
        ] {
            for prefix in ["", "/v1.41", "/v1.24", "/v1.47"] {
                let p = if sub.is_empty() {
                    format!("{prefix}/containers/abc")
                } else {
                    format!("{prefix}/containers/abc/{sub}")
                };
                assert_eq!(c(m, &p), Route::Container("abc".into()), "{m} {p}");
            }
        }
        assert_eq!(
            c("POST", "/v1.41/containers/abc/update"),
            Route::Update("abc".into())
        );
        assert_eq!(c("POST", "/containers/create?name=x"), Route::Create);
        assert_eq!(
            c("GET", "/v1.41/containers/json?all=1"),
            Route::ListContainers
        );
        assert_eq!(c("POST", "/containers/prune"), Route::PruneContainers);
        assert_eq!(c("POST", "/exec/e1/start"), Route::Exec("e1".into()));
        assert_eq!(c("GET", "/exec/e1/json"), Route::Exec("e1".into()));
        assert_eq!(
            c("POST", "/commit?container=abc&repo=x"),
            Route::Commit(Some("abc".into()))
        );
        assert_eq!(c("GET", "/v1.41/events?since=1"), Route::Events);
        assert_eq!(c("POST", "/build?t=x"), Route::Build);
        assert_eq!(c("DELETE", "/volumes/v1"), Route::Volume("v1".into()));
        assert_eq!(c("POST", "/volumes/create"), Route::CreateVolume);
        assert_eq!(c("GET", "/_ping"), Route::Other);
        assert_eq!(c("GET", "/v1.41/images/json"), Route::Other);
        assert_eq!(c("GET", "/containers/json/"), Route::ListContainers);
        // A name with an encoded character that is not / . \ is decoded.
        assert_eq!(
            c("GET", "/containers/my%2Dc/json"),
            Route::Container("my-c".into())
        );
    }

    #[test]
    fn path_tricks_are_refused() {
        for p in [
            "//containers/abc/json",
            "/containers//abc/json",
            "/v1.41//containers/abc/stop",
            "/containers/./abc/json",
            "/containers/abc/../def/json",
            "/containers/abc%2Fjson",
            "/containers/%2e%2e/x",
            "/containers/abc%2fstop",
            "/containers\\abc",
            "containers/abc",
            "/containers/a%00b/json",
        ] {
            assert!(classify("GET", p, None).is_err(), "{p} must be refused");
        }
        for m in ["get", "Post", "PATCH", "CONNECT", "TRACE"] {
            assert!(classify(m, "/containers/abc/json", None).is_err(), "{m}");
        }
    }

    #[test]
    fn query_params_decode() {
        assert_eq!(
            query_param(Some("a=1&container=my%20c"), "container").as_deref(),
            Some("my c")
        );
        assert_eq!(query_param(Some("a=1"), "container"), None);
        assert_eq!(query_param(None, "a"), None);
    }
}
