//! The floor under every proxy, tokio or not: a byte relay on one thread
//! over epoll (mio, edge-triggered), between each client and a new
//! connection to `--upstream ADDR`. Like `floor-relay` it never looks at
//! the bytes; unlike it, no runtime, no tasks and no wakers stand between
//! the kernel's readiness events and the reads and writes. What it costs per
//! message is what the kernel's TCP stack costs, and so the distance of
//! nginx, HAProxy and Frameway from it is what each adds.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
const BUFFER: usize = 64 * 1024;

/// Bytes read from one side and not yet written to the other.
struct Pending {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// A client and its upstream connection; `sockets[0]` is the client's.
struct Pair {
    sockets: [TcpStream; 2],
    /// `toward[i]`: bytes on their way to `sockets[i]`.
    toward: [Pending; 2],
}

impl Pair {
    /// Moves bytes from `sockets[from]` to the other socket until the
    /// source is drained or the destination would block; `false` once
    /// either side has closed or failed.
    fn pump(&mut self, from: usize) -> bool {
        let to = 1 - from;
        loop {
            let pending = &mut self.toward[to];
            while pending.start < pending.end {
                match self.sockets[to].write(&pending.buf[pending.start..pending.end]) {
                    Ok(n) => pending.start += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            match self.sockets[from].read(&mut pending.buf) {
                Ok(0) => return false,
                Ok(n) => (pending.start, pending.end) = (0, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
            // A short read emptied the socket's receive queue (nginx's rule
            // too): write it and wait for the next edge instead of paying a
            // read that would only say EAGAIN.
            if pending.end < pending.buf.len() {
                while pending.start < pending.end {
                    match self.sockets[to].write(&pending.buf[pending.start..pending.end]) {
                        Ok(n) => pending.start += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
                return true;
            }
        }
    }
}

fn pending() -> Pending {
    Pending {
        buf: vec![0; BUFFER].into_boxed_slice(),
        start: 0,
        end: 0,
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next(),
            "--upstream" => upstream = args.next(),
            other => panic!("unknown argument {other:?}; usage: --listen ADDR --upstream ADDR"),
        }
    }
    let listen: SocketAddr = listen.expect("--listen ADDR").parse().expect("--listen");
    let upstream: SocketAddr = upstream
        .expect("--upstream ADDR")
        .parse()
        .expect("--upstream");

    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(listen)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("floor epoll relay listening on {listen}, to {upstream}");
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            if event.token() == LISTENER {
                while let Ok((client, _)) = listener.accept() {
                    // A blocking connect: on loopback it is immediate, and
                    // the floor measures messages, not connection setup.
                    let Ok(up) = std::net::TcpStream::connect(upstream) else {
                        continue;
                    };
                    up.set_nonblocking(true)?;
                    let id = free.pop().unwrap_or_else(|| {
                        pairs.push(None);
                        pairs.len() - 1
                    });
                    let mut pair = Pair {
                        sockets: [client, TcpStream::from_std(up)],
                        toward: [pending(), pending()],
                    };
                    for (side, socket) in pair.sockets.iter_mut().enumerate() {
                        socket.set_nodelay(true)?;
                        poll.registry().register(
                            socket,
                            Token(id * 2 + side),
                            Interest::READABLE | Interest::WRITABLE,
                        )?;
                    }
                    pairs[id] = Some(pair);
                }
                continue;
            }
            let id = event.token().0 / 2;
            let Some(pair) = pairs[id].as_mut() else {
                continue;
            };
            // A readable side feeds the other; a writable side takes what
            // waits for it (and then more from the other side). Writable
            // edges with nothing waiting cost no system call.
            let side = event.token().0 % 2;
            let mut open = true;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                open = pair.pump(side);
            }
            let waiting = pair.toward[side].start < pair.toward[side].end;
            if open && event.is_writable() && waiting {
                open = pair.pump(1 - side);
            }
            if !open {
                if let Some(mut pair) = pairs[id].take() {
                    for socket in &mut pair.sockets {
                        let _ = poll.registry().deregister(socket);
                    }
                }
                free.push(id);
            }
        }
    }
}
