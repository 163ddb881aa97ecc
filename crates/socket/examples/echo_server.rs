//! A minimal echo server: `cargo run -p frameway --example echo_server`,
//! then `frameway client ws://127.0.0.1:9002`.

use frameway::Message;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> frameway::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:9002").await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut ws = frameway::accept(tcp).await?;
            while let Some(msg) = ws.recv().await {
                if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
                    ws.send(msg).await?;
                }
            }
            Ok::<_, frameway::Error>(())
        });
    }
}
