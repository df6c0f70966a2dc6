//! `ds01 proxy`: the Docker Engine API proxy that owns `/run/docker.sock`.
//!
//! Every client (the CLI, compose, SDKs, VS Code) talks to the proxy; the real
//! daemon listens on a socket only root can open. The caller is who the kernel says
//! (`SO_PEERCRED` on the accepted connection), resolved through NSS like the wrapper
//! resolves users. Then, per request ([`route::classify`]):
//!
//! - `POST /containers/create`: the wrapper's decision ([`crate::docker::Decider::judge`])
//!   on the body; allowed requests get the changes written into the body, refused
//!   ones a Docker error response (`{"message": …}`) and a `quota.*` event;
//! - `POST /containers/{id}/update`: the per-container maxima again;
//! - anything on another user's container or exec instance: 404, as if it did not
//!   exist; `/containers/json`, `/containers/prune`, `/events`, `/volumes`,
//!   `/volumes/prune` are narrowed to the caller's own (a `label` filter);
//! - `POST /build`: `cgroupparent` = the caller's slice;
//! - named volumes get an owner label; another user's cannot be mounted or removed;
//! - the rest is forwarded unchanged, streams and upgrades (attach/exec `tcp`,
//!   BuildKit `h2c`) byte for byte, half-close included.
//!
//! Admins (the wrapper's rule: root, `ds01-admin`, the config's admins) see and do
//! everything; their creates are still placed where they did not choose a parent.
//!
//! The config is reloaded when its files change (and on SIGHUP). A config that stops
//! loading keeps the last good one in force, loudly; with no good config at all,
//! non-admins cannot create containers. There is no mode without enforcement.

pub mod route;

use crate::config::last_good;
use crate::config::{Config, Resolved};
use crate::docker::engine::{Engine, percent_encode};
use crate::docker::security;
use crate::docker::{
    Client, CreateRequest, Decider, LABEL_USER, Verdict, gpu, identity, inject_event, is_admin,
    usage,
};
use crate::events::{Event, EventLog};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use route::Route;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{UnixListener, UnixStream};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// The header every proxied response carries (how `ds01 check` knows who answers).
pub const PROXY_HEADER: &str = "ds01-proxy";
pub const DEFAULT_LISTEN: &str = "/run/docker.sock";
pub const DEFAULT_UPSTREAM: &str = "/run/docker-engine.sock";
/// The largest create/update/volume body the proxy reads (Docker's own are KiBs).
const BODY_LIMIT: usize = 4 << 20;
/// Open client connections at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 4096;
const IDENTITY_TTL: Duration = Duration::from_secs(30);
const IDENTITY_CACHE_MAX: usize = 4096;
const SOURCE: &str = "docker-proxy";

/// Where the proxy listens, forwards and reads its config.
#[derive(Debug, Clone)]
pub struct Options {
    pub upstream: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub events: EventLog,
    /// How often the config files are looked at for changes.
    pub reload_every: Duration,
}

/// Who is on the other end of a connection, as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// A user's name and Unix groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub groups: Vec<String>,
}

/// How uids become names: NSS in production, a fixed table in tests.
pub enum Identities {
    Nss,
    Fixed(HashMap<u32, Ident>),
}

impl Identities {
    fn lookup(&self, uid: u32) -> Option<Ident> {
        match self {
            Identities::Fixed(m) => m.get(&uid).cloned(),
            Identities::Nss => {
                let (name, gid) = identity::user_name(uid)?;
                let groups = identity::group_names(&name, gid);
                Some(Ident { name, groups })
            }
        }
    }
}

/// The files' modification times and sizes: a change means "reload".
type Stamp = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

fn stamp(config: &Path) -> Stamp {
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut paths = vec![config.to_path_buf(), dir.join("user-overrides.yaml")];
    if let Ok(rd) = std::fs::read_dir(dir.join("groups")) {
        let mut more: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        more.sort();
        paths.extend(more);
    }
    paths
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (p, m)
        })
        .collect()
}

