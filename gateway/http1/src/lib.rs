//! # gatehouse-http1
//!
//! The pure part of the native gateway's HTTP/1.1 front end (`gatehouse-proxy`'s `http1`):
//! request-head analysis and message framing ([`head`]) and chunked decoding
//! ([`chunked`]), following RFC 9112 and refusing what request smuggling relies on. No
//! I/O: the proxy's connection task reads the bytes and calls these, and the fuzz targets
//! call the same functions on arbitrary input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunked;
pub mod head;

pub use chunked::{ChunkState, ChunkStep};
pub use head::{
    analyse, body_framing, find_request_head, find_response_head, Framing, HeadError, RequestInfo, MAX_HEAD,
    MAX_HEADERS,
};
