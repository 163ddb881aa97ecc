//! One connection's protocol state: frames in, messages out, replies queued.

use std::num::NonZeroU32;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame, ClosePayload};
use crate::config::Config;
use crate::decoder::{Frame, FrameDecoder};
use crate::deflate::Deflate;
use crate::encoder::{EncodedHeader, FrameEncoder};
use crate::error::ProtocolError;
use crate::header::FrameHeader;
use crate::lifecycle::{Failure, Mode, State};
use crate::mask::apply_mask;
use crate::message::{Message, MessageAssembler, RawMessage};
use crate::opcode::OpCode;
use crate::output::Output;
use crate::passed::Passed;
use crate::timers::{Due, Expired, Heartbeat, Timers, HEARTBEAT_PAYLOAD};
use crate::utf8::{Utf8Bytes, Utf8Validator};
use std::time::{Duration, Instant};

/// Fills a buffer with unpredictable bytes for masking keys (RFC 6455 §5.3
/// asks for a strong source of entropy). The core does no IO, so the caller
/// provides it.
pub type EntropySource = fn(&mut [u8]);

/// Queued output above which pings are no longer answered automatically.
const PONG_BACKLOG: usize = 64 * 1024;

/// The protocol state of one connection, without any IO: feed it received
/// bytes, take out frames or messages, and write out what it queues.
///
/// Replies the protocol requires are queued by themselves: a pong for each
/// ping, the answering close frame, and the close frame for a protocol
/// error (in [`Mode::Relay`], a proxy's, they are left to the caller).
///
/// ```
/// use bytes::BytesMut;
/// use frameway_wire::{Config, Message, Protocol, Role};
///
/// let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(7));
/// let mut client = Protocol::new(Config::new(Role::Client), |b| b.fill(7));
/// client.send(&Message::text("hello")).unwrap();
/// client.send(&Message::Ping("p".into())).unwrap();
///
/// let mut wire = client.take_output();
/// assert_eq!(server.read_message(&mut wire).unwrap(), Some(Message::text("hello")));
/// assert_eq!(server.read_message(&mut wire).unwrap(), Some(Message::Ping("p".into())));
/// // The server queued the pong by itself.
/// let mut reply = server.take_output();
/// assert_eq!(client.read_message(&mut reply).unwrap(), Some(Message::Pong("p".into())));
/// ```
#[derive(Debug)]
pub struct Protocol {
    decoder: FrameDecoder,
    assembler: MessageAssembler,
    encoder: FrameEncoder,
    out: Output,
    /// Masking keys and where they come from: a client's (servers do not
    /// mask, and carry no pointer for it).
    keys: Option<Box<MaskKeys>>,
    mode: Mode,
    /// Why reading ended, once it has.
    failure: Option<Failure>,
    /// permessage-deflate, once negotiated. Boxed: a connection without it
    /// pays one pointer.
    deflate: Option<Box<Compression>>,
    /// Split outgoing data messages into frames of at most this many bytes.
    fragment_size: Option<NonZeroU32>,
    /// Heartbeat and close deadlines, once a connection has one. Boxed:
    /// most connections have none.
    timers: Option<Box<Timers>>,
}

impl Protocol {
    /// A connection in the open state.
    pub fn new(config: Config, entropy: EntropySource) -> Self {
        Protocol {
            decoder: FrameDecoder::new(config),
            assembler: MessageAssembler::new(),
            encoder: FrameEncoder::new(config.max_send_len),
            out: Output::default(),
            keys: config.mask_outgoing.then(|| {
                Box::new(MaskKeys {
                    entropy,
                    keys: [0; 64],
                    used: 64,
                })
            }),
            mode: Mode::Endpoint,
            failure: None,
            deflate: None,
            fragment_size: None,
            timers: None,
        }
    }

    /// Sends a ping every `heartbeat.interval` from `now` on (queued by
    /// [`Self::handle_timeout`]) and counts the peer dead when one goes
    /// unanswered for `heartbeat.timeout`. Heartbeats stop once the closing
    /// handshake starts.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use frameway_wire::{Config, Expired, Heartbeat, Protocol, Role};
    ///
    /// let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(7));
    /// let start = Instant::now();
    /// let second = Duration::from_secs(1);
    /// server.set_heartbeat(Heartbeat { interval: 10 * second, timeout: 5 * second }, start);
    /// assert_eq!(server.poll_timeout(), Some(start + 10 * second));
    ///
    /// // The ping is due: queued, and its pong is awaited for 5 s.
    /// assert_eq!(server.handle_timeout(start + 10 * second), Ok(()));
    /// assert!(server.has_output());
    /// assert_eq!(server.poll_timeout(), Some(start + 15 * second));
    ///
    /// // No pong: the peer is dead, and a 1001 close is queued for it.
    /// assert_eq!(server.handle_timeout(start + 15 * second), Err(Expired::Pong(5 * second)));
    /// ```
    pub fn set_heartbeat(&mut self, heartbeat: Heartbeat, now: Instant) {
        self.timers().set_heartbeat(heartbeat, now);
    }

    /// Starts counting `timeout` for the closing handshake (or what follows
    /// it: the peer closing TCP, or lingering after a failure), unless it
    /// is already counting. [`Self::handle_timeout`] reports
    /// [`Expired::Close`] once it has passed.
    pub fn start_close_timer(&mut self, timeout: Duration, now: Instant) {
        self.timers().start_close(timeout, now);
    }

