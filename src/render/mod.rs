//! Renderers: they only read a [`probity_report::Report`] and write it out.

pub mod cyclonedx;
#[cfg(feature = "deep")]
mod deep;
pub mod json;
pub mod sarif;
pub mod text;

#[cfg(feature = "deep")]
pub use deep::{deep_text, spectral_text};