pub struct Proxy {
    opts: Options,
    identities: Identities,
    /// The config in force (`None`: no good config is known).
    policy: RwLock<Option<Arc<Config>>>,
    stamp: Mutex<Stamp>,
    ids: Mutex<HashMap<u32, (Instant, Option<Ident>)>>,
    engine: Engine,
    conns: Arc<tokio::sync::Semaphore>,
    /// Idle upstream connections left by clients that went away, reused by new
    /// clients (newest first): a new client connection then costs no connect to
    /// the daemon. Upstream connections carry no identity — the daemon never knows
    /// who calls — so reuse across users is safe; one that is mid-response or
    /// upgraded is closed, never parked.
    idle: Mutex<Vec<(Instant, Upstream)>>,
}

type Upstream = hyper::client::conn::http1::SendRequest<Body>;
/// At most this many idle upstream connections are kept, each at most this long.
const IDLE_UPSTREAM_MAX: usize = 64;
const IDLE_UPSTREAM_TTL: Duration = Duration::from_secs(30);

/// What the proxy knows about the caller of one request.
struct Caller {
    peer: Peer,
    name: String,
    /// The sanitized name: the `ds01.user` label value.
    label_user: String,
    /// Unix group names (NSS).
    groups: Vec<String>,
    admin: bool,
    resolved: Option<Resolved>,
}

/// A refusal or failure answered as a Docker error response.
struct Reject {
    status: StatusCode,
    message: String,
}

impl Reject {
    fn new(status: StatusCode, message: impl Into<String>) -> Reject {
        Reject {
            status,
            message: message.into(),
        }
    }
}

pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = json!({ "message": message }).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn no_such_container(id: &str) -> Reject {
    Reject::new(StatusCode::NOT_FOUND, format!("No such container: {id}"))
}

impl Proxy {
    /// Load the config (or the last good one) and get ready; nothing is bound yet.
    pub fn new(opts: Options, identities: Identities) -> Arc<Proxy> {
        let mut engine = Engine::new(&opts.upstream);
        engine.timeout = Duration::from_secs(10);
        let p = Arc::new(Proxy {
            identities,
            policy: RwLock::new(None),
            stamp: Mutex::new(Vec::new()),
            ids: Mutex::new(HashMap::new()),
            engine,
            conns: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            idle: Mutex::new(Vec::new()),
            opts,
        });
        p.reload(true);
        p
    }

    /// Re-read the config if its files changed (or `force`). A broken config keeps
    /// what is in force (or the saved last good one), said on stderr and as a
    /// `config.invalid` event once per change.
    pub fn reload(&self, force: bool) {
        let now = stamp(&self.opts.config);
        {
            let Ok(mut s) = self.stamp.lock() else {
                return;
            };
            if !force && *s == now {
                return;
            }
            *s = now;
        }
        let e = last_good::load_enforced(&self.opts.config, &self.opts.state_dir);
        let in_force = self.policy();
        let broken = e.current.diagnostics.has_errors() || e.current.config.is_none();
        let policy = if !broken {
            eprintln!("ds01 proxy: config {} loaded", self.opts.config.display());
            e.config.map(Arc::new)
        } else {
            let first = e
                .current
                .diagnostics
                .first_error()
                .map_or_else(|| "cannot be loaded".to_string(), |d| d.to_string());
            let (config, what) = match (in_force, e.config) {
                (Some(c), _) => (Some(c), "the config loaded before stays in force"),
                (None, Some(c)) => (
                    Some(Arc::new(c)),
                    "the last good config (saved in the state dir) is in force",
                ),
                (None, None) => (
                    None,
                    "no good config is known: non-admins cannot create containers",
                ),
            };
            eprintln!("ds01 proxy: ERROR: the config is broken ({first}); {what}");
            let _ = self.opts.events.append(
                &Event::new("config.invalid")
                    .source(SOURCE)
                    .detail("error", first.as_str())
                    .detail("in_force", what),
            );
            config
        };
        if let Ok(mut p) = self.policy.write() {
            *p = policy;
        }
    }

    fn policy(&self) -> Option<Arc<Config>> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    async fn ident(self: &Arc<Self>, uid: u32) -> Option<Ident> {
        if let Ok(m) = self.ids.lock()
            && let Some((at, id)) = m.get(&uid)
            && at.elapsed() < IDENTITY_TTL
        {
            return id.clone();
        }
        let me = self.clone();
        let id = tokio::task::spawn_blocking(move || me.identities.lookup(uid))
            .await
            .ok()
            .flatten();
        if let Ok(mut m) = self.ids.lock() {
            if m.len() >= IDENTITY_CACHE_MAX {
                m.clear();
            }
            m.insert(uid, (Instant::now(), id.clone()));
        }
        id
    }

