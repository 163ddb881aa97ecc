//! A connection's lifecycle in memory: which replies each mode makes by
//! itself, and the states a connection passes through.

use bytes::BytesMut;
use frameway_wire::{
    CloseCode, CloseFrame, Config, Failure, Message, Mode, Protocol, ProtocolError, Role, State,
};

fn server(mode: Mode) -> Protocol {
    let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(7));
    server.set_mode(mode);
    server
}

fn client() -> Protocol {
    Protocol::new(Config::new(Role::Client), |b| b.fill(7))
}

/// An unmasked frame from a client: a violation a server must fail on.
fn unmasked_text() -> BytesMut {
    BytesMut::from(&[0x81, 0x02, b'h', b'i'][..])
}

fn read_all(endpoint: &mut Protocol, wire: &mut BytesMut) -> Vec<Message> {
    std::iter::from_fn(|| endpoint.read_message(wire).unwrap()).collect()
}

#[test]
fn an_endpoint_answers_a_close_and_is_closed() {
    let (mut server, mut client) = (server(Mode::Endpoint), client());
    client.close_with(CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(client.state(), State::CloseSent);
    read_all(&mut server, &mut client.take_output());
    assert_eq!(server.state(), State::Closed);
    read_all(&mut client, &mut server.take_output());
    assert_eq!(client.state(), State::Closed);
}

#[test]
fn a_relay_leg_leaves_the_close_answer_to_its_caller() {
    let (mut leg, mut client) = (server(Mode::Relay), client());
    client.close_with(CloseCode::NORMAL, "bye").unwrap();
    let close = CloseFrame::new(CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(
        read_all(&mut leg, &mut client.take_output()),
        [Message::Close(Some(close))]
    );
    assert_eq!(leg.state(), State::CloseReceived);
    assert!(!leg.has_output());
    // The other side's close, when it comes, is the answer.
    leg.close_with(CloseCode::new(4000).unwrap(), "upstream done")
        .unwrap();
    assert_eq!(leg.state(), State::Closed);
}

#[test]
fn a_relay_leg_hands_pings_to_its_caller_unanswered() {
    let (mut leg, mut client) = (server(Mode::Relay), client());
    client.send(&Message::Ping("p".into())).unwrap();
    assert_eq!(
        read_all(&mut leg, &mut client.take_output()),
        [Message::Ping("p".into())]
    );
    assert!(!leg.has_output());
    assert_eq!(leg.state(), State::Open);
}

#[test]
fn a_violation_fails_an_endpoint_with_its_close_queued_and_nothing_more_read() {
    let mut server = server(Mode::Endpoint);
    let mut wire = unmasked_text();
    let err = server.read_message(&mut wire).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    assert_eq!(server.state(), State::Failed(Failure::Violation));
    assert!(server.close_sent());
    let mut client = client();
    let answer = read_all(&mut client, &mut server.take_output());
    assert!(matches!(
        &answer[..],
        [Message::Close(Some(close))] if close.code == CloseCode::PROTOCOL_ERROR
    ));
    // Whatever still arrives is not parsed (the driver discards it).
    let mut more = unmasked_text();
    assert_eq!(server.read_message(&mut more).unwrap(), None);
}

#[test]
fn a_violation_on_a_relay_leg_is_only_reported_and_its_close_is_the_callers() {
    let mut leg = server(Mode::Relay);
    let err: ProtocolError = leg.read_message(&mut unmasked_text()).unwrap_err();
    assert_eq!(leg.state(), State::Failed(Failure::Violation));
    assert!(Failure::Violation.lingers());
    assert!(!leg.close_sent() && !leg.has_output());
    leg.close_with(err.close_code(), "after the other side's last words")
        .unwrap();
    assert!(leg.close_sent());
    assert_eq!(leg.state(), State::Failed(Failure::Violation));
}
