//! Unit tests of the symbolic pickle machine: every opcode of protocols 0–5,
//! the memo and stack paths, and the policy applied to what it records.

use std::collections::HashSet;
use std::io::Cursor;

use super::machine::{run_stream, CallKind, Callee, Options, StreamResult};
use super::{probe, scan_streams};
use crate::Ctx;
use probity_report::{Finding, Severity};

fn run(b: &[u8]) -> StreamResult {
    run_stream(&mut Cursor::new(b), 0, Options::default())
}

fn imports(r: &StreamResult) -> Vec<String> {
    r.imports.iter().map(|i| i.full()).collect()
}

fn clean(r: &StreamResult) {
    assert!(r.error.is_none(), "unexpected error {:?}", r.error);
    assert!(r.stop.is_some(), "no STOP reached");
}

fn findings(b: &[u8]) -> Vec<Finding> {
    let ctx = Ctx::default();
    let mut out = Vec::new();
    scan_streams(&mut Cursor::new(b), 0, "", &ctx, 0, &mut out);
    out
}

fn max_sev(b: &[u8]) -> Option<Severity> {
    findings(b).iter().map(|f| f.severity).max()
}

fn rules_of(b: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = findings(b).into_iter().map(|f| f.rule).collect();
    v.sort();
    v.dedup();
    v
}

/// Protocol-4 STACK_GLOBAL call of `module.name(arg)`.
fn p4_call(module: &str, name: &str, arg: &str) -> Vec<u8> {
    let mut v = vec![0x80, 4];
    for s in [module, name] {
        v.push(0x8c);
        v.push(s.len() as u8);
        v.extend_from_slice(s.as_bytes());
        v.push(0x94); // MEMOIZE
    }
    v.push(0x93); // STACK_GLOBAL
    v.push(0x8c);
    v.push(arg.len() as u8);
    v.extend_from_slice(arg.as_bytes());
    v.extend_from_slice(&[0x85, b'R', b'.']); // TUPLE1 REDUCE STOP
    v
}

#[test]
fn protocol0_text_opcodes() {
    // GLOBAL, MARK, STRING, UNICODE, INT (and bools), LONG, FLOAT, TUPLE, LIST,
    // DICT, APPEND, SETITEM, PUT, GET, POP, DUP, REDUCE, STOP
    let p = b"(S'a\\x41\\n'\nVuni\\u00e9\nI42\nI01\nI00\nL123L\nF1.5\ntp0\n0g0\n2(lp1\nI1\na(dp2\nS'k'\nI2\nsN0ccollections\nOrderedDict\n)R.";
    let r = run(p);
    clean(&r);
    assert_eq!(imports(&r), ["collections.OrderedDict"]);
    assert_eq!(r.calls.len(), 1);
    assert_eq!(r.calls[0].kind, CallKind::Reduce);
    assert!(matches!(r.calls[0].callee, Callee::Import(0)));
}

#[test]
fn protocol1_binary_opcodes() {
    // BININT, BININT1, BININT2, BINFLOAT, BINSTRING, SHORT_BINSTRING, BINUNICODE,
    // EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, APPENDS, SETITEMS, BINPUT, LONG_BINPUT,
    // BINGET, LONG_BINGET, POP_MARK, NONE
    let mut p = Vec::new();
    p.extend_from_slice(b"J\xff\xff\xff\xffK\x07M\x00\x01G?\xf8\x00\x00\x00\x00\x00\x00");
    p.extend_from_slice(b"T\x03\x00\x00\x00abcU\x02hiX\x02\x00\x00\x00ok");
    p.extend_from_slice(b")]q\x05(K\x01K\x02e}r\x06\x00\x00\x00(U\x01aK\x01u");
    p.extend_from_slice(b"h\x05j\x06\x00\x00\x00(NN1N.");
    let r = run(&p);
    clean(&r);
    assert!(r.imports.is_empty() && r.calls.is_empty());
}

