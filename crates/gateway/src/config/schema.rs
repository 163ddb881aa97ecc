//! The configuration file's shape, Kong-flavoured TOML, as deserialised.
//! Values that can be wrong in ways TOML cannot tell keep their spans so
//! errors point at the line.

use frameway_wire::handshake::HandshakeLimits;
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listeners, limits and timeouts.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// Upstream services, each with its routes and plugins.
    #[serde(default)]
    pub services: Vec<ServiceSection>,
    /// Global plugins.
    #[serde(default)]
    pub plugins: Vec<PluginSection>,
    /// The admin listener.
    #[serde(default)]
    pub admin: AdminSection,
    /// Balanced groups of targets, named by services' URLs.
    #[serde(default)]
    pub upstreams: Vec<UpstreamSection>,
    /// Consumers and their credentials.
    #[serde(default)]
    pub consumers: Vec<Spanned<ConsumerSection>>,
    /// TLS certificates chosen by SNI: Kong's `certificates` (a TOML file
    /// names files with `tls_cert` and `tls_key` instead).
    #[serde(skip)]
    pub certificates: Vec<CertificateSection>,
}

/// A certificate and key (PEM, in the file) and the server names it
/// answers for.
#[derive(Debug)]
pub struct CertificateSection {
    /// The PEM certificate chain.
    pub cert: Spanned<String>,
    /// The PEM private key.
    pub key: Spanned<String>,
    /// Server names (`*.example.com` allowed).
    pub snis: Vec<Spanned<String>>,
}

/// `[[consumers]]`: a user or application, under Kong's names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSection {
    /// Its identifier (default: the username, else the custom id).
    pub id: Option<String>,
    /// Its username.
    pub username: Option<String>,
    /// An identifier from another system.
    pub custom_id: Option<String>,
    /// Keys that identify it to `key-auth`.
    #[serde(default)]
    pub keyauth_credentials: Vec<KeyAuthCredentialSection>,
    /// Plugins for this consumer, everywhere or on one `route` or
    /// `service`.
    #[serde(default)]
    pub plugins: Vec<PluginSection>,
}

/// One of a consumer's `keyauth_credentials`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthCredentialSection {
    /// The key.
    pub key: String,
    /// The credential's identifier (default `CONSUMER-ID:key-N`).
    pub id: Option<String>,
}

/// `[[upstreams]]`: targets a service's connections are balanced over
/// (Kong's upstream entity and names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The name services use as their URL's host.
    pub name: Spanned<String>,
    /// `round-robin` (default), `least-connections` or `consistent-hashing`.
    #[serde(default)]
    pub algorithm: Option<Spanned<String>>,
    /// What consistent hashing hashes: `none` (default), `ip`, `header`,
    /// `cookie`, `query_arg` or `path`.
    #[serde(default)]
    pub hash_on: Option<Spanned<String>>,
    /// What to hash when `hash_on` finds nothing (same values).
    #[serde(default)]
    pub hash_fallback: Option<Spanned<String>>,
    /// The header of `hash_on = "header"`.
    pub hash_on_header: Option<Spanned<String>>,
    /// The cookie of `hash_on = "cookie"`.
    pub hash_on_cookie: Option<Spanned<String>>,
    /// The query argument of `hash_on = "query_arg"`.
    pub hash_on_query_arg: Option<Spanned<String>>,
    /// The header of `hash_fallback = "header"`.
    pub hash_fallback_header: Option<Spanned<String>>,
    /// The cookie of `hash_fallback = "cookie"`.
    pub hash_fallback_cookie: Option<Spanned<String>>,
    /// The query argument of `hash_fallback = "query_arg"`.
    pub hash_fallback_query_arg: Option<Spanned<String>>,
    /// Resolve host names in targets again this often, ms (default 30000).
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh: u64,
    /// The targets.
    #[serde(default)]
    pub targets: Vec<TargetSection>,
    /// Passive and active health checks.
    #[serde(default)]
    pub healthchecks: HealthchecksSection,
}

/// One entry of `targets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// `host:port`; a host name stands for every address it resolves to.
    pub target: Spanned<String>,
    /// Relative share of connections (default 100; 0 disables the target).
    #[serde(default = "default_weight")]
    pub weight: Spanned<u64>,
}

