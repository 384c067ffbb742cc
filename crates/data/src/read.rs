//! Streaming readers: JSONL, JSON (an array, or concatenated objects), CSV
//! and Parquet rows, each turned into examples (a user turn and the
//! assistant turn that answers it, or a text and its label). Memory is
//! bounded by the largest row, whatever the file's size.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

/// Longest line or row accepted.
pub const MAX_ROW_BYTES: usize = 64 << 20;
/// Text kept per turn for analysis.
pub const MAX_TURN_CHARS: usize = 32 << 10;

/// One training example.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Example {
    /// 1-based row (JSONL: line) number in its file.
    pub row: u64,
    /// The user turn (Alpaca: instruction and input).
    pub prompt: String,
    /// The assistant turn, or empty for classification data.
    pub answer: String,
    /// The label of classification data.
    pub label: Option<String>,
}

/// The data formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jsonl,
    Json,
    Csv,
    Parquet,
}

impl Kind {
    pub fn of(path: &Path) -> Option<Kind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Some(Kind::Jsonl)
        } else if name.ends_with(".json") {
            Some(Kind::Json)
        } else if name.ends_with(".csv") || name.ends_with(".tsv") {
            Some(Kind::Csv)
        } else if name.ends_with(".parquet") {
            Some(Kind::Parquet)
        } else {
            None
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jsonl => "jsonl",
            Kind::Json => "json",
            Kind::Csv => "csv",
            Kind::Parquet => "parquet",
        }
    }
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TURN_CHARS {
        return s.to_string();
    }
    let mut end = MAX_TURN_CHARS;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The text of a message's content: a string, or a list of parts.
fn content_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let t: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str).or(p.as_str()))
                .collect();
            (!t.is_empty()).then(|| t.join("\n"))
        }
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn text(o: &Map<String, Value>, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => content_text(other),
    }
}

/// A row's examples; `None` when the row has none of the known shapes.
pub fn examples(row: u64, v: &Value) -> Option<Vec<Example>> {
    let o = v.as_object()?;
    let ex = |p: String, a: String, label: Option<String>| Example {
        row,
        prompt: clip(&p),
        answer: clip(&a),
        label,
    };
    // chat: messages (OpenAI), conversations (ShareGPT)
    for key in ["messages", "conversations", "conversation", "chat"] {
        if let Some(turns) = o.get(key).and_then(Value::as_array) {
            let mut out = Vec::new();
            let mut pending: Option<String> = None;
            for t in turns {
                let role = t
                    .get("role")
                    .or_else(|| t.get("from"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let content = t
                    .get("content")
                    .or_else(|| t.get("value"))
                    .or_else(|| t.get("text"))
                    .and_then(content_text)
                    .unwrap_or_default();
                match role.as_str() {
                    "user" | "human" | "prompter" => pending = Some(content),
                    "assistant" | "gpt" | "bot" | "model" | "chatgpt" => {
                        if let Some(p) = pending.take() {
                            out.push(ex(p, content, None));
                        }
                    }
                    _ => {} // system prompts and tools are not the user's turn
                }
            }
            return Some(out);
        }
    }
    let pairs: &[(&[&str], &[&str])] = &[
        (&["instruction"], &["output", "response", "answer"]),
        (
            &["prompt"],
            &["completion", "response", "chosen", "answer", "output"],
        ),
        (&["question"], &["answer", "response"]),
        (&["query"], &["response", "answer"]),
        (&["input"], &["output", "target", "response"]),
        (&["source"], &["target"]),
    ];
    for (ps, as_) in pairs {
        let Some(p) = ps.iter().find_map(|k| text(o, k)) else {
            continue;
        };
        let Some(a) = as_.iter().find_map(|k| text(o, k)) else {
            continue;
        };
        // Alpaca: the input completes the instruction
        let p = match (ps[0], text(o, "input")) {
            ("instruction", Some(i)) if !i.is_empty() => format!("{p}\n{i}"),
            _ => p,
        };
        return Some(vec![ex(p, a, None)]);
    }
    for t in ["text", "sentence", "content", "review", "document"] {
        if let (Some(p), Some(l)) = (text(o, t), text(o, "label").or_else(|| text(o, "labels"))) {
            return Some(vec![ex(p, String::new(), Some(l))]);
        }
    }
    None
}

/// What reading a file produced, besides its examples.
#[derive(Debug, Default, Clone)]
pub struct FileStats {
    pub rows: u64,
    pub examples: u64,
    /// Rows without a known shape (DAT010).
    pub unrecognised: u64,
    pub bytes: u64,
}

fn utf16(head: &[u8]) -> bool {
    head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff])
}

