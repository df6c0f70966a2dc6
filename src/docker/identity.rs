//! Who is calling: the real uid, its name and Unix groups through NSS (so LDAP and
//! sssd users resolve like everywhere else on the host).

use std::ffi::{CStr, CString};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub name: String,
    pub groups: Vec<String>,
}

/// The name of `uid` from NSS.
pub fn user_name(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid and sized; getpwuid_r writes only within them.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some((name, pwd.pw_gid))
}

/// The home directory of `uid`, from NSS.
pub fn home_dir(uid: u32) -> Option<std::path::PathBuf> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in user_name.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into `buf`, NUL-terminated by getpwuid_r.
    let dir = unsafe { CStr::from_ptr(pwd.pw_dir) }
        .to_string_lossy()
        .into_owned();
    (dir.starts_with('/') && dir != "/").then(|| std::path::PathBuf::from(dir))
}

/// (uid, primary gid) of a user name, from NSS.
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in user_name.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// The uid of a user name, from NSS.
pub fn user_uid(name: &str) -> Option<u32> {
    passwd_ids(name).map(|(uid, _)| uid)
}

/// The primary gid of a user name, from NSS.
pub fn user_gid(name: &str) -> Option<u32> {
    passwd_ids(name).map(|(_, gid)| gid)
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: buffers are valid and sized; getgrgid_r writes only within them.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || grp.gr_name.is_null() {
        return None;
    }
    // SAFETY: gr_name points into `buf`, NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The gid of the Unix group `name`, from NSS.
pub fn group_gid(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: buffers are valid and sized; getgrnam_r writes only within them.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

/// The Unix group names of `name` (primary `gid` included), from NSS.
pub fn group_names(name: &str, gid: u32) -> Vec<String> {
    let Ok(cname) = CString::new(name) else {
        return Vec::new();
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut gids: Vec<libc::gid_t> = vec![0; n as usize];
        let mut count = n;
        // SAFETY: `gids` has room for `count` entries; getgrouplist updates count.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, gids.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            gids.truncate(count.max(0) as usize);
            return gids.into_iter().filter_map(group_name).collect();
        }
        if count <= n || n > 65_536 {
            return group_name(gid).into_iter().collect();
        }
        n = count;
    }
}

/// The calling user, from the real uid. Root may act as another user for testing
/// and admin tooling with `DS01_WRAPPER_USER` (ignored for everyone else).
pub fn current() -> Result<Identity, String> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0
        && let Ok(as_user) = std::env::var("DS01_WRAPPER_USER")
    {
        let gid = user_gid(&as_user);
        return Ok(Identity {
            uid: u32::MAX,
            groups: gid.map(|g| group_names(&as_user, g)).unwrap_or_default(),
            name: as_user,
        });
    }
    let (name, gid) =
        user_name(uid).ok_or_else(|| format!("uid {uid} has no user name (NSS lookup failed)"))?;
    let groups = group_names(&name, gid);
    Ok(Identity { uid, name, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves() {
        let (name, gid) = user_name(0).expect("uid 0 exists everywhere");
        assert_eq!(name, "root");
        assert_eq!(gid, 0);
        assert!(group_names("root", 0).contains(&"root".to_string()));
        assert_eq!(user_gid("root"), Some(0));
        assert_eq!(user_gid("no-such-user-ds01"), None);
    }
}
