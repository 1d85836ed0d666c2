//! Errors of starting and running the proxy.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration that cannot work (named flag or value).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file that cannot be read (certificate, key, token, CA).
    #[error("cannot read {what} from {path}: {error}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// TLS material that was read but is not usable.
    #[error("unusable TLS {what} in {path}: {reason}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A token verification key that cannot be used.
    #[error("unusable token public key {path}: {reason}")]
    TokenKey { path: PathBuf, reason: String },
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    /// Discovery could not start.
    #[error("replica discovery failed: {0}")]
    Discovery(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// Reads a file, naming it and what it was for on failure.
pub(crate) fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|error| Error::ReadFile {
        what,
        path: path.to_path_buf(),
        error,
    })
}
