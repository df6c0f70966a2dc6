//! Telling a user: their open terminals (utmp, as `write`/`wall` find them) and
//! their alerts file, which the login greeting shows.

use serde_json::{Value, json};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a warning goes.
pub trait Notify {
    /// Returns how many terminals got it.
    fn terminals(&mut self, user: &str, message: &str) -> usize;
    fn alert(&mut self, user: &str, container: &str, message: &str, expires: jiff::Timestamp);
}

/// The real one: utmp + `<alerts dir>/<user>.json`.
pub struct Real {
    pub alerts_dir: PathBuf,
}

impl Notify for Real {
    fn terminals(&mut self, user: &str, message: &str) -> usize {
        let uid = crate::docker::identity::user_uid(user);
        let mut n = 0;
        for tty in user_terminals(user) {
            if write_terminal(&tty, uid, message).is_ok() {
                n += 1;
            }
        }
        n
    }

    fn alert(&mut self, user: &str, container: &str, message: &str, expires: jiff::Timestamp) {
        if let Err(e) = add_alert(&self.alerts_dir, user, container, message, expires) {
            eprintln!(
                "error: cannot write the alert for {user} in {}: {e}",
                self.alerts_dir.display()
            );
        }
    }
}

/// The terminals `user` is logged in on, from utmp (USER_PROCESS entries).
pub fn user_terminals(user: &str) -> Vec<PathBuf> {
    static UTMP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = UTMP.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::new();
    // SAFETY: the utmpx iteration functions use static state, serialised by the
    // mutex above; each entry is copied out before the next call.
    unsafe {
        libc::setutxent();
        loop {
            let e = libc::getutxent();
            if e.is_null() {
                break;
            }
            let e = &*e;
            if e.ut_type != libc::USER_PROCESS {
                continue;
            }
            let name = cstr_field(&e.ut_user);
            let line = cstr_field(&e.ut_line);
            if name == user && !line.is_empty() && !line.starts_with('/') && !line.contains("..") {
                let p = Path::new("/dev").join(&line);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        libc::endutxent();
    }
    out
}

fn cstr_field(f: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = f
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Write to one terminal, as `write(1)` does: a character device owned by the
/// user, opened without becoming our controlling terminal and without blocking.
/// A terminal with messages off (`mesg n`: not group-writable) is refused by the
/// kernel for the monitor (it has no CAP_DAC_OVERRIDE, only the `tty` group), so
/// the user's choice is honoured; the alerts file still carries the warning.
pub fn write_terminal(tty: &Path, uid: Option<u32>, message: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(tty)?;
    let md = f.metadata()?;
    if !md.file_type().is_char_device() || uid.is_some_and(|u| md.uid() != u) {
        return Err(std::io::Error::other("not the user's terminal"));
    }
    let now = jiff::Timestamp::now().strftime("%H:%M UTC");
    let text = format!(
        "\r\n\x07Message from ds01 (container lifecycle) at {now}:\r\n{}\r\n",
        message.replace('\n', "\r\n")
    );
    f.write_all(text.as_bytes())
}

/// Add (or replace, for the same container) a lifecycle entry in the user's
/// alerts file, keeping every other entry; expired lifecycle entries go.
pub fn add_alert(
    dir: &Path,
    user: &str,
    container: &str,
    message: &str,
    expires: jiff::Timestamp,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let _lock = crate::fsutil::lock(&dir.join(ALERTS_LOCK), std::time::Duration::from_secs(5))?;
    let path = dir.join(format!("{user}.json"));
    let mut list: Vec<Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    list.retain(|a| {
        let ours = a.get("source").and_then(Value::as_str) == Some(SOURCE);
        let expired = a
            .get("expires")
            .and_then(Value::as_str)
            .and_then(crate::timespec::parse_log_time)
            .is_some_and(|e| e <= now);
        let same = a.get("container").and_then(Value::as_str) == Some(container);
        !(ours && (expired || same))
    });
    list.push(json!({
        "type": "lifecycle",
        "message": message,
        "source": SOURCE,
        "container": container,
        "expires": crate::timespec::format_event_time(expires),
    }));
    let text = serde_json::to_vec_pretty(&list).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(&path, &text, 0o644).map_err(|e| e.to_string())
}

/// The `source` of lifecycle's alert entries.
pub const SOURCE: &str = "ds01-lifecycle";
/// Every writer of the alerts files takes this lock (in the alerts directory).
pub const ALERTS_LOCK: &str = ".lock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_entries_replace_per_container_and_keep_others() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("alice.json"),
            r#"[{"type": "memory_high", "message": "m", "source": "ds01-monitor"}]"#,
        )
        .expect("write");
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        add_alert(d.path(), "alice", "c1", "idle 1", later).expect("add");
        add_alert(d.path(), "alice", "c2", "runtime", later).expect("add");
        add_alert(d.path(), "alice", "c1", "idle 2", later).expect("add");
        let v: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(d.path().join("alice.json")).expect("read"),
        )
        .expect("json");
        let msgs: Vec<&str> = v.iter().filter_map(|a| a["message"].as_str()).collect();
        assert_eq!(msgs, ["m", "runtime", "idle 2"]);
        let shown = crate::greet::alerts(d.path(), "alice", jiff::Timestamp::now());
        assert_eq!(shown, ["m", "runtime", "idle 2"]);
    }

    #[test]
    fn a_terminal_must_be_a_character_device_of_the_user() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("not-a-tty");
        std::fs::write(&f, "").expect("write");
        assert!(write_terminal(&f, None, "hi").is_err());
        // /dev/null is a character device, owned by root: refused for another uid.
        assert!(write_terminal(Path::new("/dev/null"), Some(12345), "hi").is_err());
        assert!(write_terminal(Path::new("/dev/null"), Some(0), "hi").is_ok());
    }
}
