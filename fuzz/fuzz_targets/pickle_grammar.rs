//! Pickles built from an opcode grammar (memo indirection, STACK_GLOBAL
//! with names fetched from the memo, INST/OBJ/NEWOBJ/BUILD/REDUCE, EXT1,
//! persistent ids, frames), optionally cut or with a byte flipped. The
//! generator records every global it imports; the scanner must never call
//! a stream clean that imports anything outside the oracle's SAFE list or
//! uses the extension registry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probity_fuzz::{clean, gen_pickle, scan_bytes, Choices, SAFE};

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let g = gen_pickle(&mut c);
    let mut bytes = g.bytes.clone();
    let mut cut = bytes.len();
    match c.below(4) {
        0 => {
            cut = c.below(bytes.len() + 1);
            bytes.truncate(cut);
        }
        1 if !bytes.is_empty() => {
            let i = c.below(bytes.len());
            bytes[i] ^= 1 << c.below(8);
            // a flipped byte may change any later import: judge the
            // imports before it only
            cut = i;
        }
        _ => {}
    }
    let r = scan_bytes("model.pkl", &bytes);
    if !clean(&r) {
        return;
    }
    for (name, at) in &g.imports {
        if *at < cut {
            assert!(
                SAFE.contains(&name.as_str()),
                "clean verdict on a stream importing {name} at {at} (cut at {cut}): {:?}\nstream: {}",
                r.findings,
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
    }
    if cut == g.bytes.len() {
        assert!(!g.extension, "clean verdict on a stream using the extension registry");
    }
});
