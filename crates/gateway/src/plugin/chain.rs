//! Running a route's plugins in priority order.

use std::sync::Arc;

use http::{Extensions, HeaderMap, Request};

use super::pdk::{
    CloseContext, ConnectionInfo, Direction, Exit, FailureContext, FrameContext, FrameResume,
    FrameWaiting, HandshakeContext, InFlight, LimitOverrides, ProxyFailure, Reroute, Resume,
    Traffic, Waiting,
};
use super::{Plugin, PluginError, State};
use crate::balancer::Pool;
use crate::consumer::{Authenticated, Consumers};

/// A plugin failed: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}: {error}")]
pub struct ChainError {
    /// The failing plugin's name.
    pub plugin: String,
    /// Its error.
    pub error: PluginError,
}

/// What a handshake phase sees and changes, apart from each plugin's
/// state: the request, what goes upstream, and who the client is.
pub(crate) struct HandshakeScope<'a> {
    pub(crate) request: &'a Request<()>,
    pub(crate) upstream_headers: &'a mut HeaderMap,
    pub(crate) response_headers: &'a mut HeaderMap,
    pub(crate) upstream_target: &'a mut String,
    pub(crate) limits: &'a mut LimitOverrides,
    pub(crate) shared: &'a mut Extensions,
    pub(crate) conn: &'a ConnectionInfo,
    pub(crate) consumers: &'a Consumers,
    pub(crate) authenticated: &'a mut Option<Arc<Authenticated>>,
    pub(crate) reroute: &'a mut Option<Reroute>,
    pub(crate) upstreams: &'a [Arc<Pool>],
}

/// Where a run of the handshake phase stopped.
pub(crate) enum HandshakeStep {
    /// Every plugin ran; with the answer one of them gave instead of the
    /// upstream's, if any.
    Done(Option<Exit>),
    /// The plugin at `plugin` waits for `until` before it finishes.
    Wait { plugin: usize, until: Waiting },
}

/// The plugins of one route, sorted by priority (higher first). A
/// connection keeps the chain it started with.
#[derive(Clone, Default)]
pub struct Chain {
    plugins: Vec<Arc<dyn Plugin>>,
    handles_frames: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| p.name()))
            .finish()
    }
}

impl Chain {
    /// A chain of `plugins`, ordered by priority (stable for equal ones).
    pub fn new(mut plugins: Vec<Arc<dyn Plugin>>) -> Self {
        plugins.sort_by_key(|p| std::cmp::Reverse(p.priority()));
        let handles_frames = plugins.iter().any(|p| p.handles_frames());
        Chain {
            plugins,
            handles_frames,
        }
    }

    /// Whether any plugin handles frames (if not, the route is proxied
    /// frame by frame without aggregation).
    pub fn handles_frames(&self) -> bool {
        self.handles_frames
    }

