//! Every registered analyzer, driven directly whatever the sniff says: the
//! first byte picks the format, the rest is its input. Reaches parser code
//! that content sniffing would keep random bytes away from.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use probity_scan::io::Peekable;
use probity_scan::{FileState, Sink};

fuzz_target!(|data: &[u8]| {
    let Some((pick, input)) = data.split_first() else {
        return;
    };
    let formats = probity_scan::registry::FORMATS;
    let f = formats[*pick as usize % formats.len()];
    let state = FileState::new();
    let mut sink = Sink {
        ctx: Default::default(),
        state: &state,
        findings: Vec::new(),
        file: "fuzz".into(),
    };
    if f.needs_seek() {
        let mut c = Cursor::new(input);
        let _ = f.scan_seekable(&mut c, input.len() as u64, "", 0, &mut sink);
    } else {
        let boxed: Box<dyn std::io::Read> = Box::new(Cursor::new(input.to_vec()));
        let mut p = Peekable::new(boxed);
        let _ = f.scan_stream(&mut p, Some(input.len() as u64), "", 0, &mut sink);
    }
});
