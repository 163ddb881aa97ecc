//! This gateway process among a cluster's: its id, as Kong's
//! `kong.node.get_id` gives it.

use std::sync::OnceLock;

/// A UUID (version 4) drawn when the process first asks, the same for the
/// process's life (across reloads).
///
/// ```
/// let id = frameway_gateway::node::id();
/// assert_eq!(id.len(), 36);
/// assert_eq!(id, frameway_gateway::node::id());
/// ```
pub fn id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
}
