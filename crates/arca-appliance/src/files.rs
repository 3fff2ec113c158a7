//! Writing the appliance's own small files (smbd's configuration and password database, the
//! admin page's users and shares, the self-signed certificate) whole or not at all.

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Writes `bytes` to `path` through a temporary file beside it, with permission bits `mode`
/// (also when a temporary file of an earlier, cut-off write is reused), synced before it is
/// renamed into place: a crash leaves the old file or the new one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("writing {}: {e}", path.display()));
    let mut f =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(mode).open(&tmp).map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_even_over_a_stale_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.txt");
        std::fs::write(dir.path().join("secret.txt.tmp"), b"left by a crash").unwrap();
        std::fs::set_permissions(dir.path().join("secret.txt.tmp"), std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomically(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("secret.txt.tmp").exists());
    }
}
