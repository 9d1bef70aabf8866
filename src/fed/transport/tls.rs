//! TLS for the gRPC transport (rustls through tonic): the server's certificate and key, the
//! client's trusted CA, read from PEM files with errors that name the file; and how a failed
//! connection is told apart as a TLS refusal (not worth retrying) or a server that is away.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The server's certificate chain and private key (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

/// What a client trusts: the CA certificate (PEM) that signed the server's, and optionally the
/// name to check the certificate against (default: the URL's host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA certificate (or the server's self-signed certificate), PEM.
    pub ca: PathBuf,
    /// The server name the certificate must carry, when it is not the URL's host.
    pub domain: Option<String>,
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ".as_slice()) {
        return Err(Error::Transport(format!(
            "{}: not a PEM file (the {what} must be PEM, starting -----BEGIN ...)",
            path.display()
        )));
    }
    Ok(bytes)
}

impl ServerTls {
    /// The tonic server configuration (the files read and checked now).
    pub fn config(&self) -> Result<ServerTlsConfig> {
        let cert = read_pem(&self.cert, "certificate")?;
        let key = read_pem(&self.key, "private key")?;
        Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
    }
}

impl ClientTls {
    /// The tonic client configuration (the CA file read now).
    pub fn config(&self) -> Result<ClientTlsConfig> {
        let ca = read_pem(&self.ca, "CA certificate")?;
        let c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        Ok(match &self.domain {
            Some(d) => c.domain_name(d.clone()),
            None => c,
        })
    }
}

/// The TLS failure in an error's source chain, if any: rustls reports a refused handshake (an
/// untrusted or mismatched certificate, a plaintext peer) as an `InvalidData` I/O error.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return Some(io.to_string());
            }
        }
        cur = err.source();
    }
    None
}

/// An error's message with its sources (tonic's top-level messages alone say little).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}
