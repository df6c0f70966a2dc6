//! A model of `docker [global flags] run|create [flags] IMAGE [COMMAND] [ARG...]`
//! that finds the subcommand, every flag with its value in every form
//! (`--memory 1g`, `--memory=1g`, `-m 1g`, `-m1g`, `-itd`), and the image, and
//! keeps everything after the image exactly as given.
//!
//! The flag tables are Docker 28's `docker run --help` (a superset of Debian
//! bookworm's docker.io 20.10), plus deprecated aliases the CLI still accepts. A flag
//! not in the tables is passed through untouched; if it is written `--flag=value` it
//! cannot shift the image position, and a bare unknown `--flag` is treated as
//! boolean (Docker's own rule for unknown flags is to reject them, so a user's
//! command with one fails in the real docker anyway).

/// `docker run` / `create` flags that take a value (long names, without `--`).
pub const RUN_VALUE_FLAGS: &[&str] = &[
    "add-host",
    "annotation",
    "attach",
    "blkio-weight",
    "blkio-weight-device",
    "cap-add",
    "cap-drop",
    "cgroup-parent",
    "cgroupns",
    "cidfile",
    "cpu-count",
    "cpu-percent",
    "cpu-period",
    "cpu-quota",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "detach-keys",
    "device",
    "device-cgroup-rule",
    "device-read-bps",
    "device-read-iops",
    "device-write-bps",
    "device-write-iops",
    "dns",
    "dns-option",
    "dns-opt",
    "dns-search",
    "domainname",
    "entrypoint",
    "env",
    "env-file",
    "expose",
    "gpus",
    "group-add",
    "health-cmd",
    "health-interval",
    "health-retries",
    "health-start-interval",
    "health-start-period",
    "health-timeout",
    "hostname",
    "io-maxbandwidth",
    "io-maxiops",
    "ip",
    "ip6",
    "ipc",
    "isolation",
    "kernel-memory",
    "label",
    "label-file",
    "link",
    "link-local-ip",
    "log-driver",
    "log-opt",
    "mac-address",
    "memory",
    "memory-reservation",
    "memory-swap",
    "memory-swappiness",
    "mount",
    "name",
    "network",
    "net",
    "network-alias",
    "net-alias",
    "oom-score-adj",
    "pid",
    "pids-limit",
    "platform",
    "publish",
    "pull",
    "restart",
    "runtime",
    "security-opt",
    "shm-size",
    "stop-signal",
    "stop-timeout",
    "storage-opt",
    "sysctl",
    "tmpfs",
    "ulimit",
    "user",
    "userns",
    "uts",
    "volume",
    "volume-driver",
    "volumes-from",
    "workdir",
];

/// Boolean `docker run` / `create` flags (they also accept `--flag=true|false`).
pub const RUN_BOOL_FLAGS: &[&str] = &[
    "detach",
    "disable-content-trust",
    "help",
    "init",
    "interactive",
    "no-healthcheck",
    "oom-kill-disable",
    "privileged",
    "publish-all",
    "quiet",
    "read-only",
    "rm",
    "sig-proxy",
    "tty",
    "use-api-socket",
];

/// Short flags: the value-taking ones and their long names.
pub const RUN_SHORT_VALUE: &[(char, &str)] = &[
    ('a', "attach"),
    ('c', "cpu-shares"),
    ('e', "env"),
    ('h', "hostname"),
    ('l', "label"),
    ('m', "memory"),
    ('p', "publish"),
    ('u', "user"),
    ('v', "volume"),
    ('w', "workdir"),
];

/// Short boolean flags and their long names.
pub const RUN_SHORT_BOOL: &[(char, &str)] = &[
    ('d', "detach"),
    ('i', "interactive"),
    ('t', "tty"),
    ('P', "publish-all"),
    ('q', "quiet"),
];

/// Global `docker` flags (before the subcommand) that take a value.
const GLOBAL_VALUE: &[&str] = &[
    "config",
    "context",
    "host",
    "log-level",
    "tlscacert",
    "tlscert",
    "tlskey",
];
const GLOBAL_SHORT_VALUE: &[char] = &['c', 'H', 'l'];

/// One flag as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Long name without `--` (short flags are mapped to their long name).
    pub name: String,
    pub value: Option<String>,
}

