//! A Lua plugin instance as a [`Plugin`]: each phase copies what the handler
//! may see into a [`Call`], runs the handler on the connection's state, and
//! applies what it asked for to the Rust context.

use std::sync::Arc;

use bytes::Bytes;
use mlua::Function;

use super::pdk::{self, Call, FrameCall, HandshakeCall, Phase, ResponseHeader};
use super::runtime::{ctx_slot, plugin_error, Definition, Instance, Runtime, Vm};
use crate::consumer::Authenticated;
use crate::plugin::{
    CloseContext, Direction, FrameContext, HandshakeContext, Plugin, PluginError, Reroute, State,
    Verdict,
};

/// What a frame handler gets after `self, conf`: the frame's type name,
/// payload and close status.
type FrameArgs<'a> = (&'a mlua::String, mlua::String, Option<u16>);

/// One configured Lua plugin.
pub(crate) struct LuaPlugin {
    runtime: Arc<Runtime>,
    def: Arc<Definition>,
    instance: usize,
}

impl LuaPlugin {
    pub(crate) fn new(runtime: Arc<Runtime>, def: Arc<Definition>, instance: usize) -> Self {
        LuaPlugin {
            runtime,
            def,
            instance,
        }
    }

    fn call(
        &self,
        phase: Phase,
        conn: u64,
        client_ip: std::net::IpAddr,
        consumer: Option<&Arc<Authenticated>>,
    ) -> Call {
        Call {
            phase,
            plugin: self.def.name.clone(),
            conn,
            client_ip: Some(client_ip),
            consumer: consumer.cloned(),
            frame: None,
            handshake: None,
        }
    }

    /// Runs `function(self, conf)`, or `function(self, conf, type, data,
    /// status)` with a frame, through [`Vm::enter`] as this instance's call
    /// on `call`'s connection; returns the call as the handler left it.
    /// `kong.response.exit`'s unwinding is a normal return.
    fn run(
        &self,
        vm: &Vm,
        (instance, function): (&Instance, &Function),
        call: Call,
        frame: Option<FrameArgs<'_>>,
    ) -> Result<Call, PluginError> {
        let (conn, slot) = (call.conn as i64, ctx_slot(self.instance));
        let (handler, conf) = (&instance.handler, &instance.conf);
        vm.begin(call);
        let enter = vm.enter();
        let result = match frame {
            Some((kind, data, status)) => {
                enter.call::<()>((conn, slot, function, handler, conf, kind, data, status))
            }
            None => enter.call::<()>((conn, slot, function, handler, conf)),
        };
        let call = vm
            .end()
            .ok_or_else(|| PluginError::new("the Lua call state was lost"))?;
        match result {
            Ok(()) => Ok(call),
            Err(e) if pdk::is_exit(&e) => Ok(call),
            Err(e) => Err(plugin_error(&e)),
        }
    }

    /// This plugin's instance in `vm`.
    fn instance<'v>(&self, vm: &'v Vm) -> Result<&'v Instance, PluginError> {
        vm.instance(self.instance)
            .ok_or_else(|| PluginError::new("the Lua plugin instance is missing"))
    }

    fn frame(&self, direction: Direction, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        let conn = ctx.connection().id;
        bind(ctx.state::<ConnGuard>(), conn);
        let ip = ctx.connection().client_addr.ip();
        let consumer = ctx.connection().consumer.clone();
        let (data, kind, status) = ctx.get_frame();
        let phase = Phase::frame(direction);
        let outcome = self.runtime.with_vm(|vm| {
            let lua_data = vm.lua.create_string(data).map_err(|e| plugin_error(&e))?;
            let mut call = self.call(phase, conn, ip, consumer.as_ref());
            call.frame = Some(FrameCall {
                kind,
                data: lua_data.clone(),
                data_changed: false,
                status,
                status_changed: false,
                verdict: Verdict::Forward,
            });
            let instance = self.instance(vm)?;
            let function = match direction {
                Direction::Client => &instance.client_frame,
                Direction::Upstream => &instance.upstream_frame,
            };
            let Some(function) = function else {
                return Ok((None, None, Verdict::Forward));
            };
            let frame = (vm.kind_name(kind), lua_data, status);
            let call = self.run(vm, (instance, function), call, Some(frame))?;
            // Copy out of Lua while the state is ours: Lua values are not
            // touched once the lock is released.
            let frame = call
                .frame
                .ok_or_else(|| PluginError::new("the frame was lost"))?;
            let data = frame
                .data_changed
                .then(|| Bytes::copy_from_slice(&frame.data.as_bytes()));
            Ok::<_, PluginError>((
                data,
                frame.status_changed.then_some(frame.status).flatten(),
                frame.verdict,
            ))
        })?;
        let (data, status, verdict) = outcome;
        if let Some(data) = data {
            ctx.set_frame_data(data)?;
        }
        if let Some(status) = status {
            ctx.set_status(status)?;
        }
        // Checked by the PDK when the handler called it.
        ctx.frame.verdict = verdict;
        Ok(())
    }
}