    /// When [`Self::handle_timeout`] must next be called: the earliest
    /// heartbeat or close deadline, or `None` if there is none.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let open = self.state() == State::Open;
        self.timers.as_ref()?.next(open)
    }

    /// Advances the connection's timers to `now`: queues a heartbeat ping
    /// when one is due, and reports a deadline that passed. A pong timeout
    /// fails the connection ([`Failure::DeadPeer`]) and queues the 1001
    /// "pong timeout" close frame, in either mode: there is no one left to
    /// relay for.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Expired> {
        let open = self.state() == State::Open;
        let Some(timers) = self.timers.as_deref_mut() else {
            return Ok(());
        };
        match timers.expire(now, open) {
            Due::Nothing => Ok(()),
            Due::Ping => {
                // Fails only once our close is sent, when pings stop mattering.
                let _ = self.queue(OpCode::Ping, HEARTBEAT_PAYLOAD);
                Ok(())
            }
            Due::Expired(expired) => {
                if let Expired::Pong(_) = expired {
                    let _ = self.close_with(CloseCode::GOING_AWAY, "pong timeout");
                    self.failure = Some(Failure::DeadPeer);
                }
                Err(expired)
            }
        }
    }

    fn timers(&mut self) -> &mut Timers {
        self.timers.get_or_insert_with(Box::default)
    }

    /// Which replies the core makes by itself ([`Mode::Endpoint`] unless
    /// changed).
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.decoder.config()
    }

    /// Changes the receive limits.
    pub fn set_limits(&mut self, limits: crate::Limits) {
        self.decoder.set_limits(limits);
    }

    /// Changes the send limit.
    pub fn set_max_send_len(&mut self, len: u64) {
        self.decoder.config_mut().max_send_len = len;
        self.encoder.set_max_send_len(len);
    }

    /// Turns on permessage-deflate, as negotiated in the handshake: from now
    /// on compressed data frames (RSV1) are accepted and come out of
    /// [`Self::read_frame`] and [`Self::read_message`] inflated (RSV1
    /// cleared), with inflated text validated as UTF-8 (1007) and the
    /// inflated size held to the message limit (1009); and data messages
    /// larger than the threshold go out compressed. Control frames are
    /// never compressed.
    ///
    /// ```
    /// use frameway_wire::deflate::{Deflate, DeflateConfig, DeflateParams};
    /// use frameway_wire::{Config, Message, Protocol, Role};
    ///
    /// let (params, config) = (DeflateParams::default(), DeflateConfig::default());
    /// let mut client = Protocol::new(Config::new(Role::Client), |b| b.fill(1));
    /// let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(0));
    /// client.set_deflate(Deflate::new(Role::Client, params, &config));
    /// server.set_deflate(Deflate::new(Role::Server, params, &config));
    ///
    /// let text = "to be or not to be, ".repeat(50);
    /// client.send(&Message::text(text.as_str())).unwrap();
    /// let mut wire = client.take_output();
    /// assert!(wire.len() < 100);
    /// assert_eq!(wire[0] & 0x40, 0x40); // RSV1: compressed
    /// assert_eq!(server.read_message(&mut wire).unwrap(), Some(Message::text(text)));
    /// ```
    pub fn set_deflate(&mut self, deflate: Deflate) {
        self.decoder.allow_rsv1();
        self.deflate = Some(Box::new(Compression {
            codec: deflate,
            inflating: None,
            utf8: Utf8Validator::new(),
            compressing: false,
            pass_received: false,
            pass_sent: false,
        }));
    }

    /// Lets compressed messages through untouched, for a proxy between two
    /// connections that both negotiated permessage-deflate with parameters
    /// under which one side's compressed stream can be read by the other:
    /// with `received`, compressed frames come out of [`Self::read_frame`]
    /// as they arrived (RSV1 set, payload compressed, text not checked as
    /// UTF-8: the final receiver inflates and checks it); with `sent`, this
    /// connection compresses nothing itself, and compressed frames are sent
    /// with [`Self::send_frame_bytes_compressed`]. (Compressing here too
    /// would put messages into the receiver's window that the original
    /// sender's compressor never saw.) Without permessage-deflate it does
    /// nothing.
    pub fn pass_compressed(&mut self, received: bool, sent: bool) {
        if let Some(z) = self.deflate.as_deref_mut() {
            z.pass_received = received;
            z.pass_sent = sent;
        }
    }

    /// Queues the first frame of a message compressed elsewhere (RSV1 set)
    /// as it is; its continuation frames go through
    /// [`Self::send_frame_bytes`]. Only after [`Self::pass_compressed`] with
    /// `sent`: otherwise the peer's window would lose track.
    pub fn send_frame_bytes_compressed(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        if !self.deflate.as_deref().is_some_and(|z| z.pass_sent) {
            return Err(ProtocolError::InvalidSend(
                "a compressed frame can only be passed through a connection set to pass them",
            ));
        }
        let len = payload.len() as u64;
        self.enqueue(fin, opcode, true, Payload::Shared(&payload), len)
    }

    /// The permessage-deflate state, if it was negotiated.
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.as_deref().map(|z| &z.codec)
    }

    /// Takes the permessage-deflate state out, to carry its windows over to
    /// a new `Protocol` for the same connection (a pooled connection).
    pub fn take_deflate(&mut self) -> Option<Deflate> {
        self.deflate.take().map(|z| z.codec)
    }

    /// Splits outgoing data messages sent with [`Self::send`] into frames of
    /// at most `size` payload bytes (after compression); `None` sends each
    /// message as one frame.
    pub fn set_fragment_size(&mut self, size: Option<usize>) {
        let size = size.map(|s| s.clamp(1, u32::MAX as usize) as u32);
        self.fragment_size = size.and_then(NonZeroU32::new);
    }

    /// The decoder, for extensions that need to adjust it.
    pub fn decoder_mut(&mut self) -> &mut FrameDecoder {
        &mut self.decoder
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        if let Some(failure) = self.failure {
            return State::Failed(failure);
        }
        match (self.encoder.close_sent(), self.decoder.close_received()) {
            (false, false) => State::Open,
            (true, false) => State::CloseSent,
            (false, true) => State::CloseReceived,
            (true, true) => State::Closed,
        }
    }

    /// Whether our close frame is queued or sent (nothing but its answer
    /// may follow it).
    pub fn close_sent(&self) -> bool {
        self.encoder.close_sent()
    }

    /// Whether the frame parser is between messages with nothing pending.
    pub fn is_idle(&self) -> bool {
        self.decoder.is_idle() && !self.encoder.is_fragmenting()
    }

    /// How many more payload bytes the frame being received needs, once it
    /// has been begun (see [`FrameDecoder::bytes_wanted`]).
    pub fn bytes_wanted(&self, buffered: usize) -> usize {
        self.decoder.bytes_wanted(buffered)
    }

    /// Reads the next frame from `buf`. Control frames get their automatic
    /// replies queued; data frames are returned as they are (fragments
    /// too), inflated if permessage-deflate is on.
    pub fn read_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        loop {
            match self.read_one_frame(buf)? {
                Some(frame) if self.is_heartbeat_pong(&frame) => continue,
                frame => return Ok(frame),
            }
        }
    }

    /// Whether `frame` answers our heartbeat ping (and is consumed).
    fn is_heartbeat_pong(&mut self, frame: &Frame) -> bool {
        frame.opcode == OpCode::Pong
            && self
                .timers
                .as_deref_mut()
                .is_some_and(|timers| timers.on_pong(&frame.payload))
    }

    fn read_one_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if self.failure.is_some() {
            return Ok(None);
        }
        let frame = match self.decoder.decode(buf).and_then(|f| match f {
            Some(frame) => self.inflate(frame).map(Some),
            None => Ok(None),
        }) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(err) => {
                self.fail(&err);
                return Err(err);
            }
        };
        match frame.opcode {
            // RFC 6455 §5.5.3 lets an endpoint answer only the latest of
            // several pings; a peer that pings without reading our answers
            // gets no more once a backlog has built up, so it cannot grow
            // our send buffer without bound.
            OpCode::Ping
                if self.mode == Mode::Endpoint
                    && !self.encoder.close_sent()
                    && self.out.len() < PONG_BACKLOG =>
            {
                let payload = frame.payload.clone();
                self.queue(OpCode::Pong, &payload)?;
            }
            OpCode::Close if self.mode == Mode::Endpoint && !self.encoder.close_sent() => {
                // Echo the peer's status (the decoder validated it), as
                // RFC 6455 §5.5.1 suggests.
                let status = frame.payload.slice(..frame.payload.len().min(2));
                self.queue(OpCode::Close, &status)?;
            }
            _ => {}
        }
        Ok(Some(frame))
    }

    /// Reads the next whole message from `buf`, assembling fragments.
    pub fn read_message(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        while let Some(frame) = self.read_frame(buf)? {
            let raw = match frame.opcode {
                OpCode::Ping => return Ok(Some(Message::Ping(frame.payload))),
                OpCode::Pong => return Ok(Some(Message::Pong(frame.payload))),
                OpCode::Close => {
                    return Ok(Some(Message::Close(CloseFrame::parse(&frame.payload)?)))
                }
                _ => match self.assembler.push(frame) {
                    Some(raw) => raw,
                    None => continue,
                },
            };
            return self.finish_message(raw).map(Some);
        }
        Ok(None)
    }

    /// A proxy's fast lane: moves the complete data frames at the front of
    /// `buf` (bytes this leg received) to `to`'s output, each checked as
    /// [`Self::read_frame`] checks it and framed for `to` as
    /// [`Self::send_frame`] frames it (masked if `to` is a client), without
    /// a [`Frame`] per message. Each frame passed is counted in `passed`.
    ///
    /// It stops, leaving the rest for [`Self::read_frame`], before a control
    /// frame (a relay answers pings and closes with what the other side
    /// says), a frame not wholly in `buf`, a frame `to` may not send now,
    /// and once `to` holds `max_queued` bytes; and it passes nothing while
    /// either side has permessage-deflate, or is not [`State::Open`]. An
    /// error is this leg's violation, as [`Self::read_frame`] reports it.
    ///
    /// ```
    /// use frameway_wire::{Config, Mode, OpCode, Passed, Protocol, Role};
    ///
    /// let leg = |role| {
    ///     let mut p = Protocol::new(Config::new(role), |b| b.fill(3));
    ///     p.set_mode(Mode::Relay);
    ///     p
    /// };
    /// let (mut upstream, mut client) = (leg(Role::Client), leg(Role::Server));
    /// let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(0));
    /// for word in ["a", "bb", "ccc"] {
    ///     server.send_frame(true, OpCode::Text, word.as_bytes()).unwrap();
    /// }
    /// server.send_frame(true, OpCode::Ping, b"").unwrap();
    /// let mut received = server.take_output();
    /// let mut passed = Passed::default();
    /// upstream
    ///     .pass_frames(&mut received, &mut client, 64 * 1024, &mut passed)
    ///     .unwrap();
    /// assert_eq!((passed.frames(OpCode::Text), passed.bytes(OpCode::Text)), (3, 6));
    /// // The ping waits for the caller; the three messages are queued.
    /// assert_eq!(&received[..], b"\x89\x00");
    /// assert_eq!(&client.take_output()[..], b"\x81\x01a\x81\x02bb\x81\x03ccc");
    /// ```
    pub fn pass_frames(
        &mut self,
        buf: &mut BytesMut,
        to: &mut Protocol,
        max_queued: usize,
        passed: &mut Passed,
    ) -> Result<(), ProtocolError> {
        let passable =
            |p: &Protocol| p.deflate.is_none() && p.failure.is_none() && p.state() == State::Open;
        if !passable(self) || !passable(to) {
            return Ok(());
        }
        // Frames are decoded where they lie and consumed together at the end.
        // A frame whose header the other leg would write byte for byte (an
        // unmasked frame going on unmasked: server push) joins a run of
        // such frames, queued with one copy rather than framed again; so
        // does a masked frame going on masked (a client's, toward the
        // upstream) whose new header is as long as its own: the header is
        // written over the old one and the payload, unmasked by the
        // decoder, masked again where it lies.
        let mut at = 0;
        let mut run = 0..0;
        let result = loop {
            let queued = to.out.len() + run.len();
            if queued >= max_queued {
                break Ok(());
            }
            // Whole messages judged from their header bytes: a leg that does
            // not mask writes those bytes as they are.
            let whole = to.encoder.whole_message_limit();
            if let (None, Some(limit)) = (&to.keys, whole) {
                let taken = self
                    .decoder
                    .skim(&buf[at..], max_queued - queued, limit, passed);
                if taken > 0 {
                    run = if run.is_empty() { at } else { run.start }..at + taken;
                    at += taken;
                    continue;
                }
            }
            let encoder = &to.encoder;
            let accept = |h: &FrameHeader| {
                !h.opcode.is_control() && encoder.check(h.fin, h.opcode, h.payload_len).is_ok()
            };
            let (head, header_len) = match self.decoder.decode_whole(&mut buf[at..], accept) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            };
            let payload = at + header_len..at + header_len + head.len;
            let len = head.len as u64;
            let header = to
                .frame_header(head.fin, head.opcode, false, len, len)
                .expect("the encoder accepted this frame before it was decoded");
            let head_bytes = at..payload.start;
            let in_place = match header.mask {
                None => buf[head_bytes] == *header.as_bytes(),
                Some(key) if head_bytes.len() == header.as_bytes().len() => {
                    buf[head_bytes].copy_from_slice(header.as_bytes());
                    apply_mask(&mut buf[payload.clone()], key, 0);
                    true
                }
                Some(_) => false,
            };
            if in_place {
                run = if run.is_empty() { at } else { run.start }..payload.end;
            } else {
                to.out.push_bytes(&buf[run]);
                run = payload.end..payload.end;
                to.out.push_frame(&header, &buf[payload.clone()]);
            }
            at = payload.end;
            passed.add(head.opcode, 1, len);
        };
        // A pass that is one run from the buffer's start (server push) may
        // hand the read buffer itself to the output.
        if run.start == 0 {
            to.out.take_front(buf, at);
        } else {
            to.out.push_bytes(&buf[run]);
            if at == buf.len() {
                buf.clear();
            } else {
                buf.advance(at);
            }
        }
        if let Err(err) = &result {
            self.fail(err);
        }
        result
    }

    /// Inflates a frame of a compressed message, each fragment as it comes,
    /// so that neither the frame API nor the message limit sees compressed
    /// bytes.
    fn inflate(&mut self, mut frame: Frame) -> Result<Frame, ProtocolError> {
        let Some(z) = self.deflate.as_deref_mut().filter(|z| !z.pass_received) else {
            return Ok(frame);
        };
        let (text, inflated) = match (frame.opcode, z.inflating) {
            (OpCode::Text | OpCode::Binary, _) if frame.rsv1 => {
                z.utf8.reset();
                (frame.opcode == OpCode::Text, 0)
            }
            (OpCode::Continuation, Some(message)) => message,
            _ => return Ok(frame),
        };
        let limit = self.decoder.limits().max_message_len;
        let mut out = Vec::new();
        z.codec
            .inflate(&frame.payload, frame.fin, limit - inflated, &mut out)
            .map_err(|err| match err {
                ProtocolError::MessageTooBig { size, .. } => ProtocolError::MessageTooBig {
                    size: inflated + size,
                    limit,
                },
                other => other,
            })?;
        if text {
            let valid = z.utf8.feed(&out).and_then(|()| match frame.fin {
                true => z.utf8.finish(),
                false => Ok(()),
            });
            valid.map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        z.inflating = (!frame.fin).then_some((text, inflated + out.len() as u64));
        frame.payload = Bytes::from(out);
        frame.rsv1 = false;
        Ok(frame)
    }

    fn finish_message(&mut self, raw: RawMessage) -> Result<Message, ProtocolError> {
        if raw.compressed {
            let err = ProtocolError::Extension("compressed message without an extension");
            self.fail(&err);
            return Err(err);
        }
        Ok(match raw.opcode {
            // Validated frame by frame by the decoder.
            OpCode::Text => Message::Text(Utf8Bytes::from_validated(raw.payload)),
            _ => Message::Binary(raw.payload),
        })
    }

    /// Queues one frame for sending.
    ///
    /// With permessage-deflate, a data message is compressed frame by
    /// frame: a fragmented one (`fin` false on its first frame) always, a
    /// single frame when it is over the threshold. Each fragment carries
    /// its part compressed and flushed; only the first has RSV1.
    pub fn send_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        self.frame(fin, opcode, Payload::Borrowed(payload))
    }

    /// [`Self::send_frame`] for a payload held as [`Bytes`]: a large one
    /// that needs no masking (a server's) is queued without being copied.
    ///
    /// ```
    /// use bytes::{Buf, Bytes};
    /// use frameway_wire::{Config, OpCode, Protocol, Role};
    ///
    /// let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(0));
    /// let payload = Bytes::from(vec![1u8; 64 * 1024]);
    /// server.send_frame_bytes(true, OpCode::Binary, payload.clone()).unwrap();
    /// let mut slices = [std::io::IoSlice::new(&[]); 2];
    /// server.output().chunks_vectored(&mut slices);
    /// assert_eq!(slices[1].as_ptr(), payload.as_ptr());
    /// ```
    pub fn send_frame_bytes(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        self.frame(fin, opcode, Payload::Shared(&payload))
    }

    fn frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: Payload<'_>,
    ) -> Result<(), ProtocolError> {
        let len = payload.len();
        let compressing = match opcode {
            OpCode::Text | OpCode::Binary => self
                .deflate
                .as_deref_mut()
                .filter(|z| !z.pass_sent && (!fin || z.codec.wants(len))),
            OpCode::Continuation => self.deflate.as_deref_mut().filter(|z| z.compressing),
            _ => None,
        };
        let Some(z) = compressing else {
            return self.enqueue(fin, opcode, false, payload, len as u64);
        };
        // A refused frame must not advance the compressor's window.
        self.encoder.check(fin, opcode, len as u64)?;
        let mut compressed = Vec::new();
        z.codec.compress(payload.as_slice(), fin, &mut compressed)?;
        z.compressing = !fin;
        let rsv1 = opcode != OpCode::Continuation;
        let compressed = Bytes::from(compressed);
        self.enqueue(fin, opcode, rsv1, Payload::Shared(&compressed), len as u64)
    }

    /// Encodes a frame's header (checking that it may be sent) and queues
    /// it with its payload; `counted` is what the frame adds to its
    /// message's size (the uncompressed length, for a compressed frame).
    fn enqueue(
        &mut self,
        fin: bool,
        opcode: OpCode,
        rsv1: bool,
        payload: Payload<'_>,
        counted: u64,
    ) -> Result<(), ProtocolError> {
        let header = self.frame_header(fin, opcode, rsv1, payload.len() as u64, counted)?;
        match payload {
            Payload::Borrowed(bytes) => self.out.push_frame(&header, bytes),
            Payload::Shared(bytes) => self.out.push_frame_shared(&header, bytes),
        }
        Ok(())
    }

    /// The header of the next frame sent, masked with a fresh key if this
    /// side masks; the encoder counts the frame as sent.
    fn frame_header(
        &mut self,
        fin: bool,
        opcode: OpCode,
        rsv1: bool,
        payload_len: u64,
        counted: u64,
    ) -> Result<EncodedHeader, ProtocolError> {
        let mask = self.next_mask();
        self.encoder
            .header_counted(fin, opcode, rsv1, payload_len, counted, mask)
    }

    /// Queues a whole message for sending: one frame, or frames of the
    /// fragment size if one is set. With permessage-deflate, data messages
    /// over the threshold are compressed whole, then split.
    pub fn send(&mut self, message: &Message) -> Result<(), ProtocolError> {
        let (opcode, payload) = match message {
            Message::Close(close) => return self.send_close(close.as_ref()),
            Message::Ping(_) | Message::Pong(_) => {
                return self.send_frame(true, message.opcode(), message.as_payload())
            }
            Message::Text(text) => (OpCode::Text, text.as_shared()),
            Message::Binary(data) => (OpCode::Binary, data),
        };
        let size = self.fragment_size.map_or(usize::MAX, |s| s.get() as usize);
        let len = payload.len();
        let deflate = self
            .deflate
            .as_deref_mut()
            .filter(|z| !z.pass_sent && z.codec.wants(len));
        let compress = deflate.is_some();
        if !compress && len <= size {
            return self.frame(true, opcode, Payload::Shared(payload));
        }
        self.encoder.check(true, opcode, len as u64)?;
        let wire = match deflate {
            Some(z) => {
                let mut compressed = Vec::new();
                z.codec.compress(payload, true, &mut compressed)?;
                Bytes::from(compressed)
            }
            None => payload.clone(),
        };
        // The first frame counts the whole message towards the send limit.
        let mut counted = len as u64;
        let mut at: usize = 0;
        loop {
            let end = wire.len().min(at.saturating_add(size));
            let fin = end == wire.len();
            let op = if at == 0 {
                opcode
            } else {
                OpCode::Continuation
            };
            let chunk = wire.slice(at..end);
            self.enqueue(
                fin,
                op,
                compress && at == 0,
                Payload::Shared(&chunk),
                counted,
            )?;
            if fin {
                return Ok(());
            }
            at = end;
            counted = 0;
        }
    }

    /// Queues our close frame, with a status or without (1005 to the peer).
    pub fn send_close(&mut self, close: Option<&CloseFrame>) -> Result<(), ProtocolError> {
        match close {
            Some(close) => self.close_with(close.code, &close.reason),
            None => self.send_frame(true, OpCode::Close, &[]),
        }
    }

    /// Ends reading on `err` ([`State::Failed`]) and, in [`Mode::Endpoint`],
    /// queues the close frame answering it unless ours was already sent. A
    /// relay sends that close itself ([`ProtocolError::close_code`]), after
    /// delivering what the other side still sends.
    pub fn fail(&mut self, err: &ProtocolError) {
        self.failure.get_or_insert(Failure::Violation);
        if self.encoder.close_sent() || self.mode == Mode::Relay {
            return;
        }
        // Cannot fail: our close was not sent and the reason is cut to fit.
        let _ = self.close_with(err.close_code(), &err.to_string());
    }

    /// Queues a close frame with `code` and a reason cut to fit.
    pub fn close_with(&mut self, code: CloseCode, reason: &str) -> Result<(), ProtocolError> {
        let payload = ClosePayload::new(code, reason);
        self.send_frame(true, OpCode::Close, payload.as_bytes())
    }

    /// The bytes queued for sending, to be written with one vectored
    /// write ([`Buf::chunks_vectored`]) and marked written with
    /// [`Self::consume_output`].
    pub fn output(&self) -> &Output {
        &self.out
    }

    /// Marks `n` queued bytes as written. Once all are, the connection
    /// holds no send buffer.
    pub fn consume_output(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// Takes all queued bytes, in one buffer.
    pub fn take_output(&mut self) -> BytesMut {
        self.out.take_all()
    }

    /// Whether anything is queued for sending.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn queue(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), ProtocolError> {
        self.send_frame(true, opcode, payload)
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        let keys = self.keys.as_deref_mut()?;
        if keys.used + 4 > keys.keys.len() {
            (keys.entropy)(&mut keys.keys);
            keys.used = 0;
        }
        let at = keys.used;
        keys.used += 4;
        let key = &keys.keys[at..at + 4];
        Some([key[0], key[1], key[2], key[3]])
    }
}