/// A parsed `run` / `create` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Everything up to and including the subcommand word(s), as given
    /// (`docker`-less: `["--context", "x", "container", "run"]`).
    pub prefix: Vec<String>,
    /// `run` or `create`.
    pub verb: String,
    /// The flags between the subcommand and the image, as given.
    pub flag_args: Vec<String>,
    /// The same flags, understood.
    pub flags: Vec<Flag>,
    /// The image and everything after it, untouched. Empty if no image was given.
    pub rest: Vec<String>,
}

/// What the command line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `run` / `create` / `container run` / `container create`.
    Run(RunArgs),
    /// Anything else: hand over untouched.
    Other,
}

fn long_takes_value(name: &str) -> Option<bool> {
    if RUN_VALUE_FLAGS.contains(&name) {
        Some(true)
    } else if RUN_BOOL_FLAGS.contains(&name) {
        Some(false)
    } else {
        None
    }
}

/// Classify `args` (without the program name).
pub fn parse(args: &[String]) -> Command {
    // Global flags, then the subcommand.
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            if !long.contains('=') && GLOBAL_VALUE.contains(&long) {
                i += 1;
            }
        } else if a.len() == 2 && a[1..].chars().all(|c| GLOBAL_SHORT_VALUE.contains(&c)) {
            i += 1;
        }
        i += 1;
    }
    let Some(first) = args.get(i) else {
        return Command::Other;
    };
    let (verb, after) = match first.as_str() {
        "run" | "create" => (first.clone(), i + 1),
        "container" => match args.get(i + 1).map(String::as_str) {
            Some(v @ ("run" | "create")) => (v.to_string(), i + 2),
            _ => return Command::Other,
        },
        _ => return Command::Other,
    };
    let prefix = args[..after].to_vec();
    let (flags, flag_args, rest) = parse_run_flags(&args[after..]);
    Command::Run(RunArgs {
        prefix,
        verb,
        flag_args,
        flags,
        rest,
    })
}

/// Split `run` arguments into understood flags, their raw form, and the image+rest.
fn parse_run_flags(args: &[String]) -> (Vec<Flag>, Vec<String>, Vec<String>) {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            // `--` ends the flags; the image follows it.
            let raw = args[..=i].to_vec();
            return (flags, raw, args[i + 1..].to_vec());
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => flags.push(Flag {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                }),
                None => {
                    if long_takes_value(long) == Some(true) {
                        flags.push(Flag {
                            name: long.to_string(),
                            value: args.get(i + 1).cloned(),
                        });
                        i += 1;
                    } else {
                        flags.push(Flag {
                            name: long.to_string(),
                            value: None,
                        });
                    }
                }
            }
        } else {
            // A cluster of short flags: booleans, optionally ending with one that
            // takes a value (attached: `-m1g`, or the next argument: `-m 1g`).
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                if let Some((_, long)) = RUN_SHORT_VALUE.iter().find(|(s, _)| *s == c) {
                    let attached: String = chars[j + 1..].iter().collect();
                    let attached = attached.strip_prefix('=').unwrap_or(&attached).to_string();
                    let value = if attached.is_empty() {
                        i += 1;
                        args.get(i).cloned()
                    } else {
                        Some(attached)
                    };
                    flags.push(Flag {
                        name: (*long).to_string(),
                        value,
                    });
                    break;
                }
                let name = RUN_SHORT_BOOL
                    .iter()
                    .find(|(s, _)| *s == c)
                    .map_or_else(|| c.to_string(), |(_, l)| (*l).to_string());
                flags.push(Flag { name, value: None });
                j += 1;
            }
        }
        i += 1;
    }
    let end = i.min(args.len());
    (flags, args[..end].to_vec(), args[end..].to_vec())
}

