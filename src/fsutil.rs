//! Small file-system helpers shared by every writer: one-`write(2)` appends and
//! atomic replacement.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Append `bytes` with a single `write(2)` on an O_APPEND descriptor, creating the
/// file (with `mode`) and its directory if missing. A short write is an error.
pub fn append_once(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)?;
    let written = match f.write(bytes) {
        Ok(n) => n,
        Err(e) => return Err(full_disk_message(e)),
    };
    if written != bytes.len() {
        // The file system filled up (or a size limit was hit) mid-write: take our
        // partial bytes back so the file still ends on a whole line — unless
        // someone appended after us, whose bytes must not be cut.
        let rolled_back = (|| -> io::Result<bool> {
            use std::io::Seek;
            let end = f.stream_position()?;
            if f.metadata()?.len() != end {
                return Ok(false);
            }
            f.set_len(end - written as u64)?;
            Ok(true)
        })()
        .unwrap_or(false);
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "no room to write — only {written} of {} bytes fitted (the file system is full, or a file size limit was reached); {}",
                bytes.len(),
                if rolled_back {
                    "the partial write was removed, the file still ends on a whole line"
                } else {
                    "another writer appended after it, so the partial write is left in place"
                }
            ),
        ));
    }
    Ok(())
}

/// ENOSPC / EDQUOT / EFBIG said in words an admin acts on.
fn full_disk_message(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSPC) => "the file system is full",
        Some(libc::EDQUOT) => "the disk quota is exhausted",
        Some(libc::EFBIG) => "a file size limit was reached",
        _ => return e,
    };
    // The caller names the file.
    io::Error::new(e.kind(), format!("nothing written: {why} ({e})"))
}

/// Replace `path` atomically: temp file in the same directory, fsync, rename,
/// fsync the directory. Readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An exclusive `flock` held for the life of the value.
pub struct FileLock(#[allow(dead_code)] std::fs::File);

/// Take an exclusive `flock` on `path` (created if missing), waiting up to `wait`.
pub fn lock(path: &Path, wait: std::time::Duration) -> Result<FileLock, String> {
    use rustix::fs::{FlockOperation, flock};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(FileLock(f)),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored) makes a write short
    /// exactly as a full disk does: the partial line is rolled back. Run in a
    /// child process so the limit does not leak into other tests.
    #[test]
    fn a_short_append_is_rolled_back_to_a_whole_line() {
        if std::env::var_os("DS01_FSIZE_CHILD").is_some() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        std::fs::write(&p, "first line\n").expect("write");
        let exe = std::env::current_exe().expect("exe");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f 4; exec '{}' --exact fsutil::tests::fsize_child --nocapture",
                exe.display()
            ))
            .env("DS01_FSIZE_CHILD", &p)
            .output()
            .expect("run child");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("CHILD-OK"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::read_to_string(&p).expect("read");
        assert_eq!(log, "first line\n", "the partial line was removed");
    }

    /// The child of the test above: 4 KiB file size limit, a 10 KiB line.
    #[test]
    fn fsize_child() {
        let Some(p) = std::env::var_os("DS01_FSIZE_CHILD") else {
            return;
        };
        let line = format!("{}\n", "x".repeat(10_000));
        let e = append_once(Path::new(&p), line.as_bytes(), 0o644).expect_err("must not fit");
        let msg = e.to_string();
        assert!(msg.contains("no room to write"), "{msg}");
        assert!(msg.contains("still ends on a whole line"), "{msg}");
        println!("CHILD-OK");
    }

    #[test]
    fn append_and_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a/b/log");
        append_once(&p, b"one\n", 0o644).expect("append");
        append_once(&p, b"two\n", 0o644).expect("append");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "one\ntwo\n");
        let s = dir.path().join("state.json");
        write_atomic(&s, b"{}", 0o600).expect("write");
        write_atomic(&s, b"{\"a\":1}", 0o600).expect("replace");
        assert_eq!(std::fs::read_to_string(&s).expect("read"), "{\"a\":1}");
        let leftovers = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(leftovers, 2, "no temp files left");
    }
}
