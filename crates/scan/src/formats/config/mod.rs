//! Text documents: JSON and YAML configs, chat templates wherever they sit,
//! model cards, and the Python source shipped beside the weights.

pub mod advisories;
pub mod hydra;
pub mod modelcard;
pub mod python;
pub mod rules;
pub mod template;
pub mod text;
