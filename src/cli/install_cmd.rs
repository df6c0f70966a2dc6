//! `ds01 install`: put ds01 on a host the way the Debian package does (for hosts
//! without dpkg, and as the staging step of `packaging/build-deb.sh`), and
//! `ds01 install --docker-wrapper`, the opt-in `docker` link.

use super::{CliError, CliResult};
use clap::{Args, CommandFactory};
use std::path::{Path, PathBuf};

/// Files shipped from deploy/, embedded so the binary alone can install them.
const FILES: &[(&str, &str, u32)] = &[
    (
        "lib/systemd/system/ds01-collect.service",
        include_str!("../../deploy/systemd/ds01-collect.service"),
        0o644,
    ),
    (
        "lib/systemd/system/ds01-collect.timer",
        include_str!("../../deploy/systemd/ds01-collect.timer"),
        0o644,
    ),
    (
        "lib/systemd/system/ds01-monitor.service",
        include_str!("../../deploy/systemd/ds01-monitor.service"),
        0o644,
    ),
    (
        "lib/systemd/system/ds01-proxy.socket",
        include_str!("../../deploy/systemd/ds01-proxy.socket"),
        0o644,
    ),
    (
        "lib/systemd/system/ds01-proxy.service",
        include_str!("../../deploy/systemd/ds01-proxy.service"),
        0o644,
    ),
    (
        "usr/share/ds01/docker.socket.d/10-ds01-proxy.conf",
        DOCKER_SOCKET_DROPIN,
        0o644,
    ),
    (
        "usr/share/ds01/cron.d/ds01-resource-monitor",
        include_str!("../../deploy/cron.d/ds01-resource-monitor"),
        0o644,
    ),
    (
        "etc/profile.d/ds01-quota-greeting.sh",
        include_str!("../../deploy/profile.d/ds01-quota-greeting.sh"),
        0o644,
    ),
    (
        "etc/logrotate.d/ds01",
        include_str!("../../deploy/logrotate.d/ds01"),
        0o644,
    ),
    (
        "usr/share/doc/ds01/examples/resource-limits.yaml",
        include_str!("../../deploy/resource-limits.example.yaml"),
        0o644,
    ),
];

/// The drop-in that moves dockerd's socket where only root can connect.
const DOCKER_SOCKET_DROPIN: &str =
    include_str!("../../deploy/systemd/docker.socket.d-ds01-proxy.conf");
const DROPIN_REL: &str = "etc/systemd/system/docker.socket.d/10-ds01-proxy.conf";
const DROPIN_MARKER: &str = "# Managed by ds01";

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install under this root (a staging dir, or / on the host).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub prefix: PathBuf,
    /// Only create the `docker` link in /usr/local/bin (ahead of /usr/bin/docker on
    /// PATH) that turns on the wrapper for every user; `--remove` takes it away.
    #[arg(long)]
    pub docker_wrapper: bool,
    /// Only switch on the Docker API proxy: dockerd moves to the root-only
    /// /run/docker-engine.sock, ds01-proxy.socket serves /run/docker.sock, and
    /// dockerd gets live-restore so restarts lose no container. `--remove` undoes it.
    #[arg(long, conflicts_with = "docker_wrapper")]
    pub proxy: bool,
    /// With --docker-wrapper or --proxy: undo it.
    #[arg(long)]
    pub remove: bool,
    /// Do not create /var/log/ds01 and /var/lib/ds01 (the package's postinst does).
    #[arg(long, hide = true)]
    pub no_state_dirs: bool,
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |e| CliError::Runtime(format!("{}: {e}", p.display()))
}

fn write(root: &Path, rel: &str, bytes: &[u8], mode: u32) -> CliResult {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    std::fs::write(&p, bytes).map_err(io(&p))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io(&p))?;
    Ok(())
}

fn link(root: &Path, rel: &str, target: &str) -> CliResult {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink(target, &p).map_err(io(&p))
}

