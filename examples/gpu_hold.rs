//! A small CUDA process for the real-hardware GPU check (scripts/gpu-real-check.sh):
//! allocates `MIB` MiB on GPU `INDEX` through the driver API (libcuda.so.1, which
//! ships with the driver: no CUDA toolkit or PyTorch needed) and holds it for
//! `SECS` seconds. `gpu_hold [INDEX] [MIB] [SECS]`.

use std::ffi::c_void;

type CuResult = i32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let index: i32 = args.next().map_or(Ok(0), |a| a.parse())?;
    let mib: usize = args.next().map_or(Ok(512), |a| a.parse())?;
    let secs: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    // SAFETY: the CUDA driver API's documented C signatures; every call's result
    // is checked before the next.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1")?;
        let cu_init: libloading::Symbol<unsafe extern "C" fn(u32) -> CuResult> =
            lib.get(b"cuInit")?;
        let device_get: libloading::Symbol<unsafe extern "C" fn(*mut i32, i32) -> CuResult> =
            lib.get(b"cuDeviceGet")?;
        let ctx_create: libloading::Symbol<
            unsafe extern "C" fn(*mut *mut c_void, u32, i32) -> CuResult,
        > = lib.get(b"cuCtxCreate_v2")?;
        let mem_alloc: libloading::Symbol<unsafe extern "C" fn(*mut u64, usize) -> CuResult> =
            lib.get(b"cuMemAlloc_v2")?;
        let check = |what: &str, r: CuResult| {
            if r == 0 {
                Ok(())
            } else {
                Err(format!("{what} failed: CUDA error {r}"))
            }
        };
        check("cuInit", cu_init(0))?;
        let mut dev = 0;
        check("cuDeviceGet", device_get(&mut dev, index))?;
        let mut ctx = std::ptr::null_mut();
        check("cuCtxCreate", ctx_create(&mut ctx, 0, dev))?;
        let mut ptr = 0u64;
        check("cuMemAlloc", mem_alloc(&mut ptr, mib << 20))?;
        println!("pid {} holds {mib} MiB on GPU {index}", std::process::id());
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    Ok(())
}
