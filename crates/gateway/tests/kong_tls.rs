//! Kong's `certificates` and `snis` for the TLS listeners, over real TLS:
//! each client gets the certificate of the name it asks for (exactly or
//! by a `*.` wildcard), and the first certificate when no name matches.

mod support;

use std::sync::Arc;

use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use support::{bounded, self_signed_pem, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects with TLS asking for `name`; returns the certificate served and
/// the first line of the answer to an upgrade.
async fn served(addr: std::net::SocketAddr, name: &str, roots: &[&str]) -> (Vec<u8>, String) {
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

#[tokio::test]
async fn tls_listeners_serve_the_certificate_of_the_name_asked_for() {
    bounded(async {
        let (a_cert, a_key) = self_signed_pem(&["a.test", "c.test"]);
        let (b_cert, b_key) = self_signed_pem(&["b.test", "*.w.test"]);
        let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: echo
  url: ws://127.0.0.1:1
  routes: [{{ name: echo, paths: [/] }}]
certificates:
- cert: |
    {a_cert}
  key: |
    {a_key}
  snis: [a.test]
- id: b-cert
  cert: |
    {b_cert}
  key: |
    {b_key}
snis:
- name: b.test
  certificate: {{ id: b-cert }}
- name: "*.w.test"
  certificate: {{ id: b-cert }}
"#,
            a_cert = indent(&a_cert),
            a_key = indent(&a_key),
            b_cert = indent(&b_cert),
            b_key = indent(&b_key),
        );
        let dir = std::env::temp_dir().join(format!("frameway-kong-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kong.yml"), kong).unwrap();
        let toml = dir.join("gateway.toml");
        std::fs::write(
            &toml,
            "[gateway]\ntls_listen = [\"127.0.0.1:0\"]\ndeclarative_config = \"kong.yml\"\n",
        )
        .unwrap();
        let config =
            Config::load(&toml, &Registry::with_builtins()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_dir_all(&dir).unwrap();
        let addr = *serve(config).await.last().unwrap();
        let der = |pem: &str| {
            CertificateDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .to_vec()
        };
        let roots = [a_cert.as_str(), b_cert.as_str()];
        for (name, want) in [
            ("a.test", &a_cert),
            ("b.test", &b_cert),
            ("c.test", &a_cert),
        ] {
            let (cert, head) = served(addr, name, &roots).await;
            assert_eq!(cert, der(want), "{name}");
            // The upstream (port 1) refuses: the request was routed.
            assert_eq!(head, "HTTP/1.1 502", "{name}");
        }
    })
    .await;
}
