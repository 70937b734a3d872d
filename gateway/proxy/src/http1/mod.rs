//! The HTTP/1.1 front end: one task per client connection reads each request head
//! (httparse), asks the filter chain ([`Gateway::run_chain`]), and forwards an allowed
//! request over an upstream connection that the same task owns, streaming bodies both
//! ways through one fixed buffer. No second task, no channel and no pool lookup per
//! request: the client connection keeps its upstream connection between requests, and
//! hands it to a small idle pool per upstream when it closes. Clients that open with the
//! HTTP/2 preface are served by hyper ([`crate::h2`]).
//!
//! Framing follows RFC 9112 and refuses what request smuggling relies on: a request with
//! both `Content-Length` and `Transfer-Encoding`, more than one `Content-Length` or
//! `Host`, a transfer coding other than a final `chunked`, `Transfer-Encoding` from an
//! HTTP/1.0 client, or a malformed chunk is answered 400 and the connection closed.
//! Request bodies are re-framed for the upstream (the gateway's own `Content-Length` or
//! chunking), so what the upstream reads is exactly what the gateway read. Heads are
//! bounded (64 KiB, 100 fields) and must arrive within `limits.header_timeout_secs`;
//! request bodies are bounded by `limits.max_body_bytes` in size and by
//! `limits.body_timeout_secs` without progress.
//!
//! The rooms: `pool` (idle upstream connections), `io` (buffered reads, bounded
//! copies, [`Rewind`]), `write` (heads and answers as bytes) and `conn` (the
//! connection task). Request-head analysis, framing and chunked decoding are pure and
//! live in `gatehouse-http1` (re-exported here), where the fuzz targets reach them.
//!
//! [`Gateway::run_chain`]: crate::gateway::Gateway::run_chain

mod conn;
pub(crate) mod io;
pub(crate) mod pool;
mod write;

pub use conn::serve;
pub use gatehouse_http1::{analyse, Framing, HeadError, RequestInfo, MAX_HEAD, MAX_HEADERS};
pub use io::Rewind;
pub use pool::RawUpstreams;
