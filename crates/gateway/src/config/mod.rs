//! Loading the declarative configuration: parse the TOML (or translate a
//! Kong declarative file, see the `kong` module), check every value, and build the
//! routing table with each route's plugin chain. Every problem is reported
//! with its line and column; a configuration with any error is never
//! started.

mod kong;
mod schema;
mod upstreams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use frameway_wire::deflate::DeflateConfig;
use frameway_wire::handshake::HandshakeLimits;
use frameway_wire::Heartbeat;
use schema::CertificateSection;
pub use schema::{
    AdminSection, ConsumerSection, DeflateSection, DeflateSetting, FileConfig, GatewaySection,
    PluginSection, RouteSection, ServiceSection,
};

use crate::balancer::Pool;
use crate::consumer::{ConsumerError, ConsumerSpec, Consumers};
use crate::plugin::{Chain, Plugin, Registry};
use crate::router::{HeaderPattern, Route, RoutePath, Router};
use crate::upstream::DeflateOffer;
use crate::upstream::{ClientCertificate, Service, Upstream};

/// The largest message limit a route may have, whatever plugins ask.
pub const MAX_PAYLOAD_CEILING: u64 = 32 << 20;

/// The longest keep-alive interval or pong timeout, ms (a day).
pub const MAX_TIMER_MS: u64 = 86_400_000;

/// The largest `max_request_header_bytes`: a request head is buffered whole
/// before it is parsed.
pub const MAX_REQUEST_HEAD: u64 = 1 << 20;

/// The configuration `frameway gateway` runs without a file: listen on
/// 127.0.0.1:8080, route `/echo` to an in-process echo upstream, and serve
/// the admin endpoints on 127.0.0.1:8001.
pub const DEFAULT_CONFIG: &str = r#"
[gateway]
listen = ["127.0.0.1:8080"]

[admin]
listen = "127.0.0.1:8001"

[[services]]
name = "echo"
url = "internal://echo"
  [[services.routes]]
  name = "echo"
  paths = ["/echo"]
"#;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in when it is not the configuration file
    /// itself: the Kong declarative file its `declarative_config` names.
    pub file: Option<String>,
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.location {
            Some((line, col)) => write!(f, "{line}:{col}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a file, with its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file (or `<built-in>`).
    pub source_name: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let file = e.file.as_deref().unwrap_or(&self.source_name);
            match e.location {
                Some(_) => write!(f, "{file}:{e}")?,
                None => write!(f, "{file}: {e}")?,
            }
        }
        Ok(())
    }
}

/// TLS material for `tls_listen`: `tls_cert` and `tls_key`, read and
/// checked when the configuration loads (a reload reads them again, so a
/// renewed certificate is served from then on).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The chain and its signing key, as read from the two files.
    pub certified: Arc<rustls::sign::CertifiedKey>,
}

/// A certificate the TLS listeners choose by the server name a client asks
/// for (SNI): Kong's `certificates` and `snis`.
#[derive(Debug, Clone)]
pub struct SniCertificate {
    /// Lower-case server names, `*.example.com` allowed.
    pub names: Vec<String>,
    /// The certificate chain and its signing key.
    pub key: Arc<rustls::sign::CertifiedKey>,
}

