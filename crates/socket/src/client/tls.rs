//! The rustls side of `wss://`: building a client configuration from
//! [`ConnectOptions`] and running the TLS handshake.

use std::io;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::options::{ClientCert, ConnectOptions, Pem, Roots};
use crate::error::{Error, Result};

/// The rustls configuration for one connect: the caller's own, or one
/// built from the options.
pub(crate) fn client_config(options: &ConnectOptions) -> Result<Arc<ClientConfig>> {
    if let Some(config) = &options.tls_config {
        return Ok(config.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if options.ssl_verify {
        builder.with_root_certificates(root_store(options.roots, &options.extra_ca)?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let mut config = match &options.client_cert {
        Some(cert) => {
            let (chain, key) = load_client_cert(cert)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::TlsConfig(format!("client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    // The upgrade is HTTP/1.1; saying so keeps an h2-preferring server from
    // choosing a protocol the handshake cannot speak.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to send as SNI and verify the certificate against: an explicit
/// `server_name`, else the `host` option without its port, else the URL's
/// host.
pub(crate) fn server_name(options: &ConnectOptions, url_host: &str) -> Result<ServerName<'static>> {
    let name = match (&options.server_name, &options.host) {
        (Some(name), _) => name.as_str(),
        (None, Some(host)) => strip_port(host),
        (None, None) => url_host,
    };
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned())
        .map_err(|_| Error::TlsConfig(format!("{name:?} is not a valid TLS server name")))
}

/// `example.com:8443` → `example.com`, `[::1]:8443` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Runs the TLS handshake over `tcp`.
pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>> {
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(tls_io_error)
}

/// tokio-rustls reports TLS failures as `io::Error`s wrapping a
/// `rustls::Error`; unwrap them so callers can match on [`Error::Tls`].
pub(crate) fn tls_io_error(err: io::Error) -> Error {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls(tls.clone()),
        None => Error::Io(err),
    }
}

fn root_store(roots: Roots, extra: &[Pem]) -> Result<Arc<RootCertStore>> {
    let base = match roots {
        Roots::WebPki => webpki_roots(),
        Roots::System => system_roots()?,
        Roots::Empty if extra.is_empty() => {
            return Err(Error::TlsConfig(
                "Roots::Empty trusts nothing: add a CA with ca_file or ca_pem".into(),
            ))
        }
        Roots::Empty => Arc::new(RootCertStore::empty()),
    };
    if extra.is_empty() {
        return Ok(base);
    }
    let mut store = Arc::unwrap_or_clone(base);
    for pem in extra {
        let data = pem.load()?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&data) {
            let cert = cert.map_err(|e| Error::TlsConfig(format!("CA {pem:?}: {e}")))?;
            store
                .add(cert)
                .map_err(|e| Error::TlsConfig(format!("CA {pem:?}: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::TlsConfig(format!(
                "CA {pem:?}: no certificates found"
            )));
        }
    }
    Ok(Arc::new(store))
}

/// The compiled-in Mozilla roots, built once.
fn webpki_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

/// The operating system's roots, loaded once: reading them costs
/// milliseconds and they do not change while a process runs.
fn system_roots() -> Result<Arc<RootCertStore>> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            // Stores often hold a few certificates rustls cannot use; skip those.
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let why = loaded
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), |e| e.to_string());
                return Err(format!("no usable system root certificates: {why}"));
            }
            Ok(Arc::new(store))
        })
        .clone()
        .map_err(Error::TlsConfig)
}

fn load_client_cert(
    cert: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain_pem = cert.chain.load()?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::TlsConfig(format!("client certificate {:?}: {e}", cert.chain)))?;
    if chain.is_empty() {
        return Err(Error::TlsConfig(format!(
            "client certificate {:?}: no certificates found",
            cert.chain
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&cert.key.load()?)
        .map_err(|e| Error::TlsConfig(format!("client key {:?}: {e}", cert.key)))?;
    Ok((chain, key))
}

/// The verifier behind `ssl_verify(false)`: it accepts every certificate
/// and every handshake signature. Checking signatures alone would prove
/// nothing, since whoever is on the path can present a key of their own.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_comes_from_server_name_then_host_then_url() {
        let name =
            |o: &ConnectOptions| server_name(o, "url.example").unwrap().to_str().into_owned();
        assert_eq!(name(&ConnectOptions::default()), "url.example");
        assert_eq!(
            name(&ConnectOptions::default().host("vhost.example:8443")),
            "vhost.example"
        );
        assert_eq!(name(&ConnectOptions::default().host("[::1]:8443")), "::1");
        assert_eq!(
            name(
                &ConnectOptions::default()
                    .host("vhost.example")
                    .server_name("sni.example")
            ),
            "sni.example"
        );
        assert_eq!(
            server_name(&ConnectOptions::default(), "127.0.0.1")
                .unwrap()
                .to_str(),
            "127.0.0.1"
        );
        assert!(matches!(
            server_name(&ConnectOptions::default().server_name("bad name"), "x"),
            Err(Error::TlsConfig(_))
        ));
    }

    #[test]
    fn bad_pem_is_a_config_error() {
        let o = ConnectOptions::default().ca_pem("not a certificate");
        assert!(
            matches!(client_config(&o), Err(Error::TlsConfig(m)) if m.contains("no certificates"))
        );
        let o = ConnectOptions::default().ca_file("/nonexistent/ca.pem");
        assert!(matches!(client_config(&o), Err(Error::TlsConfig(m)) if m.contains("cannot read")));
        let o = ConnectOptions::default().roots(Roots::Empty);
        assert!(matches!(client_config(&o), Err(Error::TlsConfig(_))));
        let o = ConnectOptions::default().client_cert("", "");
        assert!(matches!(client_config(&o), Err(Error::TlsConfig(_))));
    }

    #[test]
    fn default_config_speaks_http11() {
        let config = client_config(&ConnectOptions::default()).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
