//! `ip-restriction`: allows or denies clients by IP address or CIDR range,
//! IPv4 and IPv6 (Kong's ip-restriction).
//!
//! ```toml
//! [[services.plugins]]
//! name = "ip-restriction"
//! config = { allow = ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"], deny = ["10.6.6.0/24"] }
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `allow` | `[]` | when not empty, only these addresses are proxied |
//! | `deny` | `[]` | these addresses are refused, even if `allow` lists them |
//! | `status` | `403` | the refusal's status (400–599) |
//! | `message` | `"Your IP address is not allowed"` | the refusal's message |
//!
//! At least one list must be non-empty. Entries are addresses (`1.2.3.4`,
//! `::1`) or ranges (`1.2.3.0/24`, `fe80::/10`; host bits may be set and
//! are ignored). The client is the TCP peer of the gateway; an IPv6
//! listener's IPv4-mapped addresses (`::ffff:1.2.3.4`) are matched as the
//! IPv4 addresses they are. A refused client gets `403 {"message":"Your IP
//! address is not allowed"}`.

use std::net::IpAddr;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::cidr::Cidr;
use crate::plugin::{HandshakeContext, Plugin, PluginConfigError, PluginError};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRestrictionConfig {
    /// Addresses and ranges allowed (empty: all that are not denied).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Addresses and ranges denied; deny wins over allow.
    #[serde(default)]
    pub deny: Vec<String>,
    /// The status of the refusal.
    #[serde(default = "default_status")]
    pub status: u16,
    /// The message of the refusal.
    #[serde(default = "default_message")]
    pub message: String,
}

fn default_status() -> u16 {
    403
}

fn default_message() -> String {
    "Your IP address is not allowed".to_owned()
}

/// Refuses clients by address in the handshake phase.
#[derive(Debug)]
pub struct IpRestriction {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    status: StatusCode,
    message: String,
}

impl IpRestriction {
    /// The name in the configuration.
    pub const NAME: &'static str = "ip-restriction";

    /// Parses the lists; an error if both are empty or an entry is not an
    /// address or range.
    pub fn new(config: IpRestrictionConfig) -> Result<Self, PluginConfigError> {
        if config.allow.is_empty() && config.deny.is_empty() {
            return Err(PluginConfigError(
                "allow and deny cannot both be empty".into(),
            ));
        }
        let parse = |key: &str, list: &[String]| {
            list.iter()
                .map(|s| {
                    Cidr::parse(s.trim()).map_err(|e| PluginConfigError(format!("{key}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let status = StatusCode::from_u16(config.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| PluginConfigError("status must be between 400 and 599".into()))?;
        Ok(IpRestriction {
            allow: parse("allow", &config.allow)?,
            deny: parse("deny", &config.deny)?,
            status,
            message: config.message,
        })
    }

    /// Deny wins; then, if there is an allow list, the address must be on it.
    fn permits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

impl Plugin for IpRestriction {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // Kong's ip-restriction priority.
        990
    }

    /// Handshake only: its routes stay on the fast path.
    fn handles_frames(&self) -> bool {
        false
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        let ip = ctx.client_ip();
        if !self.permits(ip) {
            tracing::debug!(
                connection = ctx.connection().id,
                client = %ip,
                "ip-restriction refused the client"
            );
            super::exit_json(ctx, self.status, &self.message, HeaderMap::new());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::HandshakeHarness;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn plugin(config: serde_json::Value) -> Result<IpRestriction, String> {
        let config: IpRestrictionConfig =
            serde_json::from_value(config).map_err(|e| e.to_string())?;
        IpRestriction::new(config).map_err(|e| e.0)
    }

    #[test]
    fn config_errors() {
        assert!(plugin(serde_json::json!({}))
            .unwrap_err()
            .contains("both be empty"));
        assert!(plugin(serde_json::json!({ "allow": [], "deny": [] }))
            .unwrap_err()
            .contains("both be empty"));
        let e = plugin(serde_json::json!({ "allow": ["10.0.0.0/33"] })).unwrap_err();
        assert!(e.starts_with("allow: \"10.0.0.0/33\""), "{e}");
        let e = plugin(serde_json::json!({ "deny": ["nope"] })).unwrap_err();
        assert!(e.starts_with("deny: "), "{e}");
        assert!(
            plugin(serde_json::json!({ "deny": ["::1"], "status": 200 }))
                .unwrap_err()
                .contains("400 and 599")
        );
        assert!(
            plugin(serde_json::json!({ "deny": ["::1"], "whitelist": [] }))
                .unwrap_err()
                .contains("unknown field")
        );
        let p = plugin(serde_json::json!({ "deny": [" 10.0.0.1 "] })).unwrap();
        assert_eq!(p.priority(), 990);
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = plugin(serde_json::json!({
            "allow": ["10.0.0.0/8", "::1"],
            "deny": ["10.6.6.0/24"],
        }))
        .unwrap();
        assert!(p.permits(ip("10.1.2.3")));
        assert!(p.permits(ip("::1")));
        assert!(p.permits(ip("::ffff:10.1.2.3")));
        assert!(!p.permits(ip("10.6.6.6")));
        assert!(!p.permits(ip("11.0.0.1")));
        let deny_only = plugin(serde_json::json!({ "deny": ["127.0.0.0/8"] })).unwrap();
        assert!(!deny_only.permits(ip("127.0.0.1")));
        assert!(deny_only.permits(ip("::1")));
    }

    #[test]
    fn refusal_is_403_with_kong_message() {
        let p = plugin(serde_json::json!({ "allow": ["10.0.0.0/8"] })).unwrap();
        let mut h = HandshakeHarness::new("/", &[]).client_addr("10.0.0.1:4000");
        h.run(&p);
        assert!(h.exit.is_none());
        let mut h = HandshakeHarness::new("/", &[]).client_addr("[::ffff:10.9.9.9]:4000");
        h.run(&p);
        assert!(h.exit.is_none());
        let mut h = HandshakeHarness::new("/", &[]).client_addr("192.0.2.1:4000");
        h.run(&p);
        let exit = h.exit.expect("refused");
        assert_eq!(exit.status, StatusCode::FORBIDDEN);
        assert_eq!(
            &exit.body[..],
            b"{\"message\":\"Your IP address is not allowed\"}\n"
        );
        let custom = plugin(serde_json::json!({
            "deny": ["192.0.2.0/24"], "status": 451, "message": "go away",
        }))
        .unwrap();
        let mut h = HandshakeHarness::new("/", &[]).client_addr("192.0.2.1:4000");
        h.run(&custom);
        let exit = h.exit.expect("refused");
        assert_eq!(exit.status.as_u16(), 451);
        assert_eq!(&exit.body[..], b"{\"message\":\"go away\"}\n");
    }
}