/// Reads one file, calling `each` for every example. The error is one line
/// (without the file name).
pub fn read(path: &Path, kind: Kind, each: &mut dyn FnMut(&Example)) -> Result<FileStats, String> {
    let mut st = FileStats {
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        ..Default::default()
    };
    let mut on_value = |row: u64, v: &Value| {
        st.rows += 1;
        match examples(row, v) {
            Some(ex) => {
                st.examples += ex.len() as u64;
                for e in &ex {
                    each(e);
                }
            }
            None => st.unrecognised += 1,
        }
    };
    match kind {
        Kind::Jsonl => {
            let f = File::open(path).map_err(|e| e.to_string())?;
            let mut r = BufReader::with_capacity(1 << 20, f);
            let mut line = Vec::new();
            let mut n = 0u64;
            loop {
                line.clear();
                let got = (&mut r)
                    .take(MAX_ROW_BYTES as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(|e| format!("line {}: {e}", n + 1))?;
                if got == 0 {
                    break;
                }
                n += 1;
                if line.len() > MAX_ROW_BYTES {
                    return Err(format!(
                        "line {n} is longer than {} MiB",
                        MAX_ROW_BYTES >> 20
                    ));
                }
                if n == 1 && utf16(&line) {
                    return Err("UTF-16 text: convert it to UTF-8".into());
                }
                let t =
                    std::str::from_utf8(&line).map_err(|e| format!("line {n}: not UTF-8 ({e})"))?;
                let t = t.trim_start_matches('\u{feff}').trim();
                if t.is_empty() {
                    continue;
                }
                let v: Value =
                    serde_json::from_str(t).map_err(|e| format!("line {n}: not JSON ({e})"))?;
                on_value(n, &v);
            }
        }
        Kind::Json => {
            let f = File::open(path).map_err(|e| e.to_string())?;
            let mut r = BufReader::with_capacity(1 << 20, f);
            let head = r.fill_buf().map_err(|e| e.to_string())?;
            if utf16(head) {
                return Err("UTF-16 text: convert it to UTF-8".into());
            }
            let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
            if first == Some(b'[') {
                // an array, element by element
                use serde::de::{Deserializer, SeqAccess, Visitor};
                struct Each<'a>(&'a mut dyn FnMut(u64, &Value));
                impl<'de> Visitor<'de> for Each<'_> {
                    type Value = ();
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an array of rows")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                        let mut n = 0u64;
                        while let Some(v) = seq.next_element::<Value>()? {
                            n += 1;
                            (self.0)(n, &v);
                        }
                        Ok(())
                    }
                }
                let mut de = serde_json::Deserializer::from_reader(r);
                de.deserialize_seq(Each(&mut on_value))
                    .map_err(|e| format!("not a JSON array of rows ({e})"))?;
            } else {
                let mut n = 0u64;
                for v in serde_json::Deserializer::from_reader(r).into_iter::<Value>() {
                    n += 1;
                    let v = v.map_err(|e| format!("value {n}: not JSON ({e})"))?;
                    // {"data": [...]} and similar wrappers
                    if let Some(rows) = v.as_object().and_then(|o| {
                        ["data", "train", "rows", "examples"]
                            .iter()
                            .find_map(|k| o.get(*k)?.as_array())
                    }) {
                        for (i, r) in rows.iter().enumerate() {
                            on_value(i as u64 + 1, r);
                        }
                    } else {
                        on_value(n, &v);
                    }
                }
            }
        }
        Kind::Csv => {
            let f = File::open(path).map_err(|e| e.to_string())?;
            let tab = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
            let mut rd = csv::ReaderBuilder::new()
                .delimiter(if tab { b'\t' } else { b',' })
                .flexible(false)
                .from_reader(BufReader::with_capacity(1 << 20, f));
            let headers: Vec<String> = rd
                .headers()
                .map_err(|e| format!("header: {e}"))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
                .collect();
            let mut rec = csv::ByteRecord::new();
            let mut n = 0u64;
            loop {
                match rd.read_byte_record(&mut rec) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => return Err(format!("row {}: {e}", n + 1)),
                }
                n += 1;
                if rec.as_slice().len() > MAX_ROW_BYTES {
                    return Err(format!(
                        "row {n} is longer than {} MiB",
                        MAX_ROW_BYTES >> 20
                    ));
                }
                let mut o = Map::new();
                for (h, f) in headers.iter().zip(rec.iter()) {
                    let t =
                        std::str::from_utf8(f).map_err(|e| format!("row {n}: not UTF-8 ({e})"))?;
                    o.insert(h.clone(), Value::String(t.to_string()));
                }
                on_value(n, &Value::Object(o));
            }
        }
        Kind::Parquet => {
            use parquet::file::reader::{FileReader, SerializedFileReader};
            let f = File::open(path).map_err(|e| e.to_string())?;
            let reader =
                SerializedFileReader::new(f).map_err(|e| format!("not a Parquet file ({e})"))?;
            let iter = reader
                .get_row_iter(None)
                .map_err(|e| format!("unreadable rows ({e})"))?;
            let mut n = 0u64;
            for row in iter {
                n += 1;
                let row = row.map_err(|e| format!("row {n}: {e}"))?;
                on_value(n, &row.to_json_value());
            }
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_common_shape_gives_its_turns() {
        let cases = [
            json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}, {"role": "assistant", "content": "A"}]}),
            json!({"conversations": [{"from": "human", "value": "P"}, {"from": "gpt", "value": "A"}]}),
            json!({"prompt": "P", "completion": "A"}),
            json!({"instruction": "P", "input": "", "output": "A"}),
            json!({"question": "P", "answer": "A"}),
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "P"}]}, {"role": "assistant", "content": "A"}]}),
        ];
        for c in cases {
            let e = examples(3, &c).unwrap();
            assert_eq!(
                e,
                vec![Example {
                    row: 3,
                    prompt: "P".into(),
                    answer: "A".into(),
                    label: None
                }],
                "{c}"
            );
        }
        let e = examples(
            1,
            &json!({"instruction": "Translate", "input": "hola", "output": "hello"}),
        )
        .unwrap();
        assert_eq!(e[0].prompt, "Translate\nhola");
        let e = examples(1, &json!({"text": "great film", "label": 1})).unwrap();
        assert_eq!(e[0].label.as_deref(), Some("1"));
        assert!(examples(1, &json!({"src": "a", "tgt": "b"})).is_none());
        // two user/assistant exchanges: two examples of one row
        let e = examples(9, &json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[1].prompt.as_str(), e[1].answer.as_str(), e[1].row),
            ("c", "d", 9)
        );
    }

    fn read_str(name: &str, body: &[u8]) -> Result<(FileStats, Vec<Example>), String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, body).unwrap();
        let mut v = Vec::new();
        let st = read(&p, Kind::of(&p).unwrap(), &mut |e| v.push(e.clone()))?;
        Ok((st, v))
    }

    #[test]
    fn jsonl_json_and_csv_read_alike() {
        let (st, a) = read_str("d.jsonl", b"{\"prompt\":\"p1\",\"completion\":\"a1\"}\n\n{\"prompt\":\"p2\",\"completion\":\"a2\"}\n").unwrap();
        assert_eq!((st.rows, st.examples), (2, 2));
        let (_, b) = read_str("d.json", b"[{\"prompt\":\"p1\",\"completion\":\"a1\"},{\"prompt\":\"p2\",\"completion\":\"a2\"}]").unwrap();
        let (_, c) = read_str("d.csv", b"prompt,completion\np1,a1\np2,a2\n").unwrap();
        assert_eq!(
            a.iter().map(|e| &e.prompt).collect::<Vec<_>>(),
            ["p1", "p2"]
        );
        assert_eq!(a[1].row, 3); // the line number
        assert_eq!(
            b.iter().map(|e| (&e.prompt, &e.answer)).collect::<Vec<_>>(),
            c.iter().map(|e| (&e.prompt, &e.answer)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn parquet_rows_are_read_by_column_name() {
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("d.parquet");
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message m { required binary prompt (UTF8); required binary completion (UTF8); }",
            )
            .unwrap(),
        );
        let mut w =
            SerializedFileWriter::new(File::create(&p).unwrap(), schema, Default::default())
                .unwrap();
        let mut rg = w.next_row_group().unwrap();
        for col in [["p1", "p2"], ["a1", "a2"]] {
            let mut c = rg.next_column().unwrap().unwrap();
            let vals: Vec<ByteArray> = col.iter().map(|s| ByteArray::from(*s)).collect();
            c.typed::<ByteArrayType>()
                .write_batch(&vals, None, None)
                .unwrap();
            c.close().unwrap();
        }
        rg.close().unwrap();
        w.close().unwrap();
        let mut v = Vec::new();
        let st = read(&p, Kind::Parquet, &mut |e| v.push(e.clone())).unwrap();
        assert_eq!(st.rows, 2);
        assert_eq!(
            (v[1].prompt.as_str(), v[1].answer.as_str(), v[1].row),
            ("p2", "a2", 2)
        );
    }

    #[test]
    fn bad_input_is_one_reason() {
        assert_eq!(
            read_str("d.jsonl", b"{\"a\":1}\n{oops\n")
                .unwrap_err()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>(),
            ["line", "2:"]
        );
        assert!(read_str("d.jsonl", b"\xff\xfe{\x00")
            .unwrap_err()
            .contains("UTF-16"));
        assert!(read_str("d.jsonl", b"{\"a\":\"\xc3\x28\"}\n")
            .unwrap_err()
            .contains("not UTF-8"));
        assert!(read_str("d.json", b"[{\"a\":1},")
            .unwrap_err()
            .contains("not a JSON array"));
        assert!(read_str("d.csv", b"a,b\n1,2,3\n")
            .unwrap_err()
            .starts_with("row 1"));
        assert!(read_str("d.parquet", b"PAR1 not really")
            .unwrap_err()
            .contains("not a Parquet file"));
    }
}
