//! Loading Kong's declarative files, in memory: what is translated, what
//! is refused (by entity, field and file:line, all at once), and what
//! Kong's own defaults cost nothing.

mod support;

use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;

fn load(text: &str) -> Result<Config, String> {
    Config::parse(text, "kong.yml", &Registry::with_builtins()).map_err(|e| e.to_string())
}

fn refused(text: &str) -> String {
    support::refused_config(text, "kong.yml")
}

/// A file with one thing Frameway lacks on each marked line: every one is
/// reported, with its line, in one go (what `--check` prints).
#[test]
fn every_unsupported_entity_and_field_is_named_with_its_line() {
    let text = r#"_format_version: "3.0"
services:
- name: chat
  url: http://127.0.0.1:9000
  client_certificate: { id: 3f1e }                                 # 5
  routes:
  - name: rooms
    paths: [/rooms, "~/rooms/("]                                   # 8
    snis: [chat.example.com]                                       # 9
    sources: [{ ip: 10.0.0.0/8 }]                                  # 10
  - name: tls-only
    protocols: [wss]                                               # 12
    paths: [/secure]
- name: rpc
  protocol: grpc                                                   # 15
  host: 127.0.0.1
  routes: [{ name: rpc, paths: [/rpc] }]
  plugins:
  - name: acl                                                      # 19
    config: { allow: [admins] }
consumers:
- username: alice
  basicauth_credentials: [{ username: alice, password: x }]        # 23
upstreams:
- name: backend
  targets: [{ target: "127.0.0.1:9001" }]
  healthchecks:
    active:
      healthy: { interval: 5, successes: 1 }
      unhealthy: { interval: 10, tcp_failures: 2 }                 # 30
    passive:
      unhealthy: { tcp_failures: 2, http_failures: 5 }             # 32
certificates:                                                      # 33
- cert: "-----BEGIN CERTIFICATE-----"
  key: "-----BEGIN PRIVATE KEY-----"
vaults: []                                                         # 36
"#;
    let errors = refused(text);
    let expected = [
        "kong.yml:5:29: no certificate named \"3f1e\" in this file",
        "kong.yml:8:21: path \"~/rooms/(\" is not a regular expression",
        "kong.yml:9:11: route \"rooms\": `snis` is not supported by Frameway",
        "kong.yml:10:14: route \"rooms\": `sources` is not supported by Frameway",
        "kong.yml:12:16: route \"tls-only\": a route for TLS clients only",
        "kong.yml:15:13: service \"rpc\": protocol \"grpc\" is not supported by Frameway",
        "kong.yml:19:11: plugin \"acl\": unknown plugin",
        "kong.yml:23:3: consumer \"alice\": `basicauth_credentials` is not supported by Frameway; Frameway's consumers carry keyauth_credentials only",
        "kong.yml:30:30: upstream \"backend\" healthchecks.active: Frameway probes healthy and unhealthy targets at one interval",
        "kong.yml:32:52: upstream \"backend\" healthchecks.passive.unhealthy: Frameway counts failures of every kind together; http_failures (5) and tcp_failures (2) must agree",
        "kong.yml:34:9: certificates[0]: cert is not a PEM certificate",
        "kong.yml:36:1: the file: `vaults` is not supported by Frameway",
    ];
    let lines: Vec<&str> = errors.lines().collect();
    for want in expected {
        assert!(
            lines.iter().any(|line| line.starts_with(want)),
            "missing {want:?} in:\n{errors}"
        );
    }
    assert_eq!(lines.len(), expected.len(), "{errors}");
}

/// A decK dump writes every field, most at Kong's default or null: such a
/// file loads, and what it says is what runs.
#[test]
fn a_deck_dump_with_kongs_defaults_and_nulls_loads() {
    let text = r#"_format_version: "3.0"
_info:
  select_tags: null
services:
- connect_timeout: 60000
  enabled: true
  host: 127.0.0.1
  id: 0855b320-0dd2-547d-891d-601e9b38647f
  name: chat
  path: /socket
  port: 9000
  protocol: http
  read_timeout: 60000
  retries: 5
  tags: [team-a]
  tls_verify: null
  tls_verify_depth: null
  ca_certificates: null
  client_certificate: null
  write_timeout: 30000
  routes:
  - https_redirect_status_code: 426
    id: 481a9539-f49c-51b6-b2e2-fe99ee68866c
    methods: null
    headers: null
    path_handling: v0
    paths: [/chat]
    hosts: ["*.example.com"]
    preserve_host: true
    protocols: [http, https]
    regex_priority: 0
    request_buffering: true
    response_buffering: true
    strip_path: false
    snis: null
plugins:
- name: key-auth
  config: { anonymous: null, hide_credentials: false, key_in_body: false, key_in_header: true,
            key_in_query: true, key_names: [apikey], run_on_preflight: true }
  enabled: true
  protocols: [grpc, grpcs, http, https, ws, wss]
"#;
    let config = load(text).unwrap_or_else(|e| panic!("{e}"));
    let routes = config.router.routes();
    assert_eq!(routes.len(), 1);
    let route = &routes[0];
    // An unnamed route goes by its id.
    assert_eq!(route.name, "481a9539-f49c-51b6-b2e2-fe99ee68866c");
    assert_eq!(route.service.name, "chat");
    assert_eq!(route.hosts, ["*.example.com"]);
    assert!(!route.strip_path && route.preserve_host);
    assert_eq!(route.service.write_timeout.as_millis(), 30_000);
    assert_eq!(route.chain.names().collect::<Vec<_>>(), ["key-auth"]);
    let matched = config
        .router
        .find(Some("a.example.com"), "/chat/room", &http::HeaderMap::new())
        .expect("the route matches");
    assert_eq!(matched.upstream_target, "/socket/chat/room");
}

