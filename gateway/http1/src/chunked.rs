//! Chunked transfer coding: a decoder that tells data from framing, step by step, over
//! whatever part of the body is buffered.

use crate::head::HeadError;

/// Longest chunk-size line (size, extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data; this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// The body is complete.
    Done,
}

/// One step of decoding: data bytes to pass on, or how much framing was consumed.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkStep {
    /// `n` bytes of `input` are data.
    Data(usize),
    /// `n` bytes of `input` were framing.
    Framing(usize),
    /// More input is needed.
    NeedMore,
}

/// A chunk-size line, if `line` (without CRLF) is one: hex digits, then optional
/// extensions after `;`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// A line ending at the first LF of `input`, which must be preceded by CR: its length
/// without CRLF and the bytes it takes. A line is refused once more than
/// [`MAX_CHUNK_LINE`] bytes precede its LF, whether or not the LF has arrived yet (so the
/// outcome never depends on how the bytes were split into reads).
fn line(input: &[u8]) -> Result<Option<(usize, usize)>, HeadError> {
    match input.iter().position(|&b| b == b'\n') {
        Some(i) if i > MAX_CHUNK_LINE => Err(HeadError::Malformed),
        Some(i) if i >= 1 && input[i - 1] == b'\r' => Ok(Some((i - 1, i + 1))),
        Some(_) => Err(HeadError::Malformed),
        None if input.len() > MAX_CHUNK_LINE => Err(HeadError::Malformed),
        None => Ok(None),
    }
}

impl ChunkState {
    /// Decode the next step of `input` (the buffered, not yet consumed part of the body):
    /// the caller consumes the bytes the step names, then calls again.
    pub fn step(&mut self, input: &[u8]) -> Result<ChunkStep, HeadError> {
        match *self {
            ChunkState::Done => Ok(ChunkStep::Framing(0)),
            ChunkState::Size => {
                let Some((len, used)) = line(input)? else { return Ok(ChunkStep::NeedMore) };
                let n = chunk_size(&input[..len]).ok_or(HeadError::Malformed)?;
                *self = if n == 0 { ChunkState::Trailers } else { ChunkState::Data(n) };
                Ok(ChunkStep::Framing(used))
            }
            ChunkState::Data(left) => {
                if input.is_empty() {
                    return Ok(ChunkStep::NeedMore);
                }
                let n = (input.len() as u64).min(left) as usize;
                *self = if n as u64 == left { ChunkState::DataEnd } else { ChunkState::Data(left - n as u64) };
                Ok(ChunkStep::Data(n))
            }
            ChunkState::DataEnd => match input {
                [b'\r', b'\n', ..] => {
                    *self = ChunkState::Size;
                    Ok(ChunkStep::Framing(2))
                }
                [] | [b'\r'] => Ok(ChunkStep::NeedMore),
                _ => Err(HeadError::Malformed),
            },
            ChunkState::Trailers => {
                let Some((len, used)) = line(input)? else { return Ok(ChunkStep::NeedMore) };
                if len == 0 {
                    *self = ChunkState::Done;
                }
                Ok(ChunkStep::Framing(used))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk(input: &[u8]) -> Result<(Vec<u8>, usize), HeadError> {
        let mut state = ChunkState::Size;
        let mut data = Vec::new();
        let mut pos = 0;
        while state != ChunkState::Done {
            match state.step(&input[pos..])? {
                ChunkStep::Data(n) => {
                    data.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                }
                ChunkStep::Framing(n) => pos += n,
                ChunkStep::NeedMore => return Err(HeadError::TooLarge),
            }
        }
        Ok((data, pos))
    }

    #[test]
    fn chunked_bodies() {
        let (d, used) = dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT").unwrap();
        assert_eq!((d.as_slice(), used), (&b"hello world"[..], 44));
        assert_eq!(dechunk(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap().0, b"0123456789");
        // Byte by byte gives the same.
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        let mut state = ChunkState::Size;
        let mut buf = Vec::new();
        let mut data = Vec::new();
        for b in input {
            buf.push(*b);
            loop {
                match state.step(&buf).unwrap() {
                    ChunkStep::Data(n) => {
                        data.extend_from_slice(&buf[..n]);
                        buf.drain(..n);
                    }
                    ChunkStep::Framing(n) if n > 0 => {
                        buf.drain(..n);
                    }
                    _ => break,
                }
            }
        }
        assert_eq!((data.as_slice(), state), (&b"abc"[..], ChunkState::Done));
        for bad in [
            &b"g\r\nx\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"+3\r\nabc\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"\r\n",
        ] {
            assert!(matches!(dechunk(bad), Err(HeadError::Malformed)), "accepted {bad:?}");
        }
        // A chunk-size line without end is bounded.
        let long = [b'1'; MAX_CHUNK_LINE + 1];
        assert!(ChunkState::Size.step(&long).is_err());
    }

    /// Found by fuzzing (fuzz/fuzz_targets/http1_chunked.rs): a chunk-size line longer than
    /// `MAX_CHUNK_LINE` was accepted when its LF arrived in the same read, and refused when
    /// the read ended before it. Both are refused now, as is such a trailer line.
    #[test]
    fn long_lines_are_refused_however_they_arrive() {
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE));
        body.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(matches!(dechunk(&body), Err(HeadError::Malformed)));
        assert!(ChunkState::Size.step(&body[..MAX_CHUNK_LINE + 1]).is_err());
        let mut trailer = b"0\r\nX: ".to_vec();
        trailer.extend(std::iter::repeat_n(b'v', MAX_CHUNK_LINE));
        trailer.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(dechunk(&trailer), Err(HeadError::Malformed)));
        // At the bound, a line is still read.
        let mut at = b"1;".to_vec();
        at.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE - 3));
        at.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(dechunk(&at).unwrap().0, b"x");
    }
}
