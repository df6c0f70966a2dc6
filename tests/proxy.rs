//! `ds01 proxy`, hermetically: a fake Engine API (hyper, on a unix socket) that keeps
//! containers, exec instances and volumes and records every request it receives,
//! and the real proxy serving one socket per identity (alice and bob are students,
//! boss is an admin). Placement, quotas, ownership of every container endpoint,
//! filters, build, volumes, path tricks, upgrades with half-close, streaming, large
//! bodies, config reloads and the last good config; then the binary itself with the
//! kernel's SO_PEERCRED.

mod common;
use bytes::Bytes;
use common::Fixture;
use ds01::events::EventLog;
use ds01::proxy::{Ident, Identities, Options, Peer, Proxy};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const CFG: &str = "\
defaults:
  max_cpus: 4
  memory: 1g
  memory_swap: 1g
  pids_limit: 512
  max_containers_per_user: 3
default_group: student
groups:
  student:
    members: [alice, bob]
    aggregate:
      cpu_quota: \"800%\"
      memory_max: \"4G\"
      memory_high: \"3G\"
      tasks_max: 1000
  admin:
    members: [boss]
";

type Body = BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

/// A body fed from a channel (the fake daemon's streams).
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);
impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

#[derive(Default)]
struct Daemon {
    containers: Vec<Value>,
    execs: HashMap<String, String>,
    volumes: HashMap<String, Value>,
    /// (method, path?query, body)
    log: Vec<(String, String, Value)>,
    next: u32,
    /// Connections the daemon has accepted.
    accepted: usize,
}

type Shared = Arc<Mutex<Daemon>>;

fn json_resp(status: u16, v: Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r
}

fn label_filters(query: &str) -> Vec<String> {
    let f = ds01::proxy::route::query_param(Some(query), "filters").unwrap_or_default();
    match serde_json::from_str::<Value>(&f)
        .ok()
        .and_then(|v| v.get("label").cloned())
    {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn matches(labels: &Value, filters: &[String]) -> bool {
    filters.iter().all(|f| {
        let (k, v) = f.split_once('=').unwrap_or((f, ""));
        labels.get(k).and_then(Value::as_str) == Some(v)
    })
}

fn find<'a>(d: &'a Daemon, id: &str) -> Option<&'a Value> {
    d.containers
        .iter()
        .find(|c| c["Id"] == id || c["Name"] == format!("/{id}"))
}

/// Gate for the streaming test: the fake daemon sends the last log line only after
/// the test has received the first one through the proxy.
static LOG_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

