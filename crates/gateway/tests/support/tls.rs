//! What the TLS listener tests share: a client that asks for a name (SNI)
//! and reports the certificate it was served.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects with TLS asking for `name`, trusting `roots` (PEM); returns the
/// certificate served (DER) and the first 12 bytes of the answer to an
/// upgrade (`HTTP/1.1 101`, or the status that refused it).
pub async fn served(addr: SocketAddr, name: &str, roots: &[&str]) -> (Vec<u8>, String) {
    let mut store = rustls::RootCertStore::empty();
    for pem in roots {
        store
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector.connect(server_name, tcp).await.unwrap();
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 12];
    tls.read_exact(&mut head).await.unwrap();
    (cert, String::from_utf8(head).unwrap())
}

/// The DER of a PEM certificate, to compare with what [`served`] returns.
pub fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}