/// Kong's upstream health checks arrive in Frameway's units: seconds
/// become milliseconds, Kong's per-kind failure counts one count.
#[test]
fn kong_health_checks_are_translated_into_frameways_units() {
    let text = r#"_format_version: "3.0"
services:
- name: s
  host: backend
  routes: [{ name: r, paths: [/] }]
upstreams:
- name: backend
  algorithm: least-connections
  targets: [{ target: 127.0.0.1 }, { target: "127.0.0.2:9000", weight: 0 }]
  healthchecks:
    active:
      type: tcp
      timeout: 0.5
      healthy: { interval: 2, successes: 3 }
      unhealthy: { interval: 2, tcp_failures: 4, timeouts: 4 }
"#;
    let config = load(text).unwrap_or_else(|e| panic!("{e}"));
    let pool = &config.upstreams[0];
    assert_eq!(pool.name, "backend");
    let described = format!("{pool:?}");
    for want in [
        "127.0.0.1:8000",
        "interval: 2s",
        "timeout: 500ms",
        "successes: 3",
        "failures: 4",
    ] {
        assert!(described.contains(want), "{want} not in {described}");
    }
}

/// A file that is not YAML at all is refused with the place it breaks.
#[test]
fn broken_yaml_is_refused_with_its_line() {
    let errors = refused("_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n");
    assert!(
        errors.starts_with("kong.yml:4:") && errors.contains("not valid YAML"),
        "{errors}"
    );
}

/// `[gateway] declarative_config` (Kong's kong.conf key): the listeners and
/// the rest of `[gateway]` in TOML, the entities in a kong.yml beside it;
/// each error names its own file and line.
#[test]
fn a_toml_file_takes_its_entities_from_a_declarative_config() {
    let dir = std::env::temp_dir().join(format!("frameway-declarative-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("gateway.toml");
    let kong = dir.join("kong.yml");
    std::fs::write(
        &toml,
        "[gateway]\nlisten = [\"127.0.0.1:9100\"]\ndeclarative_config = \"kong.yml\"\n",
    )
    .unwrap();
    std::fs::write(
        &kong,
        "_format_version: \"3.0\"\nservices:\n- name: chat\n  url: ws://127.0.0.1:9000\n  routes: [{ name: chat, paths: [/chat] }]\n",
    )
    .unwrap();
    let registry = Registry::with_builtins();
    let config = Config::load(&toml, &registry).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen, ["127.0.0.1:9100".parse().unwrap()]);
    assert_eq!(config.router.routes()[0].service.name, "chat");

    std::fs::write(
        &toml,
        "[gateway]\nclient_max_payload = 0\ndeclarative_config = \"kong.yml\"\n",
    )
    .unwrap();
    std::fs::write(
        &kong,
        "_format_version: \"3.0\"\nservices:\n- name: chat\n  url: ws://127.0.0.1:9000\n  routes: [{ name: chat, paths: [chat] }]\n",
    )
    .unwrap();
    let errors = match Config::load(&toml, &registry) {
        Ok(_) => panic!("both files have an error"),
        Err(e) => e.to_string(),
    };
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].starts_with(&format!("{}:2:22: client_max_payload", toml.display())),
        "{errors}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:5:34: path \"chat\" must start with /",
            kong.display()
        )),
        "{errors}"
    );

    std::fs::write(&toml, "[gateway]\ndeclarative_config = \"missing.yml\"\n").unwrap();
    let errors = match Config::load(&toml, &registry) {
        Ok(_) => panic!("the file is missing"),
        Err(e) => e.to_string(),
    };
    assert!(
        errors.starts_with(&format!(
            "{}:2:22: declarative_config: cannot read",
            toml.display()
        )),
        "{errors}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
