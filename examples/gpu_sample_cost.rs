//! The cost of one GPU sample with the host's real source (NVML; a replay when
//! DS01_GPU_SNAPSHOT is set): `gpu_sample_cost [N]` samples N times (default 200)
//! and prints the mean wall and CPU time per sample, and the attributed report's
//! cost on top. For BENCHMARKS.md on a GPU host (scripts/gpu-real-check.sh).

use ds01::gpu::{self, Opened};
use std::time::Instant;

/// CPU seconds this process has used (user + system, every thread).
fn cpu_s() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args().nth(1).map_or(Ok(200), |a| a.parse())?;
    let t0 = Instant::now();
    let mut src = match gpu::open() {
        Opened::Source(s) => s,
        Opened::NoGpus(why) | Opened::Failed(why) => return Err(why.into()),
    };
    println!(
        "open: {:.1} ms ({})",
        t0.elapsed().as_secs_f64() * 1e3,
        src.describe()
    );
    let first = src.sample()?;
    println!(
        "{} GPU(s), {} process(es)",
        first.gpus.len(),
        first.processes.len()
    );
    let (w, c) = (Instant::now(), cpu_s());
    for _ in 0..n {
        std::hint::black_box(src.sample()?);
    }
    let per = |x: f64| x * 1e3 / f64::from(n);
    println!(
        "sample: {:.3} ms wall, {:.3} ms CPU",
        per(w.elapsed().as_secs_f64()),
        per(cpu_s() - c)
    );
    let mut sampler = gpu::Sampler::open(Vec::new(), "/proc".into());
    let (w, c) = (Instant::now(), cpu_s());
    for _ in 0..n {
        std::hint::black_box(sampler.report(None, jiff::Timestamp::now())?);
    }
    println!(
        "sample + attribution + report: {:.3} ms wall, {:.3} ms CPU",
        per(w.elapsed().as_secs_f64()),
        per(cpu_s() - c)
    );
    Ok(())
}
