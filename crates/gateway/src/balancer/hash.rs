//! Consistent hashing: the key of a request, and weighted rendezvous
//! hashing over the targets.
//!
//! Rendezvous (highest random weight) hashing scores every target for a
//! key and takes the highest: when a target leaves, only the keys it had
//! move; when one arrives, only the keys it now scores highest for. The
//! weighted score `weight / -ln(u)`, with `u` the key-and-target hash
//! mapped into (0, 1), gives each target its weight's share of keys. The
//! hash is fixed (FNV-1a, then a 64-bit finaliser), so every gateway of a
//! cluster sends a key to the same target.

use std::sync::Arc;

use http::HeaderName;

use super::{KeySource, Target};
use crate::plugin::query;

/// What consistent hashing hashes (Kong's `hash_on`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashOn {
    /// Nothing: round-robin.
    None,
    /// The client's IP address.
    Ip,
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query argument's value.
    QueryArg(String),
    /// The request path.
    Path,
}

impl HashOn {
    /// The key of a request, `None` when it has none of this kind.
    pub(crate) fn key(&self, source: &KeySource<'_>) -> Option<u64> {
        let text = match self {
            HashOn::None => return None,
            HashOn::Ip => source.ip.to_string(),
            HashOn::Header(name) => source.headers.get(name)?.to_str().ok()?.to_owned(),
            HashOn::Cookie(name) => cookie(source, name)?,
            HashOn::QueryArg(name) => query::arg(source.query?, name)??,
            HashOn::Path => source.path.to_owned(),
        };
        Some(mix(fnv1a(text.as_bytes())))
    }
}

fn cookie(source: &KeySource<'_>, name: &str) -> Option<String> {
    source
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then(|| v.trim_matches('"').to_owned())
        })
}

/// The candidate with the highest weighted score for `key`.
pub(crate) fn rendezvous<'t>(key: u64, candidates: &[&'t Arc<Target>]) -> &'t Arc<Target> {
    let score = |t: &Target| {
        let id = fnv1a(format!("{}/{}", t.spec.name, t.addr).as_bytes());
        let h = mix(key ^ id);
        // The top 53 bits, mapped into (0, 1).
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        f64::from(t.spec.weight) / -u.ln()
    };
    candidates
        .iter()
        .copied()
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .expect("pick() never asks without candidates")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The murmur3 finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
