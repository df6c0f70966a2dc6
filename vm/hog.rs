// Memory hog for the real-kernel scenario, built static and put in the container
// image: `hog MIB [hold]` touches MIB MiB one page at a time (so the memory is really
// charged), prints progress, and with `hold` keeps it and sleeps until killed.
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(256);
    let hold = args.next().as_deref() == Some("hold");
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mib {
        let mut block = vec![0u8; 1 << 20];
        for page in (0..block.len()).step_by(4096) {
            block[page] = 1;
        }
        kept.push(block);
        if i % 32 == 0 {
            println!("hog: {i} MiB");
            let _ = std::io::stdout().flush();
        }
    }
    println!("hog: holding {mib} MiB");
    let _ = std::io::stdout().flush();
    while hold {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