/// `[upstreams.healthchecks]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HealthchecksSection {
    /// Probes sent by the gateway (off without this table).
    pub active: Option<ActiveSection>,
    /// What real connections tell.
    #[serde(default)]
    pub passive: PassiveSection,
}

/// `[upstreams.healthchecks.active]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveSection {
    /// `tcp` (connect), `http` (GET `http_path`) or `websocket` (an
    /// upgrade on `http_path` and a close). Default `websocket`.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// The probed path (default `/`).
    #[serde(default = "default_http_path")]
    pub http_path: String,
    /// Time between probes of a target, ms (default 5000).
    #[serde(default = "default_probe_interval")]
    pub interval: u64,
    /// Time a probe may take, ms (default 1000).
    #[serde(default = "default_probe_timeout")]
    pub timeout: u64,
    /// When an unhealthy target is healthy again.
    #[serde(default)]
    pub healthy: ActiveHealthy,
    /// When a healthy target is unhealthy.
    #[serde(default)]
    pub unhealthy: Failures,
}

/// `healthy` of active checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthy {
    /// Consecutive successful probes (default 2).
    #[serde(default = "default_successes")]
    pub successes: u32,
    /// Statuses that count as success for `http` probes (default 200-399;
    /// `websocket` probes succeed on 101).
    #[serde(default)]
    pub http_statuses: Option<Vec<u16>>,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        ActiveHealthy {
            successes: default_successes(),
            http_statuses: None,
        }
    }
}

/// `unhealthy` of either check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failures {
    /// Consecutive failures (default 3; 0 turns the check off).
    #[serde(default = "default_failures")]
    pub failures: u32,
}

impl Default for Failures {
    fn default() -> Self {
        Failures {
            failures: default_failures(),
        }
    }
}

/// `[upstreams.healthchecks.passive]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSection {
    /// When connections' failures make a target unhealthy.
    #[serde(default)]
    pub unhealthy: Failures,
    /// How long a target passive checks found unhealthy is skipped, ms
    /// (default 10000).
    #[serde(default = "default_unhealthy_timeout")]
    pub unhealthy_timeout: u64,
}

impl Default for PassiveSection {
    fn default() -> Self {
        PassiveSection {
            unhealthy: Failures::default(),
            unhealthy_timeout: default_unhealthy_timeout(),
        }
    }
}

