//! One analyzer per container or file format. Each claims content by its
//! bytes (see [`crate::sniff`]); the scanner core only dispatches.

/// Declares a flatbuffer table type read through `flatbuffers::Table` (the
/// analyzers declare by hand the slots of the schema they need; every read
/// goes through the verifier first).
macro_rules! flatbuffer_table {
    ($name:ident) => {
        #[derive(Clone, Copy)]
        struct $name<'a>(flatbuffers::Table<'a>);
        impl<'a> flatbuffers::Follow<'a> for $name<'a> {
            type Inner = $name<'a>;
            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
                // SAFETY: forwarded from the caller (a verified buffer)
                $name(unsafe { flatbuffers::Table::follow(buf, loc) })
            }
        }
    };
}
pub(crate) use flatbuffer_table;

pub mod archive;
pub mod config;
pub mod frameworks;
pub mod gguf;
pub mod keras;
pub mod numpy;
pub mod onnx;
pub mod protobuf;
pub mod safetensors;
pub mod secrets;
pub mod tensorflow;
pub mod torch;

use crate::limits;

use crate::{rules as scan_rules, Sink};
use probity_report::Finding;

/// The first `n` problems joined with `; `, and how many more there are.
pub fn summarise(problems: &[String], n: usize) -> String {
    let mut m = problems[..problems.len().min(n)].join("; ");
    let more = problems.len().saturating_sub(n);
    if more > 0 {
        m.push_str(&format!("; and {more} more"));
    }
    m
}

/// The container-depth bound shared by every container analyzer: past
/// [`limits::MAX_CONTAINER_DEPTH`] the container is reported (`SCN002`) and
/// not opened. Returns true when the caller must stop.
pub fn too_deep(what: &str, member: &str, depth: u32, sink: &mut Sink) -> bool {
    if depth < limits::MAX_CONTAINER_DEPTH {
        return false;
    }
    sink.findings.push(
        Finding::new(
            &scan_rules::SCN002,
            format!(
                "{what} nested deeper than {} containers; not opened",
                limits::MAX_CONTAINER_DEPTH
            ),
        )
        .at(Some(member), None),
    );
    true
}
