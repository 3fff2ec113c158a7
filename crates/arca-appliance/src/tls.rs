//! HTTPS for the WebDAV share and the status page (`[tls]`): Windows' WebDAV client will not send
//! a password over plain HTTP, and nobody should.
//!
//! With `cert_file` and `key_file` the office's own certificate is used. Without them the
//! appliance makes a self-signed certificate once, under `<data_dir>/tls/` (the key 0600), for
//! the configured names, `localhost` and the listen address, and logs its SHA-256 fingerprint at
//! every start so that a user can check what the browser or Windows shows before trusting it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::TlsConfig;
use crate::error::{Error, ErrorKind, Result};

/// The certificate chain and key files to serve with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Where the self-signed certificate of an appliance with data directory `data_dir` lives.
pub fn self_signed_files(data_dir: &Path) -> TlsFiles {
    let dir = data_dir.join("tls");
    TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") }
}

/// The files to serve with: the configured ones (checked to exist), or the self-signed pair,
/// made on first use.
pub fn prepare(config: &TlsConfig, data_dir: &Path, listen: SocketAddr) -> Result<TlsFiles> {
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        for f in [cert, key] {
            std::fs::metadata(f).map_err(|e| Error::config(format!("[tls]: cannot read {}: {e}", f.display())))?;
        }
        return Ok(TlsFiles { cert: cert.clone(), key: key.clone() });
    }
    let files = self_signed_files(data_dir);
    if !files.cert.exists() || !files.key.exists() {
        make_self_signed(&files, &config.names, listen)?;
    }
    match fingerprint(&files.cert) {
        Ok(fp) => tracing::info!("HTTPS with the self-signed certificate {} (SHA-256 {fp})", files.cert.display()),
        Err(e) => tracing::warn!("{e}"),
    }
    Ok(files)
}

fn make_self_signed(files: &TlsFiles, names: &[String], listen: SocketAddr) -> Result<()> {
    let mut subject_names: Vec<String> = names.to_vec();
    subject_names.push("localhost".into());
    subject_names.push("127.0.0.1".into());
    if !listen.ip().is_unspecified() {
        subject_names.push(listen.ip().to_string());
    }
    subject_names.dedup();
    let certified = rcgen::generate_simple_self_signed(subject_names.clone())
        .map_err(|e| Error::new(ErrorKind::Io, format!("making a self-signed certificate: {e}")))?;
    let dir = files.cert.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::new(ErrorKind::Io, format!("creating {}: {e}", dir.display())))?;
    let write = |path: &Path, text: &str, mode: u32| crate::files::write_atomically(path, text.as_bytes(), mode);
    // The key first: a certificate without its key would be taken for a complete pair.
    write(&files.key, &certified.key_pair.serialize_pem(), 0o600)?;
    write(&files.cert, &certified.cert.pem(), 0o644)?;
    tracing::info!("made a self-signed certificate for {} at {}", subject_names.join(", "), files.cert.display());
    Ok(())
}

/// SHA-256 of the first certificate in a PEM file, as colon-separated hex (what browsers show).
pub fn fingerprint(cert: &Path) -> Result<String> {
    use base64::Engine;
    let text = std::fs::read_to_string(cert)
        .map_err(|e| Error::new(ErrorKind::Io, format!("reading {}: {e}", cert.display())))?;
    let body: String = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .map(|b| b.chars().filter(|c| !c.is_whitespace()).collect())
        .ok_or_else(|| Error::config(format!("{} holds no PEM certificate", cert.display())))?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| Error::config(format!("{}: the certificate is not base64: {e}", cert.display())))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_is_made_once_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig { cert_file: None, key_file: None, names: vec!["nas.office.lan".into()] };
        let listen: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let files = prepare(&config, dir.path(), listen).unwrap();
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = fingerprint(&files.cert).unwrap();
        assert_eq!(first.len(), 32 * 3 - 1);
        // A restart keeps the certificate (clients trusted it).
        prepare(&config, dir.path(), listen).unwrap();
        assert_eq!(fingerprint(&files.cert).unwrap(), first);
        // Configured files must exist.
        let missing = TlsConfig {
            cert_file: Some(dir.path().join("nope.pem")),
            key_file: Some(dir.path().join("nope.key")),
            names: Vec::new(),
        };
        assert!(prepare(&missing, dir.path(), listen).is_err());
    }
}
