//! Framing of the messages between the parent and the restricted worker
//! (their types are in [`crate::wire`]): a 4-byte little-endian length
//! followed by JSON.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

pub use crate::wire::{Comparison, Probe, Request, Response, Role, PROTOCOL_VERSION};

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 20;

/// Writes one frame.
pub fn send<T: Serialize>(w: &mut dyn Write, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other("message larger than the frame limit"));
    }
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub fn recv<T: for<'de> Deserialize<'de>>(r: &mut dyn Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::other(format!(
            "frame of {n} bytes is larger than the limit"
        )));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bound() {
        let mut buf = Vec::new();
        send(&mut buf, &Request::SelfTest(Probe::Sleep(3))).unwrap();
        send(&mut buf, &Request::Shutdown).unwrap();
        let mut r = &buf[..];
        assert!(matches!(
            recv::<Request>(&mut r).unwrap(),
            Some(Request::SelfTest(Probe::Sleep(3)))
        ));
        assert!(matches!(
            recv::<Request>(&mut r).unwrap(),
            Some(Request::Shutdown)
        ));
        assert!(recv::<Request>(&mut r).unwrap().is_none());
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(recv::<Request>(&mut &huge[..]).is_err());
    }
}
