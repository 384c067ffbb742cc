//! Every resource bound of the static scanner, in one place.
//!
//! Each constant is hit by at least one test (`tests/limits.rs` or a unit test
//! next to the code that enforces it). When a bound is reached the scanner
//! reports a `SCN002` warning ("scan limit reached") instead of silently
//! stopping: a limit never turns into a clean verdict.

/// Largest number of pickle opcodes executed in one stream.
pub const MAX_PICKLE_OPS: u64 = 200_000_000;
/// Deepest stack (values plus marks) the symbolic pickle machine keeps.
pub const MAX_PICKLE_STACK: usize = 4_000_000;
/// Most memo entries kept per stream; further PUTs are dropped and later GETs of
/// them resolve to an unknown value (which can only raise the severity).
pub const MAX_PICKLE_MEMO: usize = 4_000_000;
/// A string or bytes value is kept whole up to this size (for nested-pickle
/// detection, evidence and global resolution); longer ones keep a prefix only.
pub const MAX_KEPT_VALUE: usize = 64 << 10;
/// A value whose first bytes look like a pickle (raw, base64 or hex) is kept
/// whole up to this size so the nested stream can be scanned.
pub const MAX_NESTED_VALUE: usize = 16 << 20;
/// Total bytes of string/bytes values one stream may keep.
pub const MAX_KEPT_TOTAL: usize = 64 << 20;
/// Longest text line a protocol-0 opcode may carry.
pub const MAX_PICKLE_LINE: usize = 1 << 20;
/// How deep nested pickles (pickles inside pickle values) are followed.
pub const MAX_NESTED_DEPTH: u32 = 4;
/// Most pickle streams read from one file or member.
pub const MAX_STREAMS: usize = 4096;
/// Text values of one pickle stream checked for credentials (those holding a
/// token prefix); further ones are not checked.
pub const MAX_SECRET_CANDIDATES: usize = 64;
/// Window used to decide whether bytes are a pickle at all.
pub const PICKLE_PROBE_WINDOW: usize = 64 << 10;

/// Containers (zip, tar, 7z, compressed streams) nested deeper than this are not opened.
pub const MAX_CONTAINER_DEPTH: u32 = 8;
/// Most entries read from one archive.
pub const MAX_ARCHIVE_ENTRIES: usize = 200_000;
/// Most bytes decompressed from one top-level file, all members together.
pub const MAX_DECOMPRESSED_TOTAL: u64 = 16 << 30;
/// A compressed stream whose output passes this size is checked against
/// [`MAX_COMPRESSION_RATIO`].
pub const BOMB_RATIO_FLOOR: u64 = 256 << 20;
/// Output/input ratio above which a compressed stream is treated as a bomb.
pub const MAX_COMPRESSION_RATIO: u64 = 200;
/// Members of non-seekable sources that need random access (zip in a tar.gz)
/// are spooled to memory up to this size, then to a temporary file.
pub const SPOOL_IN_MEMORY: usize = 8 << 20;
/// Largest central directory accepted.
pub const MAX_ZIP_CENTRAL_DIR: u64 = 256 << 20;
/// Largest NumPy header accepted.
pub const MAX_NPY_HEADER: usize = 1 << 20;
/// Largest TorchScript code member read for inspection.
pub const MAX_CODE_MEMBER: u64 = 8 << 20;
/// Members up to this size have their CRC-32 verified after analysis.
pub const MAX_CRC_CHECK: u64 = 64 << 20;
/// Distinct imported names interned per stream (beyond it each import gets its own entry).
pub const MAX_DISTINCT_IMPORTS: usize = 100_000;
/// Calls on non-imported (dynamic) targets recorded per stream.
pub const MAX_RECORDED_CALLS: usize = 10_000;

/// Largest JSON / YAML / template text document read into memory.
pub const MAX_TEXT_DOCUMENT: u64 = 64 << 20;
/// Deepest JSON nesting walked for template strings.
pub const MAX_JSON_DEPTH: usize = 64;
/// Largest single template judged (chat templates are a few KiB).
pub const MAX_TEMPLATE: usize = 8 << 20;
/// Largest safetensors header (the reference loader's own bound).
pub const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;
/// GGUF bounds: metadata entries, tensors, elements of one array, bytes of
/// one string (llama.cpp's own vocabularies are a few hundred thousand
/// strings; templates a few KiB).
pub const MAX_GGUF_KV: u64 = 1 << 16;
pub const MAX_GGUF_TENSORS: u64 = 1 << 20;
pub const MAX_GGUF_ARRAY: u64 = 1 << 24;
pub const MAX_GGUF_STRING: u64 = 16 << 20;
/// Text without Python statements is still parsed as Python up to this size
/// (a one-line payload needs no import).
pub const MAX_UNMARKED_PYTHON: usize = 1 << 20;

/// Largest protobuf sub-message (an ONNX node or function, a TensorFlow node
/// or function library) read whole for decoding; larger ones are skipped and
/// reported. Tensor data is streamed past, never kept.
pub const MAX_PROTO_KEPT: u64 = 256 << 20;
/// Most nodes (graph nodes, function nodes, subgraph nodes) judged in one ONNX
/// or TensorFlow file; past it the file is reported as not fully inspected.
pub const MAX_PROTO_NODES: usize = 2_000_000;
/// Largest TensorFlow Lite flatbuffer read into memory; for larger files the
/// first this many bytes are verified (the operator tables sit at the front).
pub const MAX_TFLITE_BYTES: u64 = 1 << 30;
/// Largest HDF5 file read into memory to find a Keras model config; larger
/// files are reported as not inspected.
pub const MAX_HDF5_BYTES: u64 = 2 << 30;