impl Plugin for LuaPlugin {
    fn name(&self) -> &str {
        &self.def.name
    }

    fn priority(&self) -> i32 {
        self.def.priority
    }

    fn handles_frames(&self) -> bool {
        self.def.phases.client_frame || self.def.phases.upstream_frame
    }

    fn new_state(&self) -> Option<State> {
        Some(Box::new(ConnGuard {
            runtime: self.runtime.clone(),
            served: None,
        }))
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        if !self.def.phases.handshake {
            return Ok(());
        }
        let conn = ctx.connection().id;
        bind(ctx.state::<ConnGuard>(), conn);
        let mut call = self.call(Phase::Handshake, conn, ctx.client_ip(), ctx.consumer());
        call.handshake = Some(Box::new(HandshakeCall {
            method: ctx.method().to_owned(),
            path: ctx.path().to_owned(),
            query: ctx.query().map(str::to_owned),
            headers: ctx.headers().clone(),
            upstreams: ctx.upstream_names().map(str::to_owned).collect(),
            ..HandshakeCall::default()
        }));
        let call = self.runtime.with_vm(|vm| {
            let instance = self.instance(vm)?;
            match &instance.handshake {
                Some(function) => self.run(vm, (instance, function), call, None),
                None => Ok(call),
            }
        })?;
        let Some(request) = call.handshake else {
            return Ok(());
        };
        for (name, value) in &request.upstream_headers {
            match value {
                Some(value) => ctx.set_upstream_header(name, value)?,
                None => ctx.clear_upstream_header(name),
            }
        }
        for edit in &request.response_headers {
            match edit {
                ResponseHeader::Set(name, value) => ctx.set_response_header(name, value)?,
                ResponseHeader::Add(name, value) => ctx.add_response_header(name, value)?,
                ResponseHeader::Clear(name) => ctx.clear_response_header(name),
            }
        }
        if let Some(limit) = request.client_limit {
            ctx.set_max_message_len(Direction::Client, limit);
        }
        if let Some(limit) = request.upstream_limit {
            ctx.set_max_message_len(Direction::Upstream, limit);
        }
        match &request.reroute {
            Some(Reroute::Target { host, port }) => ctx.set_target(host, *port)?,
            Some(Reroute::Upstream(name)) => ctx.set_upstream(name)?,
            _ => {}
        }
        if let Some(exit) = request.exit {
            ctx.exit(exit.status, exit.body, exit.headers);
        }
        Ok(())
    }

    fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        if !self.def.phases.client_frame {
            return Ok(());
        }
        self.frame(Direction::Client, ctx)
    }

    fn upstream_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        if !self.def.phases.upstream_frame {
            return Ok(());
        }
        self.frame(Direction::Upstream, ctx)
    }

    fn close(&self, ctx: &mut CloseContext<'_>) {
        if !self.def.phases.close {
            return;
        }
        let conn = ctx.connection().id;
        bind(ctx.state::<ConnGuard>(), conn);
        let call = self.call(
            Phase::Close,
            conn,
            ctx.connection().client_addr.ip(),
            ctx.connection().consumer.as_ref(),
        );
        let result = self.runtime.with_vm(|vm| {
            let instance = self.instance(vm)?;
            match &instance.close {
                Some(function) => self.run(vm, (instance, function), call, None),
                None => Ok(call),
            }
        });
        if let Err(err) = result {
            tracing::error!(connection = conn, plugin = %self.def.name, "ws_close failed: {err}");
        }
    }
}

/// A Lua plugin's per-connection state: remembers the connection so that
/// its `kong.ctx` data is removed when the connection's plugin states are
/// dropped, however the connection ended (even when the handshake never
/// reached the close phase).
struct ConnGuard {
    runtime: Arc<Runtime>,
    /// The connection and the state it was served with.
    served: Option<(u64, usize)>,
}

fn bind(guard: Option<&mut ConnGuard>, conn: u64) {
    if let Some(guard) = guard {
        guard.served = Some((conn, guard.runtime.thread_slot()));
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some((conn, slot)) = self.served {
            self.runtime.forget(conn, slot);
        }
    }
}
