//! The TLS listeners' certificate follows a reload: `tls_cert` and
//! `tls_key` are read when a configuration loads, so a renewed certificate
//! written over the old files is served once the gateway reloads, and a
//! file that is not a certificate is refused where it is named.

mod support;

use std::path::Path;

use frameway::client::{connect_with, ConnectOptions};
use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use frameway_gateway::Gateway;
use support::{bounded, connect_opts, recv_text, TestPki};

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