async fn daemon(st: Shared, mut req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let method = req.method().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(String::from)
        .collect();
    let segs: Vec<&str> = segs
        .iter()
        .map(String::as_str)
        .skip_while(|s| s.starts_with("v1."))
        .collect();
    let upgrade = req.headers().contains_key("upgrade");
    // Large uploads are counted, not kept.
    if method == "PUT" && segs.last() == Some(&"archive") {
        let mut n: u64 = 0;
        let mut body = req.into_body();
        while let Some(f) = body.frame().await {
            if let Ok(d) = f?.into_data() {
                n += d.len() as u64;
            }
        }
        st.lock()
            .expect("lock")
            .log
            .push((method, pq, json!({"bytes": n})));
        return Ok(json_resp(200, json!({ "bytes": n })));
    }
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let bytes = req.into_body().collect().await?.to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut d = st.lock().expect("lock");
    d.log.push((method.clone(), pq.clone(), body.clone()));
    let r = match (method.as_str(), segs.as_slice()) {
        ("GET", ["_ping"]) => Response::new(full("OK")),
        ("POST", ["containers", "create"]) => {
            d.next += 1;
            let id = format!("c{:04}", d.next);
            let name = ds01::proxy::route::query_param(Some(&query), "name").unwrap_or(id.clone());
            let labels = body.get("Labels").cloned().unwrap_or(json!({}));
            d.containers.push(json!({"Id": id, "Name": format!("/{name}"),
                "Config": {"Labels": labels}, "HostConfig": body.get("HostConfig").cloned().unwrap_or(json!({}))}));
            json_resp(201, json!({"Id": id, "Warnings": []}))
        }
        ("GET", ["containers", "json"]) => {
            let f = label_filters(&query);
            let list: Vec<Value> = d
                .containers
                .iter()
                .filter(|c| matches(&c["Config"]["Labels"], &f))
                .map(|c| json!({"Id": c["Id"], "Names": [c["Name"]], "Labels": c["Config"]["Labels"]}))
                .collect();
            json_resp(200, json!(list))
        }
        ("POST", ["containers", "prune"]) => {
            let f = label_filters(&query);
            let gone: Vec<Value> = d
                .containers
                .iter()
                .filter(|c| matches(&c["Config"]["Labels"], &f))
                .map(|c| c["Id"].clone())
                .collect();
            d.containers.retain(|c| !gone.contains(&c["Id"]));
            json_resp(200, json!({ "ContainersDeleted": gone }))
        }
        (_, ["containers", id, rest @ ..]) => {
            let Some(c) = find(&d, id).cloned() else {
                return Ok(json_resp(
                    404,
                    json!({"message": format!("No such container: {id}")}),
                ));
            };
            match (method.as_str(), rest) {
                ("GET", ["json"]) => json_resp(200, c),
                ("DELETE", []) => {
                    d.containers.retain(|x| x["Id"] != c["Id"]);
                    json_resp(204, json!(null))
                }
                ("POST", ["exec"]) => {
                    d.next += 1;
                    let e = format!("e{:04}", d.next);
                    d.execs
                        .insert(e.clone(), c["Id"].as_str().unwrap_or("").to_string());
                    json_resp(201, json!({ "Id": e }))
                }
                ("GET", ["logs"]) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(4);
                    tokio::spawn(async move {
                        let _ = tx.send(Bytes::from("first line\n")).await;
                        LOG_GATE.notified().await;
                        let _ = tx.send(Bytes::from("last line\n")).await;
                    });
                    Response::new(BodyExt::boxed(ChanBody(rx)))
                }
                ("POST", ["attach"]) if on_upgrade.is_some() => upgraded(on_upgrade),
                _ => json_resp(200, json!({})),
            }
        }
        (_, ["exec", id, rest @ ..]) => match d.execs.get(*id) {
            None => json_resp(404, json!({"message": "No such exec instance"})),
            Some(cid) => match rest {
                ["json"] => json_resp(200, json!({"ID": id, "ContainerID": cid})),
                ["start"] if on_upgrade.is_some() => upgraded(on_upgrade),
                _ => json_resp(200, json!({})),
            },
        },
        ("POST", ["volumes", "create"]) => {
            let name = body["Name"].as_str().unwrap_or("anon").to_string();
            let v =
                json!({"Name": name, "Labels": body.get("Labels").cloned().unwrap_or(json!({}))});
            d.volumes.insert(name, v.clone());
            json_resp(201, v)
        }
        (_, ["volumes", name]) => match (method.as_str(), d.volumes.get(*name).cloned()) {
            (_, None) => json_resp(404, json!({"message": "no such volume"})),
            ("DELETE", Some(_)) => {
                d.volumes.remove(*name);
                json_resp(204, json!(null))
            }
            (_, Some(v)) => json_resp(200, v),
        },
        _ => json_resp(200, json!({})),
    };
    Ok(r)
}

/// Answer 101 and echo what comes in, upper-cased, until the client half-closes;
/// then say BYE and close.
fn upgraded(on: Option<hyper::upgrade::OnUpgrade>) -> Response<Body> {
    if let Some(on) = on {
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let mut io = TokioIo::new(up);
            let mut buf = Vec::new();
            let _ = io.read_to_end(&mut buf).await;
            let _ = io.write_all(&buf.to_ascii_uppercase()).await;
            let _ = io.write_all(b"BYE\n").await;
            let _ = io.shutdown().await;
        });
    }
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("connection", "Upgrade".parse().expect("hv"));
    r.headers_mut()
        .insert("upgrade", "tcp".parse().expect("hv"));
    r
}

async fn serve_daemon(socket: PathBuf, st: Shared) {
    let l = UnixListener::bind(&socket).expect("bind daemon");
    loop {
        let Ok((s, _)) = l.accept().await else { return };
        if let Ok(mut d) = st.lock() {
            d.accepted += 1;
        }
        let st = st.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |r| daemon(st.clone(), r));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .with_upgrades()
                .await;
        });
    }
}