    async fn caller(self: &Arc<Self>, peer: Peer) -> Result<Caller, Reject> {
        let Some(id) = self.ident(peer.uid).await else {
            if peer.uid == 0 {
                return Ok(Caller {
                    peer,
                    name: "root".into(),
                    label_user: "root".into(),
                    groups: Vec::new(),
                    admin: true,
                    resolved: None,
                });
            }
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                format!(
                    "ds01: uid {} has no user name (NSS lookup failed); refused",
                    peer.uid
                ),
            ));
        };
        let policy = self.policy();
        let cfg = policy.as_deref();
        let admin = is_admin(cfg, peer.uid, &id.name, &id.groups);
        let resolved = cfg.map(|c| c.resolve(&id.name));
        let label_user = resolved.as_ref().map_or_else(
            || crate::naming::sanitize_user(&id.name),
            |r| r.slice_user.clone(),
        );
        Ok(Caller {
            peer,
            name: id.name,
            label_user,
            groups: id.groups,
            admin,
            resolved,
        })
    }

    /// Serve connections from `listener`, each identified by SO_PEERCRED.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        self.serve_with(listener, None).await;
    }

    /// Serve connections, all of them as `peer` when given (tests), else as the
    /// kernel says.
    pub async fn serve_with(self: Arc<Self>, listener: UnixListener, peer: Option<Peer>) {
        loop {
            let Ok(permit) = self.conns.clone().acquire_owned().await else {
                return;
            };
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("ds01 proxy: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer = match peer {
                Some(p) => p,
                None => match stream.peer_cred() {
                    Ok(c) => Peer {
                        uid: c.uid(),
                        gid: c.gid(),
                        pid: c.pid(),
                    },
                    Err(e) => {
                        eprintln!("ds01 proxy: SO_PEERCRED failed ({e}); connection closed");
                        continue;
                    }
                },
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.connection(stream, peer).await;
                drop(permit);
            });
        }
    }

    async fn connection(self: Arc<Self>, stream: UnixStream, peer: Peer) {
        let conn = Arc::new(Conn {
            peer,
            upstream: tokio::sync::Mutex::new(None),
        });
        let me = self.clone();
        let ours = conn.clone();
        let svc = hyper::service::service_fn(move |req| {
            let me = me.clone();
            let conn = conn.clone();
            async move { Ok::<_, std::convert::Infallible>(me.handle(&conn, req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .preserve_header_case(true)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await;
        let up = ours.upstream.lock().await.take();
        if let Some(up) = up {
            self.park(up);
        }
    }

    /// Keep an upstream connection for the next client, if it is idle and open.
    fn park(&self, up: Upstream) {
        if up.is_closed() || !up.is_ready() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|(at, u)| at.elapsed() < IDLE_UPSTREAM_TTL && !u.is_closed());
            if idle.len() < IDLE_UPSTREAM_MAX {
                idle.push((Instant::now(), up));
            }
        }
    }

    /// The newest parked upstream connection that is still usable.
    fn unpark(&self) -> Option<Upstream> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((at, up)) = idle.pop() {
            if at.elapsed() < IDLE_UPSTREAM_TTL && !up.is_closed() && up.is_ready() {
                return Some(up);
            }
        }
        None
    }

    async fn handle(self: &Arc<Self>, conn: &Conn, req: Request<Incoming>) -> Response<Body> {
        let mut resp = match self.route(conn, req).await {
            Ok(r) => r,
            Err(rj) => error_response(rj.status, &rj.message),
        };
        resp.headers_mut().insert(
            PROXY_HEADER,
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        resp
    }

    async fn route(
        self: &Arc<Self>,
        conn: &Conn,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Reject> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let route = route::classify(req.method().as_str(), &path, query.as_deref())
            .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let caller = self.caller(conn.peer).await?;
        let req = req.map(|b| b.boxed());
        if route == Route::Create {
            return self.create(conn, &caller, req, query.as_deref()).await;
        }
        if caller.admin {
            return forward(self, conn, req).await;
        }
        match route {
            Route::Create => unreachable!("handled above"),
            Route::Update(id) => {
                self.own_container(&caller, &id).await?;
                self.update(conn, &caller, req).await
            }
            Route::Container(id) | Route::Commit(Some(id)) => {
                self.own_container(&caller, &id).await?;
                if req.method() == hyper::Method::POST && path.ends_with("/exec") {
                    return self.exec_create(conn, &caller, req).await;
                }
                forward(self, conn, req).await
            }
            Route::Exec(id) => {
                let ex = self
                    .engine
                    .get_async(&format!("/exec/{}/json", percent_encode(&id)))
                    .await
                    .map_err(|e| engine_reject(&e, format!("No such exec instance: {id}")))?;
                let cid = ex.get("ContainerID").and_then(Value::as_str).unwrap_or("");
                self.own_container(&caller, cid).await.map_err(|_| {
                    Reject::new(
                        StatusCode::NOT_FOUND,
                        format!("No such exec instance: {id}"),
                    )
                })?;
                forward(self, conn, req).await
            }
            Route::ListContainers
            | Route::PruneContainers
            | Route::Events
            | Route::ListVolumes
            | Route::PruneVolumes => {
                let q = with_label_filter(query.as_deref(), &caller.label_user);
                forward(self, conn, with_query(req, &path, &q)?).await
            }
            Route::Build => {
                let Some(user) = &caller.resolved else {
                    return Err(no_config());
                };
                let q = with_param(query.as_deref(), "cgroupparent", &user.slice());
                forward(self, conn, with_query(req, &path, &q)?).await
            }
            Route::CreateVolume => self.create_volume(conn, &caller, req).await,
            Route::Volume(name) => {
                self.own_volume(&caller, &name).await?;
                forward(self, conn, req).await
            }
            Route::Commit(None) | Route::Other => forward(self, conn, req).await,
        }
    }

    /// The container exists and is the caller's; else "No such container".
    async fn own_container(&self, caller: &Caller, id: &str) -> Result<(), Reject> {
        if id.is_empty() {
            return Err(no_such_container(id));
        }
        let c = self
            .engine
            .inspect_async(id)
            .await
            .map_err(|e| engine_reject(&e, format!("No such container: {id}")))?;
        if owns(caller, &c["Config"]["Labels"]) {
            Ok(())
        } else {
            Err(no_such_container(id))
        }
    }

    /// The volume exists and is the caller's; else "No such volume".
    async fn own_volume(&self, caller: &Caller, name: &str) -> Result<(), Reject> {
        let v = self
            .engine
            .get_async(&format!("/volumes/{}", percent_encode(name)))
            .await
            .map_err(|e| engine_reject(&e, format!("get {name}: no such volume")))?;
        if owns(caller, &v["Labels"]) {
            Ok(())
        } else {
            Err(Reject::new(
                StatusCode::NOT_FOUND,
                format!("get {name}: no such volume"),
            ))
        }
    }

    async fn create(
        self: &Arc<Self>,
        conn: &Conn,
        caller: &Caller,
        req: Request<Body>,
        query: Option<&str>,
    ) -> Result<Response<Body>, Reject> {
        let client = Client::from_user_agent(
            req.headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok()),
        );
        let (parts, body) = req.into_parts();
        let bytes = read_body(body).await?;
        let name = route::query_param(query, "name");
        let mut creq = CreateRequest::from_body(&bytes, name, client)
            .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("ds01: {e}")))?;
        let Some(user) = &caller.resolved else {
            if caller.admin {
                return forward(self, conn, Request::from_parts(parts, full(bytes))).await;
            }
            return Err(no_config());
        };
        if !caller.admin {
            self.check_named_volumes(caller, &creq).await?;
            self.check_security(caller, &creq).await?;
        }
        let wants_gpus = creq
            .body
            .pointer("/HostConfig/DeviceRequests")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let inv = if wants_gpus && !caller.admin {
            tokio::task::spawn_blocking(gpu::inventory)
                .await
                .unwrap_or_default()
        } else {
            gpu::Inventory::default()
        };
        let usage = if caller.admin {
            None
        } else {
            let (u, err) = usage::usage_of_async(
                user,
                &self.engine,
                &self.opts.cgroup_root,
                wants_gpus.then_some(&inv),
            )
            .await;
            if let Some(e) = err {
                // The daemon is the proxy's own upstream: if it cannot list
                // containers, it cannot create one either.
                return Err(Reject::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("ds01: cannot check your quota ({e})"),
                ));
            }
            Some(u)
        };
        let decider = Decider {
            user,
            admin: caller.admin,
            inventory: &inv,
        };
        match decider.judge(&creq, usage.as_ref()) {
            Verdict::Refuse(rf) => {
                let _ = self.opts.events.append(
                    &rf.event(user, SOURCE, creq.image(), creq.name.as_deref())
                        .detail("uid", caller.peer.uid),
                );
                Err(Reject::new(StatusCode::FORBIDDEN, rf.api_message()))
            }
            Verdict::Allow { changes, warnings } => {
                for c in &changes {
                    c.apply(&mut creq.body);
                }
                let new = Bytes::from(creq.body.to_string());
                let mut req = Request::from_parts(parts, full(new.clone()));
                set_length(&mut req, new.len());
                let resp = forward(self, conn, req).await?;
                if resp.status().is_success() {
                    let mut ev = inject_event(user, SOURCE, &creq, &changes, caller.admin)
                        .detail("uid", caller.peer.uid);
                    if caller.name != user.user {
                        ev = ev.detail("login", caller.name.as_str());
                    }
                    let _ = self.opts.events.append(&ev);
                }
                if warnings.is_empty() || !resp.status().is_success() {
                    return Ok(resp);
                }
                add_warnings(resp, &warnings).await
            }
        }
    }

    /// Named volumes in `Binds` / `Mounts`: another user's is refused; one that does
    /// not exist yet is created with the caller as owner (Docker would create it
    /// without one).
    async fn check_named_volumes(
        &self,
        caller: &Caller,
        creq: &CreateRequest,
    ) -> Result<(), Reject> {
        let mut names: Vec<String> = Vec::new();
        if let Some(binds) = creq
            .body
            .pointer("/HostConfig/Binds")
            .and_then(Value::as_array)
        {
            for b in binds.iter().filter_map(Value::as_str) {
                let src = b.split(':').next().unwrap_or("");
                if !src.is_empty() && !src.starts_with('/') {
                    names.push(src.to_string());
                }
            }
        }
        if let Some(mounts) = creq
            .body
            .pointer("/HostConfig/Mounts")
            .and_then(Value::as_array)
        {
            for m in mounts {
                if m.get("Type").and_then(Value::as_str) == Some("volume")
                    && let Some(src) = m.get("Source").and_then(Value::as_str)
                    && !src.is_empty()
                {
                    names.push(src.to_string());
                }
            }
        }
        for name in names {
            match self
                .engine
                .get_async(&format!("/volumes/{}", percent_encode(&name)))
                .await
            {
                Ok(v) => {
                    if !owns(caller, &v["Labels"]) {
                        return Err(Reject::new(
                            StatusCode::FORBIDDEN,
                            format!("ds01: volume {name:?} is not yours; use a volume of your own"),
                        ));
                    }
                }
                Err(e) if e.status() == Some(404) => {
                    let body = json!({"Name": name, "Labels": {LABEL_USER: caller.label_user}});
                    self.engine
                        .post_json_async("/volumes/create", &body)
                        .await
                        .map_err(|e| engine_reject(&e, format!("cannot create volume {name}")))?;
                }
                Err(e) => return Err(engine_reject(&e, format!("volume {name}"))),
            }
        }
        Ok(())
    }

    /// The caller's host-escape policy.
    fn security_policy(&self, user: &Resolved) -> security::Policy {
        match self.policy() {
            Some(cfg) => cfg
                .security
                .policy_for(&user.user, &user.slice_user, &user.group),
            None => security::Policy::default(),
        }
    }

    /// The caller as the file-system checks need them (NSS home and gids).
    fn subject(&self, caller: &Caller) -> security::Subject {
        security::Subject::lookup(
            caller.peer.uid,
            &caller.name,
            &caller.groups,
            Some(caller.peer.gid),
        )
    }

    /// Log `security.denied` and answer 403 with the denial's message.
    fn denied(&self, caller: &Caller, d: &security::Denial, container: Option<&str>) -> Reject {
        let _ = self.opts.events.append(
            &d.event(&caller.label_user, SOURCE, container)
                .detail("uid", caller.peer.uid),
        );
        Reject::new(StatusCode::FORBIDDEN, d.message())
    }

    /// The host-escape policy on a create body: containers it refers to are
    /// looked up first, the file-system checks run off the async workers (a hung
    /// NFS home must not stall other clients).
    async fn check_security(
        self: &Arc<Self>,
        caller: &Caller,
        creq: &CreateRequest,
    ) -> Result<(), Reject> {
        let Some(user) = &caller.resolved else {
            return Err(no_config());
        };
        let empty = Value::Null;
        let hc = creq.body.get("HostConfig").unwrap_or(&empty);
        let mut owned = HashMap::new();
        for (_, id) in security::referenced_containers(hc) {
            let mine = self.own_container(caller, &id).await.is_ok();
            owned.insert(id, mine);
        }
        let policy = self.security_policy(user);
        let subject = self.subject(caller);
        let upstream = self.opts.upstream.clone();
        let body = creq.body.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            let host = security::RealHost::new(Some(&upstream));
            let ctx = security::Ctx {
                policy: &policy,
                subject: &subject,
                owned: &owned,
                host: &host,
            };
            security::check_create(&ctx, &body)
        })
        .await
        .map_err(|e| {
            Reject::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ds01: the security check failed ({e}); nothing was created"),
            )
        })?;
        verdict.map_err(|d| self.denied(caller, &d, creq.name.as_deref()))
    }

    /// `POST /containers/{id}/exec`: no privileged exec for non-admins.
    async fn exec_create(
        self: &Arc<Self>,
        conn: &Conn,
        caller: &Caller,
        req: Request<Body>,
    ) -> Result<Response<Body>, Reject> {
        let Some(user) = &caller.resolved else {
            return Err(no_config());
        };
        let (parts, body) = req.into_parts();
        let bytes = read_body(body).await?;
        let obj = Value::Object(object_body(&bytes)?);
        security::check_exec(&self.security_policy(user), &obj)
            .map_err(|d| self.denied(caller, &d, None))?;
        forward(self, conn, Request::from_parts(parts, full(bytes))).await
    }

    async fn update(
        self: &Arc<Self>,
        conn: &Conn,
        caller: &Caller,
        req: Request<Body>,
    ) -> Result<Response<Body>, Reject> {
        let Some(user) = &caller.resolved else {
            return Err(no_config());
        };
        let (parts, body) = req.into_parts();
        let bytes = read_body(body).await?;
        // The update body holds HostConfig's resource fields at the top level.
        let fields = object_body(&bytes)?;
        let creq = CreateRequest {
            name: None,
            body: json!({ "HostConfig": fields }),
            client: Client::Api,
        };
        let inv = gpu::Inventory::default();
        let decider = Decider {
            user,
            admin: caller.admin,
            inventory: &inv,
        };
        if !caller.admin {
            let policy = self.security_policy(user);
            let ctx_owned = HashMap::new();
            let host = security::RealHost::new(Some(&self.opts.upstream));
            let subject = self.subject(caller);
            let ctx = security::Ctx {
                policy: &policy,
                subject: &subject,
                owned: &ctx_owned,
                host: &host,
            };
            if let Err(d) = security::check_update(&ctx, &creq.body["HostConfig"]) {
                return Err(self.denied(caller, &d, None));
            }
        }
        if let Some(rf) = decider.judge_update(&creq) {
            let _ = self.opts.events.append(
                &rf.event(user, SOURCE, "", None)
                    .detail("uid", caller.peer.uid),
            );
            return Err(Reject::new(StatusCode::FORBIDDEN, rf.api_message()));
        }
        forward(self, conn, Request::from_parts(parts, full(bytes))).await
    }

    async fn create_volume(
        self: &Arc<Self>,
        conn: &Conn,
        caller: &Caller,
        req: Request<Body>,
    ) -> Result<Response<Body>, Reject> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(body).await?;
        let mut obj = object_body(&bytes)?;
        if !caller.admin
            && let Err(d) = security::check_volume_create(&Value::Object(obj.clone()))
        {
            let name = obj.get("Name").and_then(Value::as_str).map(str::to_string);
            return Err(self.denied(caller, &d, name.as_deref()));
        }
        let labels = obj.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(l) = labels.as_object_mut() {
            l.insert(LABEL_USER.into(), json!(caller.label_user));
        }
        let new = Bytes::from(Value::Object(obj).to_string());
        let mut req = Request::from_parts(parts, full(new.clone()));
        set_length(&mut req, new.len());
        forward(self, conn, req).await
    }
}

