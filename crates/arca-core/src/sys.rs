//! Small facts about the machine we run on: host name, user name, user and group names by id.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Mutex;

/// This machine's host name, or `unknown`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The current user's name (from `USER`, else the password database, else the uid).
pub fn username() -> String {
    if let Ok(u) = std::env::var("USER") {
        if !u.is_empty() {
            return u;
        }
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

static USERS: Mutex<Option<HashMap<u32, Option<String>>>> = Mutex::new(None);
static GROUPS: Mutex<Option<HashMap<u32, Option<String>>>> = Mutex::new(None);

fn cached(
    cache: &Mutex<Option<HashMap<u32, Option<String>>>>,
    id: u32,
    look: impl FnOnce(u32) -> Option<String>,
) -> Option<String> {
    let mut guard = cache.lock().unwrap_or_else(|p| p.into_inner());
    guard.get_or_insert_with(HashMap::new).entry(id).or_insert_with(|| look(id)).clone()
}

/// The name of user `uid`, cached.
pub fn user_name(uid: u32) -> Option<String> {
    cached(&USERS, uid, |uid| {
        let mut buf = vec![0u8; 4096];
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        // SAFETY: all pointers point to live, correctly sized buffers for the duration of the call.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
        Some(unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned())
    })
}

/// The name of group `gid`, cached.
pub fn group_name(gid: u32) -> Option<String> {
    cached(&GROUPS, gid, |gid| {
        let mut buf = vec![0u8; 4096];
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        // SAFETY: as in user_name.
        let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success gr_name points to a NUL-terminated string inside buf.
        Some(unsafe { CStr::from_ptr(grp.gr_name) }.to_string_lossy().into_owned())
    })
}
