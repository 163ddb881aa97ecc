//! Independent read and write halves of one connection.
//!
//! Both halves share the connection behind a mutex held only for the length
//! of one poll. The one subtlety is the socket's write readiness: the read
//! half writes too (pongs, close replies), and a socket remembers a single
//! waker per direction, so both halves register a shared waker that wakes
//! whichever of them is waiting to write.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use frameway_wire::{Frame, Message};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::{Incoming, Reading, WebSocket};
use crate::error::{Error, Result};
use crate::sync::lock;

#[derive(Default)]
struct WriteWakers {
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

impl Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.reader, &self.writer] {
            if let Some(waker) = lock(slot).take() {
                waker.wake();
            }
        }
    }
}

struct Shared<S> {
    ws: Mutex<WebSocket<S>>,
    wakers: Arc<WriteWakers>,
    waker: Waker,
}

pub(crate) fn split<S>(ws: WebSocket<S>) -> (ReadHalf<S>, WriteHalf<S>) {
    let wakers = Arc::new(WriteWakers::default());
    let shared = Arc::new(Shared {
        ws: Mutex::new(ws),
        waker: Waker::from(wakers.clone()),
        wakers,
    });
    (
        ReadHalf {
            shared: shared.clone(),
        },
        WriteHalf { shared },
    )
}

/// The reading half of a split [`WebSocket`]: a `Stream` of messages.
pub struct ReadHalf<S> {
    shared: Arc<Shared<S>>,
}

/// The writing half of a split [`WebSocket`]: a `Sink` of messages.
pub struct WriteHalf<S> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    fn poll_read(
        &self,
        cx: &mut Context<'_>,
        reading: Reading<'_>,
    ) -> Poll<Option<Result<Incoming>>> {
        *lock(&self.shared.wakers.reader) = Some(cx.waker().clone());
        lock(&self.shared.ws).poll_incoming(cx, &self.shared.waker, reading)
    }

    /// Receives the next message; `None` after a clean close.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.poll_read(cx, Reading::Messages))
            .await
            .map(|r| r.map(Incoming::into_message))
    }

    /// Receives the next frame as it arrived.
    pub async fn recv_frame(&mut self) -> Option<Result<Frame>> {
        std::future::poll_fn(|cx| self.poll_read(cx, Reading::Frames))
            .await
            .map(|r| r.map(Incoming::into_frame))
    }

    /// Whether `other` is the write half of the same connection.
    pub fn is_pair_of(&self, other: &WriteHalf<S>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Joins the halves back into one connection.
    ///
    /// # Panics
    /// If the halves come from different connections.
    pub fn unsplit(self, write: WriteHalf<S>) -> WebSocket<S> {
        assert!(
            self.is_pair_of(&write),
            "unsplit of halves of different connections"
        );
        drop(write);
        let shared = Arc::into_inner(self.shared).expect("both halves were given");
        shared.ws.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_read(cx, Reading::Messages)
            .map(|o| o.map(|r| r.map(Incoming::into_message)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    fn with<T>(&self, cx: &mut Context<'_>, f: impl FnOnce(&mut WebSocket<S>, &Waker) -> T) -> T {
        *lock(&self.shared.wakers.writer) = Some(cx.waker().clone());
        f(&mut lock(&self.shared.ws), &self.shared.waker)
    }

    /// Sends a message and flushes it.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        std::future::poll_fn(|cx| self.with(cx, |ws, w| ws.poll_ready_inner(w))).await?;
        lock(&self.shared.ws).queue(&message)?;
        std::future::poll_fn(|cx| self.with(cx, |ws, w| ws.poll_write_out(w))).await?;
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WriteHalf<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.with(cx, |ws, w| ws.poll_ready_inner(w))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        lock(&self.shared.ws).queue(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.with(cx, |ws, w| ws.poll_write_out(w).map_err(Error::from))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.with(cx, |ws, w| ws.poll_close_inner(w))
    }
}
