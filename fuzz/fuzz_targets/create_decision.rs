//! The create-body decision on arbitrary bytes: parsing, `Decider::judge` and the
//! host-escape checker must never panic, and a body the checker lets through must
//! not be privileged or ask for a host namespace (the default policy).
#![no_main]

use ds01::docker::security::{Ctx, FileInfo, Host, MountEntry, Policy, Subject, check_create};
use ds01::docker::{Client, CreateRequest};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every path exists, is a 0755 root directory on a suid mount: binds must fail.
struct AnyHost;
impl Host for AnyHost {
    fn canonicalize(&self, p: &Path) -> std::io::Result<PathBuf> {
        Ok(p.to_path_buf())
    }
    fn stat(&self, _: &Path) -> std::io::Result<FileInfo> {
        Ok(FileInfo { uid: 0, gid: 0, mode: 0o40755, is_dir: true, dev: 1, ino: 2 })
    }
    fn mounts(&self) -> std::io::Result<Vec<MountEntry>> {
        Ok(vec![MountEntry { point: "/".into(), nosuid: false, nodev: false }])
    }
    fn docker_sockets(&self) -> Vec<(u64, u64)> {
        Vec::new()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = CreateRequest::from_body(data, Some("x".into()), Client::Api) else {
        return;
    };
    let policy = Policy::default();
    let subject = Subject { name: "alice".into(), uid: 1001, gids: vec![1001], home: Some("/home/alice".into()) };
    let owned = HashMap::new();
    let ctx = Ctx { policy: &policy, subject: &subject, owned: &owned, host: &AnyHost };
    if check_create(&ctx, &req.body).is_ok() {
        let hc = &req.body["HostConfig"];
        assert_ne!(hc["Privileged"], serde_json::json!(true));
        for k in ["PidMode", "IpcMode", "UTSMode", "UsernsMode", "NetworkMode"] {
            assert_ne!(hc[k], serde_json::json!("host"));
        }
        let binds = hc["Binds"].as_array().map(|a| a.iter().filter(|b| b.as_str().is_some_and(|s| s.starts_with('/'))).count()).unwrap_or(0);
        assert_eq!(binds, 0, "a bind from a suid mount passed");
    }
});
