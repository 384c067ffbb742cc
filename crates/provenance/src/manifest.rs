//! The model's manifest: every file under the model folder (less the ignored
//! paths), named by its path relative to the folder with `/` separators, with
//! its SHA-256, in model signing's canonical order; the root digest over them;
//! and the differences between a signed manifest and the files on disk.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// One file of the model and its SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub sha256: String,
}

/// The files of a model in canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// The order model signing sorts resources in: by path components (Python's
/// `PurePosixPath` ordering), so `a/b` comes before `a.txt`.
pub fn canonical_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

impl Manifest {
    pub fn new(mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| canonical_order(&a.name, &b.name));
        Manifest { entries }
    }

    /// SHA-256 over the raw digests of the entries, in the given order (model
    /// signing's subject digest).
    pub fn root_digest(entries: &[Entry]) -> String {
        let mut h = Sha256::new();
        for e in entries {
            h.update(unhex(&e.sha256).unwrap_or_default());
        }
        crate::keys::hex(&h.finalize())
    }
}

/// Decodes lowercase or uppercase hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// A path to ignore, as components relative to the model folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IgnorePath(Vec<String>);

impl IgnorePath {
    /// From a path relative to the model folder (`./` and a trailing `/`
    /// allowed). `None` for a path that leaves the folder or is empty.
    pub fn parse(rel: &str) -> Option<IgnorePath> {
        let mut parts = Vec::new();
        for c in rel.split(['/', '\\']) {
            match c {
                "" | "." => {}
                ".." => return None,
                c => parts.push(c.to_string()),
            }
        }
        (!parts.is_empty()).then_some(IgnorePath(parts))
    }

    /// Whether `name` (a manifest name) is this path or lies under it.
    pub fn covers(&self, name: &str) -> bool {
        let mut it = name.split('/');
        self.0.iter().all(|p| it.next() == Some(p.as_str()))
    }

    pub fn as_string(&self) -> String {
        self.0.join("/")
    }
}

/// The paths model signing ignores by default (`--ignore-git-paths`).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// Why the files of a model could not be listed or read.
#[derive(Debug)]
pub enum WalkError {
    /// A symbolic link where the serialization does not allow them.
    Symlink(String),
    /// Not a regular file or a folder (socket, device, FIFO).
    Special(String),
    /// A name that is not UTF-8.
    NotUtf8(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Symlink(n) => write!(
                f,
                "{n} is a symbolic link, and symbolic links are not allowed (--allow-symlinks)"
            ),
            WalkError::Special(n) => write!(f, "{n} is neither a regular file nor a folder"),
            WalkError::NotUtf8(p) => write!(f, "{}: file name is not UTF-8", p.display()),
            WalkError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// Lists the files of the model: `(name, path)`. A model that is a single
/// file is one entry named `.` (as model signing names it). Ignored folders
/// are not entered.
pub fn list_files(
    model: &Path,
    ignore: &[IgnorePath],
    allow_symlinks: bool,
) -> Result<Vec<(String, PathBuf)>, WalkError> {
    let meta = std::fs::symlink_metadata(model).map_err(|e| WalkError::Io(model.into(), e))?;
    if meta.file_type().is_symlink() && !allow_symlinks {
        return Err(WalkError::Symlink(model.display().to_string()));
    }
    let meta = std::fs::metadata(model).map_err(|e| WalkError::Io(model.into(), e))?;
    if meta.is_file() {
        return Ok(vec![(".".to_string(), model.to_path_buf())]);
    }
    if !meta.is_dir() {
        return Err(WalkError::Special(model.display().to_string()));
    }
    let name_of = |p: &Path| -> Result<String, WalkError> {
        let rel = p.strip_prefix(model).unwrap_or(p);
        let mut parts = Vec::new();
        for c in rel.components() {
            match c.as_os_str().to_str() {
                Some(s) => parts.push(s),
                None => return Err(WalkError::NotUtf8(p.to_path_buf())),
            }
        }
        Ok(parts.join("/"))
    };
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(model)
        .follow_links(allow_symlinks)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || match name_of(e.path()) {
                    Ok(n) => !ignore.iter().any(|i| i.covers(&n)),
                    Err(_) => true, // reported below
                }
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(model).to_path_buf();
            WalkError::Io(
                p,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            )
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let name = name_of(entry.path())?;
        let ft = entry.file_type();
        if entry.path_is_symlink() && !allow_symlinks {
            return Err(WalkError::Symlink(name));
        }
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            return Err(WalkError::Special(name));
        }
        files.push((name, entry.into_path()));
    }
    Ok(files)
}

