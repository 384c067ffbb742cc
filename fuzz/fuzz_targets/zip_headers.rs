//! Zips with several local headers per entry, local names that differ from
//! the central directory, entries only a streaming reader sees, data
//! descriptors and prefix data. When a malicious pickle is the content of
//! any header, the scan must not be clean.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probity_fuzz::{clean, gen_zip, scan_bytes, Choices};

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let (zip, planted) = gen_zip(&mut c);
    let r = scan_bytes("model.pt", &zip);
    if planted {
        assert!(!clean(&r), "a planted os.system pickle was missed: {:?}", r.findings);
    }
});