/// Whether `labels` (a container's or volume's) name the caller as owner.
fn owns(caller: &Caller, labels: &Value) -> bool {
    labels.get(LABEL_USER).and_then(Value::as_str) == Some(caller.label_user.as_str())
}

/// A body that must be a JSON object (empty = `{}`); else 400.
fn object_body(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, Reject> {
    crate::docker::create::json_object(bytes)
        .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("ds01: {e}")))
}

fn no_config() -> Reject {
    Reject::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ds01: the config is broken and no earlier good config is known, so your limits cannot be checked; ask an admin (ds01 config check)",
    )
}

fn engine_reject(e: &crate::docker::engine::EngineError, not_found: String) -> Reject {
    match e.status() {
        Some(404) => Reject::new(StatusCode::NOT_FOUND, not_found),
        _ => Reject::new(StatusCode::BAD_GATEWAY, format!("ds01: {e}")),
    }
}

async fn read_body(body: Body) -> Result<Bytes, Reject> {
    Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            Reject::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("ds01: cannot read the request body (at most {BODY_LIMIT} bytes): {e}"),
            )
        })
}

fn set_length(req: &mut Request<Body>, n: usize) {
    req.headers_mut().remove("transfer-encoding");
    req.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(n));
}

/// Add ds01's warnings to a create response's `Warnings` (the CLI prints them).
async fn add_warnings(resp: Response<Body>, warnings: &[String]) -> Result<Response<Body>, Reject> {
    let (mut parts, body) = resp.into_parts();
    let bytes = read_body(body).await?;
    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        let w = obj.entry("Warnings").or_insert_with(|| json!([]));
        if !w.is_array() {
            *w = json!([]);
        }
        if let Some(a) = w.as_array_mut() {
            a.extend(warnings.iter().map(|s| json!(format!("ds01: {s}"))));
        }
    }
    let new = Bytes::from(v.to_string());
    parts.headers.remove("transfer-encoding");
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(new.len()));
    Ok(Response::from_parts(parts, full(new)))
}

