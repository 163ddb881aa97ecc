//! Reading into buffers borrowed from the thread's spares
//! ([`frameway_wire::spare`]), held only while they hold bytes.
//!
//! A connection that waits for its peer (a handshake head not yet sent, an
//! idle WebSocket) must not hold a buffer meanwhile: in a reconnect storm
//! ten thousand connections wait at once, and each would take a 64 KiB
//! buffer the spares cannot supply, through glibc's slow path for large
//! blocks, and free it again moments later.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use frameway_wire::spare;
use tokio::io::{AsyncRead, ReadBuf};

/// Reads what `io` has into `buf`'s spare room, and returns how many bytes
/// came (0 at the end of the stream).
///
/// An empty `buf` without capacity first borrows a spare buffer. A read
/// that finds nothing yet (or the end of the stream) while `buf` is empty
/// gives it back, so a waiting connection holds no buffer. A full `buf`
/// doubles, so that a read into it never looks like the end of the stream;
/// callers that know better reserve room first.
pub(crate) fn poll_read_spare<S: AsyncRead + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if buf.capacity() == 0 {
        *buf = spare::take();
    } else if buf.len() == buf.capacity() {
        buf.reserve(buf.len());
    }
    let mut read = ReadBuf::uninit(buf.spare_capacity_mut());
    let polled = Pin::new(io).poll_read(cx, &mut read);
    let n = read.filled().len();
    if n == 0 && buf.is_empty() {
        spare::give(std::mem::take(buf));
    }
    ready!(polled)?;
    // SAFETY: `poll_read` initialised the first `n` bytes of the spare room.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// [`poll_read_spare`] as a future.
pub(crate) async fn read_spare<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    poll_fn(|cx| poll_read_spare(io, cx, buf)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_read_that_waits_holds_no_buffer_and_one_that_reads_keeps_it() {
        let (mut near, mut far) = tokio::io::duplex(1024);
        let mut buf = BytesMut::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(poll_read_spare(&mut near, &mut cx, &mut buf).is_pending());
        assert_eq!(buf.capacity(), 0, "a waiting read gave its buffer back");

        far.write_all(b"head").await.unwrap();
        assert_eq!(read_spare(&mut near, &mut buf).await.unwrap(), 4);
        assert_eq!(&buf[..], b"head");
        assert!(buf.capacity() >= spare::BUFFER_SIZE / 2);

        drop(far);
        assert_eq!(read_spare(&mut near, &mut buf).await.unwrap(), 0);
        assert_eq!(
            &buf[..],
            b"head",
            "bytes read are kept at the end of the stream"
        );
    }

    #[tokio::test]
    async fn a_full_buffer_grows_rather_than_read_nothing() {
        let mut buf = BytesMut::with_capacity(4);
        buf.extend_from_slice(b"full");
        let mut wire: &[u8] = b" and more";
        assert!(read_spare(&mut wire, &mut buf).await.unwrap() > 0);
        while read_spare(&mut wire, &mut buf).await.unwrap() > 0 {}
        assert_eq!(&buf[..], b"full and more");
    }

    #[tokio::test]
    async fn a_request_head_longer_than_a_spare_buffer_is_read_whole() {
        use frameway_wire::handshake::HandshakeLimits;
        let long = "x".repeat(2 * spare::BUFFER_SIZE);
        let head = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Long: {long}\r\n\r\nrest");
        let limits = HandshakeLimits {
            max_head_len: 1 << 20,
            ..HandshakeLimits::default()
        };
        let (request, rest) = crate::server::read_request(&mut head.as_bytes(), limits)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(request.headers()["x-long"].len(), long.len());
        assert_eq!(&rest[..], b"rest");
    }
}
