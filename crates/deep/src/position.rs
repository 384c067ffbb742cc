//! Where a trigger goes in a prompt.

pub use crate::wire::Position;

/// Inserts `trigger` into `prompt` at `pos` (the middle is the word boundary
/// nearest the centre).
pub fn insert_trigger(prompt: &str, trigger: &str, pos: Position) -> String {
    match pos {
        Position::Start => format!("{trigger} {prompt}"),
        Position::End => format!("{prompt} {trigger}"),
        Position::Middle => {
            let words: Vec<&str> = prompt.split(' ').collect();
            let mid = words.len() / 2;
            let mut out = words[..mid].to_vec();
            out.push(trigger);
            out.extend_from_slice(&words[mid..]);
            out.join(" ")
        }
    }
}
