//! A server that pushes: the upstream of `scripts/bench`'s push scenarios
//! (a chat room or a market feed). Each connection's first message is
//! echoed, so that `frameway bench` sees its connection open; its second
//! subscribes, and from then on the server streams copies of that echo,
//! unasked, as fast as the connection takes them. Copies are batched into 64 KiB writes, so the
//! server spends little per message and whatever proxy stands in front of
//! it is what the measurement sees. It trusts its client (no checks).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of frames per write.
const BATCH: usize = 64 * 1024;

fn main() {
    frameway_bench_peers::serve_each("push server", serve);
}

async fn serve(mut conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024 + 16];
    let mut have = frameway_bench_peers::upgrade(&mut conn, &mut buf).await?;
    let (opcode, start, len) = loop {
        if let Some((opcode, start, len)) = frameway_bench_peers::frame_at(&buf[..have]) {
            if start + len <= have {
                break (opcode, start, len);
            }
        }
        if have == buf.len() {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let n = conn.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    };
    let key: [u8; 4] = buf[start - 4..start].try_into().unwrap();
    frameway_wire::apply_mask(&mut buf[start..start + len], key, 0);
    let mut frame = vec![0x80 | opcode];
    match len {
        0..=125 => frame.push(len as u8),
        126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&buf[start..start + len]);
    conn.write_all(&frame).await?;
    // Whatever comes next (`frameway bench --receive` sends its message
    // again) subscribes.
    if have == start + len && conn.read(&mut buf).await? == 0 {
        return Ok(());
    }
    let batch = frame.repeat((BATCH / frame.len()).max(1));
    // The client only reads from here on. When it goes, it leaves pushed
    // bytes unread, so its kernel resets the connection and a write fails.
    loop {
        conn.write_all(&batch).await?;
    }
}
