//! The PDK's payload rules, in memory: a plugin cannot put on a frame what
//! the peer would refuse, and the refusal names the plugin.

use std::sync::Arc;

use bytes::Bytes;
use frameway_gateway::plugin::{
    Chain, Direction, FrameContext, FrameType, PdkError, Plugin, PluginError, Session,
};

/// Sets every client frame's payload to `data`.
struct SetData(&'static [u8]);

impl Plugin for SetData {
    fn name(&self) -> &str {
        "set-data"
    }
    fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        ctx.set_frame_data(Bytes::from_static(self.0))?;
        Ok(())
    }
}

fn refusal(data: &'static [u8], kind: FrameType, status: Option<u16>) -> Option<PdkError> {
    let mut session = Session::new(Chain::new(vec![Arc::new(SetData(data))]));
    match session.frame(Direction::Client, kind, "original".into(), status) {
        Ok(_) => None,
        Err(err) => {
            assert_eq!(err.plugin, "set-data");
            match err.error {
                PluginError::Pdk(pdk) => Some(pdk),
                other => panic!("not a PDK error: {other}"),
            }
        }
    }
}

#[test]
fn text_that_is_not_utf8_is_refused() {
    assert_eq!(
        refusal(b"\xff", FrameType::Text, None),
        Some(PdkError::NotUtf8("text"))
    );
    assert_eq!(refusal(b"\xff", FrameType::Binary, None), None);
}

#[test]
fn a_close_message_must_be_utf8_and_fit_in_123_bytes() {
    assert_eq!(
        refusal(b"\xff", FrameType::Close, Some(1000)),
        Some(PdkError::NotUtf8("a close message"))
    );
    assert_eq!(
        refusal(&[b'a'; 124], FrameType::Close, Some(1000)),
        Some(PdkError::MessageTooLong(124))
    );
    assert_eq!(refusal(&[b'a'; 123], FrameType::Close, Some(1000)), None);
}

#[test]
fn a_ping_carries_at_most_125_bytes() {
    assert_eq!(
        refusal(&[0; 126], FrameType::Ping, None),
        Some(PdkError::ControlTooLong {
            kind: "ping",
            len: 126
        })
    );
    assert_eq!(refusal(&[0; 125], FrameType::Pong, None), None);
}
