//! The one place that decides whether a path named by untrusted content
//! leaves the folder it is meant to stay in: names inside model files,
//! archive members, shard names, and paths a remote server lists.

/// Whether a path named inside a model file leaves the model's folder:
/// absolute, home-relative, a drive letter, a URL, or climbing out with `..`
/// (`\\` read as `/`). Loaders join such names to the model folder and
/// open the result.
pub fn escapes_folder(path: &str) -> bool {
    let p = path.replace('\\', "/");
    p.starts_with('/')
        || p.starts_with('~')
        || (p.len() >= 2 && p.as_bytes()[1] == b':')
        || p.contains("://")
        || p.split('/').any(|c| c == "..")
}

/// Whether a member name escapes the extraction root.
pub fn escapes_root(name: &str) -> bool {
    let n = name.replace('\\', "/");
    if n.starts_with('/')
        || (n.len() >= 2 && n.as_bytes()[1] == b':' && n.as_bytes()[0].is_ascii_alphabetic())
    {
        return true;
    }
    let mut depth: i64 = 0;
    for seg in n.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// Whether a path that a server or an index lists is safe to join to a
/// local folder: relative, with no empty, `.` or `..` components and no
/// backslashes.
pub fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether a name is one plain file name inside its folder (a shard named
/// by an index): [`safe_relative`] and a single component.
pub fn is_file_name(p: &str) -> bool {
    safe_relative(p) && !p.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_escapes() {
        for p in [
            "/etc/passwd",
            "~/.ssh/id_rsa",
            "C:\\x",
            "https://a/b",
            "a/../../b",
            "..\\x",
        ] {
            assert!(escapes_folder(p), "{p}");
        }
        for p in ["weights.bin", "sub/dir/x.onnx", "a..b"] {
            assert!(!escapes_folder(p), "{p}");
        }
    }

    #[test]
    fn archive_members_climbing_out() {
        assert!(escapes_root("../x"));
        assert!(escapes_root("a/../../x"));
        assert!(escapes_root("/abs"));
        assert!(escapes_root("c:x"));
        assert!(!escapes_root("a/../x"));
        assert!(!escapes_root("./a/b"));
        assert!(escapes_root("C:\\Windows\\x"));
        assert!(!escapes_root("archive/data.pkl"));
    }

    #[test]
    fn listed_paths() {
        assert!(safe_relative("a/b.bin"));
        for p in ["", "/a", "a//b", "a/./b", "../a", "a\\b"] {
            assert!(!safe_relative(p), "{p:?}");
        }
        assert!(is_file_name("model-00001-of-00002.safetensors"));
        assert!(!is_file_name("sub/model.safetensors"));
        assert!(!is_file_name(".."));
    }
}