impl RunArgs {
    /// The last value given for a flag (Docker takes the last one too).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .and_then(|f| f.value.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f.name == name)
    }

    /// Every value of a repeatable flag (`--label`, `-e`).
    pub fn values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.flags
            .iter()
            .filter(move |f| f.name == name)
            .filter_map(|f| f.value.as_deref())
    }

    /// The image, if given.
    pub fn image(&self) -> Option<&str> {
        self.rest.first().map(String::as_str)
    }

    /// The label `key` if set with `--label key=value` / `-l key=value`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.values("label")
            .filter_map(|l| l.split_once('=').or(Some((l, ""))))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// The full argv (without the program name) with `extra` flags inserted just
    /// before the image.
    pub fn with_flags(&self, extra: &[String]) -> Vec<String> {
        let mut out = self.prefix.clone();
        // Keep a trailing `--` (if any) right before the image.
        let (flags, dashdash) = match self.flag_args.last() {
            Some(l) if l == "--" => (&self.flag_args[..self.flag_args.len() - 1], true),
            _ => (&self.flag_args[..], false),
        };
        out.extend_from_slice(flags);
        out.extend_from_slice(extra);
        if dashdash {
            out.push("--".into());
        }
        out.extend_from_slice(&self.rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> RunArgs {
        match parse(&v(s)) {
            Command::Run(r) => r,
            Command::Other => panic!("not a run: {s}"),
        }
    }

    #[test]
    fn value_forms() {
        for cmd in [
            "run --memory 1g img",
            "run --memory=1g img",
            "run -m 1g img",
            "run -m1g img",
            "run -m=1g img",
            "run -itm 1g img",
            "run -itm1g img",
        ] {
            let r = run(cmd);
            assert_eq!(r.value("memory"), Some("1g"), "{cmd}");
            assert_eq!(r.image(), Some("img"), "{cmd}");
        }
    }

    #[test]
    fn combined_booleans_and_the_image_position() {
        let r = run("run -itd --rm --name x -e A=1 -v /a:/b busybox sh -c echo --memory 5g");
        assert!(r.has("interactive") && r.has("tty") && r.has("detach") && r.has("rm"));
        assert_eq!(r.value("name"), Some("x"));
        assert_eq!(
            r.rest,
            v("busybox sh -c echo --memory 5g"),
            "after the image: untouched"
        );
        assert_eq!(
            r.value("memory"),
            None,
            "a flag of the container command is not ours"
        );
    }

    #[test]
    fn subcommand_forms_and_globals() {
        assert!(matches!(parse(&v("container run img")), Command::Run(r) if r.verb == "run"));
        assert!(matches!(parse(&v("container create img")), Command::Run(r) if r.verb == "create"));
        assert!(
            matches!(parse(&v("--context remote -D run img")), Command::Run(r) if r.prefix == v("--context remote -D run"))
        );
        assert!(matches!(
            parse(&v("-H unix:///x.sock run img")),
            Command::Run(_)
        ));
        for other in [
            "ps -a",
            "exec -it x sh",
            "logs x",
            "container ls",
            "image ls",
            "",
            "--version",
            "compose run x",
        ] {
            assert_eq!(parse(&v(other)), Command::Other, "{other:?}");
        }
    }

    #[test]
    fn unknown_flags_do_not_shift_the_image() {
        let r = run("run --future-flag=3 --rm img cmd");
        assert_eq!(r.image(), Some("img"));
        let r = run("run --gpus all img");
        assert_eq!(r.value("gpus"), Some("all"));
        let r = run("run --rm=false -- img --rm");
        assert_eq!(r.rest, v("img --rm"));
        assert_eq!(
            r.with_flags(&v("--x=1")),
            v("run --rm=false --x=1 -- img --rm")
        );
    }

    #[test]
    fn insert_before_the_image() {
        let r = run("run -it --name a ubuntu bash");
        assert_eq!(
            r.with_flags(&v("--cgroup-parent=s.slice --label ds01.user=alice")),
            v("run -it --name a --cgroup-parent=s.slice --label ds01.user=alice ubuntu bash")
        );
    }

    #[test]
    fn labels() {
        let r = run("run -l devcontainer.local_folder=/x --label=com.docker.compose.project=p img");
        assert_eq!(r.label("devcontainer.local_folder"), Some("/x"));
        assert_eq!(r.label("com.docker.compose.project"), Some("p"));
        assert_eq!(r.label("nope"), None);
    }

    #[test]
    fn every_table_flag_takes_its_value() {
        for f in RUN_VALUE_FLAGS {
            let r = run(&format!("run --{f} VAL img cmd"));
            assert_eq!(r.value(f), Some("VAL"), "--{f}");
            assert_eq!(r.rest, v("img cmd"), "--{f}");
        }
        for f in RUN_BOOL_FLAGS {
            let r = run(&format!("run --{f} img cmd"));
            assert!(r.has(f));
            assert_eq!(r.rest, v("img cmd"), "--{f}");
        }
        for (c, long) in RUN_SHORT_VALUE {
            let r = run(&format!("run -{c} VAL img"));
            assert_eq!(r.value(long), Some("VAL"), "-{c}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(words in proptest::collection::vec("[-a-z=0-9]{0,8}", 0..12)) {
            let cmd: Vec<String> = std::iter::once("run".to_string()).chain(words).collect();
            if let Command::Run(r) = parse(&cmd) {
                prop_assert_eq!(r.with_flags(&[]), cmd);
            }
        }
    }
}
