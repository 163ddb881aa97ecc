//! Kong's declarative format (`kong.yml` of DB-less mode, YAML or JSON,
//! `_format_version` 1.1 to 3.0), translated into the native sections.
//! Every value keeps its place in the file, so the native checks that run
//! next report file:line too.
//!
//! What Frameway does not implement is an error that names the entity and
//! the field, never skipped: a gateway that ignored an authentication
//! plugin, a route header condition or a client certificate it did not
//! know would serve what Kong refuses.

mod health;
mod yaml;

use std::collections::HashMap;
use std::ops::Range;

use serde_json::json;
use toml::Spanned;

use super::schema::{
    CertificateSection, ConsumerSection, FileConfig, KeyAuthCredentialSection, PluginSection,
    RouteSection, ServiceSection, TargetSection, UpstreamSection,
};
use yaml::{Doc, Fields, Node};

/// The format versions Kong 1.1 to 3.x write.
const FORMAT_VERSIONS: [&str; 3] = ["1.1", "2.1", "3.0"];

/// Whether `text` is a declarative file: it has a top-level
/// `_format_version` (no native file has that key).
pub(super) fn is_declarative(text: &str) -> bool {
    text.lines().any(|line| {
        line.trim_start_matches(['{', ' ', '\t', '"', '\''])
            .starts_with("_format_version")
    })
}

/// A problem and the bytes of the file it is about.
pub(super) type Problem = (Option<Range<usize>>, String);

/// The native sections a declarative file says, and every problem found
/// on the way (as byte ranges of the file).
/// `offset`: where `text` starts in the text spans are offsets into.
pub(super) fn translate(text: &str, offset: usize) -> (Option<FileConfig>, Vec<Problem>) {
    let (doc, root) = Doc::parse(text, offset);
    let Ok(root) = root else {
        return (None, doc.errors);
    };
    let mut t = Translator {
        doc,
        file: FileConfig::default(),
        disabled_services: Vec::new(),
        services: HashMap::new(),
        routes: HashMap::new(),
        consumers: HashMap::new(),
        upstreams: HashMap::new(),
        plugins: Vec::new(),
        client_certificates: Vec::new(),
        ca_references: Vec::new(),
    };
    t.root(&root);
    (Some(t.file), t.doc.errors)
}

/// A plugin and the entities it is attached to, placed once every entity
/// is known.
struct PluginRef {
    section: PluginSection,
    service: Option<Spanned<String>>,
    route: Option<Spanned<String>>,
    consumer: Option<Spanned<String>>,
}

struct Translator {
    doc: Doc,
    file: FileConfig,
    /// Services with `enabled: false`: translated (and checked), then
    /// dropped with their routes.
    disabled_services: Vec<usize>,
    /// Services by name and by id: their index in `file.services`.
    services: HashMap<String, usize>,
    /// Routes by name and by id: their service's index and their name.
    routes: HashMap<String, (usize, String)>,
    /// Consumers by id, username and custom id: their index.
    consumers: HashMap<String, usize>,
    /// Upstreams by name and by id: their index.
    upstreams: HashMap<String, usize>,
    plugins: Vec<PluginRef>,
    /// Services' `client_certificate` references (by certificate id),
    /// resolved once the certificates are read.
    client_certificates: Vec<(usize, Spanned<String>)>,
    /// Services' `ca_certificates` references (by CA certificate id),
    /// resolved once the CA certificates are read.
    ca_references: Vec<(usize, Vec<Spanned<String>>)>,
}

