//! What both listeners (the public one and the admin one) do with an accepted connection
//! before serving it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// The connection `listener.accept()` gave, or `None` after a failed accept (out of file
/// descriptors, a connection reset before it was taken): logged, and the listener pauses
/// 10 ms before accepting again.
pub(crate) async fn accepted(accept: io::Result<(TcpStream, SocketAddr)>) -> Option<(TcpStream, SocketAddr)> {
    match accept {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            None
        }
    }
}
