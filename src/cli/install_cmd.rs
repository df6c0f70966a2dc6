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

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install under this root (a staging dir, or / on the host).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub prefix: PathBuf,
    /// Only create the `docker` link in /usr/local/bin (ahead of /usr/bin/docker on
    /// PATH) that turns on the wrapper for every user; `--remove` takes it away.
    #[arg(long)]
    pub docker_wrapper: bool,
    /// With --docker-wrapper: remove the link.
    #[arg(long, requires = "docker_wrapper")]
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

pub fn run(a: InstallArgs) -> CliResult {
    let root = a.prefix.as_path();
    if a.docker_wrapper {
        let p = root.join("usr/local/bin/docker");
        if a.remove {
            match std::fs::read_link(&p) {
                Ok(t) if t.to_string_lossy().ends_with("ds01") => {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                    println!("removed {}: docker is Docker's client again", p.display());
                }
                Ok(_) | Err(_) => println!("{} is not ds01's link; left alone", p.display()),
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
        println!(
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
    println!("installed ds01 under {}", root.display());
    if root == Path::new("/") {
        println!(
            "next: edit /etc/ds01/resource-limits.yaml, then `ds01 config check`, `ds01 slices apply`, \
             `systemctl enable --now ds01-collect.timer`; opt in to the docker wrapper with \
             `ds01 install --docker-wrapper`"
        );
    }
    Ok(())
}