/// `[admin]`: metrics, status and reload, off the data plane.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where the admin endpoints listen (default: nowhere; the built-in
    /// configuration listens on 127.0.0.1:8001).
    pub listen: Option<Spanned<String>>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Plain (ws://) listen addresses.
    #[serde(default = "default_listen")]
    pub listen: Vec<Spanned<String>>,
    /// TLS (wss://) listen addresses; need `tls_cert` and `tls_key`.
    #[serde(default)]
    pub tls_listen: Vec<Spanned<String>>,
    /// PEM certificate chain for `tls_listen`.
    pub tls_cert: Option<Spanned<String>>,
    /// PEM private key for `tls_listen`.
    pub tls_key: Option<Spanned<String>>,
    /// Largest client message, bytes (default 1 MiB).
    #[serde(default = "default_client_max")]
    pub client_max_payload: Spanned<u64>,
    /// Largest upstream message, bytes (default 16 MiB).
    #[serde(default = "default_upstream_max")]
    pub upstream_max_payload: Spanned<u64>,
    /// Close connections with no traffic for this long, ms (default 60000; 0 = never).
    #[serde(default = "default_idle")]
    pub idle_timeout: u64,
    /// Time allowed for a client's opening request, ms (default 10000).
    #[serde(default = "default_handshake")]
    pub handshake_timeout: u64,
    /// Ping the client after this long since the last ping, ms (default 0:
    /// never). The gateway's pings and their pongs are not forwarded.
    #[serde(default)]
    pub ping_interval: u64,
    /// Close both legs (1001) when the client leaves a ping unanswered
    /// this long, ms (default 10000).
    #[serde(default = "default_pong_timeout")]
    pub pong_timeout: u64,
    /// Most header lines in a client's opening request (default 100); more
    /// is answered 431.
    #[serde(default = "default_max_request_headers")]
    pub max_request_headers: Spanned<u64>,
    /// Most bytes of a client's request head (default 32 KiB); more is
    /// answered 431.
    #[serde(default = "default_max_request_header_bytes")]
    pub max_request_header_bytes: Spanned<u64>,
    /// On SIGTERM or SIGINT, how long open connections may go on before
    /// they are sent 1001, ms (default 30000; 0 = at once).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: u64,
    /// The 1001 closes of a drain are spread over this long, ms (default
    /// 10000), so that clients do not all reconnect in the same second.
    #[serde(default = "default_close_spread")]
    pub close_spread: u64,
    /// A Kong declarative file (kong.yml, YAML or JSON; relative to this
    /// file) whose services, routes, plugins, consumers and upstreams join
    /// this file's: Kong's `declarative_config`, with the listeners and
    /// the rest of `[gateway]` here.
    pub declarative_config: Option<Spanned<String>>,
    /// Directories searched for Lua plugins (`NAME/handler.lua`).
    #[serde(default)]
    pub lua_plugin_dirs: Vec<Spanned<String>>,
    /// Lua instructions one plugin call may run (default 1,000,000).
    #[serde(default = "default_lua_instructions")]
    pub lua_max_instructions: Spanned<u64>,
    /// Memory cap of each Lua state, bytes (default 16 MiB).
    #[serde(default = "default_lua_memory")]
    pub lua_max_memory: Spanned<u64>,
    /// Give Lua plugins `os`, `io` and `require` of any module (default false).
    #[serde(default)]
    pub lua_unsafe: bool,
    /// Addresses and ranges of proxies in front of the gateway that Lua's
    /// `kong.ip.is_trusted` trusts (Kong's `trusted_ips`; default none).
    #[serde(default)]
    pub trusted_ips: Vec<Spanned<String>>,
    /// `ngx.shared` dictionaries and their sizes, nginx's `lua_shared_dict`
    /// (`{ cache = "10m" }`; bytes, or `k` and `m` units).
    #[serde(default)]
    pub lua_shared_dicts: std::collections::BTreeMap<String, Spanned<serde_json::Value>>,
    /// permessage-deflate with clients: `true` (the default: accept their
    /// offers with the library's defaults), `false`, or the parameters.
    #[serde(default = "default_deflate")]
    pub client_deflate: Spanned<DeflateSetting>,
}

/// `client_deflate` or a service's `deflate`: on, off, or on with these
/// parameters.
#[derive(Debug)]
pub enum DeflateSetting {
    /// On with the defaults, or off.
    On(bool),
    /// On with these parameters.
    With(DeflateSection),
}

impl<'de> Deserialize<'de> for DeflateSetting {
    // By hand rather than `untagged`, so that a wrong key in the table is
    // reported by name.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DeflateSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, or a table of permessage-deflate parameters")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<DeflateSetting, E> {
                Ok(DeflateSetting::On(on))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<DeflateSetting, A::Error> {
                DeflateSection::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(DeflateSetting::With)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Default for DeflateSetting {
    fn default() -> Self {
        DeflateSetting::On(true)
    }
}

/// permessage-deflate parameters (RFC 7692's names, and the library's).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeflateSection {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: Option<bool>,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: Option<bool>,
    /// The server's largest window, 8-15 bits.
    pub server_max_window_bits: Option<u8>,
    /// The client's largest window, 8-15 bits.
    pub client_max_window_bits: Option<u8>,
    /// zlib level, 0-9 (default 6).
    pub level: Option<u8>,
    /// zlib memLevel, 1-9 (default 8).
    pub mem_level: Option<u8>,
    /// Messages of at most this many bytes go out uncompressed.
    pub compress_if_bigger_than: Option<usize>,
    /// A service's `deflate` only: offer it to the upstream even when the
    /// client's leg does not compress (default false).
    pub always: Option<bool>,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: default_listen(),
            tls_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            client_max_payload: default_client_max(),
            upstream_max_payload: default_upstream_max(),
            idle_timeout: default_idle(),
            handshake_timeout: default_handshake(),
            ping_interval: 0,
            pong_timeout: default_pong_timeout(),
            drain_timeout: default_drain_timeout(),
            close_spread: default_close_spread(),
            max_request_headers: default_max_request_headers(),
            max_request_header_bytes: default_max_request_header_bytes(),
            declarative_config: None,
            lua_plugin_dirs: Vec::new(),
            lua_max_instructions: default_lua_instructions(),
            lua_max_memory: default_lua_memory(),
            lua_unsafe: false,
            lua_shared_dicts: Default::default(),
            trusted_ips: Vec::new(),
            client_deflate: default_deflate(),
        }
    }
}

