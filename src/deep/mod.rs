//! The deep scan: load a fine-tune and its base in a restricted worker and
//! compare their behaviour. This module currently holds the restricted
//! harness; loaders, probes, spectra and scoring build on it.

pub mod harness;