#[test]
fn protocol2_opcodes() {
    // PROTO, NEWOBJ, TUPLE1-3, NEWTRUE, NEWFALSE, LONG1, LONG4, EXT1/2/4
    let p = b"\x80\x02c__builtin__\nobject\nq\x00\x88\x89\x87K\x01\x85\x86\x8a\x02\x01\x02\x8b\x09\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x86h\x00)\x81\x82\x01\x83\x02\x01\x84\x04\x03\x02\x01.";
    let r = run(p);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.protocol, Some(2));
    assert_eq!(imports(&r), ["__builtin__.object"]);
    assert!(r.calls.iter().any(|c| c.kind == CallKind::NewObj));
    assert_eq!(
        r.ext_codes.iter().map(|e| e.1).collect::<Vec<_>>(),
        [1, 258, 16909060]
    );
}

#[test]
fn protocol3_bytes() {
    let p = b"\x80\x03C\x03abcB\x02\x00\x00\x00xy\x86.";
    clean(&run(p));
}

#[test]
fn protocol4_opcodes() {
    // FRAME, SHORT_BINUNICODE, BINUNICODE8, BINBYTES8, EMPTY_SET, ADDITEMS,
    // FROZENSET, NEWOBJ_EX, STACK_GLOBAL, MEMOIZE
    let mut p = vec![0x80, 4, 0x95];
    p.extend_from_slice(&100u64.to_le_bytes());
    p.extend_from_slice(b"\x8f\x94(K\x01K\x02\x90(K\x03\x91\x8d");
    p.extend_from_slice(&2u64.to_le_bytes());
    p.extend_from_slice(b"hi\x8e");
    p.extend_from_slice(&1u64.to_le_bytes());
    p.extend_from_slice(b"z\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)}\x92.");
    let r = run(&p);
    clean(&r);
    assert_eq!(imports(&r), ["collections.OrderedDict"]);
    assert!(r.calls.iter().any(|c| c.kind == CallKind::NewObjEx));
}

#[test]
fn protocol5_buffers() {
    // BYTEARRAY8, NEXT_BUFFER, READONLY_BUFFER
    let mut p = vec![0x80, 5, 0x96];
    p.extend_from_slice(&3u64.to_le_bytes());
    p.extend_from_slice(b"abc\x97\x98\x86.");
    clean(&run(&p));
}

#[test]
fn persistent_ids_and_build() {
    // PERSID, BINPERSID, BUILD on an object, OBJ, INST
    let p = b"ctorch._utils\n_rebuild_tensor_v2\n(Pfoo\n(S'storage'\ntQK\x00tR}bq\x00(ccollections\nOrderedDict\noq\x01(icollections\nOrderedDict\n.";
    let r = run(p);
    clean(&r);
    let kinds: Vec<CallKind> = r.calls.iter().map(|c| c.kind).collect();
    assert!(kinds.contains(&CallKind::Obj));
    assert!(kinds.contains(&CallKind::Inst));
    assert!(kinds.contains(&CallKind::Build));
}

#[test]
fn stack_global_resolved_through_memo() {
    // strings stored with PUT/BINPUT/LONG_BINPUT/MEMOIZE and fetched back in another order
    let p = b"\x80\x04Vtorch\nq\x010Vos\nr\x02\x00\x00\x000\x8c\x06system\x94h\x02j\x00\x00\x00\x00\x93.";
    let r = run(p);
    // MEMOIZE stores at len(memo) = 2, overwriting 'os' (as CPython does); key 0 was never stored
    assert!(r.imports.is_empty(), "{:?}", r.imports);
    assert!(r.error.as_ref().unwrap().message.contains("memo key 0"));
    let p = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x02id\x85R.";
    let r = run(p);
    clean(&r);
    assert_eq!(imports(&r), ["os.system"]);
    assert_eq!(max_sev(p), Some(Severity::Critical));
}

#[test]
fn memo_indirection_hides_nothing() {
    // picklescan's malicious11: decoy strings, real module via GET
    let p = b"V'os'\np2\n0V'system'\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n\x93.";
    let r = run(p);
    assert!(r.imports.is_empty(), "quoted names are not identifiers");
    let p =
        b"Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n\x93(Vcat flag.txt\ntR.";
    let r = run(p);
    clean(&r);
    assert_eq!(imports(&r), ["os.system"]);
}

#[test]
fn missing_memo_and_underflow_are_soft_errors() {
    let r = run(b"\x80\x04h\x09cos\nsystem\n)R.");
    assert!(r.error.as_ref().unwrap().message.contains("memo key 9"));
    assert_eq!(
        imports(&r),
        ["os.system"],
        "analysis continues after a soft error"
    );
    let r = run(b"R.");
    assert!(r.error.as_ref().unwrap().message.contains("empty stack"));
    let r = run(b"t.");
    assert!(r.error.as_ref().unwrap().message.contains("without a MARK"));
}