/// `[[services]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The service's name.
    pub name: Spanned<String>,
    /// `ws://host:port/path`, `wss://…`, or `internal://echo`.
    pub url: Spanned<String>,
    /// Connect timeout, ms (default 60000).
    #[serde(default = "default_timeout")]
    pub connect_timeout: u64,
    /// Read timeout for the handshake answer, ms (default 60000).
    #[serde(default = "default_timeout")]
    pub read_timeout: u64,
    /// Write timeout, ms (default 60000).
    #[serde(default = "default_timeout")]
    pub write_timeout: u64,
    /// Ping the upstream after this long since the last ping, ms (default
    /// 0: never).
    #[serde(default)]
    pub ping_interval: u64,
    /// Close both legs (1001) when the upstream leaves a ping unanswered
    /// this long, ms (default 10000).
    #[serde(default = "default_pong_timeout")]
    pub pong_timeout: u64,
    /// Verify the upstream's certificate (wss://; default true).
    #[serde(default = "default_true")]
    pub tls_verify: bool,
    /// Extra CA certificates (PEM) to trust for this upstream.
    pub ca_file: Option<Spanned<String>>,
    /// A certificate chain (PEM file, leaf first) presented to a wss
    /// upstream that asks for one (mutual TLS); needs `client_key`.
    pub client_cert: Option<Spanned<String>>,
    /// `client_cert`'s private key (PEM file).
    pub client_key: Option<Spanned<String>>,
    /// Kong's `client_certificate`: a chain and key, PEM in the file.
    #[serde(skip)]
    pub client_certificate: Option<(Spanned<String>, Spanned<String>)>,
    /// Kong's `ca_certificates`: CA certificates, PEM in the file.
    #[serde(skip)]
    pub ca_certificates: Vec<Spanned<String>>,
    /// permessage-deflate offered to the upstream: `true` (the default:
    /// offered when the client's leg compresses), `false`, or the
    /// parameters (`always = true`: offered whatever the client does).
    #[serde(default = "default_deflate")]
    pub deflate: Spanned<DeflateSetting>,
    /// Targets of a balanced upstream tried after the first fails to
    /// connect or answers 5xx (default 5).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The service's routes.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// Plugins for every route of this service.
    #[serde(default)]
    pub plugins: Vec<PluginSection>,
}

impl ServiceSection {
    /// A service with the file format's defaults (for other formats'
    /// translations).
    pub(super) fn new(name: Spanned<String>, url: Spanned<String>) -> Self {
        ServiceSection {
            name,
            url,
            connect_timeout: default_timeout(),
            read_timeout: default_timeout(),
            write_timeout: default_timeout(),
            ping_interval: 0,
            pong_timeout: default_pong_timeout(),
            tls_verify: true,
            ca_file: None,
            client_cert: None,
            client_key: None,
            client_certificate: None,
            ca_certificates: Vec::new(),
            deflate: default_deflate(),
            retries: default_retries(),
            routes: Vec::new(),
            plugins: Vec::new(),
        }
    }
}

/// `[[services.routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// The route's name.
    pub name: Spanned<String>,
    /// Path prefixes, or regular expressions after `~` (anchored at the
    /// path's start, as in Kong).
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
    /// Ranks routes matched by regular-expression paths: the higher wins
    /// (default 0).
    #[serde(default)]
    pub regex_priority: u32,
    /// HTTP methods the route accepts; they must include GET, the method
    /// of every WebSocket upgrade. A route that names them ranks above one
    /// that does not, as in Kong.
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    /// Host names (`*.example.com` allowed); empty matches any host.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Request headers the route needs, each with the values it accepts
    /// (`{ x-tenant = ["blue", "green"] }`, compared without regard to
    /// case; a value after `~*` is a regular expression).
    pub headers: Option<Spanned<std::collections::BTreeMap<String, Vec<String>>>>,
    /// Remove the matched prefix before proxying (default true).
    #[serde(default = "default_true")]
    pub strip_path: bool,
    /// Send the client's Host header upstream (default true); false sends
    /// the service's host, as Kong's default does.
    #[serde(default = "default_true")]
    pub preserve_host: bool,
    /// Plugins for this route only.
    #[serde(default)]
    pub plugins: Vec<PluginSection>,
}