/// A checked, ready-to-run configuration.
#[derive(Clone)]
pub struct Config {
    /// Plain listeners.
    pub listen: Vec<SocketAddr>,
    /// TLS listeners.
    pub tls_listen: Vec<SocketAddr>,
    /// The admin listener (`/metrics`, `/status`, `/reload`), if any.
    pub admin_listen: Option<SocketAddr>,
    /// Certificate and key for the TLS listeners.
    pub tls: Option<TlsFiles>,
    /// Certificates chosen by SNI (the first, or `tls`, for other names).
    pub certificates: Vec<SniCertificate>,
    /// Default largest client message.
    pub client_max_payload: u64,
    /// Default largest upstream message.
    pub upstream_max_payload: u64,
    /// Idle timeout (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Time allowed for the client's opening request.
    pub handshake_timeout: Duration,
    /// The gateway's keep-alive pings to clients (`None`: none).
    pub client_heartbeat: Option<Heartbeat>,
    /// How long a drain lets open connections go on before closing them.
    pub drain_timeout: Duration,
    /// How long the closes at the end of a drain are spread over.
    pub close_spread: Duration,
    /// Limits on the client's request head (431 above them).
    pub request_limits: HandshakeLimits,
    /// The routing table.
    pub router: Arc<Router>,
    /// The balanced upstreams, by name.
    pub upstreams: Vec<Arc<Pool>>,
    /// permessage-deflate with clients (`None`: refused).
    pub client_deflate: Option<DeflateConfig>,
    /// Consumers and their credentials.
    pub consumers: Arc<Consumers>,
    /// What the TLS listeners accept with: `tls` and `certificates`, chosen
    /// by SNI (`None` without either).
    pub(crate) tls_acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl Config {
    /// The built-in default configuration.
    pub fn builtin() -> Config {
        Config::parse(DEFAULT_CONFIG, "<built-in>", &Registry::with_builtins())
            .expect("the built-in configuration is valid")
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path, registry: &Registry) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source_name: name.clone(),
            errors: vec![ConfigError {
                file: None,
                location: None,
                message: format!("cannot read: {e}"),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Loader::new(&text, base)
            .load(registry)
            .map_err(|errors| ConfigErrors {
                source_name: name,
                errors,
            })
    }

    /// Checks a configuration given as text; relative paths in it are taken
    /// from the current directory.
    pub fn parse(
        text: &str,
        source_name: &str,
        registry: &Registry,
    ) -> Result<Config, ConfigErrors> {
        Loader::new(text, Path::new("."))
            .load(registry)
            .map_err(|errors| ConfigErrors {
                source_name: source_name.to_owned(),
                errors,
            })
    }
}

struct Loader<'a> {
    /// The configuration, then the declarative file it names, if any:
    /// spans are offsets into this.
    text: String,
    /// Where the declarative file starts in `text`, and its name.
    included: Option<(usize, String)>,
    base: &'a Path,
    errors: Vec<ConfigError>,
}

impl<'a> Loader<'a> {
    fn new(text: &str, base: &'a Path) -> Self {
        Loader {
            text: text.to_owned(),
            included: None,
            base,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let span = span.filter(|s| s.end > 0);
        let (file, location) = match (&self.included, span) {
            (Some((start, name)), Some(s)) if s.start >= *start => (
                Some(name.clone()),
                Some(line_col(&self.text[*start..], s.start - start)),
            ),
            (_, span) => (None, span.map(|s| line_col(&self.text, s.start))),
        };
        self.errors.push(ConfigError {
            file,
            location,
            message: message.into(),
        });
    }

    /// Translates a Kong declarative file that starts at `offset` of
    /// `self.text`; `None` if it is not YAML at all.
    fn declarative(&mut self, offset: usize) -> Option<FileConfig> {
        let (file, errors) = kong::translate(&self.text[offset..], offset);
        for (span, message) in errors {
            self.error(span, message);
        }
        file
    }

    /// `[gateway] declarative_config`: a Kong declarative file whose
    /// entities join the configuration's (its errors name that file).
    fn include(&mut self, file: &mut FileConfig) {
        let Some(path) = file.gateway.declarative_config.clone() else {
            return;
        };
        let full = self.base.join(path.get_ref());
        let text = match std::fs::read_to_string(&full) {
            Ok(text) if kong::is_declarative(&text) => text,
            Ok(_) => {
                let message = format!(
                    "declarative_config: {} is not a Kong declarative file (no _format_version)",
                    full.display()
                );
                return self.error(Some(path.span()), message);
            }
            Err(e) => {
                let message = format!("declarative_config: cannot read {}: {e}", full.display());
                return self.error(Some(path.span()), message);
            }
        };
        self.text.push('\n');
        let offset = self.text.len();
        self.text.push_str(&text);
        self.included = Some((offset, full.display().to_string()));
        if let Some(kong) = self.declarative(offset) {
            file.services.extend(kong.services);
            file.plugins.extend(kong.plugins);
            file.upstreams.extend(kong.upstreams);
            file.consumers.extend(kong.consumers);
            file.certificates.extend(kong.certificates);
        }
    }

    fn load(mut self, registry: &Registry) -> Result<Config, Vec<ConfigError>> {
        let file: FileConfig = if kong::is_declarative(&self.text) {
            match self.declarative(0) {
                Some(file) => file,
                None => return Err(self.errors),
            }
        } else {
            match toml::from_str(&self.text) {
                Ok(mut file) => {
                    self.include(&mut file);
                    file
                }
                Err(e) => {
                    let message = e.message().to_owned();
                    self.error(e.span(), message);
                    return Err(self.errors);
                }
            }
        };
        let g = &file.gateway;
        let listen = self.addresses(&g.listen, "listen");
        let tls_listen = self.addresses(&g.tls_listen, "tls_listen");
        let admin_listen = file.admin.listen.as_ref().and_then(|a| {
            self.addresses(std::slice::from_ref(a), "[admin] listen")
                .pop()
        });
        let tls = match (&g.tls_cert, &g.tls_key) {
            (Some(cert), Some(key)) => self.tls_files(cert, key),
            (None, None) => None,
            (Some(s), None) | (None, Some(s)) => {
                self.error(Some(s.span()), "tls_cert and tls_key go together");
                None
            }
        };
        let certificates = self.certificates(&file.certificates);
        let default_certificate = tls
            .as_ref()
            .map(|files| files.certified.clone())
            .or_else(|| certificates.first().map(|c| c.key.clone()));
        let tls_acceptor = default_certificate.and_then(|default| {
            crate::tls::acceptor(default, &certificates)
                .map_err(|e| self.error(None, format!("TLS: {e}")))
                .ok()
        });
        if !tls_listen.is_empty() && g.tls_cert.is_none() && file.certificates.is_empty() {
            self.error(
                Some(g.tls_listen[0].span()),
                "tls_listen needs tls_cert and tls_key (or certificates in its declarative_config)",
            );
        }
        if g.listen.is_empty() && g.tls_listen.is_empty() {
            self.error(None, "no listen address");
        }
        for (limit, key) in [
            (&g.client_max_payload, "client_max_payload"),
            (&g.upstream_max_payload, "upstream_max_payload"),
        ] {
            if *limit.get_ref() == 0 || *limit.get_ref() > MAX_PAYLOAD_CEILING {
                self.error(
                    Some(limit.span()),
                    format!("{key} must be between 1 and {MAX_PAYLOAD_CEILING} bytes"),
                );
            }
        }
        for (limit, key, range) in [
            (&g.max_request_headers, "max_request_headers", 8..=10_000),
            (
                &g.max_request_header_bytes,
                "max_request_header_bytes",
                1024..=MAX_REQUEST_HEAD,
            ),
        ] {
            if !range.contains(limit.get_ref()) {
                self.error(
                    Some(limit.span()),
                    format!(
                        "{key} must be between {} and {}",
                        range.start(),
                        range.end()
                    ),
                );
            }
        }

        // Lua plugins of `lua_plugin_dirs` join the registry for this load.
        let (registry, lua_errors) = crate::lua::with_config(registry, self.base, g);
        for (span, message) in lua_errors {
            self.error(span, message);
        }
        let registry = &registry;
        let client_heartbeat = self.heartbeat(g.ping_interval, g.pong_timeout, None, "[gateway]");
        let client_deflate = match self.deflate(&g.client_deflate, "client_deflate") {
            Some(DeflateOffer::Always(_)) => {
                self.error(
                    Some(g.client_deflate.span()),
                    String::from("client_deflate: `always` applies only to a service's deflate"),
                );
                None
            }
            offer => offer.map(|o| *o.config()),
        };
        let global = self.plugins(&file.plugins, registry);
        let mut all_plugins: Vec<&PluginSection> = file.plugins.iter().collect();
        let pools = self.upstreams(&file.upstreams);
        let consumers = self.consumers(&file.consumers);
        let consumer_plugins = self.consumer_plugins(&file.consumers, &consumers, registry);
        let mut routes = Vec::new();
        let mut service_names = std::collections::HashSet::new();
        let mut route_names = std::collections::HashSet::new();
        for svc in &file.services {
            if !service_names.insert(svc.name.get_ref().clone()) {
                self.error(
                    Some(svc.name.span()),
                    format!("duplicate service name {:?}", svc.name.get_ref()),
                );
            }
            let service_plugins = self.plugins(&svc.plugins, registry);
            all_plugins.extend(&svc.plugins);
            // A broken service is not built, but its routes are still
            // checked: every error is reported at once.
            let service = self.service(svc, &pools);
            if svc.routes.is_empty() {
                self.error(
                    Some(svc.name.span()),
                    format!("service {:?} has no routes", svc.name.get_ref()),
                );
            }
            for r in &svc.routes {
                if !route_names.insert(r.name.get_ref().clone()) {
                    self.error(
                        Some(r.name.span()),
                        format!("duplicate route name {:?}", r.name.get_ref()),
                    );
                }
                let route_plugins = self.plugins(&r.plugins, registry);
                all_plugins.extend(&r.plugins);
                let chain = merge_levels(&[&route_plugins, &service_plugins, &global]);
                let consumer_chains = consumer_plugins
                    .iter()
                    .filter_map(|(id, own)| {
                        let on_route = own.by_route.get(r.name.get_ref());
                        let on_service = own.by_service.get(svc.name.get_ref());
                        if on_route.is_none() && on_service.is_none() && own.everywhere.is_empty() {
                            return None;
                        }
                        // Kong's precedence: consumer+route, consumer+service,
                        // route, service, consumer, global.
                        let levels = [
                            on_route.map_or(&[][..], Vec::as_slice),
                            on_service.map_or(&[][..], Vec::as_slice),
                            &route_plugins,
                            &service_plugins,
                            &own.everywhere,
                            &global,
                        ];
                        Some((id.clone(), merge_levels(&levels)))
                    })
                    .collect();
                if let Some(route) = self.route(r, service.clone(), chain, consumer_chains) {
                    routes.push(route);
                }
            }
        }
        for p in all_plugins {
            if let Some(scope) = p.route.as_ref().or(p.service.as_ref()) {
                self.error(
                    Some(scope.span()),
                    format!(
                        "plugin {:?}: route and service apply only to a consumer's plugins",
                        p.name.get_ref()
                    ),
                );
            }
        }
        for (id, own) in &consumer_plugins {
            for (name, span) in &own.route_names {
                if !route_names.contains(name) {
                    self.error(
                        Some(span.clone()),
                        format!("consumer {id:?}: no route named {name:?}"),
                    );
                }
            }
            for (name, span) in &own.service_names {
                if !service_names.contains(name) {
                    self.error(
                        Some(span.clone()),
                        format!("consumer {id:?}: no service named {name:?}"),
                    );
                }
            }
        }
        if !self.errors.is_empty() {
            self.errors
                .sort_by(|a, b| (&a.file, a.location).cmp(&(&b.file, b.location)));
            return Err(self.errors);
        }
        Ok(Config {
            listen,
            tls_listen,
            admin_listen,
            tls,
            certificates,
            client_max_payload: *g.client_max_payload.get_ref(),
            upstream_max_payload: *g.upstream_max_payload.get_ref(),
            idle_timeout: (g.idle_timeout > 0).then(|| Duration::from_millis(g.idle_timeout)),
            handshake_timeout: Duration::from_millis(g.handshake_timeout.max(1)),
            client_heartbeat,
            drain_timeout: Duration::from_millis(g.drain_timeout),
            close_spread: Duration::from_millis(g.close_spread),
            request_limits: HandshakeLimits {
                max_headers: *g.max_request_headers.get_ref() as usize,
                max_head_len: *g.max_request_header_bytes.get_ref() as usize,
            },
            router: Arc::new(Router::new(routes)),
            upstreams: {
                let mut pools: Vec<Arc<Pool>> = pools.into_values().collect();
                pools.sort_by(|a, b| a.name.cmp(&b.name));
                pools
            },
            client_deflate,
            consumers: Arc::new(consumers),
            tls_acceptor,
        })
    }

    /// Builds each consumer's plugins, grouped by where they apply.
    fn consumer_plugins(
        &mut self,
        list: &[toml::Spanned<ConsumerSection>],
        consumers: &Consumers,
        registry: &Registry,
    ) -> Vec<(String, ConsumerPlugins)> {
        let mut out = Vec::new();
        // `consumers` is empty when they failed to load (reported there).
        for (section, consumer) in list.iter().zip(consumers.iter()) {
            let section = section.get_ref();
            if section.plugins.is_empty() {
                continue;
            }
            let mut own = ConsumerPlugins::default();
            let mut groups: Vec<(Scope, Vec<PluginSection>)> = Vec::new();
            for p in &section.plugins {
                let scope = match (&p.route, &p.service) {
                    (Some(_), Some(service)) => {
                        self.error(
                            Some(service.span()),
                            format!(
                                "consumer {:?}: plugin {:?} names both a route and a service",
                                consumer.id,
                                p.name.get_ref()
                            ),
                        );
                        continue;
                    }
                    (Some(route), None) => Scope::Route(route),
                    (None, Some(service)) => Scope::Service(service),
                    (None, None) => Scope::Everywhere,
                };
                let entry = PluginSection {
                    name: p.name.clone(),
                    config: p.config.clone(),
                    enabled: p.enabled,
                    route: None,
                    service: None,
                };
                match groups.iter_mut().find(|(s, _)| s.same(&scope)) {
                    Some((_, group)) => group.push(entry),
                    None => groups.push((scope, vec![entry])),
                }
            }
            for (scope, group) in groups {
                let plugins = self.plugins(&group, registry);
                match scope {
                    Scope::Everywhere => own.everywhere = plugins,
                    Scope::Route(name) => {
                        own.route_names.push((name.get_ref().clone(), name.span()));
                        own.by_route.insert(name.get_ref().clone(), plugins);
                    }
                    Scope::Service(name) => {
                        own.service_names
                            .push((name.get_ref().clone(), name.span()));
                        own.by_service.insert(name.get_ref().clone(), plugins);
                    }
                }
            }
            out.push((consumer.id.clone(), own));
        }
        out
    }

    /// Checks a certificate chain and its private key, both PEM: the chain
    /// parses, the key loads and belongs to the chain's leaf.
    fn certified_key(
        &mut self,
        cert: &toml::Spanned<String>,
        key: &toml::Spanned<String>,
        what: &str,
    ) -> Option<rustls::sign::CertifiedKey> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.get_ref().as_bytes())
                .filter_map(Result::ok)
                .collect();
        if chain.is_empty() {
            self.error(
                Some(cert.span()),
                format!("{what}: cert is not a PEM certificate"),
            );
            return None;
        }
        let provider = rustls::crypto::ring::default_provider();
        let loaded = PrivateKeyDer::from_pem_slice(key.get_ref().as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|key| {
                provider
                    .key_provider
                    .load_private_key(key)
                    .map_err(|e| e.to_string())
            });
        let certified = match loaded {
            Ok(loaded) => rustls::sign::CertifiedKey::new(chain, loaded),
            Err(e) => {
                self.error(
                    Some(key.span()),
                    format!("{what}: key: not a usable PEM private key: {e}"),
                );
                return None;
            }
        };
        if let Err(e) = certified.keys_match() {
            self.error(Some(key.span()), format!("{what}: key: {e}"));
            return None;
        }
        Some(certified)
    }