/// The query with `filters` narrowed to containers/volumes labelled for `user`.
/// Docker ANDs label filters, so a client's own label filters still apply.
pub fn with_label_filter(query: Option<&str>, user: &str) -> String {
    let mine = format!("{LABEL_USER}={user}");
    let mut filters = route::query_param(query, "filters")
        .and_then(|f| serde_json::from_str::<Value>(&f).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(obj) = filters.as_object_mut() {
        match obj.get_mut("label") {
            Some(Value::Array(a)) => a.push(json!(mine)),
            Some(Value::Object(m)) => {
                m.insert(mine, json!(true));
            }
            _ => {
                obj.insert("label".into(), json!([mine]));
            }
        }
    }
    with_param(query, "filters", &filters.to_string())
}

/// The query with `key` set to `value` (every earlier `key` removed).
pub fn with_param(query: Option<&str>, key: &str, value: &str) -> String {
    let mut parts: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter(|kv| {
            let k = kv.split_once('=').map_or(*kv, |(k, _)| k);
            k != key
        })
        .map(str::to_string)
        .collect();
    parts.push(format!("{key}={}", percent_encode(value)));
    parts.join("&")
}

fn with_query(mut req: Request<Body>, path: &str, query: &str) -> Result<Request<Body>, Reject> {
    let uri = format!("{path}?{query}")
        .parse()
        .map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("ds01: {e}")))?;
    *req.uri_mut() = uri;
    Ok(req)
}

