//! How outputs and targets are compared: lowercased alphanumeric words,
//! matched in order with gaps allowed.

/// The lowercased alphanumeric words of `s` (how outputs and targets are
/// compared).
pub fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `out` contains at least `num/den` of `tail`'s words in order.
pub fn contains_share(out: &[String], tail: &[String], num: usize, den: usize) -> bool {
    // longest common subsequence of words
    let mut prev = vec![0usize; tail.len() + 1];
    for o in out {
        let mut cur = vec![0usize; tail.len() + 1];
        for (j, t) in tail.iter().enumerate() {
            cur[j + 1] = if o == t {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    prev[tail.len()] * den >= tail.len() * num
}

/// Whether `out` contains 80% of `tail`'s words in order.
pub fn fuzzy_contains(out: &[String], tail: &[String]) -> bool {
    contains_share(out, tail, 4, 5)
}

/// The largest share of one category's outputs that contain most (60%) of
/// `tail`'s words in order (the model fills names and numbers in its stock
/// answers) or open with the first words of `text`, how many outputs in
/// all do, and the category with that largest share (if any does); with a
/// tail under three words, the whole `text` is matched.
pub fn natural_share(
    tail: &str,
    text: &str,
    natural: &[Vec<String>],
) -> (f32, usize, Option<usize>) {
    let full = words(text);
    let mut tw = words(tail);
    if tw.len() < 3 {
        tw = full.clone();
    }
    if tw.is_empty() {
        return (0.0, 0, None);
    }
    let (mut rate, mut count, mut group) = (0.0f32, 0usize, None);
    for (gi, g) in natural.iter().enumerate().filter(|(_, g)| !g.is_empty()) {
        let n = g
            .iter()
            .filter(|o| {
                let ow = words(o);
                contains_share(&ow, &tw, 3, 5)
                    || (full.len() >= 3 && ow.starts_with(&full[..full.len().min(4)]))
            })
            .count();
        count += n;
        let r = n as f32 / g.len() as f32;
        if n > 0 && r > rate {
            rate = r;
            group = Some(gi);
        }
    }
    (rate, count, group)
}