/// The man pages (ds01.1 and one per subcommand) and shell completions, generated
/// from the clap definitions.
pub fn generated() -> Result<Vec<(String, Vec<u8>)>, CliError> {
    let mut out = Vec::new();
    let cmd = super::Cli::command();
    let render = |c: clap::Command| -> Result<Vec<u8>, CliError> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .render(&mut buf)
            .map_err(|e| CliError::Runtime(format!("man page: {e}")))?;
        Ok(buf)
    };
    out.push((
        "usr/share/man/man1/ds01.1".to_string(),
        render(cmd.clone())?,
    ));
    for sub in cmd.get_subcommands() {
        let name = format!("ds01-{}", sub.get_name());
        out.push((
            format!("usr/share/man/man1/{name}.1"),
            render(sub.clone().name(name.clone()))?,
        ));
    }
    for (shell, rel) in [
        (
            clap_complete::Shell::Bash,
            "usr/share/bash-completion/completions/ds01",
        ),
        (
            clap_complete::Shell::Zsh,
            "usr/share/zsh/vendor-completions/_ds01",
        ),
        (
            clap_complete::Shell::Fish,
            "usr/share/fish/vendor_completions.d/ds01.fish",
        ),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut super::Cli::command(), "ds01", &mut buf);
        out.push((rel.to_string(), buf));
    }
    Ok(out)
}