impl RouteSection {
    /// A route with the file format's defaults.
    pub(super) fn new(name: Spanned<String>) -> Self {
        RouteSection {
            name,
            paths: Vec::new(),
            regex_priority: 0,
            methods: Vec::new(),
            hosts: Vec::new(),
            headers: None,
            strip_path: true,
            preserve_host: true,
            plugins: Vec::new(),
        }
    }
}

/// `[[plugins]]`, `[[services.plugins]]`, `[[services.routes.plugins]]` or
/// `[[consumers.plugins]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// The plugin's name.
    pub name: Spanned<String>,
    /// Its configuration.
    #[serde(default = "empty_table")]
    pub config: Spanned<serde_json::Value>,
    /// Set false to keep an entry without running it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A consumer's plugin only: the route it applies to.
    pub route: Option<Spanned<String>>,
    /// A consumer's plugin only: the service it applies to.
    pub service: Option<Spanned<String>>,
}

impl UpstreamSection {
    /// An upstream with the file format's defaults.
    pub(super) fn new(name: Spanned<String>) -> Self {
        UpstreamSection {
            name,
            algorithm: None,
            hash_on: None,
            hash_fallback: None,
            hash_on_header: None,
            hash_on_cookie: None,
            hash_on_query_arg: None,
            hash_fallback_header: None,
            hash_fallback_cookie: None,
            hash_fallback_query_arg: None,
            dns_refresh: default_dns_refresh(),
            targets: Vec::new(),
            healthchecks: HealthchecksSection::default(),
        }
    }
}

impl ActiveSection {
    /// Active checks with the file format's defaults.
    pub(super) fn new() -> Self {
        ActiveSection {
            kind: None,
            http_path: default_http_path(),
            interval: default_probe_interval(),
            timeout: default_probe_timeout(),
            healthy: ActiveHealthy::default(),
            unhealthy: Failures::default(),
        }
    }
}

fn default_listen() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "127.0.0.1:8080".to_owned())]
}
fn default_client_max() -> Spanned<u64> {
    Spanned::new(0..0, 1 << 20)
}
fn default_upstream_max() -> Spanned<u64> {
    Spanned::new(0..0, 16 << 20)
}
fn default_idle() -> u64 {
    60_000
}
fn default_handshake() -> u64 {
    10_000
}
fn default_pong_timeout() -> u64 {
    10_000
}
fn default_drain_timeout() -> u64 {
    30_000
}
fn default_close_spread() -> u64 {
    10_000
}
fn default_max_request_headers() -> Spanned<u64> {
    Spanned::new(0..0, HandshakeLimits::default().max_headers as u64)
}
fn default_max_request_header_bytes() -> Spanned<u64> {
    Spanned::new(0..0, HandshakeLimits::default().max_head_len as u64)
}
fn default_lua_instructions() -> Spanned<u64> {
    Spanned::new(0..0, 1_000_000)
}
fn default_lua_memory() -> Spanned<u64> {
    Spanned::new(0..0, 16 << 20)
}
fn default_timeout() -> u64 {
    60_000
}
fn default_deflate() -> Spanned<DeflateSetting> {
    Spanned::new(0..0, DeflateSetting::default())
}
fn default_retries() -> u32 {
    5
}
fn default_weight() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}
fn default_dns_refresh() -> u64 {
    30_000
}
fn default_http_path() -> String {
    "/".to_owned()
}
fn default_probe_interval() -> u64 {
    5_000
}
fn default_probe_timeout() -> u64 {
    1_000
}
fn default_successes() -> u32 {
    2
}
fn default_failures() -> u32 {
    3
}
fn default_unhealthy_timeout() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}
fn empty_table() -> Spanned<serde_json::Value> {
    Spanned::new(0..0, serde_json::Value::Object(serde_json::Map::new()))
}