struct Env {
    f: Fixture,
    st: Shared,
    proxy: Arc<Proxy>,
    sockets: HashMap<&'static str, PathBuf>,
    state: PathBuf,
    events: PathBuf,
    cg: PathBuf,
}

const PEOPLE: &[(&str, u32, &[&str])] = &[
    ("alice", 1001, &["alice", "docker"]),
    ("bob", 1002, &["bob", "docker"]),
    ("boss", 1003, &["boss", "docker", "ds01-admin"]),
];

impl Env {
    async fn new() -> Env {
        Env::with_config(CFG).await
    }

    async fn with_config(cfg: &str) -> Env {
        let f = Fixture::new(cfg);
        let d = f.path().to_path_buf();
        let st: Shared = Arc::default();
        let up = d.join("engine.sock");
        tokio::spawn(serve_daemon(up.clone(), st.clone()));
        for _ in 0..100 {
            if up.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let state = d.join("state");
        let events = d.join("events.jsonl");
        let cg = d.join("cg/ds01.slice");
        let opts = Options {
            upstream: up,
            config: f.config(),
            state_dir: state.clone(),
            cgroup_root: cg.clone(),
            events: EventLog::new(&events),
            reload_every: Duration::from_secs(3600),
        };
        let ids = PEOPLE
            .iter()
            .map(|(n, uid, g)| {
                (
                    *uid,
                    Ident {
                        name: (*n).to_string(),
                        groups: g.iter().map(|s| (*s).to_string()).collect(),
                    },
                )
            })
            .collect();
        let proxy = Proxy::new(opts, Identities::Fixed(ids));
        let mut sockets = HashMap::new();
        for (name, uid, _) in PEOPLE {
            let p = d.join(format!("{name}.sock"));
            let l = UnixListener::bind(&p).expect("bind proxy");
            tokio::spawn(proxy.clone().serve_with(
                l,
                Some(Peer {
                    uid: *uid,
                    gid: *uid,
                    pid: None,
                }),
            ));
            sockets.insert(*name, p);
        }
        Env {
            f,
            st,
            proxy,
            sockets,
            state,
            events,
            cg,
        }
    }

    async fn req(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, b) = self
            .raw(who, method, path, body.map(|b| b.to_string().into_bytes()))
            .await;
        (
            s,
            serde_json::from_slice(&b).unwrap_or(Value::String(String::from_utf8_lossy(&b).into())),
        )
    }

