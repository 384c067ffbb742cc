//! TensorFlow Lite flatbuffers (`TFL3`): the operator codes of the model,
//! read through the `flatbuffers` crate's verifier.
//!
//! The tables are the subset of TensorFlow Lite's `schema.fbs`
//! (tensorflow/compiler/mlir/lite/schema/schema.fbs, Apache-2.0) the
//! judgement needs, declared by hand with the slots of that file; every read
//! goes through `flatbuffers::root`, which verifies the offsets first.
//!
//! Custom operators need code the model does not carry: the application must
//! register a kernel under that name, so a custom op is a dependency to review
//! (warning). `Flex*` operators run TensorFlow kernels through the Select-TF-ops
//! delegate and are judged like TensorFlow graph ops.

use std::collections::BTreeSet;
use std::io::{self, Read};

use flatbuffers::{
    ForwardsUOffset, InvalidFlatbuffer, Vector, Verifiable, Verifier, VerifierOptions,
};

use super::rules;
use crate::format::{model, Format, Head, Label, Stream};
use crate::limits;
use crate::{Detected, Sink};
use probity_report::Finding;

/// `BuiltinOperator.CUSTOM`.
const CUSTOM: i32 = 32;

/// Custom operators whose kernels ship inside the TensorFlow Lite runtime.
const BUNDLED_CUSTOM: &[&str] = &["TFLite_Detection_PostProcess", "AudioSpectrogram", "Mfcc"];

crate::formats::flatbuffer_table!(Model);
crate::formats::flatbuffer_table!(OperatorCode);
crate::formats::flatbuffer_table!(SubGraph);
crate::formats::flatbuffer_table!(Operator);

// vtable slots: 4 + 2 × field index in schema.fbs
impl Verifiable for Model<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u32>("version", 4, false)?
            .visit_field::<ForwardsUOffset<Vector<ForwardsUOffset<OperatorCode>>>>(
                "operator_codes",
                6,
                false,
            )?
            .visit_field::<ForwardsUOffset<Vector<ForwardsUOffset<SubGraph>>>>(
                "subgraphs",
                8,
                false,
            )?
            .finish();
        Ok(())
    }
}

impl Verifiable for OperatorCode<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<i8>("deprecated_builtin_code", 4, false)?
            .visit_field::<ForwardsUOffset<&str>>("custom_code", 6, false)?
            .visit_field::<i32>("builtin_code", 10, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for SubGraph<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<Vector<ForwardsUOffset<Operator>>>>(
                "operators",
                10,
                false,
            )?
            .finish();
        Ok(())
    }
}

impl Verifiable for Operator<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u32>("opcode_index", 4, false)?
            .finish();
        Ok(())
    }
}

// SAFETY (all accessors): only called on tables reached from
// `flatbuffers::root_with_opts`, which verified each declared field's offset,
// type and bounds above.
impl<'a> Model<'a> {
    fn operator_codes(&self) -> Option<Vector<'a, ForwardsUOffset<OperatorCode<'a>>>> {
        unsafe {
            self.0
                .get::<ForwardsUOffset<Vector<ForwardsUOffset<OperatorCode>>>>(6, None)
        }
    }
    fn subgraphs(&self) -> Option<Vector<'a, ForwardsUOffset<SubGraph<'a>>>> {
        unsafe {
            self.0
                .get::<ForwardsUOffset<Vector<ForwardsUOffset<SubGraph>>>>(8, None)
        }
    }
}

impl<'a> OperatorCode<'a> {
    fn builtin(&self) -> i32 {
        let old = unsafe { self.0.get::<i8>(4, Some(0)) }.unwrap_or(0);
        let new = unsafe { self.0.get::<i32>(10, Some(0)) }.unwrap_or(0);
        i32::from(old).max(new)
    }
    fn custom_code(&self) -> Option<&'a str> {
        unsafe { self.0.get::<ForwardsUOffset<&str>>(6, None) }
    }
}

impl<'a> SubGraph<'a> {
    fn operators(&self) -> Option<Vector<'a, ForwardsUOffset<Operator<'a>>>> {
        unsafe {
            self.0
                .get::<ForwardsUOffset<Vector<ForwardsUOffset<Operator>>>>(10, None)
        }
    }
}