/// Masking keys drawn from the entropy source 16 at a time: one call to
/// the operating system per 16 frames rather than per frame.
#[derive(Debug)]
struct MaskKeys {
    entropy: EntropySource,
    keys: [u8; 64],
    used: usize,
}

/// A payload to send: borrowed (copied into the output), or shared (queued
/// by reference when large and unmasked).
#[derive(Clone, Copy)]
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Shared(&'a Bytes),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(bytes) => bytes,
            Payload::Shared(bytes) => bytes,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// permessage-deflate on one connection: the codec, and where the messages
/// in flight stand.
#[derive(Debug)]
struct Compression {
    codec: Deflate,
    /// The compressed message being received: text or not, bytes inflated.
    inflating: Option<(bool, u64)>,
    /// Validates inflated text (the decoder only sees compressed bytes).
    utf8: Utf8Validator,
    /// The fragmented message being sent through `send_frame` is compressed.
    compressing: bool,
    /// Compressed frames received stay compressed (see
    /// [`Protocol::pass_compressed`]).
    pass_received: bool,
    /// Nothing sent is compressed here: compressed frames come from
    /// elsewhere, through [`Protocol::send_frame_bytes_compressed`].
    pass_sent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn pair() -> (Protocol, Protocol) {
        (
            Protocol::new(Config::new(Role::Client), |b| b.fill(0x5c)),
            Protocol::new(Config::new(Role::Server), |b| b.fill(0)),
        )
    }

    #[test]
    fn close_handshake_echoes_the_code() {
        let (mut client, mut server) = pair();
        client.close_with(CloseCode::NORMAL, "done").unwrap();
        assert_eq!(client.state(), State::CloseSent);
        let mut wire = client.take_output();
        let msg = server.read_message(&mut wire).unwrap().unwrap();
        assert_eq!(
            msg,
            Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "done").unwrap()))
        );
        assert_eq!(server.state(), State::Closed);
        let mut reply = server.take_output();
        let echo = client.read_message(&mut reply).unwrap().unwrap();
        assert_eq!(
            echo,
            Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "").unwrap()))
        );
        assert_eq!(client.state(), State::Closed);
        // Nothing more may be sent.
        assert!(client.send(&Message::text("late")).is_err());
    }

    #[test]
    fn protocol_error_queues_the_right_close_code() {
        let (mut client, mut server) = pair();
        client.send_frame(true, OpCode::Text, b"\xff").unwrap();
        let mut wire = client.take_output();
        assert_eq!(
            server.read_message(&mut wire),
            Err(ProtocolError::InvalidUtf8)
        );
        let mut reply = server.take_output();
        match client.read_message(&mut reply).unwrap() {
            Some(Message::Close(Some(close))) => assert_eq!(close.code, CloseCode::INVALID_DATA),
            other => panic!("expected a 1007 close, got {other:?}"),
        }
    }

    #[test]
    fn fragmented_message_is_assembled() {
        let (mut client, mut server) = pair();
        client.send_frame(false, OpCode::Text, b"frag").unwrap();
        client.send_frame(true, OpCode::Ping, b"").unwrap();
        client
            .send_frame(true, OpCode::Continuation, "mént".as_bytes())
            .unwrap();
        let mut wire = client.take_output();
        assert_eq!(
            server.read_message(&mut wire).unwrap(),
            Some(Message::Ping("".into()))
        );
        assert_eq!(
            server.read_message(&mut wire).unwrap(),
            Some(Message::text("fragmént"))
        );
    }

    #[test]
    fn client_masks_with_fresh_keys() {
        let mut client = Protocol::new(Config::new(Role::Client), |b| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = i as u8;
            }
        });
        client.send(&Message::binary(vec![0u8; 4])).unwrap();
        client.send(&Message::binary(vec![0u8; 4])).unwrap();
        let out = client.take_output();
        // Masking zeros reveals the keys: two different keys.
        assert_eq!(&out[2..6], &out[6..10]);
        assert_eq!(&out[12..16], &out[16..20]);
        assert_ne!(&out[6..10], &out[16..20]);
    }

    mod deflate {
        use super::*;
        use crate::deflate::{Deflate, DeflateConfig, DeflateParams};

        fn deflating(config: DeflateConfig) -> (Protocol, Protocol) {
            let (mut client, mut server) = pair();
            let params = DeflateParams::default();
            client.set_deflate(Deflate::new(Role::Client, params, &config));
            server.set_deflate(Deflate::new(Role::Server, params, &config));
            (client, server)
        }

        fn frames(p: &Protocol, wire: &BytesMut) -> Vec<(u8, usize)> {
            let mut config = *p.config();
            config.incoming_mask = crate::MaskPolicy::Any;
            let mut d = FrameDecoder::new(config);
            d.allow_rsv1();
            let mut out = Vec::new();
            let mut copy = wire.clone();
            while let Some(f) = d.decode(&mut copy).unwrap() {
                out.push((
                    (f.fin as u8) << 7 | (f.rsv1 as u8) << 6 | f.opcode.as_u8(),
                    f.payload.len(),
                ));
            }
            out
        }

        #[test]
        fn rsv1_on_the_first_frame_only_and_never_on_control_frames() {
            let (mut client, mut server) = deflating(DeflateConfig::default());
            client.set_fragment_size(Some(100));
            let text = "abcdefghij".repeat(2000) + &"x".repeat(5000);
            client.send(&Message::text(text.as_str())).unwrap();
            client.send(&Message::Ping("p".into())).unwrap();
            let mut wire = client.take_output();
            let seen = frames(&client, &wire);
            assert!(seen.len() > 2, "{seen:?}");
            assert_eq!(seen[0].0, 0x40 | 0x1, "first: RSV1, text, not fin");
            for (bits, len) in &seen[1..seen.len() - 2] {
                assert_eq!((*bits, *len), (0x0, 100));
            }
            assert_eq!(seen[seen.len() - 2].0, 0x80);
            assert_eq!(seen[seen.len() - 1], (0x89, 1), "ping: fin, no RSV1");
            assert_eq!(
                server.read_message(&mut wire).unwrap(),
                Some(Message::text(text))
            );
            assert_eq!(
                server.read_message(&mut wire).unwrap(),
                Some(Message::Ping("p".into()))
            );
            // The pong the server queued is not compressed either.
            let reply = server.take_output();
            assert_eq!(frames(&server, &reply), [(0x8a, 1)]);
        }

        #[test]
        fn a_proxy_passes_compressed_messages_through_and_the_window_stays_in_step() {
            // client -> (proxy's server side, proxy's client side) -> server
            let config = DeflateConfig::default().compress_if_bigger_than(8);
            let (mut client, mut front) = deflating(config);
            let (mut back, mut server) = deflating(config);
            front.pass_compressed(true, false);
            back.pass_compressed(false, true);
            let messages = [
                Message::text("hello hello hello hello"),
                Message::binary(vec![7u8; 4]),
                Message::text("hello hello hello hello, again"),
                Message::binary((0..5000u32).map(|i| (i % 13) as u8).collect::<Vec<u8>>()),
            ];
            client.set_fragment_size(Some(64));
            for message in &messages {
                client.send(message).unwrap();
            }
            let mut wire = client.take_output();
            let mut compressed_frames = 0;
            while let Some(frame) = front.read_frame(&mut wire).unwrap() {
                if frame.rsv1 {
                    compressed_frames += 1;
                    back.send_frame_bytes_compressed(frame.fin, frame.opcode, frame.payload)
                        .unwrap();
                } else {
                    back.send_frame_bytes(frame.fin, frame.opcode, frame.payload)
                        .unwrap();
                }
            }
            assert_eq!(compressed_frames, 3, "the small binary went uncompressed");
            let mut upstream_wire = back.take_output();
            for message in messages {
                assert_eq!(
                    server.read_message(&mut upstream_wire).unwrap(),
                    Some(message)
                );
            }
        }

        #[test]
        fn passing_a_compressed_frame_needs_the_connection_set_to_pass_them() {
            let (mut client, _) = deflating(DeflateConfig::default());
            let err = client
                .send_frame_bytes_compressed(true, OpCode::Text, Bytes::from_static(b"x"))
                .unwrap_err();
            assert!(matches!(err, ProtocolError::InvalidSend(_)), "{err:?}");
        }

        #[test]
        fn small_messages_go_out_uncompressed() {
            let (mut client, mut server) =
                deflating(DeflateConfig::default().compress_if_bigger_than(16));
            client.send(&Message::binary(vec![1u8; 16])).unwrap();
            client.send(&Message::binary(vec![1u8; 17])).unwrap();
            let mut wire = client.take_output();
            let seen = frames(&client, &wire);
            assert_eq!(seen[0], (0x82, 16));
            assert_eq!(seen[1].0, 0xc2);
            for len in [16, 17] {
                assert_eq!(
                    server.read_message(&mut wire).unwrap(),
                    Some(Message::binary(vec![1u8; len]))
                );
            }
        }

        #[test]
        fn fragmented_sends_stream_through_the_compressor() {
            let (mut client, mut server) = deflating(DeflateConfig::default());
            client
                .send_frame(false, OpCode::Text, "héllo ".repeat(100).as_bytes())
                .unwrap();
            client.send_frame(true, OpCode::Ping, b"").unwrap();
            client
                .send_frame(false, OpCode::Continuation, "wörld ".repeat(100).as_bytes())
                .unwrap();
            client.send_frame(true, OpCode::Continuation, b"").unwrap();
            let mut wire = client.take_output();
            let seen = frames(&client, &wire);
            assert_eq!(
                seen.iter().map(|f| f.0).collect::<Vec<_>>(),
                [0x41, 0x89, 0x00, 0x80]
            );
            assert!(seen[0].1 < 100);
            assert_eq!(
                server.read_message(&mut wire).unwrap(),
                Some(Message::Ping("".into()))
            );
            let expected = "héllo ".repeat(100) + &"wörld ".repeat(100);
            assert_eq!(
                server.read_message(&mut wire).unwrap(),
                Some(Message::text(expected))
            );
            // Frame by frame, the receiver sees each fragment inflated.
            client
                .send_frame(false, OpCode::Binary, &[5; 1000])
                .unwrap();
            client
                .send_frame(true, OpCode::Continuation, &[6; 1000])
                .unwrap();
            let mut wire = client.take_output();
            let first = server.read_frame(&mut wire).unwrap().unwrap();
            assert_eq!((first.rsv1, &first.payload[..]), (false, &[5u8; 1000][..]));
            let last = server.read_frame(&mut wire).unwrap().unwrap();
            assert_eq!((last.fin, &last.payload[..]), (true, &[6u8; 1000][..]));
        }

        #[test]
        fn a_refused_send_leaves_the_compressor_in_step() {
            let (mut client, mut server) = deflating(DeflateConfig::default());
            client.set_max_send_len(1000);
            assert!(client.send(&Message::binary(vec![3u8; 1001])).is_err());
            assert!(client
                .send_frame(true, OpCode::Continuation, &[3; 10])
                .is_err());
            let data = vec![3u8; 1000];
            client.send(&Message::binary(data.clone())).unwrap();
            let mut wire = client.take_output();
            assert_eq!(
                server.read_message(&mut wire).unwrap(),
                Some(Message::binary(data))
            );
        }

        #[test]
        fn a_bomb_closes_with_1009_and_bad_inflated_text_with_1007() {
            let (mut client, mut server) = deflating(DeflateConfig::default());
            server.set_limits(crate::Limits::default().with_max_message_len(1 << 20));
            client.set_max_send_len(32 << 20);
            client.send(&Message::binary(vec![0u8; 32 << 20])).unwrap();
            let mut wire = client.take_output();
            assert!(wire.len() < 64 * 1024);
            let err = server.read_message(&mut wire).unwrap_err();
            assert!(matches!(err, ProtocolError::MessageTooBig { limit, .. } if limit == 1 << 20));
            let mut reply = server.take_output();
            match client.read_message(&mut reply).unwrap() {
                Some(Message::Close(Some(close))) => assert_eq!(close.code, CloseCode::TOO_BIG),
                other => panic!("expected a 1009 close, got {other:?}"),
            }

            let (mut client, mut server) = deflating(DeflateConfig::default());
            // Binary compressed, then relabelled as text: invalid UTF-8 inside.
            client.send(&Message::binary(vec![0xffu8; 100])).unwrap();
            let mut wire = client.take_output();
            wire[0] = (wire[0] & 0xf0) | 0x1;
            assert_eq!(
                server.read_message(&mut wire),
                Err(ProtocolError::InvalidUtf8)
            );
            let mut reply = server.take_output();
            match client.read_message(&mut reply).unwrap() {
                Some(Message::Close(Some(close))) => {
                    assert_eq!(close.code, CloseCode::INVALID_DATA)
                }
                other => panic!("expected a 1007 close, got {other:?}"),
            }
        }

        #[test]
        fn compressed_frames_need_the_extension() {
            let (mut client, _) = deflating(DeflateConfig::default());
            let (_, mut plain_server) = pair();
            client.send(&Message::text("hello hello hello")).unwrap();
            let mut wire = client.take_output();
            assert_eq!(
                plain_server.read_message(&mut wire),
                Err(ProtocolError::ReservedBits(0b100))
            );
        }
    }
}
