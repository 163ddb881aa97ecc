//! Which side of the connection we are, and the limits we enforce.

/// Which end of the connection this is. The role decides masking: a client
/// masks what it sends and requires unmasked frames, a server the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that accepted the connection.
    Server,
    /// The end that opened the connection.
    Client,
}

/// What to do with the mask bit of incoming frames.
///
/// RFC 6455 requires clients to mask and servers not to; lua-resty-websocket's
/// `force_masking` and the client's `send_unmasked` show that some deployments
/// need to relax this, so it is configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskPolicy {
    /// Every incoming frame must be masked (a server's default).
    Required,
    /// No incoming frame may be masked (a client's default).
    Forbidden,
    /// Accept either.
    Any,
}

/// Limits on what the peer may send, enforced from frame headers before any
/// payload is read, so memory stays bounded.
///
/// ```
/// use frameway_wire::Limits;
/// let limits = Limits::default().with_max_message_len(1 << 20);
/// assert_eq!(limits.max_message_len, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload of a single frame (lua-resty-websocket's
    /// `max_payload_len` on receive).
    pub max_frame_len: u64,
    /// The largest message: the running total of its fragments, and for
    /// compressed messages the inflated size (lua-resty-websocket's
    /// `max_recv_len`).
    pub max_message_len: u64,
    /// The most frames one message may be split into.
    pub max_fragments: usize,
}

impl Limits {
    /// 16 MiB frames and messages, a million fragments: every layer's
    /// default (the socket's, and what the core sends).
    pub const DEFAULT: Limits = Limits {
        max_frame_len: 16 << 20,
        max_message_len: 16 << 20,
        max_fragments: 1 << 20,
    };

    /// Sets the largest frame payload.
    pub fn with_max_frame_len(mut self, len: u64) -> Self {
        self.max_frame_len = len;
        self
    }

    /// Sets the largest message.
    pub fn with_max_message_len(mut self, len: u64) -> Self {
        self.max_message_len = len;
        self
    }

    /// Sets the most fragments per message.
    pub fn with_max_fragments(mut self, count: usize) -> Self {
        self.max_fragments = count;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Everything the protocol core needs to know about one connection.
///
/// ```
/// use frameway_wire::{Config, MaskPolicy, Role};
/// let config = Config::new(Role::Server);
/// assert_eq!(config.incoming_mask, MaskPolicy::Required);
/// assert!(!config.mask_outgoing);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Our side of the connection.
    pub role: Role,
    /// What the peer may send.
    pub limits: Limits,
    /// The largest payload we agree to send in one message
    /// (lua-resty-websocket's `max_send_len`).
    pub max_send_len: u64,
    /// Whether incoming frames must, may or must not be masked.
    pub incoming_mask: MaskPolicy,
    /// Whether we mask what we send.
    pub mask_outgoing: bool,
}

impl Config {
    /// The RFC's defaults for `role`.
    pub fn new(role: Role) -> Self {
        let (incoming_mask, mask_outgoing) = match role {
            Role::Server => (MaskPolicy::Required, false),
            Role::Client => (MaskPolicy::Forbidden, true),
        };
        Config {
            role,
            limits: Limits::DEFAULT,
            max_send_len: Limits::DEFAULT.max_message_len,
            incoming_mask,
            mask_outgoing,
        }
    }
}