impl Operator<'_> {
    fn opcode_index(&self) -> u32 {
        unsafe { self.0.get::<u32>(4, Some(0)) }.unwrap_or(0)
    }
}

/// Whether the head is a TensorFlow Lite flatbuffer (file identifier `TFL3`).
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 8 && &head[4..8] == b"TFL3"
}

/// Scans a TensorFlow Lite model read from `r`.
pub fn scan<R: Read>(r: &mut R, member: &str, sink: &mut Sink) -> io::Result<Detected> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(limits::MAX_TFLITE_BYTES + 1)
        .read_to_end(&mut buf)?;
    let truncated = buf.len() as u64 > limits::MAX_TFLITE_BYTES;
    buf.truncate(limits::MAX_TFLITE_BYTES as usize);
    let opts = VerifierOptions {
        max_tables: 4_000_000,
        ..Default::default()
    };
    let at = |f: Finding| f.at(Some(member), None);
    let model = match flatbuffers::root_with_opts::<Model>(&opts, &buf) {
        Ok(m) => m,
        Err(e) => {
            let why = if truncated {
                format!(
                    "the first {} MiB (the inspection limit) do not hold the model's operator tables: {e}",
                    limits::MAX_TFLITE_BYTES >> 20
                )
            } else {
                format!("the flatbuffer does not verify: {e}")
            };
            sink.findings.push(at(Finding::new(
                &rules::TF004,
                format!("TensorFlow Lite model could not be inspected: {why}"),
            )));
            return Ok(Detected::named("tflite"));
        }
    };
    let codes: Vec<(i32, Option<&str>)> = model
        .operator_codes()
        .map(|v| v.iter().map(|c| (c.builtin(), c.custom_code())).collect())
        .unwrap_or_default();
    let mut uses = vec![0usize; codes.len()];
    let mut bad_index = 0usize;
    for g in model.subgraphs().iter().flat_map(|v| v.iter()) {
        for op in g.operators().iter().flat_map(|v| v.iter()) {
            match uses.get_mut(op.opcode_index() as usize) {
                Some(n) => *n += 1,
                None => bad_index += 1,
            }
        }
    }
    let mut custom = BTreeSet::new();
    let mut python = BTreeSet::new();
    let mut files = BTreeSet::new();
    for ((builtin, name), n) in codes.iter().zip(&uses) {
        if *builtin != CUSTOM {
            continue;
        }
        let name = name.unwrap_or("");
        let label = format!("'{name}' ({n} use{})", if *n == 1 { "" } else { "s" });
        if let Some(tf_op) = name.strip_prefix("Flex") {
            if crate::formats::tensorflow::is_python_op(tf_op) {
                python.insert(label);
            } else if crate::formats::tensorflow::is_file_op(tf_op) {
                files.insert(label);
            }
        } else if !BUNDLED_CUSTOM.contains(&name) {
            custom.insert(label);
        }
    }
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    if !python.is_empty() {
        sink.findings.push(at(Finding::new(
            &rules::TF001,
            format!(
                "Select-TF (Flex) operators that call a Python function of the loading process: {}",
                crate::formats::summarise(&list(&python), 5)
            ),
        )));
    }
    if !files.is_empty() {
        sink.findings.push(at(Finding::new(
            &rules::TF002,
            format!(
                "Select-TF (Flex) operators that read, list or write files or reach the network: {}",
                crate::formats::summarise(&list(&files), 5)
            ),
        )));
    }
    if !custom.is_empty() {
        sink.findings.push(at(Finding::new(
            &rules::TF005,
            format!(
                "custom operators, whose kernels the application must supply: {}",
                crate::formats::summarise(&list(&custom), 8)
            ),
        )));
    }
    if bad_index > 0 {
        sink.findings.push(at(Finding::new(
            &rules::TF004,
            format!("{bad_index} operator(s) name an operator code the model does not have"),
        )));
    }
    Ok(Detected::named("tflite"))
}

/// TensorFlow Lite models.
pub struct Tflite;

impl Format for Tflite {
    fn name(&self) -> &'static str {
        "tflite"
    }
    fn summary(&self) -> &'static str {
        "TensorFlow Lite flatbuffers"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[model("tflite")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        super::rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        sniff(head.bytes)
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        len_hint: Option<u64>,
        member: &str,
        depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        let _ = (len_hint, depth);
        scan(r, member, sink)
    }
}
