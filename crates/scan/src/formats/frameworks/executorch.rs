//! ExecuTorch programs (`.pte`): a flatbuffer with file identifier `ET`
//! and two digits (schema/program.fbs of pytorch/executorch), optionally an
//! extended header (`eh00` at offset 8) that gives the program's size, then
//! segments (constant data, delegate blobs). The tables are the subset the
//! judgement needs, declared by hand with the slots of that schema; every
//! read goes through the `flatbuffers` verifier. Operators outside the
//! namespaces of ExecuTorch's kernel libraries need a custom kernel linked
//! into the runtime (ETH001). Delegate blobs are processed by backend code
//! and are not inspected; the report names the backends.

use std::collections::BTreeSet;
use std::io::{self, Read};

use flatbuffers::{
    ForwardsUOffset, InvalidFlatbuffer, Vector, Verifiable, Verifier, VerifierOptions,
};
use probity_report::Finding;

use super::rules;
use crate::{limits, Detected, Sink};

/// Operator namespaces whose kernels ship with ExecuTorch and its
/// first-party libraries.
const KNOWN_NAMESPACES: &[&str] = &[
    "aten",
    "quantized_decomposed",
    "dim_order_ops",
    "executorch_prim",
    "llama",
    "torchao",
    "quantized",
    "cadence",
    "et_vk",
    "prim",
];

crate::formats::flatbuffer_table!(Program);
crate::formats::flatbuffer_table!(Plan);
crate::formats::flatbuffer_table!(Operator);
crate::formats::flatbuffer_table!(Delegate);

// vtable slots: 4 + 2 × field id
impl Verifiable for Program<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u32>("version", 4, false)?
            .visit_field::<ForwardsUOffset<Vector<ForwardsUOffset<Plan>>>>(
                "execution_plan",
                6,
                false,
            )?
            .finish();
        Ok(())
    }
}

impl Verifiable for Plan<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<&str>>("name", 4, false)?
            .visit_field::<ForwardsUOffset<Vector<ForwardsUOffset<Operator>>>>(
                "operators",
                16,
                false,
            )?
            .visit_field::<ForwardsUOffset<Vector<ForwardsUOffset<Delegate>>>>(
                "delegates",
                18,
                false,
            )?
            .finish();
        Ok(())
    }
}

impl Verifiable for Operator<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<&str>>("name", 4, false)?
            .visit_field::<ForwardsUOffset<&str>>("overload", 6, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for Delegate<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<&str>>("id", 4, false)?
            .finish();
        Ok(())
    }
}

// SAFETY (all accessors): only called on tables reached from
// `flatbuffers::root_with_opts`, which verified each declared field above.
impl<'a> Program<'a> {
    fn plans(&self) -> Option<Vector<'a, ForwardsUOffset<Plan<'a>>>> {
        unsafe {
            self.0
                .get::<ForwardsUOffset<Vector<ForwardsUOffset<Plan>>>>(6, None)
        }
    }
}

impl<'a> Plan<'a> {
    fn operators(&self) -> Option<Vector<'a, ForwardsUOffset<Operator<'a>>>> {
        unsafe {
            self.0
                .get::<ForwardsUOffset<Vector<ForwardsUOffset<Operator>>>>(16, None)
        }
    }
    fn delegates(&self) -> Option<Vector<'a, ForwardsUOffset<Delegate<'a>>>> {
        unsafe {
            self.0
                .get::<ForwardsUOffset<Vector<ForwardsUOffset<Delegate>>>>(18, None)
        }
    }
}

impl<'a> Operator<'a> {
    fn name(&self) -> &'a str {
        unsafe { self.0.get::<ForwardsUOffset<&str>>(4, None) }.unwrap_or("")
    }
}

impl<'a> Delegate<'a> {
    fn id(&self) -> &'a str {
        unsafe { self.0.get::<ForwardsUOffset<&str>>(4, None) }.unwrap_or("")
    }
}

/// Whether the head is an ExecuTorch program: `ET` and two digits as the
/// flatbuffer's file identifier.
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 8 && &head[4..6] == b"ET" && head[6].is_ascii_digit() && head[7].is_ascii_digit()
}

pub fn scan(
    r: &mut dyn Read,
    _len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut problems: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    (&mut *r).take(64).read_to_end(&mut buf)?;
    // the extended header bounds the flatbuffer: the segments after it
    // (weights, delegate blobs) are not read
    let mut limit = limits::MAX_TFLITE_BYTES;
    if buf.len() >= 32 && &buf[8..12] == b"eh00" {
        let size = u64::from_le_bytes(buf[16..24].try_into().unwrap_or_default());
        if size < 8 {
            problems.push(format!(
                "the extended header gives a program size of {size} bytes"
            ));
        } else {
            limit = size.min(limit);
        }
    }
    if limit > buf.len() as u64 {
        (&mut *r)
            .take(limit - buf.len() as u64)
            .read_to_end(&mut buf)?;
    }
    buf.truncate(limit as usize);
    let opts = VerifierOptions {
        max_tables: 4_000_000,
        ..Default::default()
    };
    let mut custom: BTreeSet<String> = BTreeSet::new();
    let mut backends: BTreeSet<String> = BTreeSet::new();
    if problems.is_empty() {
        match flatbuffers::root_with_opts::<Program>(&opts, &buf) {
            Ok(p) => {
                let plans: Vec<Plan> = p.plans().map(|v| v.iter().collect()).unwrap_or_default();
                if plans.is_empty() {
                    problems.push("the program has no execution plan".into());
                }
                for plan in plans {
                    for op in plan.operators().iter().flat_map(|v| v.iter()) {
                        let name = op.name();
                        let ns = name.split("::").next().unwrap_or("");
                        if !name.contains("::") || !KNOWN_NAMESPACES.contains(&ns) {
                            custom.insert(name.to_string());
                        }
                    }
                    for d in plan.delegates().iter().flat_map(|v| v.iter()) {
                        backends.insert(d.id().to_string());
                    }
                }
            }
            Err(e) => problems.push(format!("the flatbuffer does not verify: {e}")),
        }
    }
    if !custom.is_empty() {
        let list: Vec<String> = custom.iter().map(|c| format!("`{c}`")).collect();
        sink.findings.push(
            Finding::new(
                &rules::ETH001,
                format!(
                    "operators need kernels outside ExecuTorch's libraries: {}{}",
                    crate::formats::summarise(&list, 8),
                    if backends.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (delegated to {}, not inspected)",
                            backends.iter().cloned().collect::<Vec<_>>().join(", ")
                        )
                    }
                ),
            )
            .at(Some(member), None)
            .evidence(crate::formats::summarise(&list, 8)),
        );
    }
    super::incomplete(sink, member, "ExecuTorch program", &problems);
    Ok(Detected::named("executorch"))
}

stream_format!(
    ExecuTorch,
    "executorch",
    "ExecuTorch programs (.pte): operators of every execution plan, for kernels outside ExecuTorch's libraries",
    [&rules::ETH001, &crate::rules::SCN005],
    sniff,
    scan
);