/// Hashes the files, several at a time (rayon), each streamed (the
/// scanner's SHA-256, reading and hashing overlapped).
pub fn hash_files(files: Vec<(String, PathBuf)>) -> Result<Manifest, WalkError> {
    let entries: Result<Vec<Entry>, WalkError> = files
        .into_par_iter()
        .map(|(name, path)| {
            let mut f = std::fs::File::open(&path).map_err(|e| WalkError::Io(path.clone(), e))?;
            let sha256 =
                probity_scan::sha256_file(&mut f).map_err(|e| WalkError::Io(path.clone(), e))?;
            Ok(Entry { name, sha256 })
        })
        .collect();
    Ok(Manifest::new(entries?))
}

/// A difference between the signed manifest and the model on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Changed {
        name: String,
        signed: String,
        found: String,
    },
    Added(String),
    Removed(String),
    /// A signed file is missing and an unsigned one has its exact content.
    Renamed {
        from: String,
        to: String,
    },
    /// A signed file that `--ignore-paths` asked to skip.
    IgnoredButSigned(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Changed {
                name,
                signed,
                found,
            } => write!(
                f,
                "file changed: {name} (signed sha256 {signed}, found {found})"
            ),
            Problem::Added(n) => write!(f, "file added: {n} (not in the signature)"),
            Problem::Removed(n) => write!(f, "file removed: {n} (in the signature, missing)"),
            Problem::Renamed { from, to } => write!(
                f,
                "file renamed: {from} -> {to} (same content, not the signed name)"
            ),
            Problem::IgnoredButSigned(n) => write!(
                f,
                "file ignored but signed: {n} (--ignore-paths skips it, but the signature covers it)"
            ),
        }
    }
}

/// The differences between `signed` and `found`, in canonical name order.
/// `user_ignored` are the verifier's own `--ignore-paths`: a signed file they
/// hide is reported as such rather than as removed.
pub fn diff(signed: &[Entry], found: &Manifest, user_ignored: &[IgnorePath]) -> Vec<Problem> {
    let signed_map: BTreeMap<&str, &str> = signed
        .iter()
        .map(|e| (e.name.as_str(), e.sha256.as_str()))
        .collect();
    let found_map: BTreeMap<&str, &str> = found
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.sha256.as_str()))
        .collect();
    let mut problems = Vec::new();
    let mut removed = Vec::new();
    for (name, digest) in &signed_map {
        match found_map.get(name) {
            Some(d) if d.eq_ignore_ascii_case(digest) => {}
            Some(d) => problems.push(Problem::Changed {
                name: name.to_string(),
                signed: digest.to_ascii_lowercase(),
                found: d.to_string(),
            }),
            None if user_ignored.iter().any(|i| i.covers(name)) => {
                problems.push(Problem::IgnoredButSigned(name.to_string()))
            }
            None => removed.push((*name, *digest)),
        }
    }
    let mut added: Vec<(&str, &str)> = found_map
        .iter()
        .filter(|(n, _)| !signed_map.contains_key(*n))
        .map(|(n, d)| (*n, *d))
        .collect();
    let mut paired: HashSet<&str> = HashSet::new();
    for (name, digest) in removed {
        let twin = added
            .iter()
            .find(|(n, d)| d.eq_ignore_ascii_case(digest) && !paired.contains(n));
        match twin {
            Some((to, _)) => {
                paired.insert(to);
                problems.push(Problem::Renamed {
                    from: name.to_string(),
                    to: to.to_string(),
                });
            }
            None => problems.push(Problem::Removed(name.to_string())),
        }
    }
    added.retain(|(n, _)| !paired.contains(n));
    problems.extend(
        added
            .into_iter()
            .map(|(n, _)| Problem::Added(n.to_string())),
    );
    problems.sort_by(|a, b| canonical_order(problem_name(a), problem_name(b)));
    problems
}