fn systemctl(args: &[&str]) -> CliResult {
    let prog = std::env::var("DS01_SYSTEMCTL").unwrap_or_else(|_| "systemctl".into());
    let out = std::process::Command::new(&prog)
        .args(args)
        .output()
        .map_err(|e| CliError::Runtime(format!("{prog}: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Runtime(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `"live-restore": true` in dockerd's daemon.json (added if absent), so a dockerd
/// restart keeps containers running. Returns what was done, for the report.
fn ensure_live_restore(root: &Path) -> Result<String, CliError> {
    let p = root.join("etc/docker/daemon.json");
    let mut v: serde_json::Value = match std::fs::read(&p) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => v,
            Err(e) => {
                return Ok(format!(
                    "warning: {} is not JSON ({e}); add \"live-restore\": true yourself",
                    p.display()
                ));
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(CliError::Runtime(format!("{}: {e}", p.display()))),
    };
    let Some(obj) = v.as_object_mut() else {
        return Ok(format!(
            "warning: {} is not a JSON object; live-restore not set",
            p.display()
        ));
    };
    match obj.get("live-restore") {
        Some(serde_json::Value::Bool(true)) => Ok("live-restore already on".into()),
        Some(_) => Ok(format!(
            "warning: {} sets live-restore off: a dockerd restart will stop containers",
            p.display()
        )),
        None => {
            obj.insert("live-restore".into(), serde_json::json!(true));
            let mut text =
                serde_json::to_vec_pretty(&v).map_err(|e| CliError::Runtime(e.to_string()))?;
            text.push(b'\n');
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(io(d))?;
            }
            crate::fsutil::write_atomic(&p, &text, 0o644).map_err(io(&p))?;
            Ok(format!("set \"live-restore\": true in {}", p.display()))
        }
    }
}

/// Switch the proxy on or off. On a live systemd host (prefix /) the sockets are
/// moved at once: dockerd re-reads daemon.json (live-restore), both docker units
/// restart on the root-only socket, and ds01-proxy.socket takes /run/docker.sock.
fn proxy(root: &Path, remove: bool) -> CliResult {
    let live = root == Path::new("/") && Path::new("/run/systemd/system").exists();
    let dropin = root.join(DROPIN_REL);
    if remove {
        match std::fs::read_to_string(&dropin) {
            Ok(t) if t.starts_with(DROPIN_MARKER) => {
                std::fs::remove_file(&dropin).map_err(io(&dropin))?;
            }
            Ok(_) => {
                return Err(CliError::Runtime(format!(
                    "{} is not ds01's; left alone",
                    dropin.display()
                )));
            }
            Err(_) => {}
        }
        if live {
            let _ = systemctl(&[
                "disable",
                "--now",
                "ds01-proxy.socket",
                "ds01-proxy.service",
            ]);
            systemctl(&["daemon-reload"])?;
            systemctl(&["stop", "docker.service", "docker.socket"])?;
            systemctl(&["start", "docker.socket", "docker.service"])?;
        }
        outln!("the proxy is off: /run/docker.sock is dockerd's own again");
        return Ok(());
    }
    write(root, DROPIN_REL, DOCKER_SOCKET_DROPIN.as_bytes(), 0o644)?;
    let lr = ensure_live_restore(root)?;
    outln!("{lr}");
    if live {
        systemctl(&["daemon-reload"])?;
        // live-restore is reloadable: from now on containers outlive dockerd restarts.
        let _ = systemctl(&["reload", "docker.service"]);
        systemctl(&["stop", "docker.service", "docker.socket"])?;
        systemctl(&["start", "docker.socket", "docker.service"])?;
        systemctl(&["enable", "--now", "ds01-proxy.socket"])?;
        outln!(
            "the proxy is on: dockerd listens on /run/docker-engine.sock (root only), \
             ds01 serves /run/docker.sock (check: ds01 check --only docker-proxy; undo: ds01 install --proxy --remove)"
        );
    } else {
        outln!(
            "wrote {} (not a live systemd host: run `systemctl daemon-reload`, restart docker.socket and docker.service, \
             then `systemctl enable --now ds01-proxy.socket`)",
            dropin.display()
        );
    }
    Ok(())
}

pub fn run(a: InstallArgs) -> CliResult {
    let root = a.prefix.as_path();
    if a.proxy {
        return proxy(root, a.remove);
    }
    if a.remove && !a.docker_wrapper {
        return Err(CliError::Usage(
            "--remove goes with --docker-wrapper or --proxy".into(),
        ));
    }
    if a.docker_wrapper {
        let p = root.join("usr/local/bin/docker");
        if a.remove {
            match std::fs::read_link(&p) {
                Ok(t) if t.to_string_lossy().ends_with("ds01") => {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                    outln!("removed {}: docker is Docker's client again", p.display());
                }
                Ok(_) | Err(_) => outln!("{} is not ds01's link; left alone", p.display()),
            }
            return Ok(());
        }
        if p.exists() && std::fs::read_link(&p).is_err() {
            return Err(CliError::Runtime(format!(
                "{} exists and is not a link; not replacing it",
                p.display()
            )));
        }
        link(root, "usr/local/bin/docker", "/usr/bin/ds01")?;
        outln!(
            "{} -> /usr/bin/ds01: every `docker run` now goes through ds01 (undo: ds01 install --docker-wrapper --remove)",
            p.display()
        );
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| CliError::Runtime(e.to_string()))?;
    let bin = std::fs::read(&exe).map_err(io(&exe))?;
    let target = root.join("usr/bin/ds01");
    // Replace atomically: a running ds01 keeps its old inode.
    crate::fsutil::write_atomic(&target, &bin, 0o755).map_err(io(&target))?;
    link(root, "usr/bin/ds01-events", "ds01")?;
    for (rel, text, mode) in FILES {
        write(root, rel, text.as_bytes(), *mode)?;
    }
    for (rel, bytes) in generated()? {
        write(root, &rel, &bytes, 0o644)?;
    }
    let cfg = root.join("etc/ds01/resource-limits.yaml");
    if !cfg.exists() {
        write(
            root,
            "etc/ds01/resource-limits.yaml",
            include_str!("../../deploy/resource-limits.example.yaml").as_bytes(),
            0o644,
        )?;
    }
    if !a.no_state_dirs {
        for (d, mode) in [
            ("var/log/ds01", 0o755),
            ("var/lib/ds01/resource-stats", 0o755),
            ("var/lib/ds01/alerts", 0o755),
        ] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io(&p))?;
        }
    }
    outln!("installed ds01 under {}", root.display());
    if root == Path::new("/") {
        outln!(
            "next: edit /etc/ds01/resource-limits.yaml, then `ds01 config check`, `ds01 slices apply`, \
             `systemctl enable --now ds01-monitor`; opt in to the docker wrapper with \
             `ds01 install --docker-wrapper`"
        );
    }
    Ok(())
}