#[test]
fn pop_pops_mark_on_empty_stack() {
    // CPython: POP with an empty stack and a pending MARK pops the mark
    let r = run(b"K\x01(0.");
    clean(&r);
}

#[test]
fn truncated_and_invalid() {
    let r = run(b"cbuiltins\nexec\n(X\xff\xff\x00\x00abc");
    assert_eq!(imports(&r), ["builtins.exec"]);
    assert!(r.error.as_ref().unwrap().truncated);
    let r = run(b"\x80\x04\xffK\x01.");
    assert!(r.error.as_ref().unwrap().message.contains("unknown opcode"));
    let r = run(b"\x80\x09.");
    assert!(r.error.as_ref().unwrap().message.contains("protocol"));
    // a payload followed by garbage is still critical, and the error is reported
    let mut p = p4_call("os", "system", "id");
    p.pop();
    p.extend_from_slice(b"\xfe\xfe");
    let rules = rules_of(&p);
    assert!(
        rules.contains(&"PKL001".to_string()) && rules.contains(&"PKL003".to_string()),
        "{rules:?}"
    );
}

#[test]
fn huge_lengths_are_not_allocated() {
    // BINBYTES8 claiming 2^62 bytes: read what is there, keep a bounded prefix, report truncation
    let mut p = vec![0x80, 4, 0x8e];
    p.extend_from_slice(&(1u64 << 62).to_le_bytes());
    p.extend_from_slice(&[0u8; 100]);
    let r = run(&p);
    assert!(r.error.as_ref().unwrap().truncated);
}

#[test]
fn global_names_must_be_identifiers() {
    // not_a_pickle.bin: "cmod\n\xf8\n"
    let r = run(b"cmod\n\xf8\n");
    assert!(r.imports.is_empty());
    assert!(!probe(b"cmod\n\xf8\n", true));
    // text that starts with 'c' is not a pickle
    assert!(!probe(b"config: value\nother: thing\n", true));
    assert!(!probe(b"# README\n\nSome text.", true));
    assert!(!probe(b"{\"a\": 1}", true));
    assert!(probe(b"\x80\x04K\x01.", true));
    assert!(probe(b"(lp0\nI1\na.", true));
}

#[test]
fn several_streams_are_all_scanned() {
    let mut p = b"\x80\x04]\x94(K\x01e.".to_vec();
    p.extend(p4_call("builtins", "eval", "1+1"));
    p.extend_from_slice(b"\x00\x01\x02 trailing tensor bytes");
    let f = findings(&p);
    assert!(f
        .iter()
        .any(|x| x.rule == "PKL001" && x.message.contains("stream 2")));
    assert!(f.iter().any(|x| x.rule == "PKL008"));
}

#[test]
fn build_on_a_module_is_state_injection() {
    // torch._utils module object, BUILD with (None, {...}) slotstate
    let p = b"\x80\x04\x8c\x05torch\x8c\x06_utils\x93N}\x8c\x01x\x8c\x01ys\x86b.";
    let rules = rules_of(p);
    assert!(rules.contains(&"PKL006".to_string()), "{rules:?}");
    assert_eq!(max_sev(p), Some(Severity::Critical));
}

#[test]
fn dynamic_callables_are_flagged() {
    // REDUCE on the result of another call
    let p = b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93)R)R.";
    let rules = rules_of(p);
    assert_eq!(rules, ["PKL007"]);
    // STACK_GLOBAL on non-strings
    let p = b"\x80\x04K\x01K\x02\x93.";
    assert!(rules_of(p).contains(&"PKL007".to_string()));
    // EXT codes
    assert!(rules_of(b"\x80\x02\x82\x05)R.").contains(&"PKL007".to_string()));
}