    /// A service's client certificate: Kong's (PEM in the file) or
    /// `client_cert` and `client_key` (PEM files, read and checked here).
    fn client_certificate(
        &mut self,
        svc: &ServiceSection,
        what: &str,
    ) -> Option<ClientCertificate> {
        let (cert, key) = match (&svc.client_certificate, &svc.client_cert, &svc.client_key) {
            // Checked where the file lists it, among the certificates.
            (Some((cert, key)), _, _) => {
                return Some(ClientCertificate {
                    chain: cert.get_ref().clone().into_bytes(),
                    key: key.get_ref().clone().into_bytes(),
                })
            }
            (None, None, None) => return None,
            (None, Some(cert), Some(key)) => (
                self.read_file(cert, "client_cert")?,
                self.read_file(key, "client_key")?,
            ),
            (None, Some(one), None) | (None, None, Some(one)) => {
                self.error(
                    Some(one.span()),
                    format!("{what}: client_cert and client_key go together"),
                );
                return None;
            }
        };
        self.certified_key(&cert, &key, &format!("{what}: client certificate"))?;
        Some(ClientCertificate {
            chain: cert.into_inner().into_bytes(),
            key: key.into_inner().into_bytes(),
        })
    }

    /// A service's CA certificates given inline (Kong's `ca_certificates`),
    /// checked.
    fn ca_certificates(&mut self, svc: &ServiceSection, what: &str) -> Vec<Vec<u8>> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let mut out = Vec::new();
        for ca in &svc.ca_certificates {
            let certs = CertificateDer::pem_slice_iter(ca.get_ref().as_bytes())
                .filter_map(Result::ok)
                .count();
            if certs == 0 {
                self.error(
                    Some(ca.span()),
                    format!("{what}: a CA certificate is not a PEM certificate"),
                );
                continue;
            }
            out.push(ca.get_ref().clone().into_bytes());
        }
        out
    }

    /// Checks certificates given inline (PEM) with their server names.
    fn certificates(&mut self, list: &[CertificateSection]) -> Vec<SniCertificate> {
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let Some(certified) =
                self.certified_key(&c.cert, &c.key, &format!("certificates[{i}]"))
            else {
                continue;
            };
            let mut names = Vec::new();
            for name in &c.snis {
                let lower = name.get_ref().to_ascii_lowercase();
                let bare = lower.strip_prefix("*.").unwrap_or(&lower);
                if bare.is_empty() || bare.contains(['*', '/', ':', ' ']) {
                    self.error(
                        Some(name.span()),
                        format!(
                            "SNI {:?} is not a server name (use a.example.com or *.example.com)",
                            name.get_ref()
                        ),
                    );
                    continue;
                }
                names.push(lower);
            }
            out.push(SniCertificate {
                names,
                key: Arc::new(certified),
            });
        }
        out
    }

    /// Checks `[[consumers]]`.
    fn consumers(&mut self, list: &[toml::Spanned<ConsumerSection>]) -> Consumers {
        let specs = list
            .iter()
            .map(|c| {
                let c = c.get_ref();
                ConsumerSpec {
                    id: c.id.clone(),
                    username: c.username.clone(),
                    custom_id: c.custom_id.clone(),
                    keys: c
                        .keyauth_credentials
                        .iter()
                        .map(|k| (k.key.clone(), k.id.clone()))
                        .collect(),
                }
            })
            .collect();
        Consumers::new(specs).unwrap_or_else(|err| {
            // The other errors name the consumers concerned.
            let span = match &err {
                ConsumerError::Anonymous(n) => list.get(n - 1).map(|c| c.span()),
                _ => None,
            };
            self.error(span, err.to_string());
            Consumers::default()
        })
    }

    fn addresses(&mut self, list: &[toml::Spanned<String>], key: &str) -> Vec<SocketAddr> {
        list.iter()
            .filter_map(|a| match a.get_ref().parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(
                        Some(a.span()),
                        format!("{key}: {:?} is not an IP:port address", a.get_ref()),
                    );
                    None
                }
            })
            .collect()
    }

    /// The text of the file at `path` (relative to the configuration's
    /// directory), spanned where `key` names it, so that what is wrong in
    /// it is reported there.
    fn read_file(
        &mut self,
        path: &toml::Spanned<String>,
        key: &str,
    ) -> Option<toml::Spanned<String>> {
        let full = self.base.join(path.get_ref());
        match std::fs::read_to_string(&full) {
            Ok(text) => Some(toml::Spanned::new(path.span(), text)),
            Err(e) => {
                self.error(
                    Some(path.span()),
                    format!("{key}: cannot read {}: {e}", full.display()),
                );
                None
            }
        }
    }

    /// `tls_cert` and `tls_key`, read and checked.
    fn tls_files(
        &mut self,
        cert: &toml::Spanned<String>,
        key: &toml::Spanned<String>,
    ) -> Option<TlsFiles> {
        let (chain, key_pem) = (
            self.read_file(cert, "tls_cert"),
            self.read_file(key, "tls_key"),
        );
        let certified = self.certified_key(&chain?, &key_pem?, "tls_cert/tls_key")?;
        Some(TlsFiles {
            cert: self.base.join(cert.get_ref()),
            key: self.base.join(key.get_ref()),
            certified: Arc::new(certified),
        })
    }

    fn existing_file(&mut self, path: &toml::Spanned<String>, key: &str) -> PathBuf {
        let full = self.base.join(path.get_ref());
        if !full.is_file() {
            self.error(
                Some(path.span()),
                format!("{key}: no such file {}", full.display()),
            );
        }
        full
    }

    fn service(
        &mut self,
        svc: &ServiceSection,
        pools: &std::collections::HashMap<String, Arc<Pool>>,
    ) -> Option<Arc<Service>> {
        let upstream = Upstream::parse(svc.url.get_ref()).map_err(|why| {
            self.error(
                Some(svc.url.span()),
                format!("url {:?}: {why}", svc.url.get_ref()),
            );
        });
        let before = self.errors.len();
        let what = format!("service {:?}", svc.name.get_ref());
        let heartbeat = self.heartbeat(
            svc.ping_interval,
            svc.pong_timeout,
            Some(svc.name.span()),
            &what,
        );
        let deflate = self.deflate(&svc.deflate, "deflate");
        let ca_file = svc
            .ca_file
            .as_ref()
            .map(|f| self.existing_file(f, "ca_file"));
        let client_certificate = self.client_certificate(svc, &what);
        let ca_certificates = self.ca_certificates(svc, &what);
        let upstream = upstream.ok()?;
        if self.errors.len() > before {
            return None;
        }
        // Kong's rule: a service URL whose host names an upstream is
        // balanced over that upstream's targets.
        let pool = match &upstream {
            Upstream::Url { url, .. } => pools.get(url.host()).cloned(),
            Upstream::Echo => None,
        };
        Some(Arc::new(Service {
            name: svc.name.get_ref().clone(),
            upstream,
            connect_timeout: Duration::from_millis(svc.connect_timeout.max(1)),
            read_timeout: Duration::from_millis(svc.read_timeout.max(1)),
            write_timeout: Duration::from_millis(svc.write_timeout.max(1)),
            tls_verify: svc.tls_verify,
            ca_file,
            ca_certificates,
            client_certificate,
            heartbeat,
            pool,
            retries: svc.retries,
            deflate,
            tls: Default::default(),
            legs: Default::default(),
        }))
    }

    /// Checks a permessage-deflate setting.
    fn deflate(
        &mut self,
        setting: &toml::Spanned<DeflateSetting>,
        key: &str,
    ) -> Option<DeflateOffer> {
        let d = match setting.get_ref() {
            DeflateSetting::On(false) => return None,
            DeflateSetting::On(true) => {
                return Some(DeflateOffer::WhenClientCompresses(DeflateConfig::default()))
            }
            DeflateSetting::With(section) => section,
        };
        let mut config = DeflateConfig::default();
        let mut check = |value: Option<u8>, range: std::ops::RangeInclusive<u8>, name: &str| {
            let value = value?;
            if range.contains(&value) {
                Some(value)
            } else {
                self.error(
                    Some(setting.span()),
                    format!(
                        "{key}: {name} must be from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        };
        if let Some(bits) = check(d.server_max_window_bits, 8..=15, "server_max_window_bits") {
            config.server_max_window_bits = bits;
        }
        if let Some(bits) = check(d.client_max_window_bits, 8..=15, "client_max_window_bits") {
            config.client_max_window_bits = bits;
        }
        if let Some(level) = check(d.level, 0..=9, "level") {
            config.level = level;
        }
        if let Some(mem_level) = check(d.mem_level, 1..=9, "mem_level") {
            config.mem_level = mem_level;
        }
        config.server_no_context_takeover = d.server_no_context_takeover.unwrap_or(false);
        config.client_no_context_takeover = d.client_no_context_takeover.unwrap_or(false);
        config.compress_if_bigger_than = d.compress_if_bigger_than.unwrap_or(0);
        Some(if d.always.unwrap_or(false) {
            DeflateOffer::Always(config)
        } else {
            DeflateOffer::WhenClientCompresses(config)
        })
    }

    /// Checks `ping_interval` and `pong_timeout` (ms) of `what`: pings are
    /// on when the interval is not 0, and then a ping needs a deadline.
    fn heartbeat(
        &mut self,
        ping_interval: u64,
        pong_timeout: u64,
        span: Option<Range<usize>>,
        what: &str,
    ) -> Option<Heartbeat> {
        if ping_interval == 0 {
            return None;
        }
        if pong_timeout == 0 || pong_timeout > MAX_TIMER_MS || ping_interval > MAX_TIMER_MS {
            self.error(
                span,
                format!(
                    "{what}: ping_interval and pong_timeout must be from 1 to {MAX_TIMER_MS} ms when pings are on"
                ),
            );
            return None;
        }
        Some(Heartbeat {
            interval: Duration::from_millis(ping_interval),
            timeout: Duration::from_millis(pong_timeout),
        })
    }

    /// Checks a route; builds it if its service is valid too.
    fn route(
        &mut self,
        r: &RouteSection,
        service: Option<Arc<Service>>,
        chain: Chain,
        consumer_chains: HashMap<String, Chain>,
    ) -> Option<Route> {
        let mut ok = true;
        let mut paths = Vec::new();
        for p in &r.paths {
            let problem = match RoutePath::parse(p.get_ref()) {
                Ok(RoutePath::Prefix(prefix)) if !prefix.starts_with('/') => Some(format!(
                    "path {prefix:?} must start with / (or ~ for a regular expression)"
                )),
                Ok(path) => {
                    paths.push(path);
                    None
                }
                Err(err) => Some(format!("path {err}")),
            };
            if let Some(message) = problem {
                self.error(Some(p.span()), message);
                ok = false;
            }
        }
        if !r.methods.is_empty()
            && !r
                .methods
                .iter()
                .any(|m| m.get_ref().eq_ignore_ascii_case("GET"))
        {
            self.error(
                Some(r.methods[0].span()),
                "methods: a WebSocket upgrade is a GET; these methods never match one".to_owned(),
            );
            ok = false;
        }
        for h in &r.hosts {
            let host = h.get_ref();
            let bare = host
                .strip_prefix("*.")
                .or_else(|| host.strip_suffix(".*"))
                .unwrap_or(host);
            if bare.is_empty() || bare.contains(['/', ':', '*', ' ']) {
                self.error(
                    Some(h.span()),
                    format!(
                        "host {host:?} is not a host name (use a.example.com, *.example.com or example.*)"
                    ),
                );
                ok = false;
            }
        }
        let mut headers = Vec::new();
        if let Some(table) = &r.headers {
            for (name, values) in table.get_ref() {
                let problem = match http::HeaderName::try_from(name.as_str()) {
                    Err(_) => Some(format!("headers: {name:?} is not a header name")),
                    Ok(name) if name == http::header::HOST => {
                        Some("headers: match the Host header with hosts".to_owned())
                    }
                    Ok(_) if values.is_empty() => {
                        Some(format!("headers: {name:?} needs at least one value"))
                    }
                    Ok(name) => match values.iter().map(|v| HeaderPattern::parse(v)).collect() {
                        Ok(patterns) => {
                            headers.push((name, patterns));
                            None
                        }
                        Err(err) => Some(format!("headers: {name:?}: {err}")),
                    },
                };
                if let Some(message) = problem {
                    self.error(Some(table.span()), message);
                    ok = false;
                }
            }
        }
        if r.paths.is_empty() && r.hosts.is_empty() && headers.is_empty() {
            self.error(
                Some(r.name.span()),
                format!("route {:?} needs paths, hosts or headers", r.name.get_ref()),
            );
            ok = false;
        }
        let service = service.filter(|_| ok)?;
        Some(Route {
            name: r.name.get_ref().clone(),
            service,
            paths,
            regex_priority: r.regex_priority,
            methods: !r.methods.is_empty(),
            hosts: r
                .hosts
                .iter()
                .map(|h| h.get_ref().to_ascii_lowercase())
                .collect(),
            headers,
            strip_path: r.strip_path,
            preserve_host: r.preserve_host,
            chain,
            consumer_chains,
        })
    }

    fn plugins(&mut self, list: &[PluginSection], registry: &Registry) -> Vec<Arc<dyn Plugin>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for p in list {
            if !seen.insert(p.name.get_ref().clone()) {
                self.error(
                    Some(p.name.span()),
                    format!(
                        "plugin {:?} configured twice at this level",
                        p.name.get_ref()
                    ),
                );
                continue;
            }
            if !p.enabled {
                continue;
            }
            match registry.build(p.name.get_ref(), p.config.get_ref()) {
                Ok(plugin) => out.push(plugin),
                Err(e) => {
                    let span = if registry.contains(p.name.get_ref()) {
                        p.config.span()
                    } else {
                        p.name.span()
                    };
                    let span = if span.end == 0 { p.name.span() } else { span };
                    self.error(Some(span), format!("plugin {:?}: {e}", p.name.get_ref()));
                }
            }
        }
        out
    }
}

/// Route beats service beats global for the same plugin name.
/// The chain of a route: for each plugin name, the instance of the first
/// (most specific) level that configures it.
fn merge_levels(levels: &[&[Arc<dyn Plugin>]]) -> Chain {
    let mut chosen: Vec<Arc<dyn Plugin>> = Vec::new();
    for p in levels.iter().flat_map(|level| level.iter()) {
        if !chosen.iter().any(|c| c.name() == p.name()) {
            chosen.push(p.clone());
        }
    }
    Chain::new(chosen)
}

/// Where a consumer's plugin applies.
enum Scope<'a> {
    Everywhere,
    Route(&'a toml::Spanned<String>),
    Service(&'a toml::Spanned<String>),
}

impl Scope<'_> {
    fn same(&self, other: &Scope<'_>) -> bool {
        match (self, other) {
            (Scope::Everywhere, Scope::Everywhere) => true,
            (Scope::Route(a), Scope::Route(b)) | (Scope::Service(a), Scope::Service(b)) => {
                a.get_ref() == b.get_ref()
            }
            _ => false,
        }
    }
}

/// A consumer's plugins, by where they apply.
#[derive(Default)]
struct ConsumerPlugins {
    everywhere: Vec<Arc<dyn Plugin>>,
    by_service: HashMap<String, Vec<Arc<dyn Plugin>>>,
    by_route: HashMap<String, Vec<Arc<dyn Plugin>>>,
    /// The names given, where, to check that they exist.
    route_names: Vec<(String, Range<usize>)>,
    service_names: Vec<(String, Range<usize>)>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_default_listens_on_8080_and_echoes_on_slash_echo() {
        let config = Config::builtin();
        assert_eq!(config.listen, ["127.0.0.1:8080".parse().unwrap()]);
        assert!(config.tls_listen.is_empty());
        let none = http::HeaderMap::new();
        let matched = config
            .router
            .find(None, "/echo", &none)
            .expect("/echo is routed");
        assert!(matches!(matched.route.service.upstream, Upstream::Echo));
        assert!(config.router.find(None, "/other", &none).is_none());
    }

    #[test]
    fn deflate_settings_are_on_by_default_and_checked_with_their_location() {
        let load = |gateway: &str| {
            let text = format!("[gateway]\n{gateway}\n\n[[services]]\nname = \"s\"\nurl = \"internal://echo\"\n  [[services.routes]]\n  name = \"r\"\n  paths = [\"/\"]\n");
            Config::parse(&text, "t.toml", &Registry::with_builtins())
        };
        let error = |gateway: &str| match load(gateway) {
            Ok(_) => panic!("{gateway} loads"),
            Err(e) => e.to_string(),
        };
        assert!(load("").unwrap().client_deflate.is_some());
        assert!(load("client_deflate = false")
            .unwrap()
            .client_deflate
            .is_none());
        let narrow = load("client_deflate = { server_max_window_bits = 9 }").unwrap();
        assert_eq!(narrow.client_deflate.unwrap().server_max_window_bits, 9);
        let unknown = error("client_deflate = { window = 9 }");
        assert!(
            unknown.starts_with("t.toml:2:") && unknown.contains("unknown field `window`"),
            "{unknown}"
        );
        let always = error("client_deflate = { always = true }");
        assert!(
            always.contains("t.toml:2:18: client_deflate: `always` applies only to a service's"),
            "{always}"
        );
        let range = error("client_deflate = { level = 12 }");
        assert!(
            range.contains("t.toml:2:18: client_deflate: level must be from 0 to 9"),
            "{range}"
        );
    }

    #[test]
    fn pings_are_off_by_default_and_on_with_an_interval_and_a_deadline() {
        let config = Config::builtin();
        assert_eq!(config.client_heartbeat, None);
        let file = |gateway: &str, service: &str| {
            format!(
                "[gateway]\n{gateway}\n[[services]]\nname = \"e\"\nurl = \"internal://echo\"\n{service}\n  [[services.routes]]\n  name = \"r\"\n  paths = [\"/\"]\n"
            )
        };
        let registry = Registry::with_builtins();
        let config = Config::parse(&file("ping_interval = 2000", ""), "t", &registry).unwrap();
        assert_eq!(
            config.client_heartbeat,
            Some(Heartbeat {
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(10)
            })
        );
        let Err(errors) = Config::parse(
            &file("", "ping_interval = 5\npong_timeout = 0"),
            "t",
            &registry,
        ) else {
            panic!("a ping without a deadline is refused");
        };
        assert_eq!(errors.errors.len(), 1, "{errors}");
        assert!(
            errors.to_string().starts_with("t:4:")
                && errors.to_string().contains(
                    "service \"e\": ping_interval and pong_timeout must be from 1 to 86400000 ms"
                ),
            "{errors}"
        );
    }
}
