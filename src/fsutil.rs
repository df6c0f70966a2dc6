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
    let written = f.write(bytes)?;
    if written != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {written} of {} bytes", bytes.len()),
        ));
    }
    Ok(())
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
