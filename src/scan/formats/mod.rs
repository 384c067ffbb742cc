//! One analyzer per container or file format. Each claims content by its
//! bytes (see [`crate::scan::sniff`]); the scanner core only dispatches.

pub mod compressed;
pub mod numpy;
pub mod rules;
pub mod sevenz;
pub mod tar;
pub mod torch;
pub mod zip;