    async fn raw(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let mut send = connect(&self.sockets[who]).await;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "docker")
            .header("user-agent", "Docker-Client/20.10.24 (linux)")
            .header("content-type", "application/json")
            .body(full(body.unwrap_or_default()))
            .expect("request");
        let resp = send.send_request(req).await.expect("proxy answers");
        assert!(
            resp.headers().contains_key("ds01-proxy"),
            "every answer says ds01-proxy"
        );
        let status = resp.status().as_u16();
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        (status, b.to_vec())
    }

    fn log(&self) -> Vec<(String, String, Value)> {
        self.st.lock().expect("lock").log.clone()
    }

    fn forwarded(&self, needle: &str) -> bool {
        self.log()
            .iter()
            .any(|(m, p, _)| format!("{m} {p}").contains(needle))
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn set_memory(&self, user: &str, bytes: u64) {
        let dir = self
            .cg
            .join(format!("ds01-student.slice/ds01-student-{user}.slice"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("memory.current"), format!("{bytes}\n")).expect("write");
    }

    async fn create(&self, who: &str, name: &str, body: Value) -> (u16, Value) {
        self.req(
            who,
            "POST",
            &format!("/v1.41/containers/create?name={name}"),
            Some(body),
        )
        .await
    }

    fn container(&self, name: &str) -> Value {
        let d = self.st.lock().expect("lock");
        find(&d, name).cloned().unwrap_or(Value::Null)
    }
}

async fn connect(p: &Path) -> hyper::client::conn::http1::SendRequest<Body> {
    let s = UnixStream::connect(p).await.expect("connect proxy");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("handshake");
    tokio::spawn(conn.with_upgrades());
    send
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_placed_labelled_and_given_defaults() {
    let e = Env::new().await;
    let (s, v) = e
        .create("alice", "a1", json!({"Image": "img", "Labels": {"x": "1"}}))
        .await;
    assert_eq!(s, 201, "{v}");
    let c = e.container("a1");
    assert_eq!(c["HostConfig"]["CgroupParent"], "ds01-student-alice.slice");
    assert_eq!(
        c["Config"]["Labels"],
        json!({"x": "1", "ds01.user": "alice", "ds01.managed": "true", "ds01.container_type": "docker"})
    );
    assert_eq!(c["HostConfig"]["Memory"], json!(1u64 << 30));
    assert_eq!(c["HostConfig"]["NanoCpus"], json!(4_000_000_000i64));
    assert_eq!(c["HostConfig"]["PidsLimit"], json!(512));
    // What the client set is kept.
    let (s, _) = e
        .create(
            "alice",
            "a2",
            json!({"Image": "img", "HostConfig": {"Memory": 268435456, "NanoCpus": 500000000}}),
        )
        .await;
    assert_eq!(s, 201);
    let c = e.container("a2");
    assert_eq!(c["HostConfig"]["Memory"], json!(268435456));
    assert_eq!(c["HostConfig"]["NanoCpus"], json!(500000000));
    let ev = e.events();
    let inj: Vec<&Value> = ev
        .iter()
        .filter(|v| v["event_type"] == "docker.cgroup_inject")
        .collect();
    assert_eq!(inj.len(), 2, "{ev:?}");
    assert_eq!(inj[0]["source"], "docker-proxy");
    assert_eq!(inj[0]["details"]["container"], "a1");
    assert_eq!(inj[0]["details"]["slice"], "ds01-student-alice.slice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_type_comes_from_labels_and_the_client() {
    let e = Env::new().await;
    e.create(
        "alice",
        "comp",
        json!({"Image": "i", "Labels": {"com.docker.compose.project": "p"}}),
    )
    .await;
    assert_eq!(
        e.container("comp")["Config"]["Labels"]["ds01.container_type"],
        "compose"
    );
    // An SDK (no Docker-Client user agent) is "api".
    let mut send = connect(&e.sockets["alice"]).await;
    let req = Request::post("/containers/create?name=sdk")
        .header("host", "docker")
        .header("user-agent", "docker-sdk-python/5.0.3")
        .body(full(json!({"Image": "i"}).to_string()))
        .expect("req");
    assert_eq!(send.send_request(req).await.expect("resp").status(), 201);
    assert_eq!(
        e.container("sdk")["Config"]["Labels"]["ds01.container_type"],
        "api"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_docker_errors_with_events_and_nothing_is_created() {
    let e = Env::new().await;
    let (s, v) = e
        .create(
            "alice",
            "evil",
            json!({"Image": "i", "HostConfig": {"CgroupParent": "system.slice"}}),
        )
        .await;
    assert_eq!(s, 403);
    let msg = v["message"].as_str().expect("a Docker error message");
    assert!(msg.contains("--cgroup-parent=system.slice"), "{msg}");
    assert!(msg.contains("ds01-student-alice.slice"), "{msg}");
    // Over the aggregate memory: 3.5 GiB in use, 1 GiB asked, 4 GiB max.
    e.set_memory("alice", 3584 << 20);
    let (s, v) = e.create("alice", "big", json!({"Image": "i"})).await;
    assert_eq!(s, 403);
    let msg = v["message"].as_str().expect("message");
    assert!(
        msg.contains("MemoryMax of ds01-student-alice.slice"),
        "{msg}"
    );
    assert!(msg.contains("docker stop NAME"), "{msg}");
    // Per-container maxima.
    e.set_memory("alice", 0);
    let (s, v) = e
        .create(
            "alice",
            "cpu",
            json!({"Image": "i", "HostConfig": {"NanoCpus": 8_000_000_000i64}}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, _) = e
        .create(
            "alice",
            "pids",
            json!({"Image": "i", "HostConfig": {"PidsLimit": -1}}),
        )
        .await;
    assert_eq!(s, 403);
    // Reserved labels.
    let (s, v) = e
        .create(
            "alice",
            "lbl",
            json!({"Image": "i", "Labels": {"ds01.user": "bob"}}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        !e.forwarded("/containers/create"),
        "nothing refused reached the daemon"
    );
    let types: Vec<String> = e
        .events()
        .iter()
        .map(|v| v["event_type"].as_str().unwrap_or("").to_string())
        .collect();
    for t in [
        "quota.cgroup_parent_refused",
        "quota.memory_exceeded",
        "quota.container_limit_exceeded",
        "quota.reserved_label_refused",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
    assert!(e.events().iter().all(|v| v["source"] == "docker-proxy"));
    // The container count: 3 allowed, the 4th refused.
    for i in 0..3 {
        assert_eq!(
            e.create("alice", &format!("n{i}"), json!({"Image": "i"}))
                .await
                .0,
            201
        );
    }
    let (s, v) = e.create("alice", "n3", json!({"Image": "i"})).await;
    assert_eq!(s, 403);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("3 containers at once"),
        "{v}"
    );
    // Admins choose their own parent and are not counted.
    let (s, _) = e
        .create(
            "boss",
            "adm",
            json!({"Image": "i", "HostConfig": {"CgroupParent": "system.slice"}}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        e.container("adm")["HostConfig"]["CgroupParent"],
        "system.slice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_container_does_not_exist_on_any_endpoint() {
    let e = Env::new().await;
    assert_eq!(e.create("alice", "ac", json!({"Image": "i"})).await.0, 201);
    let id = e.container("ac")["Id"].as_str().expect("id").to_string();
    let table: &[(&str, &str)] = &[
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
        ("GET", "logs"),
        ("POST", "wait"),
        ("GET", "top"),
        ("GET", "stats"),
        ("GET", "changes"),
        ("GET", "export"),
        ("GET", "archive?path=/"),
        ("PUT", "archive?path=/"),
        ("HEAD", "archive?path=/"),
        ("POST", "resize?h=1&w=1"),
        ("POST", "rename?name=x"),
        ("POST", "update"),
    ];
    for target in [id.as_str(), "ac"] {
        for (m, sub) in table {
            let p = if sub.is_empty() {
                format!("/v1.41/containers/{target}")
            } else {
                format!("/v1.41/containers/{target}/{sub}")
            };
            let before = e.log().len();
            let (s, v) = e.req("bob", m, &p, None).await;
            assert_eq!(s, 404, "bob {m} {p}: {v}");
            if *m != "HEAD" {
                assert!(
                    v["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("No such container"),
                    "{m} {p}: {v}"
                );
            }
            let after: Vec<_> = e.log()[before..].to_vec();
            assert!(
                after
                    .iter()
                    .all(|(lm, lp, _)| lm == "GET" && lp.ends_with("/json")),
                "only the ownership lookup reached the daemon for bob {m} {p}: {after:?}"
            );
        }
    }
    let (s, _) = e
        .req(
            "bob",
            "POST",
            &format!("/commit?container={id}&repo=x"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    // The owner and an admin get through.
    assert_eq!(
        e.req("alice", "POST", "/containers/ac/stop", None).await.0,
        200
    );
    assert_eq!(
        e.req("boss", "POST", "/containers/ac/stop", None).await.0,
        200
    );
    // Exec instances belong to their container's owner.
    let (s, v) = e
        .req(
            "alice",
            "POST",
            "/containers/ac/exec",
            Some(json!({"Cmd": ["sh"]})),
        )
        .await;
    assert_eq!(s, 201);
    let ex = v["Id"].as_str().expect("exec id").to_string();
    assert_eq!(
        e.req("bob", "GET", &format!("/exec/{ex}/json"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        e.req("bob", "POST", &format!("/exec/{ex}/start"), Some(json!({})))
            .await
            .0,
        404
    );
    assert!(!e.forwarded(&format!("POST /exec/{ex}/start")));
    assert_eq!(
        e.req("alice", "GET", &format!("/exec/{ex}/json"), None)
            .await
            .0,
        200
    );
    // A container without a ds01.user label is the admins' only.
    e.st.lock()
        .expect("lock")
        .containers
        .push(json!({"Id": "raw", "Name": "/raw", "Config": {"Labels": {}}}));
    assert_eq!(
        e.req("alice", "GET", "/containers/raw/json", None).await.0,
        404
    );
    assert_eq!(
        e.req("boss", "GET", "/containers/raw/json", None).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_prune_and_events_are_narrowed_to_the_caller() {
    let e = Env::new().await;
    e.create("alice", "a", json!({"Image": "i"})).await;
    e.create("bob", "b", json!({"Image": "i"})).await;
    let (_, list) = e
        .req("bob", "GET", "/v1.41/containers/json?all=1", None)
        .await;
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["Names"][0].as_str())
        .collect();
    assert_eq!(names, vec!["/b"]);
    let (_, list) = e.req("boss", "GET", "/containers/json?all=1", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "an admin sees all");
    let bob_id = e.container("b")["Id"].clone();
    let (_, pruned) = e.req("bob", "POST", "/v1.41/containers/prune", None).await;
    assert_eq!(pruned["ContainersDeleted"], json!([bob_id]));
    assert!(
        e.container("a").is_object(),
        "alice's container survives bob's prune"
    );
    assert!(e.container("b").is_null(), "bob's own is pruned");
    e.req("bob", "GET", "/events?since=1", None).await;
    let (_, q, _) = e
        .log()
        .into_iter()
        .rev()
        .find(|(_, p, _)| p.starts_with("/events"))
        .expect("forwarded");
    assert_eq!(
        label_filters(q.split_once('?').map_or("", |x| x.1)),
        vec!["ds01.user=bob"]
    );
    e.req("bob", "GET", "/volumes", None).await;
    assert!(e.forwarded("GET /volumes?filters="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_build_and_volumes() {
    let e = Env::new().await;
    e.create("alice", "u", json!({"Image": "i"})).await;
    let (s, v) = e
        .req(
            "alice",
            "POST",
            "/containers/u/update",
            Some(json!({"Memory": 8u64 << 30})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("memory per container")
    );
    assert!(!e.forwarded("/containers/u/update"));
    assert_eq!(
        e.req(
            "alice",
            "POST",
            "/containers/u/update",
            Some(json!({"Memory": 512u64 << 20}))
        )
        .await
        .0,
        200
    );
    // Build steps run in the caller's slice, whatever the client asked.
    e.raw(
        "alice",
        "POST",
        "/v1.41/build?t=x&cgroupparent=system.slice",
        Some(vec![0u8; 1024]),
    )
    .await;
    let (_, q, _) = e
        .log()
        .into_iter()
        .rev()
        .find(|(_, p, _)| p.contains("/build"))
        .expect("build forwarded");
    assert!(q.contains("cgroupparent=ds01-student-alice.slice"), "{q}");
    assert!(!q.contains("system.slice"), "{q}");
    // Volumes: owned at create; another user's can be neither removed nor mounted.
    let (s, v) = e
        .req(
            "alice",
            "POST",
            "/volumes/create",
            Some(json!({"Name": "av"})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(v["Labels"]["ds01.user"], "alice");
    assert_eq!(e.req("bob", "DELETE", "/volumes/av", None).await.0, 404);
    assert_eq!(e.req("bob", "GET", "/volumes/av", None).await.0, 404);
    let (s, v) = e
        .create(
            "bob",
            "steal",
            json!({"Image": "i", "HostConfig": {"Binds": ["av:/data"]}}),
        )
        .await;
    assert_eq!(s, 403);
    assert!(
        v["message"].as_str().unwrap_or("").contains("not yours"),
        "{v}"
    );
    let (s, _) = e
        .create("bob", "steal2", json!({"Image": "i", "HostConfig": {"Mounts": [{"Type": "volume", "Source": "av", "Target": "/d"}]}}))
        .await;
    assert_eq!(s, 403);
    // A new named volume is created owned by its user.
    assert_eq!(
        e.create(
            "bob",
            "own",
            json!({"Image": "i", "HostConfig": {"Binds": ["bv:/data"]}})
        )
        .await
        .0,
        201
    );
    assert_eq!(
        e.st.lock().expect("lock").volumes["bv"]["Labels"]["ds01.user"],
        "bob"
    );
    assert_eq!(e.req("alice", "DELETE", "/volumes/av", None).await.0, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_and_odd_methods_never_reach_the_daemon() {
    let e = Env::new().await;
    e.create("alice", "t", json!({"Image": "i"})).await;
    let before = e.log().len();
    for (m, p) in [
        ("GET", "//containers/t/json"),
        ("POST", "/v1.41//containers/t/stop"),
        ("POST", "/containers/./t/stop"),
        ("POST", "/containers/x/../t/stop"),
        ("POST", "/containers/t%2Fstop"),
        ("POST", "/containers/%2e%2e/containers/t/stop"),
        ("post", "/containers/t/stop"),
        ("PATCH", "/containers/t/stop"),
    ] {
        let (s, v) = e.req("bob", m, p, None).await;
        assert_eq!(s, 400, "{m} {p}: {v}");
    }
    assert_eq!(e.log().len(), before, "nothing was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through_with_half_close_and_streams_stream() {
    let e = Env::new().await;
    e.create("alice", "x", json!({"Image": "i"})).await;
    let (_, v) = e
        .req(
            "alice",
            "POST",
            "/containers/x/exec",
            Some(json!({"Cmd": ["cat"]})),
        )
        .await;
    let ex = v["Id"].as_str().expect("id").to_string();
    for path in [
        format!("/v1.41/exec/{ex}/start"),
        "/v1.41/containers/x/attach?stream=1&stdin=1".to_string(),
    ] {
        let mut send = connect(&e.sockets["alice"]).await;
        let req = Request::post(&path)
            .header("host", "docker")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(full(json!({"Detach": false, "Tty": true}).to_string()))
            .expect("req");
        let resp = send.send_request(req).await.expect("resp");
        assert_eq!(resp.status(), 101, "{path}");
        let up = hyper::upgrade::on(resp).await.expect("upgraded");
        let mut io = TokioIo::new(up);
        io.write_all(b"hello through ds01").await.expect("write");
        io.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut got))
            .await
            .expect("the daemon's answer after our half-close")
            .expect("read");
        assert_eq!(
            String::from_utf8_lossy(&got),
            "HELLO THROUGH DS01BYE\n",
            "{path}"
        );
    }
    // logs -f: the first line arrives while the daemon still holds the last.
    let mut send = connect(&e.sockets["alice"]).await;
    let resp = send
        .send_request(
            Request::get("/containers/x/logs?follow=1")
                .header("host", "d")
                .body(full(""))
                .expect("req"),
        )
        .await
        .expect("resp");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first line streamed")
        .expect("frame")
        .expect("ok");
    assert_eq!(
        first.into_data().ok().as_deref(),
        Some(&b"first line\n"[..])
    );
    LOG_GATE.notify_one();
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(&rest[..], b"last line\n");
    // A 64 MiB upload (docker cp into a container) streams through whole.
    let big = vec![7u8; 64 << 20];
    let (s, b) = e
        .raw("alice", "PUT", "/containers/x/archive?path=/tmp", Some(big))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).ok(),
        Some(json!({"bytes": 64u64 << 20}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_keeps_the_last_good_one_in_force() {
    let e = Env::new().await;
    assert!(
        e.state.join("last-good-config.json").exists(),
        "the good config was saved"
    );
    std::fs::write(e.f.config(), "groups: [broken\n").expect("break");
    e.proxy.reload(true);
    let (s, v) = e
        .create(
            "alice",
            "still",
            json!({"Image": "i", "HostConfig": {"CgroupParent": "system.slice"}}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        e.create("alice", "placed", json!({"Image": "i"})).await.0,
        201
    );
    assert_eq!(
        e.container("placed")["HostConfig"]["CgroupParent"],
        "ds01-student-alice.slice"
    );
    assert!(
        e.events()
            .iter()
            .any(|v| v["event_type"] == "config.invalid")
    );

    // A proxy that starts on a broken config uses the saved snapshot.
    let e2 = Env::with_config("groups: [broken\n").await;
    assert_eq!(
        e2.create("alice", "n", json!({"Image": "i"})).await.0,
        503,
        "no snapshot: refused"
    );
    std::fs::create_dir_all(&e2.state).expect("mkdir");
    std::fs::copy(
        e.state.join("last-good-config.json"),
        e2.state.join("last-good-config.json"),
    )
    .expect("copy");
    e2.proxy.reload(true);
    assert_eq!(e2.create("alice", "n", json!({"Image": "i"})).await.0, 201);
    assert_eq!(
        e2.container("n")["HostConfig"]["CgroupParent"],
        "ds01-student-alice.slice"
    );
    assert_eq!(
        e2.create("boss", "b", json!({"Image": "i"})).await.0,
        201,
        "admins still work"
    );
}

/// The binary, with the kernel's SO_PEERCRED: whoever runs the tests is the caller.
#[test]
fn the_binary_serves_the_socket_and_forwards() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let f = Fixture::new(CFG);
    let d = f.path().to_path_buf();
    let up = d.join("engine.sock");
    let st: Shared = Arc::default();
    rt.spawn(serve_daemon(up.clone(), st.clone()));
    let listen = d.join("docker.sock");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ds01"))
        .args(["--config"])
        .arg(f.config())
        .args(["proxy", "--listen"])
        .arg(&listen)
        .arg("--upstream")
        .arg(&up)
        .env("DS01_STATE_DIR", d.join("state"))
        .env("DS01_EVENTS_LOG", d.join("events.jsonl"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ds01 proxy");
    for _ in 0..200 {
        if listen.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mode = std::fs::metadata(&listen)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    let got = rt.block_on(async {
        let mut send = connect(&listen).await;
        let resp = send
            .send_request(
                Request::get("/_ping")
                    .header("host", "d")
                    .body(full(""))
                    .expect("req"),
            )
            .await
            .expect("resp");
        let h = resp
            .headers()
            .get("ds01-proxy")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        (h, b)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode.ok(), Some(0o660), "the socket is for its group");
    assert_eq!(got.0.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(&got.1[..], b"OK");
    assert!(
        st.lock()
            .expect("lock")
            .log
            .iter()
            .any(|(_, p, _)| p == "/_ping")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_are_reused_by_the_next_client() {
    let e = Env::new().await;
    let accepted = || e.st.lock().expect("lock").accepted;
    for who in ["boss", "alice", "bob", "boss"] {
        let (s, _) = e.req(who, "GET", "/_ping", None).await;
        assert_eq!(s, 200);
        // The client connection is gone once `req` returns; the proxy parks its
        // upstream connection when it notices.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        accepted(),
        1,
        "four clients one after another, one upstream connection"
    );
    // Two clients at once need two.
    let mut a = connect(&e.sockets["alice"]).await;
    let mut b = connect(&e.sockets["bob"]).await;
    for s in [&mut a, &mut b] {
        let r = Request::get("/_ping").body(full("")).expect("req");
        assert_eq!(s.send_request(r).await.expect("ping").status(), 200);
    }
    assert_eq!(accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_escapes_are_refused_for_students_not_for_admins() {
    let e = Env::new().await;
    for (name, hc, option) in [
        ("p", json!({"Privileged": true}), "--privileged"),
        ("c", json!({"CapAdd": ["SYS_ADMIN"]}), "--cap-add SYS_ADMIN"),
        ("h", json!({"PidMode": "host"}), "--pid host"),
        ("r", json!({"Binds": ["/:/host"]}), "-v /:/host"),
        (
            "s",
            json!({"SecurityOpt": ["seccomp=unconfined"]}),
            "--security-opt seccomp=unconfined",
        ),
    ] {
        let (s, v) = e
            .create("alice", name, json!({"Image": "i", "HostConfig": hc}))
            .await;
        assert_eq!(s, 403, "{v}");
        let msg = v["message"].as_str().unwrap_or("");
        assert!(msg.contains(option) && msg.contains("refused"), "{msg}");
    }
    assert!(
        !e.forwarded("/containers/create"),
        "nothing refused reached the daemon"
    );
    let denied: Vec<Value> = e
        .events()
        .into_iter()
        .filter(|v| v["event_type"] == "security.denied")
        .collect();
    assert_eq!(denied.len(), 5, "{denied:?}");
    assert_eq!(denied[0]["user"], "alice");
    assert_eq!(denied[0]["details"]["option"], "--privileged");
    assert_eq!(denied[0]["details"]["container"], "p");
    assert_eq!(
        denied[0]["details"]["config_key"],
        "container_security.allow_privileged"
    );
    // Volumes that are bind mounts in disguise, and privileged exec.
    let (s, _) = e
        .req(
            "alice",
            "POST",
            "/volumes/create",
            Some(
                json!({"Name": "v", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}}),
            ),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = e.create("alice", "mine", json!({"Image": "i"})).await;
    assert_eq!(s, 201);
    let (s, v) = e
        .req(
            "alice",
            "POST",
            "/containers/mine/exec",
            Some(json!({"Privileged": true, "Cmd": ["sh"]})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    // An admin keeps full Docker.
    let (s, v) = e
        .create(
            "boss",
            "adm",
            json!({"Image": "i", "HostConfig": {"Privileged": true, "Binds": ["/:/host"], "PidMode": "host"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}
