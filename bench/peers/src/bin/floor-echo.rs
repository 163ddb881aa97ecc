//! The floor under every tokio echo server: no WebSocket library, no
//! checks. It answers the upgrade, then for each read parses the frame
//! headers, unmasks the payloads in place and writes them back behind
//! server headers in one `writev`. One `read` and one `write` per message, like
//! every server measured; what any real server does beyond this (UTF-8
//! checks, control frames, limits, close handshake, fragmentation) is its
//! own cost. Not a WebSocket server to use: it trusts its client. The
//! masking loop is Frameway's (`frameway_wire::apply_mask`).

use std::io::{self, IoSlice};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() {
    frameway_bench_peers::serve_each("floor echo", serve);
}

async fn serve(mut conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024 + 16];
    let mut have = frameway_bench_peers::upgrade(&mut conn, &mut buf).await?;
    let mut headers = Vec::with_capacity(64);
    let mut frames = Vec::with_capacity(8);
    loop {
        let mut at = 0;
        let mut closing = false;
        while let Some((opcode, start, len)) = frameway_bench_peers::frame_at(&buf[at..have]) {
            let end = at + start + len;
            if end > have {
                if end > buf.len() {
                    buf.resize(end, 0);
                }
                break;
            }
            let key: [u8; 4] = buf[at + start - 4..at + start].try_into().unwrap();
            frameway_wire::apply_mask(&mut buf[at + start..end], key, 0);
            let h = headers.len();
            headers.push(0x80 | opcode);
            match len {
                0..=125 => headers.push(len as u8),
                126..=0xffff => {
                    headers.push(126);
                    headers.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    headers.push(127);
                    headers.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            frames.push((h..headers.len(), at + start..end));
            at = end;
            if opcode == 0x8 {
                closing = true;
                break;
            }
        }
        if !frames.is_empty() {
            let mut slices: Vec<IoSlice<'_>> = frames
                .iter()
                .flat_map(|(h, p)| {
                    [
                        IoSlice::new(&headers[h.clone()]),
                        IoSlice::new(&buf[p.clone()]),
                    ]
                })
                .collect();
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                let n = conn.write_vectored(slices).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut slices, n);
            }
            headers.clear();
            frames.clear();
        }
        if closing {
            return Ok(());
        }
        buf.copy_within(at..have, 0);
        have -= at;
        let n = conn.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}
