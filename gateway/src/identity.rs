//! The server's identity in its data directory: a self-signed TLS
//! certificate and key (made with rcgen on first start) and the operator
//! token, so that client commands on the same machine find them without
//! flags.
//!
//! Files (in the data directory): `tls/cert.der`, `tls/key.der` (mode 0600)
//! and `operator.token` (mode 0600, one line of 32 hex characters).
//!
//! Invariants: existing files are never overwritten (a restarted server keeps
//! its certificate and token); secrets are written to a temporary file with
//! mode 0600 and renamed into place, so a crash never leaves a half-written
//! or world-readable key; a client trusts exactly the certificate found here
//! (no system roots, no "insecure" mode).

use journal::create_private_dir;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "bourse-data";
/// Certificate file, relative to the data directory.
pub const CERT_FILE: &str = "tls/cert.der";
/// Private key file, relative to the data directory.
pub const KEY_FILE: &str = "tls/key.der";
/// Operator token file, relative to the data directory.
pub const TOKEN_FILE: &str = "operator.token";
/// The name the certificate is issued to (clients verify it).
pub const SERVER_NAME: &str = "localhost";

/// What the server needs to speak TLS and to admit its operator.
#[derive(Clone)]
pub struct ServerIdentity {
    /// DER certificate.
    pub cert_der: Vec<u8>,
    /// DER (PKCS#8) private key.
    pub key_der: Vec<u8>,
    /// Operator token.
    pub operator_token: String,
    /// Whether the files were created now (first start).
    pub created: bool,
    /// Certificate path.
    pub cert_path: PathBuf,
    /// Token path.
    pub token_path: PathBuf,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("ServerIdentity")
            .field("cert_path", &self.cert_path)
            .field("token_path", &self.token_path)
            .field("created", &self.created)
            .finish()
    }
}

/// What a client on the same machine reads from the data directory.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The server certificate to trust (exactly this one).
    pub cert_der: Vec<u8>,
    /// The operator token, when readable.
    pub operator_token: Option<String>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_bytes", &self.cert_der.len())
            .field("has_token", &self.operator_token.is_some())
            .finish()
    }
}

/// Why the identity could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// File system trouble (names the file).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// The token file is empty or malformed.
    #[error("{0}: not a token (expected one line of printable ASCII, at most 32 characters)")]
    BadToken(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (temporary file + rename), with mode
/// 0600 when `secret`.
pub(crate) fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), IdentityError> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    // The mode above applies only to a new file: a temporary left by a
    // crash keeps its own, so set it.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err(&tmp))?;
    }
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// A fresh random token: 32 lowercase hex characters (128 bits from the
/// operating system's generator).
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .expect("the system random generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn read_token(path: &Path) -> Result<String, IdentityError> {
    let s = fs::read_to_string(path).map_err(io_err(path))?;
    let t = s.trim().to_string();
    if t.is_empty() || t.len() > 32 || !t.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(IdentityError::BadToken(path.display().to_string()));
    }
    Ok(t)
}

/// Loads the server identity from `data_dir`, creating whatever is missing
/// (certificate + key for `localhost`/`127.0.0.1`/`::1`, operator token).
pub fn ensure_server_identity(data_dir: &Path) -> Result<ServerIdentity, IdentityError> {
    create_private_dir(data_dir).map_err(io_err(data_dir))?;
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    let token_path = data_dir.join(TOKEN_FILE);
    let mut created = false;
    if !cert_path.exists() || !key_path.exists() {
        let ck = rcgen::generate_simple_self_signed(vec![
            SERVER_NAME.to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
        // Key first: a certificate without its key would be useless.
        write_new(&key_path, &ck.signing_key.serialize_der(), true)?;
        write_new(&cert_path, ck.cert.der(), false)?;
        created = true;
    }
    if !token_path.exists() {
        write_new(
            &token_path,
            format!("{}\n", random_token()).as_bytes(),
            true,
        )?;
        created = true;
    }
    Ok(ServerIdentity {
        cert_der: fs::read(&cert_path).map_err(io_err(&cert_path))?,
        key_der: fs::read(&key_path).map_err(io_err(&key_path))?,
        operator_token: read_token(&token_path)?,
        created,
        cert_path,
        token_path,
    })
}

/// Reads what a client needs from `data_dir`: the certificate (required)
/// and the operator token (if present and readable).
pub fn load_client_identity(data_dir: &Path) -> Result<ClientIdentity, IdentityError> {
    let cert_path = data_dir.join(CERT_FILE);
    let cert_der = fs::read(&cert_path).map_err(io_err(&cert_path))?;
    let token_path = data_dir.join(TOKEN_FILE);
    let operator_token = if token_path.exists() {
        Some(read_token(&token_path)?)
    } else {
        None
    };
    Ok(ClientIdentity {
        cert_der,
        operator_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure_server_identity(dir.path()).unwrap();
        assert!(a.created);
        assert_eq!(a.operator_token.len(), 32);
        let b = ensure_server_identity(dir.path()).unwrap();
        assert!(!b.created);
        assert_eq!(a.cert_der, b.cert_der);
        assert_eq!(a.operator_token, b.operator_token);
        let c = load_client_identity(dir.path()).unwrap();
        assert_eq!(c.cert_der, a.cert_der);
        assert_eq!(c.operator_token.as_deref(), Some(a.operator_token.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [TOKEN_FILE, KEY_FILE] {
                let m = fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(m & 0o777, 0o600, "{f}");
            }
        }
    }
}

/// File (in the data directory, mode 0600) holding the tokens created by
/// admin sessions, so they survive a restart.
pub const TOKENS_FILE: &str = "tokens.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedToken {
    token: String,
    owners: Vec<u64>,
    perms: u8,
}

/// Saves every token except `skip` (the operator token, kept in its own
/// file): temporary file (0600), fsync, rename.
pub fn save_tokens(
    data_dir: &Path,
    auth: &crate::session::Auth,
    skip: &str,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let list: Vec<SavedToken> = auth
        .entries()
        .into_iter()
        .filter(|(t, _)| t != skip)
        .map(|(token, g)| SavedToken {
            token,
            owners: g.owners.iter().map(|o| o.0).collect(),
            perms: g.perms.bits(),
        })
        .collect();
    let path = data_dir.join(TOKENS_FILE);
    let tmp = data_dir.join(format!("{TOKENS_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(&serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// Loads the saved tokens into `auth` (none when the file is absent); a
/// damaged file is an error naming it.
pub fn load_tokens(data_dir: &Path, auth: &crate::session::Auth) -> Result<usize, IdentityError> {
    let path = data_dir.join(TOKENS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(IdentityError::Io {
                path: path.display().to_string(),
                source: e,
            })
        }
    };
    let list: Vec<SavedToken> = serde_json::from_slice(&bytes).map_err(|e| IdentityError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    for t in &list {
        auth.add_token(
            &t.token,
            t.owners.iter().map(|&o| engine::OwnerId(o)).collect(),
            crate::session::Perms::from_bits(t.perms),
        );
    }
    Ok(list.len())
}