/// One client connection: who, and its own upstream connection (HTTP/1 requests on
/// one connection are sequential, so one upstream connection serves them all).
struct Conn {
    peer: Peer,
    upstream: tokio::sync::Mutex<Option<Upstream>>,
}

async fn connect_upstream(socket: &Path) -> Result<Upstream, Reject> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        Reject::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "ds01: cannot reach the Docker daemon at {}: {e}",
                socket.display()
            ),
        )
    })?;
    let (send, conn) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Reject::new(StatusCode::BAD_GATEWAY, format!("ds01: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(send)
}

/// Forward a request to the daemon and its answer back; an upgrade (101) joins the
/// two connections byte for byte until both sides are done.
async fn forward(
    proxy: &Proxy,
    conn: &Conn,
    mut req: Request<Body>,
) -> Result<Response<Body>, Reject> {
    let wants_upgrade = req.headers().contains_key(UPGRADE);
    let down = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let fut = {
        let mut g = conn.upstream.lock().await;
        let reuse = match g.as_mut() {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !reuse {
            *g = Some(match proxy.unpark() {
                Some(up) => up,
                None => connect_upstream(&proxy.opts.upstream).await?,
            });
        }
        let Some(s) = g.as_mut() else {
            return Err(Reject::new(
                StatusCode::BAD_GATEWAY,
                "ds01: no upstream connection",
            ));
        };
        s.send_request(req)
    };
    let mut resp = fut.await.map_err(|e| {
        Reject::new(
            StatusCode::BAD_GATEWAY,
            format!("ds01: the Docker daemon: {e}"),
        )
    })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(down) = down
    {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(d), Ok(u)) = (down.await, up.await) else {
                return;
            };
            let mut d = TokioIo::new(d);
            let mut u = TokioIo::new(u);
            let _ = tokio::io::copy_bidirectional(&mut d, &mut u).await;
        });
    }
    Ok(resp.map(|b| b.boxed()))
}

