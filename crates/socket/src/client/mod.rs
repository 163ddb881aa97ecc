pub use crate::connection::WebSocket as _W; pub async fn connect(_u: &str) -> crate::Result<(crate::WebSocket<tokio::net::TcpStream>, http::Response<()>)> { todo!() }
