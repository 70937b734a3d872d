//! Fuzz chunked decoding (`gatehouse_http1::ChunkState`) as the front end runs it over
//! a buffer that fills a piece at a time.
//!
//! The first two bytes choose where the body is split into arrivals; the rest is the
//! body as the client sends it.
//!
//! Invariants (a panic here is a finding):
//! - no input panics and every step makes progress (or asks for more);
//! - the outcome does not depend on how the bytes arrive: all at once, in three pieces
//!   and in small reads (byte by byte for up to 256 bytes) give the same data, the same
//!   end and the same refusal;
//! - it matches an independent reading of RFC 9112 §7.1 (size lines of 1–15 hex digits
//!   with optional extensions, CRLF line ends, data then CRLF, trailers until an empty
//!   line; more than `MAX_CHUNK_LINE` bytes before a line's LF are refused);
//! - the data re-chunked as the gateway sends it upstream decodes to the same data:
//!   what the upstream reads is what the gateway read.
#![no_main]

use gatehouse_http1::chunked::MAX_CHUNK_LINE;
use gatehouse_http1::{ChunkState, ChunkStep};
use libfuzzer_sys::fuzz_target;

/// How decoding ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The body is complete after this many bytes.
    Done(usize),
    /// The input ended first.
    Short,
    /// Refused.
    Refused,
}

/// Decode with the state machine, `input` arriving in pieces ending at `cuts`.
fn decode(input: &[u8], cuts: &[usize]) -> (Vec<u8>, End) {
    let mut state = ChunkState::Size;
    let mut data = Vec::new();
    let mut pos = 0; // consumed
    let mut avail = 0; // arrived
    let mut arrivals = cuts.iter().copied().filter(|&c| c > 0 && c < input.len()).chain([input.len()]);
    loop {
        if state == ChunkState::Done {
            return (data, End::Done(pos));
        }
        let buffered = &input[pos..avail];
        match state.step(buffered) {
            Err(_) => return (data, End::Refused),
            Ok(ChunkStep::Data(n)) => {
                assert!(n > 0 && n <= buffered.len(), "data step of {n} over {} buffered", buffered.len());
                data.extend_from_slice(&buffered[..n]);
                pos += n;
            }
            Ok(ChunkStep::Framing(n)) => {
                assert!(n > 0 && n <= buffered.len(), "framing step of {n} over {} buffered", buffered.len());
                pos += n;
            }
            Ok(ChunkStep::NeedMore) => match arrivals.find(|&c| c > avail) {
                Some(c) => avail = c,
                None => return (data, End::Short),
            },
        }
    }
}

/// RFC 9112 §7.1, read directly.
fn reference(input: &[u8]) -> (Vec<u8>, End) {
    let mut data = Vec::new();
    let mut pos = 0;
    // A line: its content and the position after its CRLF.
    let line = |pos: usize| -> Result<Option<(&[u8], usize)>, ()> {
        let rest = &input[pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i > MAX_CHUNK_LINE => Err(()),
            Some(i) if i >= 1 && rest[i - 1] == b'\r' => Ok(Some((&rest[..i - 1], pos + i + 1))),
            Some(_) => Err(()),
            None if rest.len() > MAX_CHUNK_LINE => Err(()),
            None => Ok(None),
        }
    };
    loop {
        let (size_line, next) = match line(pos) {
            Err(()) => return (data, End::Refused),
            Ok(None) => return (data, End::Short),
            Ok(Some(l)) => l,
        };
        let digits = size_line.split(|&b| b == b';').next().unwrap_or_default();
        let digits = digits.trim_ascii_end();
        if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return (data, End::Refused);
        }
        let size = digits.iter().fold(0u64, |acc, &d| acc * 16 + (d as char).to_digit(16).unwrap_or(0) as u64);
        pos = next;
        if size == 0 {
            loop {
                match line(pos) {
                    Err(()) => return (data, End::Refused),
                    Ok(None) => return (data, End::Short),
                    Ok(Some((l, next))) => {
                        pos = next;
                        if l.is_empty() {
                            return (data, End::Done(pos));
                        }
                    }
                }
            }
        }
        let end = pos.saturating_add(size as usize);
        if end > input.len() {
            data.extend_from_slice(&input[pos..]);
            return (data, End::Short);
        }
        data.extend_from_slice(&input[pos..end]);
        pos = end;
        match &input[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [] | [b'\r'] => return (data, End::Short),
            _ => return (data, End::Refused),
        }
    }
}

/// The data as the gateway re-chunks it for the upstream (one chunk per data step).
fn rechunk(data: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(piece.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else { return };
    let whole = decode(body, &[]);
    let n = body.len().max(1);
    let cuts = [*a as usize % n, (*a as usize * 7 + *b as usize) % n, *b as usize % n];
    let mut sorted = cuts;
    sorted.sort();
    let pieces = decode(body, &sorted);
    // Small reads: byte by byte for short bodies, at most 256 reads for long ones (each
    // step rescans what is buffered, so a read per byte of a 4 KiB line is quadratic).
    let stride = (body.len() / 256).max(1);
    let small: Vec<usize> = (1..body.len()).step_by(stride).collect();
    let small_reads = decode(body, &small);
    assert_eq!(whole, pieces, "split at {sorted:?} decodes differently");
    assert_eq!(whole, small_reads, "read {stride} bytes at a time, it decodes differently");
    // The reference reads the whole body (a short one may have read less data: the
    // state machine passes partial data on as it arrives, so compare what both read).
    let expected = reference(body);
    match (&whole.1, &expected.1) {
        (End::Short, End::Short) => assert!(expected.0.starts_with(&whole.0) || whole.0.starts_with(&expected.0)),
        _ => assert_eq!(whole, expected, "differs from RFC 9112's reading"),
    }
    if let End::Done(used) = whole.1 {
        assert!(used <= body.len());
        let again = rechunk(&whole.0, 1 + *a as usize);
        assert_eq!(decode(&again, &[]), (whole.0.clone(), End::Done(again.len())), "the upstream reads other data");
    }
});
