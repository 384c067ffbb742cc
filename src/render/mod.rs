//! Renderers: they only read a [`crate::finding::Report`] and write it out.

pub mod json;
pub mod text;
