//! Typed messages: values serialised as JSON text (Ktor's `sendSerialized`
//! and `receiveDeserialized`).

use frameway_wire::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::WebSocket;
use crate::error::{Error, Result};

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Sends `value` as a JSON text message.
    ///
    /// ```no_run
    /// # async fn demo(mut ws: frameway::WebSocket<tokio::net::TcpStream>) -> frameway::Result<()> {
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Chat { room: String, text: String }
    /// ws.send_json(&Chat { room: "lobby".into(), text: "hi".into() }).await?;
    /// let reply: Chat = ws.recv_json().await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let text = serde_json::to_string(value)?;
        self.send(Message::text(text)).await
    }

    /// Receives the next data message (text or binary) and deserialises it
    /// from JSON. Pings and pongs are skipped; a close is [`Error::Closed`].
    pub async fn recv_json<T: DeserializeOwned>(&mut self) -> Result<T> {
        loop {
            match self.recv().await {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
                Some(Ok(Message::Binary(data))) => return Ok(serde_json::from_slice(&data)?),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => return Err(Error::Closed),
                Some(Err(e)) => return Err(e),
            }
        }
    }
}