impl Translator {
    fn root(&mut self, node: &Node<'_>) {
        let Some(mut f) = Fields::of(&mut self.doc, node, "the file".to_owned()) else {
            return;
        };
        match f.take("_format_version") {
            Some(v) => {
                if let Some(version) = self.doc.str(v, "_format_version") {
                    if !FORMAT_VERSIONS.contains(&version.get_ref().as_str()) {
                        self.doc.error(
                            v,
                            format!(
                                "_format_version {:?} is not one Frameway reads ({})",
                                version.get_ref(),
                                FORMAT_VERSIONS.join(", ")
                            ),
                        );
                    }
                }
            }
            None => self
                .doc
                .errors
                .push((None, "_format_version is missing".into())),
        }
        if let Some(v) = f.take("_transform") {
            self.doc.bool(v, "_transform");
        }
        // decK's description of the file: nothing for the proxy.
        f.take("_info");
        f.at_default(&mut self.doc, "_workspace", json!("default"));

        for (i, s) in self.list(&mut f, "services").iter().enumerate() {
            self.service(s, i);
        }
        for (i, r) in self.list(&mut f, "routes").iter().enumerate() {
            self.top_level_route(r, i);
        }
        for (i, c) in self.list(&mut f, "consumers").iter().enumerate() {
            self.consumer(c, i);
        }
        for (i, k) in self.list(&mut f, "keyauth_credentials").iter().enumerate() {
            self.top_level_key(k, i);
        }
        for (i, u) in self.list(&mut f, "upstreams").iter().enumerate() {
            self.upstream(u, i);
        }
        for (i, t) in self.list(&mut f, "targets").iter().enumerate() {
            self.top_level_target(t, i);
        }
        for p in self.list(&mut f, "plugins") {
            if let Some(plugin) = self.plugin(p) {
                self.plugins.push(plugin);
            }
        }
        let mut certificate_ids = HashMap::new();
        for (i, c) in self.list(&mut f, "certificates").iter().enumerate() {
            self.certificate(c, i, &mut certificate_ids);
        }
        for s in self.list(&mut f, "snis") {
            self.top_level_sni(s, &certificate_ids);
        }
        let mut cas = HashMap::new();
        for (i, c) in self.list(&mut f, "ca_certificates").iter().enumerate() {
            self.ca_certificate(c, i, &mut cas);
        }
        self.resolve_service_certificates(&certificate_ids, &cas);
        f.finish(&mut self.doc, |_| None);
        for plugin in std::mem::take(&mut self.plugins) {
            self.place(plugin);
        }
        let mut index = 0;
        let disabled = std::mem::take(&mut self.disabled_services);
        self.file.services.retain(|_| {
            index += 1;
            !disabled.contains(&(index - 1))
        });
        // Kong serves nothing for a service without routes; the native
        // format calls that a mistake.
        self.file.services.retain(|s| !s.routes.is_empty());
    }

