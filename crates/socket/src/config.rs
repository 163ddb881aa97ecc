//! Per-connection settings: limits, masking, timeouts, keep-alive,
//! compression.

use std::time::Duration;

use frameway_wire::deflate::DeflateConfig;
use frameway_wire::{Config, Limits, MaskPolicy, Mode, Role};

/// Settings for one connection, server or client.
///
/// The limits are the protocol core's ([`Limits`]): `max_frame_len`,
/// `max_message_len` (what the peer may send) and `max_send_len` (what we
/// send), with the core's defaults. Timeouts follow lua-resty-websocket
/// (`timeout`) and Ktor (`ping_interval`, `pong_timeout`).
///
/// permessage-deflate (RFC 7692) is off by default: compression costs each
/// connection its windows (see BENCHMARKS.md), so it is something to ask
/// for. With [`Self::deflate`] set, a server accepts a client's offer on
/// those terms and a client offers it.
///
/// ```
/// use std::time::Duration;
/// use frameway::WebSocketConfig;
/// let config = WebSocketConfig::default()
///     .max_message_len(1 << 20)
///     .ping_interval(Duration::from_secs(20))
///     .pong_timeout(Duration::from_secs(15));
/// assert_eq!(config.max_message_len, 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// The largest single frame accepted.
    pub max_frame_len: u64,
    /// The largest message accepted (all fragments together, inflated).
    pub max_message_len: u64,
    /// The largest message this side will send.
    pub max_send_len: u64,
    /// The most fragments per message.
    pub max_fragments: usize,
    /// Mask outgoing frames: `Some(true)` is lua-resty-websocket's
    /// `send_masked` for a server, `Some(false)` the client's
    /// `send_unmasked`; `None` follows the RFC for the role.
    pub send_masked: Option<bool>,
    /// What to require of incoming frames' masking (`force_masking`);
    /// `None` follows the RFC for the role.
    pub incoming_mask: Option<MaskPolicy>,
    /// Timeout for each read (`recv`, `recv_frame`), counted from when it
    /// first has to wait: a read that finds its message already buffered
    /// arms no timer.
    pub read_timeout: Option<Duration>,
    /// Timeout for each write, counted from when it first has to wait: a
    /// write the socket takes at once arms no timer.
    pub write_timeout: Option<Duration>,
    /// Send a ping this often while the connection is being read (the
    /// protocol core's [`Heartbeat`](frameway_wire::Heartbeat): the pongs
    /// that answer these pings are consumed, not returned by `recv`).
    pub ping_interval: Option<Duration>,
    /// Close the connection if no pong arrives this long after a ping.
    pub pong_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    /// Which replies the protocol core makes by itself: an endpoint's
    /// (pongs, the answering close, the close a violation calls for: the
    /// default) or a proxy leg's ([`Mode::Relay`]), where the caller
    /// answers pings and closes with what the other side says, and a
    /// violation is only reported so that what the other side still sends
    /// can be delivered first. A relay leg's reads never write what the
    /// caller queued: the caller flushes it (in batches, as a proxy wants).
    pub mode: Mode,
    /// permessage-deflate: `None` (the default) neither offers nor accepts
    /// it; `Some` offers it (client) or accepts offers (server) with these
    /// settings.
    pub deflate: Option<DeflateConfig>,
    /// Split outgoing data messages into frames of at most this many
    /// payload bytes (after compression); `None` sends each as one frame.
    pub fragment_size: Option<usize>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            max_frame_len: Limits::DEFAULT.max_frame_len,
            max_message_len: Limits::DEFAULT.max_message_len,
            max_send_len: Limits::DEFAULT.max_message_len,
            max_fragments: Limits::DEFAULT.max_fragments,
            send_masked: None,
            incoming_mask: None,
            read_timeout: None,
            write_timeout: None,
            ping_interval: None,
            pong_timeout: Duration::from_secs(15),
            close_timeout: Duration::from_secs(5),
            mode: Mode::Endpoint,
            deflate: None,
            fragment_size: None,
        }
    }
}

impl WebSocketConfig {
    /// Sets the largest message accepted, and frames to no more than it
    /// (lua-resty-websocket's `max_payload_len` on receive).
    pub fn max_message_len(mut self, len: u64) -> Self {
        self.max_message_len = len;
        self.max_frame_len = len;
        self
    }

    /// Sets the largest message sent.
    pub fn max_send_len(mut self, len: u64) -> Self {
        self.max_send_len = len;
        self
    }

    /// Sets the most fragments per message.
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.max_fragments = count;
        self
    }

    /// Sets the read and write timeouts (lua-resty-websocket's `timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self.write_timeout = Some(timeout);
        self
    }

    /// Sends a ping every `interval` (Ktor's `pingInterval`); the pongs that
    /// answer them are consumed, not returned by `recv`.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// How long to wait for a pong before closing the connection.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// How long to wait for the peer's close frame.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Forces masking of outgoing frames on or off.
    pub fn send_masked(mut self, masked: bool) -> Self {
        self.send_masked = Some(masked);
        self
    }

    /// Sets what incoming frames' masking must be.
    pub fn incoming_mask(mut self, policy: MaskPolicy) -> Self {
        self.incoming_mask = Some(policy);
        self
    }

    /// Turns on permessage-deflate with `config`.
    ///
    /// ```
    /// use frameway::{DeflateConfig, WebSocketConfig};
    /// // Compress messages over 256 bytes, with no state kept between them.
    /// let config = WebSocketConfig::default().deflate(
    ///     DeflateConfig::default()
    ///         .server_no_context_takeover(true)
    ///         .client_no_context_takeover(true)
    ///         .compress_if_bigger_than(256),
    /// );
    /// assert!(config.deflate.is_some());
    /// ```
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Sends data messages in frames of at most `size` payload bytes.
    pub fn fragment_size(mut self, size: usize) -> Self {
        self.fragment_size = Some(size);
        self
    }

    /// The protocol core's configuration for `role`.
    pub(crate) fn wire(&self, role: Role) -> Config {
        let mut config = Config::new(role);
        config.limits = Limits {
            max_frame_len: self.max_frame_len,
            max_message_len: self.max_message_len,
            max_fragments: self.max_fragments,
        };
        config.max_send_len = self.max_send_len;
        if let Some(masked) = self.send_masked {
            config.mask_outgoing = masked;
        }
        if let Some(policy) = self.incoming_mask {
            config.incoming_mask = policy;
        }
        config
    }
}
