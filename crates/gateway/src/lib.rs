//! # frameway-gateway
//!
//! A WebSocket reverse proxy whose plugins read, change, drop and close
//! every message in both directions, with the API of Kong's WebSocket PDK.
//!
//! - [`config`]: the declarative TOML configuration, checked with line and
//!   column for every problem; [`config::DEFAULT_CONFIG`] runs with no file.
//! - [`router`]: hosts and longest path prefix.
//! - [`plugin`]: the [`plugin::Plugin`] trait (handshake, client frame,
//!   upstream frame, close), its context (the PDK) and the registry.
//! - [`plugins`]: the built-in plugins.
//! - [`lua`]: plugins written in Lua with Kong's WebSocket PDK.
//! - [`Gateway`]: listeners (ws and wss) and the proxy itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use frameway_gateway::config::Config;
//! use frameway_gateway::plugin::Registry;
//!
//! let config = Config::load("gateway.toml".as_ref(), &Registry::with_builtins())?;
//! frameway_gateway::Gateway::bind(config).await?.serve().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

/// Boxes a future built straight into its allocation: `Box::pin(future)`
/// builds the future on the stack and copies all of it into the box,
/// though a future not yet polled holds only its arguments. A handshake's
/// future is about 5 KiB, copied once per connection (callgrind: 520
/// instructions a storm handshake in `memcpy`). Allocated first, the box
/// is where the optimiser writes the arguments.
macro_rules! boxed {
    ($future:expr) => {{
        let mut boxed = Box::new_uninit();
        boxed.write($future);
        // SAFETY: written on the line above. (`Box::write` says the same
        // without `unsafe`, from Rust 1.87 on; the MSRV is 1.85.)
        Box::into_pin(unsafe { boxed.assume_init() })
    }};
}

pub mod admin;
pub mod balancer;
pub mod cidr;
pub mod config;
pub mod consumer;
mod drain;
pub mod echo;
mod handshake;
pub mod limits;
mod listener;
pub mod lua;
pub mod metrics;
pub mod node;
pub mod plugin;
pub mod plugins;
mod relay;
pub mod router;
pub mod target;
mod tls;
pub mod upstream;

pub use listener::{reuseport_listener, Gateway, Reloader, Sibling, StartError};