    /// The items of the top-level list `key`.
    fn list<'n, 'i>(&mut self, f: &mut Fields<'n, 'i>, key: &str) -> &'n [Node<'i>] {
        match f.take(key) {
            Some(node) => self.doc.seq(node, key),
            None => &[],
        }
    }

    /// An entity's name, else its id, else `fallback`: the name the native
    /// configuration and the logs use.
    fn label(&mut self, f: &mut Fields<'_, '_>, node: &Node<'_>, fallback: String) -> Label {
        let name = f.take("name").and_then(|n| self.doc.str(n, "name"));
        let id = f.take("id").and_then(|n| self.doc.str(n, "id"));
        let label = name
            .clone()
            .or_else(|| id.clone())
            .unwrap_or_else(|| self.doc.spanned(node, fallback));
        Label { label, name, id }
    }

    fn service(&mut self, node: &Node<'_>, index: usize) {
        let Some(mut f) = Fields::of(&mut self.doc, node, format!("services[{index}]")) else {
            return;
        };
        let Label { label, name, id } = self.label(&mut f, node, format!("service-{}", index + 1));
        f.rename(format!("service {:?}", label.get_ref()));
        let url = self.service_url(&mut f, node);
        let mut service = ServiceSection::new(label.clone(), url);
        for (key, slot) in [
            ("connect_timeout", &mut service.connect_timeout),
            ("read_timeout", &mut service.read_timeout),
            ("write_timeout", &mut service.write_timeout),
        ] {
            if let Some(ms) = f.take(key).and_then(|v| self.doc.uint(v, key)) {
                *slot = ms;
            }
        }
        if let Some(n) = f.take("retries").and_then(|v| self.doc.uint(v, "retries")) {
            service.retries = n.min(u64::from(u32::MAX)) as u32;
        }
        if let Some(v) = f
            .take("tls_verify")
            .and_then(|v| self.doc.bool(v, "tls_verify"))
        {
            service.tls_verify = v;
        }
        f.at_default(&mut self.doc, "tls_verify_depth", json!(null));
        let at = self.file.services.len();
        if let Some(c) = f.take("client_certificate").filter(|c| !yaml::is_null(c)) {
            if let Some(id) = self.reference(c, "client_certificate") {
                self.client_certificates.push((at, id));
            }
        }
        if let Some(list) = f.take("ca_certificates") {
            let ids = self.doc.strings(list, "ca_certificates");
            self.ca_references.push((at, ids));
        }
        let enabled = f
            .take("enabled")
            .and_then(|v| self.doc.bool(v, "enabled"))
            .unwrap_or(true);
        for key in [name, id].into_iter().flatten() {
            self.services.insert(key.into_inner(), at);
        }
        if !enabled {
            self.disabled_services.push(at);
        }
        self.file.services.push(service);
        let routes = f
            .take("routes")
            .map_or(&[][..], |r| self.doc.seq(r, "routes"));
        for (i, r) in routes.iter().enumerate() {
            let fallback = format!("{}-route-{}", label.get_ref(), i + 1);
            if let Some((route, f, id)) = self.route(r, fallback, false) {
                f.finish(&mut self.doc, |_| None);
                self.add_route(at, route, id);
            }
        }
        let plugins = f
            .take("plugins")
            .map_or(&[][..], |p| self.doc.seq(p, "plugins"));
        for p in plugins {
            if let Some(mut plugin) = self.plugin(p) {
                plugin.service = Some(label.clone());
                self.plugins.push(plugin);
            }
        }
        f.finish(&mut self.doc, |_| None);
    }

    /// A service's `url`, or the URL its `protocol`, `host`, `port` and
    /// `path` make. Kong's http and https services are WebSocket upstreams
    /// when their clients upgrade: they become ws:// and wss://.
    fn service_url(&mut self, f: &mut Fields<'_, '_>, node: &Node<'_>) -> Spanned<String> {
        let what = f.what().to_owned();
        let parts: Vec<_> = ["protocol", "host", "port", "path"]
            .into_iter()
            .map(|key| (key, f.take(key)))
            .collect();
        if let Some(url_node) = f.take("url") {
            for (key, value) in &parts {
                if let Some(value) = value {
                    let message = format!("{what}: `{key}` and `url` go separately, not together");
                    self.doc.error(value, message);
                }
            }
            let Some(url) = self.doc.str(url_node, "url") else {
                return self.doc.spanned(url_node, String::new());
            };
            let (scheme, rest) = url
                .get_ref()
                .split_once("://")
                .unwrap_or(("", url.get_ref()));
            let scheme = self.scheme(url_node, &what, scheme);
            return self.doc.spanned(url_node, format!("{scheme}://{rest}"));
        }
        let value = |key: &str| parts.iter().find(|(k, _)| *k == key).and_then(|(_, v)| *v);
        let scheme = match value("protocol") {
            Some(p) => match self.doc.str(p, "protocol") {
                Some(protocol) => self.scheme(p, &what, protocol.get_ref()),
                None => "ws",
            },
            None => "ws",
        };
        let Some(host_node) = value("host") else {
            self.doc
                .error(node, format!("{what}: `url` or `host` is required"));
            return self.doc.spanned(node, String::new());
        };
        let host = self.doc.str(host_node, "host").map(Spanned::into_inner);
        let port = match value("port") {
            Some(p) => self.doc.uint(p, "port"),
            None => Some(if scheme == "wss" { 443 } else { 80 }),
        };
        let path = value("path")
            .and_then(|p| self.doc.str(p, "path"))
            .map(Spanned::into_inner)
            .unwrap_or_default();
        let url = format!(
            "{scheme}://{}:{}{path}",
            host.unwrap_or_default(),
            port.unwrap_or(0)
        );
        self.doc.spanned(host_node, url)
    }

    /// The WebSocket scheme for a Kong service protocol.
    fn scheme(&mut self, node: &Node<'_>, what: &str, protocol: &str) -> &'static str {
        match protocol {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            other => {
                self.doc.error(
                    node,
                    format!(
                        "{what}: protocol {other:?} is not supported by Frameway (ws, wss, http, https)"
                    ),
                );
                "ws"
            }
        }
    }

    fn add_route(&mut self, service: usize, route: RouteSection, id: Option<Spanned<String>>) {
        let name = route.name.get_ref().clone();
        if let Some(id) = id {
            self.routes.insert(id.into_inner(), (service, name.clone()));
        }
        self.routes.insert(name.clone(), (service, name));
        self.file.services[service].routes.push(route);
    }

    /// A route's fields; its `Fields` are returned unfinished so that a
    /// top-level route can take `service` first.
    fn route<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        fallback: String,
        top_level: bool,
    ) -> Option<(RouteSection, Fields<'n, 'i>, Option<Spanned<String>>)> {
        let mut f = Fields::of(&mut self.doc, node, "a route".to_owned())?;
        let Label { label, id, .. } = self.label(&mut f, node, fallback);
        f.rename(format!("route {:?}", label.get_ref()));
        let what = f.what().to_owned();
        let mut route = RouteSection::new(label.clone());
        // Kong's default is to send the service's host.
        route.preserve_host = false;
        if let Some(p) = f.take("protocols") {
            let protocols = self.doc.strings(p, "protocols");
            for proto in &protocols {
                if !["http", "https", "ws", "wss"].contains(&proto.get_ref().as_str()) {
                    self.doc.errors.push((
                        Some(proto.span()),
                        format!(
                            "{what}: protocol {:?} is not supported by Frameway (ws, wss, http, https)",
                            proto.get_ref()
                        ),
                    ));
                }
            }
            if !protocols
                .iter()
                .any(|p| matches!(p.get_ref().as_str(), "http" | "ws"))
            {
                self.doc.error(
                    p,
                    format!(
                        "{what}: a route for TLS clients only (no http or ws in protocols) is \
                         not supported by Frameway"
                    ),
                );
            }
        }
        if let Some(m) = f.take("methods") {
            route.methods = self.doc.strings(m, "methods");
        }
        if let Some(h) = f.take("hosts") {
            route.hosts = self.doc.strings(h, "hosts");
        }
        if let Some(p) = f.take("paths") {
            route.paths = self.doc.strings(p, "paths");
        }
        if let Some(v) = f.take("regex_priority") {
            if let Some(v) = self.doc.uint(v, "regex_priority") {
                route.regex_priority = v.min(u64::from(u32::MAX)) as u32;
            }
        }
        if let Some(v) = f
            .take("strip_path")
            .and_then(|v| self.doc.bool(v, "strip_path"))
        {
            route.strip_path = v;
        }
        if let Some(v) = f
            .take("preserve_host")
            .and_then(|v| self.doc.bool(v, "preserve_host"))
        {
            route.preserve_host = v;
        }
        if let Some(h) = f.take("headers") {
            route.headers = self.route_headers(h, &what);
        }
        for key in ["snis", "sources", "destinations"] {
            f.at_default(&mut self.doc, key, json!(null));
        }
        f.at_default(&mut self.doc, "path_handling", json!("v0"));
        f.at_default(&mut self.doc, "https_redirect_status_code", json!(426));
        f.at_default(&mut self.doc, "request_buffering", json!(true));
        f.at_default(&mut self.doc, "response_buffering", json!(true));
        let plugins = f
            .take("plugins")
            .map_or(&[][..], |p| self.doc.seq(p, "plugins"));
        for p in plugins {
            if let Some(mut plugin) = self.plugin(p) {
                plugin.route = Some(label.clone());
                self.plugins.push(plugin);
            }
        }
        if !top_level {
            // A nested route's service is its parent.
            f.at_default(&mut self.doc, "service", json!(null));
        }
        Some((route, f, id))
    }

    /// A route's `headers`: each name with the values it accepts.
    fn route_headers(
        &mut self,
        node: &Node<'_>,
        what: &str,
    ) -> Option<Spanned<std::collections::BTreeMap<String, Vec<String>>>> {
        let mut table = std::collections::BTreeMap::new();
        match self.doc.json(node) {
            serde_json::Value::Object(map) => {
                for (name, values) in map {
                    let values = match values {
                        serde_json::Value::String(one) => vec![one],
                        serde_json::Value::Array(list) => list
                            .into_iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect(),
                        _ => Vec::new(),
                    };
                    table.insert(name, values);
                }
            }
            _ => {
                self.doc.error(
                    node,
                    format!("{what}: headers must map names to lists of values"),
                );
                return None;
            }
        }
        Some(self.doc.spanned(node, table))
    }

    fn top_level_route(&mut self, node: &Node<'_>, index: usize) {
        let Some((route, mut f, id)) = self.route(node, format!("route-{}", index + 1), true)
        else {
            return;
        };
        let service = f.take("service").and_then(|s| self.reference(s, "service"));
        f.finish(&mut self.doc, |_| None);
        let Some(service) = service else {
            self.doc.error(
                node,
                format!(
                    "route {:?}: a route without a service is not supported by Frameway",
                    route.name.get_ref()
                ),
            );
            return;
        };
        match self.services.get(service.get_ref()) {
            Some(&at) => self.add_route(at, route, id),
            None => self.unknown(&service, "service"),
        }
    }

    /// A reference to another entity: its name or id, as a string or as
    /// `{ name: … }` / `{ id: … }`.
    fn reference(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<String>> {
        if !yaml::is_mapping(node) {
            return self.doc.str(node, what);
        }
        let mut f = Fields::of(&mut self.doc, node, what.to_owned())?;
        let key = f
            .take("id")
            .or_else(|| f.take("name"))
            .or_else(|| f.take("username"));
        f.finish(&mut self.doc, |_| None);
        match key {
            Some(k) => self.doc.str(k, what),
            None => {
                self.doc
                    .error(node, format!("{what} must name an entity by name or id"));
                None
            }
        }
    }

    fn unknown(&mut self, reference: &Spanned<String>, kind: &str) {
        self.doc.errors.push((
            Some(reference.span()),
            format!("no {kind} named {:?} in this file", reference.get_ref()),
        ));
    }

    fn plugin(&mut self, node: &Node<'_>) -> Option<PluginRef> {
        let mut f = Fields::of(&mut self.doc, node, "a plugin".to_owned())?;
        let name = match f.take("name").and_then(|n| self.doc.str(n, "name")) {
            Some(name) => name,
            None => {
                self.doc.error(node, "a plugin needs a name".to_owned());
                return None;
            }
        };
        f.rename(format!("plugin {:?}", name.get_ref()));
        let config = match f.take("config") {
            Some(c) => {
                let value = self.doc.json(c);
                if !value.is_object() {
                    self.doc
                        .error(c, format!("{}: config must be a mapping", f.what()));
                }
                self.doc.spanned(c, value)
            }
            None => self.doc.spanned(node, json!({})),
        };
        let mut enabled = f
            .take("enabled")
            .and_then(|v| self.doc.bool(v, "enabled"))
            .unwrap_or(true);
        if let Some(p) = f.take("protocols") {
            let protocols = self.doc.strings(p, "protocols");
            // Kong runs a plugin only for the protocols it lists.
            enabled &= protocols
                .iter()
                .any(|p| matches!(p.get_ref().as_str(), "http" | "https" | "ws" | "wss"));
        }
        f.take("id");
        // A label for the admin API: nothing for the proxy.
        f.take("instance_name");
        f.at_default(&mut self.doc, "ordering", json!(null));
        let service = f.take("service").and_then(|s| self.reference(s, "service"));
        let route = f.take("route").and_then(|r| self.reference(r, "route"));
        let consumer = f
            .take("consumer")
            .and_then(|c| self.reference(c, "consumer"));
        f.finish(&mut self.doc, |_| None);
        Some(PluginRef {
            section: PluginSection {
                name,
                config,
                enabled,
                route: None,
                service: None,
            },
            service,
            route,
            consumer,
        })
    }

    /// Puts a plugin at its level: a consumer's (on a route, a service or
    /// everywhere), a route's, a service's or the global list.
    fn place(&mut self, p: PluginRef) {
        let PluginRef {
            mut section,
            service,
            route,
            consumer,
        } = p;
        let route = route.and_then(|r| match self.routes.get(r.get_ref()) {
            Some((service, name)) => Some((*service, Spanned::new(r.span(), name.clone()))),
            None => {
                self.unknown(&r, "route");
                None
            }
        });
        let service = service.and_then(|s| match self.services.get(s.get_ref()) {
            Some(&at) => Some((
                at,
                Spanned::new(s.span(), self.file.services[at].name.get_ref().clone()),
            )),
            None => {
                self.unknown(&s, "service");
                None
            }
        });
        if let Some(c) = consumer {
            let Some(&at) = self.consumers.get(c.get_ref()) else {
                return self.unknown(&c, "consumer");
            };
            section.route = route.map(|(_, name)| name);
            section.service = service.map(|(_, name)| name);
            self.file.consumers[at].get_mut().plugins.push(section);
            return;
        }
        match (route, service) {
            (Some(_), Some((_, s))) => self.doc.errors.push((
                Some(s.span()),
                format!(
                    "plugin {:?}: a plugin on a route and a service at once is not supported by \
                     Frameway",
                    section.name.get_ref()
                ),
            )),
            (Some((at, name)), None) => {
                let routes = &mut self.file.services[at].routes;
                if let Some(r) = routes
                    .iter_mut()
                    .find(|r| r.name.get_ref() == name.get_ref())
                {
                    r.plugins.push(section);
                }
            }
            (None, Some((at, _))) => self.file.services[at].plugins.push(section),
            (None, None) => self.file.plugins.push(section),
        }
    }

    fn consumer(&mut self, node: &Node<'_>, index: usize) {
        let Some(mut f) = Fields::of(&mut self.doc, node, format!("consumers[{index}]")) else {
            return;
        };
        let id = f.take("id").and_then(|v| self.doc.str(v, "id"));
        let username = f.take("username").and_then(|v| self.doc.str(v, "username"));
        let custom_id = f
            .take("custom_id")
            .and_then(|v| self.doc.str(v, "custom_id"));
        let label = username
            .clone()
            .or_else(|| custom_id.clone())
            .or_else(|| id.clone());
        let Some(label) = label else {
            self.doc.error(
                node,
                format!("consumers[{index}]: a consumer needs a username or a custom_id"),
            );
            return;
        };
        f.rename(format!("consumer {:?}", label.get_ref()));
        let at = self.file.consumers.len();
        for key in [&id, &username, &custom_id].into_iter().flatten() {
            self.consumers.insert(key.get_ref().clone(), at);
        }
        let keys = f
            .take("keyauth_credentials")
            .map_or(&[][..], |k| self.doc.seq(k, "keyauth_credentials"));
        let keys = keys
            .iter()
            .filter_map(|k| self.key(k, false).map(|(k, _)| k))
            .collect();
        self.file.consumers.push(Spanned::new(
            self.doc.span(node),
            ConsumerSection {
                id: id.map(Spanned::into_inner),
                username: username.map(Spanned::into_inner),
                custom_id: custom_id.map(Spanned::into_inner),
                keyauth_credentials: keys,
                plugins: Vec::new(),
            },
        ));
        let plugins = f
            .take("plugins")
            .map_or(&[][..], |p| self.doc.seq(p, "plugins"));
        for p in plugins {
            if let Some(mut plugin) = self.plugin(p) {
                plugin.consumer = Some(label.clone());
                self.plugins.push(plugin);
            }
        }
        f.finish(&mut self.doc, |field| {
            field
                .ends_with("_credentials")
                .then_some("Frameway's consumers carry keyauth_credentials only")
        });
    }

    /// A key-auth credential, and (top-level ones) the consumer it names.
    fn key(
        &mut self,
        node: &Node<'_>,
        top_level: bool,
    ) -> Option<(KeyAuthCredentialSection, Option<Spanned<String>>)> {
        let mut f = Fields::of(&mut self.doc, node, "a keyauth_credential".to_owned())?;
        let key = f.take("key").and_then(|k| self.doc.str(k, "key"));
        let id = f.take("id").and_then(|k| self.doc.str(k, "id"));
        f.at_default(&mut self.doc, "ttl", json!(null));
        let consumer = if top_level {
            f.take("consumer")
                .and_then(|c| self.reference(c, "consumer"))
        } else {
            None
        };
        f.finish(&mut self.doc, |_| None);
        let Some(key) = key else {
            self.doc
                .error(node, "a keyauth_credential needs a key".to_owned());
            return None;
        };
        Some((
            KeyAuthCredentialSection {
                key: key.into_inner(),
                id: id.map(Spanned::into_inner),
            },
            consumer,
        ))
    }

    fn top_level_key(&mut self, node: &Node<'_>, _index: usize) {
        let Some((key, consumer)) = self.key(node, true) else {
            return;
        };
        let Some(consumer) = consumer else {
            self.doc.error(
                node,
                "a top-level keyauth_credential needs its consumer".to_owned(),
            );
            return;
        };
        match self.consumers.get(consumer.get_ref()) {
            Some(&at) => self.file.consumers[at]
                .get_mut()
                .keyauth_credentials
                .push(key),
            None => self.unknown(&consumer, "consumer"),
        }
    }

    fn upstream(&mut self, node: &Node<'_>, index: usize) {
        let Some(mut f) = Fields::of(&mut self.doc, node, format!("upstreams[{index}]")) else {
            return;
        };
        let Some(name) = f.take("name").and_then(|n| self.doc.str(n, "name")) else {
            self.doc.error(
                node,
                format!("upstreams[{index}]: an upstream needs a name"),
            );
            return;
        };
        f.rename(format!("upstream {:?}", name.get_ref()));
        let id = f.take("id").and_then(|n| self.doc.str(n, "id"));
        let mut upstream = UpstreamSection::new(name.clone());
        // Kong's passive checks are off until counts are given.
        upstream.healthchecks.passive.unhealthy.failures = 0;
        for (key, slot) in [
            ("algorithm", &mut upstream.algorithm),
            ("hash_on", &mut upstream.hash_on),
            ("hash_fallback", &mut upstream.hash_fallback),
            ("hash_on_header", &mut upstream.hash_on_header),
            ("hash_on_cookie", &mut upstream.hash_on_cookie),
            ("hash_on_query_arg", &mut upstream.hash_on_query_arg),
            ("hash_fallback_header", &mut upstream.hash_fallback_header),
            ("hash_fallback_cookie", &mut upstream.hash_fallback_cookie),
            (
                "hash_fallback_query_arg",
                &mut upstream.hash_fallback_query_arg,
            ),
        ] {
            *slot = f.take(key).and_then(|v| self.doc.str(v, key));
        }
        // The size of Kong's hash ring: Frameway's hashing has no slots.
        if let Some(v) = f.take("slots") {
            self.doc.uint(v, "slots");
        }
        f.at_default(&mut self.doc, "hash_on_cookie_path", json!("/"));
        for key in [
            "host_header",
            "client_certificate",
            "hash_on_uri_capture",
            "hash_fallback_uri_capture",
        ] {
            f.at_default(&mut self.doc, key, json!(null));
        }
        f.at_default(&mut self.doc, "use_srv_name", json!(false));
        let targets = f
            .take("targets")
            .map_or(&[][..], |t| self.doc.seq(t, "targets"));
        upstream.targets = targets
            .iter()
            .filter_map(|t| self.target(t, false).map(|(t, _)| t))
            .collect();
        if let Some(h) = f.take("healthchecks") {
            let what = f.what().to_owned();
            if let Some(checks) = health::translate(&mut self.doc, h, &what) {
                upstream.healthchecks = checks;
            }
        }
        f.finish(&mut self.doc, |_| None);
        let at = self.file.upstreams.len();
        for key in [Some(name), id].into_iter().flatten() {
            self.upstreams.insert(key.into_inner(), at);
        }
        self.file.upstreams.push(upstream);
    }

    /// A target; Kong's default port is 8000.
    fn target(
        &mut self,
        node: &Node<'_>,
        top_level: bool,
    ) -> Option<(TargetSection, Option<Spanned<String>>)> {
        let mut f = Fields::of(&mut self.doc, node, "a target".to_owned())?;
        let target = f.take("target").and_then(|t| self.doc.str(t, "target"));
        let weight = f.take("weight").map(|w| (w, self.doc.uint(w, "weight")));
        f.take("id");
        let upstream = if top_level {
            f.take("upstream")
                .and_then(|u| self.reference(u, "upstream"))
        } else {
            None
        };
        f.finish(&mut self.doc, |_| None);
        let Some(target) = target else {
            self.doc
                .error(node, "a target needs `target` (host:port)".to_owned());
            return None;
        };
        let has_port = match target.get_ref().rsplit_once(':') {
            Some((host, port)) => !host.ends_with(':') && port.parse::<u16>().is_ok(),
            None => false,
        };
        let span = target.span();
        let text = target.into_inner();
        let text = if has_port || text.ends_with(']') && !text.starts_with('[') {
            text
        } else {
            format!("{text}:8000")
        };
        let weight = match weight {
            Some((w, Some(n))) => self.doc.spanned(w, n),
            _ => Spanned::new(0..0, 100),
        };
        Some((
            TargetSection {
                target: Spanned::new(span, text),
                weight,
            },
            upstream,
        ))
    }

    /// A certificate for the TLS listeners, with its `snis`.
    fn certificate(&mut self, node: &Node<'_>, index: usize, ids: &mut HashMap<String, usize>) {
        let what = format!("certificates[{index}]");
        let Some(mut f) = Fields::of(&mut self.doc, node, what.clone()) else {
            return;
        };
        let cert = f.take("cert").and_then(|c| self.doc.str(c, "cert"));
        let key = f.take("key").and_then(|k| self.doc.str(k, "key"));
        let id = f.take("id").and_then(|i| self.doc.str(i, "id"));
        let snis = match f.take("snis") {
            Some(list) => self
                .doc
                .seq(list, "snis")
                .iter()
                .filter_map(|s| self.sni_name(s))
                .collect(),
            None => Vec::new(),
        };
        // An ECDSA or RSA alternative for the same names: one key here.
        f.at_default(&mut self.doc, "cert_alt", json!(null));
        f.at_default(&mut self.doc, "key_alt", json!(null));
        f.finish(&mut self.doc, |_| None);
        let (Some(cert), Some(key)) = (cert, key) else {
            self.doc.error(
                node,
                format!("{what}: a certificate needs cert and key (PEM)"),
            );
            return;
        };
        if let Some(id) = id {
            ids.insert(id.into_inner(), self.file.certificates.len());
        }
        self.file
            .certificates
            .push(CertificateSection { cert, key, snis });
    }

    /// A top-level `ca_certificates` entry: a CA certificate services
    /// trust by its id.
    fn ca_certificate(
        &mut self,
        node: &Node<'_>,
        index: usize,
        ids: &mut HashMap<String, Spanned<String>>,
    ) {
        let what = format!("ca_certificates[{index}]");
        let Some(mut f) = Fields::of(&mut self.doc, node, what.clone()) else {
            return;
        };
        let cert = f.take("cert").and_then(|c| self.doc.str(c, "cert"));
        let id = f.take("id").and_then(|i| self.doc.str(i, "id"));
        // Kong computes it from cert; nothing to check it against here.
        f.take("cert_digest");
        f.finish(&mut self.doc, |_| None);
        match (cert, id) {
            (Some(cert), Some(id)) => {
                ids.insert(id.into_inner(), cert);
            }
            _ => self.doc.error(
                node,
                format!("{what}: a CA certificate needs cert (PEM) and an id services name it by"),
            ),
        }
    }

    /// Gives each service the client certificate and CA certificates it
    /// names by id.
    fn resolve_service_certificates(
        &mut self,
        certificates: &HashMap<String, usize>,
        cas: &HashMap<String, Spanned<String>>,
    ) {
        for (service, id) in std::mem::take(&mut self.client_certificates) {
            match certificates.get(id.get_ref()) {
                Some(&i) => {
                    let c = &self.file.certificates[i];
                    self.file.services[service].client_certificate =
                        Some((c.cert.clone(), c.key.clone()));
                }
                None => self.unknown(&id, "certificate"),
            }
        }
        for (service, ids) in std::mem::take(&mut self.ca_references) {
            for id in ids {
                match cas.get(id.get_ref()) {
                    Some(cert) => self.file.services[service]
                        .ca_certificates
                        .push(cert.clone()),
                    None => self.unknown(&id, "CA certificate"),
                }
            }
        }
    }

    /// An SNI: a name, as a string or `{ name: … }`.
    fn sni_name(&mut self, node: &Node<'_>) -> Option<Spanned<String>> {
        if !yaml::is_mapping(node) {
            return self.doc.str(node, "an SNI");
        }
        let mut f = Fields::of(&mut self.doc, node, "an SNI".to_owned())?;
        let name = f.take("name").and_then(|n| self.doc.str(n, "name"));
        f.take("id");
        f.finish(&mut self.doc, |_| None);
        name
    }

    /// A top-level `snis` entry: a name and the certificate (by id) it
    /// selects.
    fn top_level_sni(&mut self, node: &Node<'_>, ids: &HashMap<String, usize>) {
        let Some(mut f) = Fields::of(&mut self.doc, node, "an SNI".to_owned()) else {
            return;
        };
        let name = f.take("name").and_then(|n| self.doc.str(n, "name"));
        f.take("id");
        let certificate = f
            .take("certificate")
            .and_then(|c| self.reference(c, "certificate"));
        f.finish(&mut self.doc, |_| None);
        let (Some(name), Some(certificate)) = (name, certificate) else {
            self.doc
                .error(node, "an SNI needs a name and its certificate".to_owned());
            return;
        };
        match ids.get(certificate.get_ref()) {
            Some(&at) => self.file.certificates[at].snis.push(name),
            None => self.unknown(&certificate, "certificate"),
        }
    }

    fn top_level_target(&mut self, node: &Node<'_>, _index: usize) {
        let Some((target, upstream)) = self.target(node, true) else {
            return;
        };
        let Some(upstream) = upstream else {
            self.doc
                .error(node, "a top-level target needs its upstream".to_owned());
            return;
        };
        match self.upstreams.get(upstream.get_ref()) {
            Some(&at) => self.file.upstreams[at].targets.push(target),
            None => self.unknown(&upstream, "upstream"),
        }
    }
}

/// An entity's name in the native configuration, and what it was called.
struct Label {
    label: Spanned<String>,
    name: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
}
