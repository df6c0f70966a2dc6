//! The proxy's request routing on arbitrary method, path and query (NUL-separated):
//! never a panic; a path that classifies is in canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut p = s.splitn(3, '\0');
    let method = p.next().unwrap_or("GET");
    let path = p.next().unwrap_or("/");
    let query = p.next();
    if let Ok(route) = ds01::proxy::route::classify(method, path, query) {
        let _ = format!("{route:?}");
        assert!(ds01::proxy::route::segments(path).is_ok(), "{path:?}");
    }
    let _ = ds01::proxy::route::query_param(query, "name");
});
