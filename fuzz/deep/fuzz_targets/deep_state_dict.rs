//! The deep scan's state-dict reader (the worker's pickle interpreter for
//! PyTorch checkpoints): any bytes as `data.pkl` give names or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = probity_deep::models::torch_weights::state_dict_keys(data);
});