#[test]
fn allowlisted_state_dict_is_clean() {
    // A torch-style state dict: OrderedDict + _rebuild_tensor_v2 + BINPERSID
    let p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x06\x00\x00\x00weightq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x02K\x02\x86K\x02K\x01\x86\x89h\x00)Rtq\x06Rq\x07sh\x01}bX\x04\x00\x00\x00biasq\x08h\x07s.";
    let f = findings(p);
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn unknown_callable_is_a_warning() {
    let p = p4_call("__main__", "MyModel", "x");
    assert_eq!(max_sev(&p), Some(Severity::Warning));
    assert_eq!(rules_of(&p), ["PKL002"]);
    // ...unless the user allows it exactly
    let ctx = Ctx {
        extra_allowed: HashSet::from(["__main__.MyModel".to_string()]),
        ..Default::default()
    };
    let mut out = Vec::new();
    scan_streams(&mut Cursor::new(&p), 0, "", &ctx, 0, &mut out);
    assert!(out.is_empty());
}

#[test]
fn nested_pickles_raw_base64_hex() {
    let inner = p4_call("builtins", "print", "hi");
    let mut raw = vec![0x80, 4, b'C', inner.len() as u8];
    raw.extend_from_slice(&inner);
    raw.push(b'.');
    let rules = rules_of(&raw);
    assert!(
        rules.contains(&"PKL004".to_string()) && rules.contains(&"PKL005".to_string()),
        "{rules:?}"
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&inner);
    let mut p = vec![0x80, 4, 0x8c, b64.len() as u8];
    p.extend_from_slice(b64.as_bytes());
    p.push(b'.');
    assert_eq!(max_sev(&p), Some(Severity::Critical));
    let hex: String = inner.iter().map(|b| format!("{b:02x}")).collect();
    let mut p = vec![0x80, 4, b'X'];
    p.extend_from_slice(&(hex.len() as u32).to_le_bytes());
    p.extend_from_slice(hex.as_bytes());
    p.push(b'.');
    assert_eq!(max_sev(&p), Some(Severity::Critical));
    // an embedded pickle with no calls is a warning only
    let inner = b"\x80\x04}\x94.";
    let mut p = vec![0x80, 4, b'C', inner.len() as u8];
    p.extend_from_slice(inner);
    p.push(b'.');
    assert_eq!(max_sev(&p), Some(Severity::Warning));
    // plain strings and bytes are not pickles
    assert!(findings(b"\x80\x04\x8c\x08gAAAAAAA\x8c\x04abcdC\x02\x80\x04\x86\x86.").is_empty());
}

#[test]
fn nesting_depth_is_bounded() {
    let mut p = p4_call("builtins", "print", "x");
    for _ in 0..8 {
        let mut outer = vec![0x80, 4, b'B'];
        outer.extend_from_slice(&(p.len() as u32).to_le_bytes());
        outer.extend_from_slice(&p);
        outer.push(b'.');
        p = outer;
    }
    let rules = rules_of(&p);
    assert!(rules.contains(&"SCN002".to_string()), "{rules:?}");
}

#[test]
fn opcode_limit_is_reported() {
    let r = run_stream(
        &mut Cursor::new(b"\x80\x04K\x01K\x02K\x03K\x04."),
        0,
        Options {
            max_ops: 3,
            probe: false,
        },
    );
    assert!(r.limit.is_some());
}

/// Found by the `zip_headers` fuzz target (LeakSanitizer): a list appended
/// to itself through the memo, and an object whose BUILD state holds it,
/// are reference cycles; dropping the result must free them.
#[test]
fn self_referencing_containers_are_freed() {
    use crate::pickle::value::Value;
    for stream in [
        &b"\x80\x02]q\x00h\x00a."[..],
        &b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01h\x01b."[..],
        &b"\x80\x02}q\x00X\x01\x00\x00\x00kh\x00s."[..],
    ] {
        let res = run(stream);
        assert!(res.error.is_none(), "{:?}", res.error);
        let weak: Vec<std::rc::Weak<dyn std::any::Any>> = res
            .containers
            .0
            .iter()
            .filter_map(|v| match v {
                Value::List(c) | Value::Dict(c) | Value::Set(c) => {
                    let rc: std::rc::Rc<dyn std::any::Any> = c.clone();
                    Some(std::rc::Rc::downgrade(&rc))
                }
                Value::Call(o) => {
                    let rc: std::rc::Rc<dyn std::any::Any> = o.clone();
                    Some(std::rc::Rc::downgrade(&rc))
                }
                _ => None,
            })
            .collect();
        assert!(!weak.is_empty());
        drop(res);
        assert!(
            weak.iter().all(|w| w.upgrade().is_none()),
            "a cycle survived"
        );
    }
}