    /// The plugins' names in running order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().map(|p| p.name())
    }

    /// Fresh per-connection state for every plugin.
    pub(crate) fn new_states(&self) -> Vec<Option<State>> {
        self.plugins.iter().map(|p| p.new_state()).collect()
    }

    /// Whether `other` runs the very same plugin instances.
    pub(crate) fn same_as(&self, other: &Chain) -> bool {
        self.plugins.len() == other.plugins.len()
            && self
                .plugins
                .iter()
                .zip(&other.plugins)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Moves a connection from this chain to `next` (a consumer's own):
    /// the instances both run keep their state, the others start afresh.
    /// Returns the states for `next`, and which of its plugins are fresh
    /// (their handshake has not run).
    pub(crate) fn hand_over(
        &self,
        next: &Chain,
        mut states: Vec<Option<State>>,
    ) -> (Vec<Option<State>>, Vec<bool>) {
        next.plugins
            .iter()
            .map(
                |plugin| match self.plugins.iter().position(|p| Arc::ptr_eq(p, plugin)) {
                    Some(i) => (states[i].take(), false),
                    None => (plugin.new_state(), true),
                },
            )
            .unzip()
    }

    /// Runs the handshake phase of the plugins marked in `fresh`, in
    /// order, unmarking each; `resume` first finishes the phase of the
    /// plugin that asked to wait. Stops at an exit, or at a plugin that
    /// asks to wait (call again with its [`Resume`]).
    pub(crate) fn run_handshake(
        &self,
        fresh: &mut [bool],
        mut resume: Option<(usize, Resume)>,
        states: &mut [Option<State>],
        scope: &mut HandshakeScope<'_>,
    ) -> Result<HandshakeStep, ChainError> {
        let mut exit = None;
        let mut waiting = None;
        let plugins = self.plugins.iter().zip(states).zip(fresh.iter_mut());
        for (index, ((plugin, state), fresh)) in plugins.enumerate() {
            let resumed = match resume.take() {
                Some((at, then)) if at == index => Some(then),
                other => {
                    resume = other;
                    None
                }
            };
            if !*fresh && resumed.is_none() {
                continue;
            }
            *fresh = false;
            let mut ctx = HandshakeContext {
                request: scope.request,
                upstream_headers: scope.upstream_headers,
                response_headers: scope.response_headers,
                upstream_target: scope.upstream_target,
                exit: &mut exit,
                limits: scope.limits,
                state,
                shared: scope.shared,
                conn: scope.conn,
                consumers: scope.consumers,
                authenticated: scope.authenticated,
                waiting: &mut waiting,
                reroute: scope.reroute,
                upstreams: scope.upstreams,
            };
            let result = match resumed {
                Some(then) => then(&mut ctx),
                None => plugin.handshake(&mut ctx),
            };
            result.map_err(|error| ChainError {
                plugin: plugin.name().to_owned(),
                error,
            })?;
            if exit.is_some() {
                return Ok(HandshakeStep::Done(exit));
            }
            if let Some(until) = waiting.take() {
                return Ok(HandshakeStep::Wait {
                    plugin: index,
                    until,
                });
            }
        }
        Ok(HandshakeStep::Done(None))
    }

    /// The name of the plugin at `index`.
    pub(crate) fn name_at(&self, index: usize) -> &str {
        self.plugins.get(index).map_or("?", |p| p.name())
    }

    /// Runs the frame phase of the plugins that have one, in order;
    /// `resume` first finishes the phase of the plugin that asked to wait
    /// (the ones before it already ran). Stops at a verdict that ends the
    /// chain, or at a plugin that asks to wait: its index and what it
    /// waits for (call again with its [`FrameResume`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_frame(
        &self,
        direction: Direction,
        frame: &mut InFlight,
        states: &mut [Option<State>],
        shared: &mut Extensions,
        conn: &ConnectionInfo,
        resume: Option<(usize, FrameResume)>,
    ) -> Result<Option<(usize, FrameWaiting)>, ChainError> {
        let (start, mut resume) = match resume {
            Some((at, then)) => (at, Some(then)),
            None => (0, None),
        };
        let mut waiting = None;
        let plugins = self.plugins.iter().zip(states).enumerate().skip(start);
        for (index, (plugin, state)) in plugins {
            if !plugin.handles_frames() {
                continue;
            }
            let mut ctx = FrameContext {
                direction,
                frame,
                state,
                shared,
                conn,
                waiting: &mut waiting,
            };
            let result = match (resume.take(), direction) {
                (Some(then), _) => then(&mut ctx),
                (None, Direction::Client) => plugin.client_frame(&mut ctx),
                (None, Direction::Upstream) => plugin.upstream_frame(&mut ctx),
            };
            result.map_err(|error| ChainError {
                plugin: plugin.name().to_owned(),
                error,
            })?;
            if let Some(until) = waiting.take() {
                return Ok(Some((index, until)));
            }
            if frame.verdict.stops_chain() {
                break;
            }
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_close(
        &self,
        states: &mut [Option<State>],
        shared: &mut Extensions,
        conn: &ConnectionInfo,
        client_status: Option<u16>,
        upstream_status: Option<u16>,
        client: Traffic,
        upstream: Traffic,
    ) {
        for (plugin, state) in self.plugins.iter().zip(states) {
            let mut ctx = CloseContext {
                state,
                shared,
                conn,
                client_status,
                upstream_status,
                client,
                upstream,
            };
            plugin.close(&mut ctx);
        }
    }
}

impl Chain {
    /// Runs every plugin's failure phase on `failure`.
    pub(crate) fn run_failed(
        &self,
        states: &mut [Option<State>],
        shared: &mut Extensions,
        conn: &ConnectionInfo,
        failure: ProxyFailure<'_>,
    ) {
        for (plugin, state) in self.plugins.iter().zip(states) {
            let mut ctx = FailureContext {
                state,
                shared,
                conn,
                failure,
            };
            plugin.failed(&mut ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin whose per-connection state starts as `start`.
    struct Marked {
        name: &'static str,
        start: u32,
    }

    impl Plugin for Marked {
        fn name(&self) -> &str {
            self.name
        }

        fn new_state(&self) -> Option<State> {
            Some(Box::new(self.start))
        }
    }

    fn marked(name: &'static str, start: u32) -> Arc<dyn Plugin> {
        Arc::new(Marked { name, start })
    }

    #[test]
    fn a_consumers_chain_keeps_the_state_of_shared_instances_and_starts_its_own_afresh() {
        let shared = marked("shared", 1);
        let route_limit = marked("limit", 2);
        let consumer_limit = marked("limit", 3);
        let route = Chain::new(vec![shared.clone(), route_limit]);
        let consumer = Chain::new(vec![shared, consumer_limit]);
        assert!(!route.same_as(&consumer));
        assert!(consumer.same_as(&consumer.clone()));

        let mut states = route.new_states();
        // What the shared instance's handshake left in its state.
        *states[0].as_mut().unwrap().downcast_mut::<u32>().unwrap() = 42;
        let (states, fresh) = route.hand_over(&consumer, states);
        let values: Vec<u32> = states
            .iter()
            .map(|s| *s.as_ref().unwrap().downcast_ref::<u32>().unwrap())
            .collect();
        assert_eq!(values, [42, 3]);
        assert_eq!(fresh, [false, true]);
    }
}
