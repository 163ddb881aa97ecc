//! The TLS listeners' certificates follow a reload: `tls_cert` and
//! `tls_key`, and Kong's `certificates` by name (SNI), are read when a
//! configuration loads, so a renewed certificate written over the old
//! files is served once the gateway reloads, and a file that is not a
//! certificate is refused where it is named.

mod support;

use std::path::Path;

use frameway::client::{connect_with, ConnectOptions};
use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use frameway_gateway::Gateway;
use support::tls::{der, served};
use support::{bounded, connect_opts, recv_text, self_signed_pem, TestPki};

/// A gateway config with a TLS listener whose certificate and key are
/// `dir`'s `cert.pem` and `key.pem`, in front of the built-in echo.
fn config_in(dir: &Path) -> String {
    format!(
        r#"
[gateway]
listen = []
tls_listen = ["127.0.0.1:0"]
tls_cert = "{dir}/cert.pem"
tls_key = "{dir}/key.pem"

[[services]]
name = "echo"
url = "internal://echo"
  [[services.routes]]
  name = "all"
  paths = ["/"]
"#,
        dir = dir.display()
    )
}

/// Copies `pki`'s server certificate and key to `dir` as the gateway's.
fn install(pki: &TestPki, dir: &Path) {
    std::fs::copy(pki.path("server.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(pki.path("server.key"), dir.join("key.pem")).unwrap();
}

#[tokio::test]
async fn a_reload_serves_the_certificate_the_files_hold_now() {
    bounded(async {
        let (before, after) = (TestPki::new("cert-before"), TestPki::new("cert-after"));
        let dir = after.dir.join("gateway");
        std::fs::create_dir_all(&dir).unwrap();
        install(&before, &dir);
        let load = || Config::parse(&config_in(&dir), "gateway.toml", &Registry::with_builtins());
        let gateway = Gateway::bind(load().unwrap()).await.unwrap();
        let url = format!("wss://localhost:{}/", gateway.local_addrs()[0].port());
        let reloader = gateway.reloader();
        tokio::spawn(gateway.serve());
        let trusting = |pki: &TestPki| ConnectOptions::default().ca_file(pki.path("ca.pem"));

        let mut first = connect_opts(&url, trusting(&before)).await;
        first.send_text("before").await.unwrap();
        assert_eq!(recv_text(&mut first).await, "before");

        install(&after, &dir);
        reloader.reload(load().unwrap());
        let mut renewed = connect_opts(&url, trusting(&after)).await;
        renewed.send_text("after").await.unwrap();
        assert_eq!(recv_text(&mut renewed).await, "after");
        let stale = connect_with(url.as_str(), trusting(&before)).await;
        assert!(
            matches!(stale, Err(frameway::Error::Tls(_))),
            "the old certificate is no longer served: {:?}",
            stale.map(|_| ())
        );
        // The connection opened before the reload goes on.
        first.send_text("still").await.unwrap();
        assert_eq!(recv_text(&mut first).await, "still");
    })
    .await;
}

/// A declarative configuration whose `certificates` serve each `(cert,
/// key, snis)`, in front of a refusing upstream.
fn kong_with(certificates: &[(&str, &str, &str)]) -> String {
    let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
    let mut kong = String::from(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: ws://127.0.0.1:1\n  \
         routes: [{ name: echo, paths: [/] }]\ncertificates:\n",
    );
    for (cert, key, snis) in certificates {
        kong += &format!(
            "- cert: |\n    {}\n  key: |\n    {}\n  snis: [{snis}]\n",
            indent(cert),
            indent(key)
        );
    }
    kong
}

#[tokio::test]
async fn a_reload_serves_each_names_certificate_as_the_declarative_file_has_it_now() {
    bounded(async {
        let (old_cert, old_key) = self_signed_pem(&["a.test"]);
        let (new_cert, new_key) = self_signed_pem(&["a.test"]);
        let (b_cert, b_key) = self_signed_pem(&["b.test"]);
        let dir = std::env::temp_dir().join(format!("frameway-sni-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = dir.join("gateway.toml");
        let gateway_toml = "[gateway]\nlisten = []\ntls_listen = [\"127.0.0.1:0\"]\n\
                            declarative_config = \"kong.yml\"\n";
        std::fs::write(&toml, gateway_toml).unwrap();
        let kong = dir.join("kong.yml");
        std::fs::write(&kong, kong_with(&[(&old_cert, &old_key, "a.test")])).unwrap();
        let load =
            || Config::load(&toml, &Registry::with_builtins()).unwrap_or_else(|e| panic!("{e}"));
        let gateway = Gateway::bind(load()).await.unwrap();
        let addr = gateway.local_addrs()[0];
        let reloader = gateway.reloader();
        tokio::spawn(gateway.serve());
        let roots = [old_cert.as_str(), new_cert.as_str(), b_cert.as_str()];
        // The upstream (port 1) refuses: the request was routed.
        assert_eq!(
            served(addr, "a.test", &roots).await,
            (der(&old_cert), "HTTP/1.1 502".into())
        );

        // The renewal: a.test's certificate replaced, b.test's added.
        let renewed = [
            (&*new_cert, &*new_key, "a.test"),
            (&*b_cert, &*b_key, "b.test"),
        ];
        std::fs::write(&kong, kong_with(&renewed)).unwrap();
        reloader.reload(load());
        std::fs::remove_dir_all(&dir).unwrap();
        for (name, want) in [("a.test", &new_cert), ("b.test", &b_cert)] {
            let (cert, head) = served(addr, name, &roots).await;
            assert_eq!(cert, der(want), "{name} after the reload");
            assert_eq!(head, "HTTP/1.1 502", "{name}");
        }
    })
    .await;
}

#[test]
fn a_certificate_file_that_is_not_pem_is_refused_where_it_is_named() {
    let pki = TestPki::new("cert-broken");
    let dir = pki.dir.join("gateway");
    std::fs::create_dir_all(&dir).unwrap();
    install(&pki, &dir);
    std::fs::write(dir.join("cert.pem"), "renewal went wrong\n").unwrap();
    let errors = support::refused_config(&config_in(&dir), "gateway.toml");
    assert!(
        errors.starts_with("gateway.toml:5:12: tls_cert/tls_key: cert is not a PEM certificate"),
        "{errors}"
    );

    std::fs::remove_file(dir.join("key.pem")).unwrap();
    let errors = support::refused_config(&config_in(&dir), "gateway.toml");
    assert!(
        errors
            .lines()
            .any(|line| line.starts_with("gateway.toml:6:11: tls_key: cannot read")),
        "{errors}"
    );
}
