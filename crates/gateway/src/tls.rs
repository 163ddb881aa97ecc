//! The TLS listeners' server configuration: the certificate each client
//! gets, chosen by the server name it asks for (SNI).
//!
//! It is built when a configuration loads, from certificates read then,
//! and each TLS connection takes the one of the configuration current when
//! it is accepted: a reload serves renewed certificates to new connections.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::SniCertificate;

/// The acceptor for the TLS listeners: `default` for clients that ask for
/// no name or a name no certificate has, else the certificate with that
/// name.
pub(crate) fn acceptor(
    default: Arc<CertifiedKey>,
    certificates: &[SniCertificate],
) -> Result<TlsAcceptor, rustls::Error> {
    let resolver = BySni {
        default,
        named: certificates
            .iter()
            .flat_map(|c| c.names.iter().map(|name| (name.clone(), c.key.clone())))
            .collect(),
    };
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Picks the certificate for the server name a client asks for: an exact
/// name, else a `*.` wildcard one label deep, else the default (also for
/// clients that send no name).
#[derive(Debug)]
struct BySni {
    default: Arc<CertifiedKey>,
    named: Vec<(String, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(self.default.clone());
        };
        let exact = self.named.iter().find(|(n, _)| *n == name);
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            self.named
                .iter()
                .find(|(n, _)| n.strip_prefix("*.") == Some(parent))
        };
        Some(
            exact
                .or_else(wildcard)
                .map_or_else(|| self.default.clone(), |(_, key)| key.clone()),
        )
    }
}
