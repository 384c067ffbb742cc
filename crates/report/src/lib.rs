//! Probity's shared vocabulary, a leaf crate: a [`Finding`] (rule ID,
//! severity, title, message, location, evidence), collected per file in a
//! [`FileReport`] and per run in a [`Report`] (`probity.scan/v1`), and the
//! [`Rule`] type that every check declares. The scanner produces these and
//! the renderers only read them.

mod finding;
mod rule;

pub use finding::*;
pub use rule::Rule;
