//! Messages between the parent and the restricted worker: typed, versioned,
//! framed as a 4-byte little-endian length followed by JSON.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::sandbox::{DeviceKind, Isolation, Policy};
use crate::trigger::{SearchRequest, SearchResult};

/// Bumped on any incompatible change; parent and worker must agree.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// First message: the restrictions to apply before anything else.
    Init {
        version: u32,
        policy: Policy,
    },
    /// Checks that the restrictions hold, from inside the worker. Used by the
    /// test suite and by `--require-sandbox` diagnostics; never touches models.
    SelfTest(Probe),
    /// Load a model folder (read-only under the policy) as suspect or base.
    Load {
        role: Role,
        dir: PathBuf,
        device: DeviceKind,
        /// Read PyTorch pickle weights as data when there are no safetensors.
        allow_pickle_weights: bool,
    },
    /// Run both loaded models on one user prompt.
    Compare {
        prompt: String,
        max_new_tokens: usize,
    },
    /// Target inversion, trigger search and verification on the loaded pair.
    Search(Box<SearchRequest>),
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Suspect,
    Base,
}

/// What one prompt shows about suspect vs base.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// KL(suspect ‖ base) of the next-token distribution at each prompt position.
    pub kl: Vec<f32>,
    /// Jensen–Shannon divergence at each prompt position.
    pub js: Vec<f32>,
    /// Fraction of prompt positions where both models' top-1 token agree.
    pub top1_agreement: f32,
    /// Mean KL(suspect ‖ base) along the suspect's own greedy continuation.
    pub continuation_kl: f32,
    /// Mean log-probability gain (suspect − base) of the suspect's continuation tokens.
    pub continuation_logp_gain: f32,
    /// Tokens whose logit rose most at the last prompt position (after removing the mean shift).
    pub raised: Vec<(u32, String, f32)>,
    pub suspect_text: String,
    pub base_text: String,
}

/// A self-test: something a restricted worker must not be able to do (or a
/// resource limit to hit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Probe {
    /// Open a TCP connection to this address.
    Connect(String),
    /// Create a socket of the given family (`inet`, `inet6`, `unix`).
    Socket(String),
    /// Create and write a file.
    Write(PathBuf),
    /// Read a file.
    Read(PathBuf),
    /// Allocate and touch this many bytes.
    Allocate(u64),
    /// Burn CPU for this many seconds.
    Spin(u64),
    /// Sleep this many seconds (wall clock, no CPU).
    Sleep(u64),
    /// Abort the process.
    Crash,
    /// List the names of the environment variables the worker sees.
    Environment,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Reply to `Init`: the isolation actually achieved.
    Ready {
        version: u32,
        isolation: Isolation,
    },
    /// Result of a probe: whether the action succeeded, and how it failed.
    Probe {
        succeeded: bool,
        detail: String,
    },
    Loaded {
        role: Role,
        model_type: String,
        parameters: usize,
        vocab: usize,
        layers: usize,
    },
    Compared(Box<Comparison>),
    Searched(Box<SearchResult>),
    Error(String),
    Bye,
}

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
