//! Kong's certificates over real TLS: `certificates` and `snis` for the
//! TLS listeners (each client gets the certificate of the name it asks
//! for, exactly or by a `*.` wildcard, and the first certificate when no
//! name matches), and a service's `client_certificate` and
//! `ca_certificates` toward a wss upstream that asks for a certificate.

mod support;

use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use support::tls::{der, served};
use support::{bounded, connect, recv, self_signed_pem, serve, tls_echo_upstream, TestPki};

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

/// A wss upstream that verifies its clients (mutual TLS), signed by a CA of
/// its own: a service that names Kong's `client_certificate` and
/// `ca_certificates` reaches it, as does its TOML twin with `client_cert`,
/// `client_key` and `ca_file`; a service without the client certificate is
/// refused by the upstream, and the client gets 502.
#[tokio::test]
async fn services_present_their_client_certificate_to_a_mutual_tls_upstream() {
    bounded(async {
        let pki = TestPki::new("kong-client-cert");
        let up = tls_echo_upstream(pki.server_config(true)).await;
        let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
        let kong = format!(
            r#"_format_version: "3.0"
certificates:
- id: 7e2a0f3c-client
  cert: |
    {cert}
  key: |
    {key}
ca_certificates:
- id: upstream-ca
  cert: |
    {ca}
services:
- name: mutual
  url: wss://127.0.0.1:{port}/
  client_certificate: {{ id: 7e2a0f3c-client }}
  ca_certificates: [upstream-ca]
  routes: [{{ name: mutual, paths: [/mutual] }}]
- name: anonymous
  url: wss://127.0.0.1:{port}/
  ca_certificates: [upstream-ca]
  routes: [{{ name: anonymous, paths: [/anonymous] }}]
"#,
            cert = indent(&pki.client_cert_pem),
            key = indent(&pki.client_key_pem),
            ca = indent(&pki.ca_pem),
            port = up.port(),
        );
        let toml = format!(
            r#"[[services]]
name = "mutual"
url = "wss://127.0.0.1:{port}/"
client_cert = "{cert}"
client_key = "{key}"
ca_file = "{ca}"
  [[services.routes]]
  name = "mutual"
  paths = ["/mutual"]
[[services]]
name = "anonymous"
url = "wss://127.0.0.1:{port}/"
ca_file = "{ca}"
  [[services.routes]]
  name = "anonymous"
  paths = ["/anonymous"]
"#,
            cert = pki.path("client.pem"),
            key = pki.path("client.key"),
            ca = pki.path("ca.pem"),
            port = up.port(),
        );
        for config in [kong, toml] {
            let gw = support::gateway(&config).await;
            let mut ws = connect(gw, "/mutual").await;
            ws.send(frameway::Message::text("through mutual TLS"))
                .await
                .unwrap();
            assert_eq!(
                recv(&mut ws).await,
                frameway::Message::text("through mutual TLS")
            );
            let refused =
                support::raw_request(gw, support::upgrade_request("/anonymous", "").as_bytes())
                    .await;
            assert_eq!(refused.status, 502);
        }
    })
    .await;
}

/// A client certificate whose key is not its own, or a reference to no
/// certificate in the file, is refused at load with its place, once.
#[test]
fn a_client_certificate_that_cannot_work_is_refused_at_load() {
    let pki = TestPki::new("kong-client-cert-bad");
    let (other_cert, _) = self_signed_pem(&["other.test"]);
    let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
    let kong = format!(
        r#"_format_version: "3.0"
certificates:
- id: mismatched
  cert: |
    {cert}
  key: |
    {key}
services:
- name: a
  url: wss://127.0.0.1:1/
  client_certificate: {{ id: mismatched }}
  routes: [{{ name: a, paths: [/a] }}]
- name: b
  url: wss://127.0.0.1:1/
  client_certificate: {{ id: missing }}
  ca_certificates: [no-such-ca]
  routes: [{{ name: b, paths: [/b] }}]
"#,
        cert = indent(&other_cert),
        key = indent(&pki.client_key_pem),
    );
    let errors = support::refused_config(&kong, "kong.yml");
    for want in [
        ": certificates[0]: key: keys may not be consistent",
        ": no certificate named \"missing\" in this file",
        ": no CA certificate named \"no-such-ca\" in this file",
    ] {
        assert!(
            errors
                .lines()
                .any(|line| line.starts_with("kong.yml:") && line.contains(want)),
            "missing {want:?} in:\n{errors}"
        );
    }
    assert_eq!(errors.lines().count(), 3, "{errors}");
}

/// In TOML, a client certificate needs its key, and the key its
/// certificate.
#[test]
fn a_client_cert_without_its_key_is_refused() {
    let toml = r#"[[services]]
name = "half"
url = "wss://127.0.0.1:1/"
client_cert = "client.pem"
  [[services.routes]]
  name = "half"
  paths = ["/"]
"#;
    let errors = support::refused_config(toml, "gateway.toml");
    assert!(
        errors.starts_with(
            "gateway.toml:4:15: service \"half\": client_cert and client_key go together"
        ),
        "{errors}"
    );
}
