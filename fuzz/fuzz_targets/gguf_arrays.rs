//! GGUF headers with every value type and nested arrays; when a chat
//! template that reaches os.popen is planted, the scan must not be clean.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probity_fuzz::{clean, gen_gguf, scan_bytes, Choices};

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let (gguf, planted) = gen_gguf(&mut c);
    let r = scan_bytes("model.gguf", &gguf);
    if planted {
        assert!(!clean(&r), "a planted template was missed: {:?}", r.findings);
    }
});
