//! The "floor" for the collector benchmark: walk a ds01 cgroup tree and open and
//! read every file once, with no parsing and no output. `ds01 collect` is compared
//! with this on the same tree (scripts/bench.sh, BENCHMARKS.md).

use std::io::Read;
use std::path::Path;

fn visit(dir: &Path, buf: &mut Vec<u8>, bytes: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => visit(&p, buf, bytes),
            Ok(_) => {
                if let Ok(mut f) = std::fs::File::open(&p) {
                    buf.clear();
                    *bytes += f.read_to_end(buf).unwrap_or(0);
                }
            }
            Err(_) => {}
        }
    }
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/sys/fs/cgroup/ds01.slice".into());
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0;
    visit(Path::new(&root), &mut buf, &mut bytes);
    std::hint::black_box(bytes);
}