fn problem_name(p: &Problem) -> &str {
    match p {
        Problem::Changed { name, .. } => name,
        Problem::Added(n) | Problem::Removed(n) | Problem::IgnoredButSigned(n) => n,
        Problem::Renamed { from, .. } => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, d: &str) -> Entry {
        Entry {
            name: name.into(),
            sha256: d.repeat(64 / d.len()),
        }
    }

    #[test]
    fn order_is_by_components() {
        let m = Manifest::new(vec![e("a.txt", "1"), e("a/b", "2"), e("B", "3")]);
        let names: Vec<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["B", "a/b", "a.txt"]);
    }

    #[test]
    fn root_digest_of_known_digests() {
        // sha256(bytes.fromhex("11"*32 + "22"*32)), from Python's hashlib
        let r = Manifest::root_digest(&[e("x", "11"), e("y", "22")]);
        assert_eq!(
            r,
            "5189c77d29fe5d546a045ec46986852785fea5c13ac7da9c115ff5fb6edf817c"
        );
        assert_ne!(r, Manifest::root_digest(&[e("y", "22"), e("x", "11")]));
    }

    #[test]
    fn ignore_paths() {
        let g = IgnorePath::parse("./.git/").unwrap();
        assert!(g.covers(".git"));
        assert!(g.covers(".git/HEAD"));
        assert!(!g.covers(".gitignore"));
        assert!(!g.covers("a/.git"));
        assert!(IgnorePath::parse("../x").is_none());
        assert!(IgnorePath::parse("./").is_none());
        assert_eq!(IgnorePath::parse("a//b").unwrap().as_string(), "a/b");
    }

    #[test]
    fn diff_names_each_problem() {
        let signed = vec![
            e("changed", "11"),
            e("kept", "22"),
            e("old-name", "33"),
            e("gone", "44"),
            e("hidden", "55"),
        ];
        let found = Manifest::new(vec![
            e("changed", "99"),
            e("kept", "22"),
            e("new-name", "33"),
            e("extra", "66"),
        ]);
        let p = diff(&signed, &found, &[IgnorePath::parse("hidden").unwrap()]);
        assert_eq!(
            p,
            vec![
                Problem::Changed {
                    name: "changed".into(),
                    signed: "1".repeat(64),
                    found: "9".repeat(64)
                },
                Problem::Added("extra".into()),
                Problem::Removed("gone".into()),
                Problem::IgnoredButSigned("hidden".into()),
                Problem::Renamed {
                    from: "old-name".into(),
                    to: "new-name".into()
                },
            ]
        );
        assert!(diff(&signed[1..2], &Manifest::new(vec![e("kept", "22")]), &[]).is_empty());
    }

    #[test]
    fn lists_files_skipping_ignored_folders() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".git/objects")).unwrap();
        std::fs::create_dir_all(d.path().join("sub/empty")).unwrap();
        std::fs::write(d.path().join(".git/objects/x"), b"x").unwrap();
        std::fs::write(d.path().join("sub/w.bin"), b"w").unwrap();
        std::fs::write(d.path().join("config.json"), b"{}").unwrap();
        let ign = [IgnorePath::parse(".git").unwrap()];
        let files = list_files(d.path(), &ign, false).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["config.json", "sub/w.bin"]);
        let m = hash_files(files).unwrap();
        // sha256("{}")
        assert_eq!(
            m.entries[0].sha256,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        // a single-file model is one entry named "."
        let one = list_files(&d.path().join("config.json"), &[], false).unwrap();
        assert_eq!(one[0].0, ".");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("config.json", d.path().join("link")).unwrap();
            assert!(matches!(
                list_files(d.path(), &ign, false),
                Err(WalkError::Symlink(n)) if n == "link"
            ));
            assert_eq!(list_files(d.path(), &ign, true).unwrap().len(), 3);
        }
    }
}
