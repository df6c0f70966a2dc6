//! The proxy's create decision with a 1,000-user config: the body parsed, the user
//! resolved, `Decider::judge` run and the changes written back — everything the proxy
//! does for `POST /containers/create` except the daemon round trips (target < 2 ms).
//! Results in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use ds01::docker::{Client, CreateRequest, Decider, Usage, Verdict, gpu};
use ds01::{config, demo};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg_path = demo::write_generated(tmp.path(), 1000).expect("generate");
    let cfg = config::load(&cfg_path).config.expect("config loads");
    let users = cfg.all_users();
    let name = users[users.len() / 2].user.clone();
    // What `docker run -d --name x -m 1g ubuntu sleep 1` sends (docker 20.10).
    let body = br#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["sleep","1"],"Image":"ubuntu","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"ConsoleSize":[0,0],"Isolation":"","CpuShares":0,"Memory":1073741824,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"DeviceRequests":null,"MemorySwap":0,"PidsLimit":null},"NetworkingConfig":{"EndpointsConfig":{}}}"#;
    let inv = gpu::Inventory::default();
    let usage = Usage {
        memory_bytes: 1 << 30,
        tasks: 10,
        containers: Some(Vec::new()),
        held_gpus: Vec::new(),
    };
    c.bench_function("proxy_create_decision_1000_users", |b| {
        b.iter(|| {
            let mut req = CreateRequest::from_body(black_box(body), Some("x".into()), Client::Cli)
                .expect("body");
            let user = cfg.resolve(black_box(&name));
            let d = Decider {
                user: &user,
                admin: false,
                inventory: &inv,
            };
            match d.judge(&req, Some(&usage)) {
                Verdict::Allow { changes, .. } => {
                    for ch in &changes {
                        ch.apply(&mut req.body);
                    }
                    black_box(req.body.to_string());
                }
                Verdict::Refuse(r) => panic!("refused: {}", r.api_message()),
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