/// The listening socket: the one systemd passed (socket activation, `LISTEN_FDS`), or
/// `path` bound here (a stale socket file is replaced), mode 0660, group `group`.
pub fn listener(
    path: &Path,
    group: Option<&str>,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd;
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if ours && n >= 1 {
        // SAFETY: systemd passes fd 3 (SD_LISTEN_FDS_START) to this process only.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
        l.set_nonblocking(true)?;
        return Ok(l);
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use by another server", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = group {
        match identity::group_gid(g) {
            Some(gid) => std::os::unix::fs::chown(path, None, Some(gid))?,
            None => eprintln!(
                "ds01 proxy: warning: group {g:?} does not exist; {} keeps its group",
                path.display()
            ),
        }
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Run the proxy until SIGTERM/SIGINT: the config watcher, SIGHUP reloads, and the
/// accept loop.
pub fn run(opts: Options, listen: &Path, group: Option<&str>) -> Result<(), String> {
    let std_listener = listener(listen, group)
        .map_err(|e| format!("cannot listen on {}: {e}", listen.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("XT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let listener = UnixListener::from_std(std_listener).map_err(|e| e.to_string())?;
        let every = opts.reload_every;
        let upstream = opts.upstream.clone();
        let proxy = Proxy::new(opts, Identities::Nss);
        eprintln!(
            "ds01 proxy: serving {} → {}",
            listen.display(),
            upstream.display()
        );
        let watcher = proxy.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                watcher.reload(false);
            }
        });
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| e.to_string())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        let reloader = proxy.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                eprintln!("ds01 proxy: SIGHUP: reloading the config");
                reloader.reload(true);
            }
        });
        tokio::select! {
            _ = proxy.serve(listener) => {}
            _ = term.recv() => eprintln!("ds01 proxy: SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => eprintln!("ds01 proxy: interrupted: stopping"),
        }
        Ok::<(), String>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_filters_are_added_in_both_forms() {
        let q = with_label_filter(Some("all=1"), "alice");
        let f = route::query_param(Some(&q), "filters").expect("filters");
        assert_eq!(
            serde_json::from_str::<Value>(&f).ok(),
            Some(json!({"label": ["ds01.user=alice"]}))
        );
        assert!(q.starts_with("all=1&"));
        let given = format!(
            "filters={}",
            percent_encode(r#"{"label":{"x=1":true},"status":["exited"]}"#)
        );
        let q = with_label_filter(Some(&given), "bob");
        let f = route::query_param(Some(&q), "filters").expect("filters");
        assert_eq!(
            serde_json::from_str::<Value>(&f).ok(),
            Some(json!({"label": {"x=1": true, "ds01.user=bob": true}, "status": ["exited"]}))
        );
        // A client's own ds01.user filter cannot widen it: both must match.
        let given = format!(
            "filters={}",
            percent_encode(r#"{"label":["ds01.user=alice"]}"#)
        );
        let q = with_label_filter(Some(&given), "bob");
        let f = route::query_param(Some(&q), "filters").expect("filters");
        assert_eq!(
            serde_json::from_str::<Value>(&f).ok(),
            Some(json!({"label": ["ds01.user=alice", "ds01.user=bob"]}))
        );
    }

    #[test]
    fn params_are_replaced_not_added_twice() {
        assert_eq!(
            with_param(Some("t=x&cgroupparent=evil"), "cgroupparent", "a.slice"),
            "t=x&cgroupparent=a.slice"
        );
        assert_eq!(with_param(None, "k", "a b"), "k=a%20b");
    }
}
