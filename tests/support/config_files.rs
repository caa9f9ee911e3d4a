//! The configuration as files, for the tests a `reload` needs (it reads the files again).

#![allow(dead_code)]

use std::path::Path;

/// Edits a file of the configuration folder `dir` (the shipped one the first time): each `from`
/// must be there, and is replaced once.
pub fn edit(dir: &Path, file: &str, edits: &[(&str, &str)]) {
    let path = dir.join(file);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| std::fs::read_to_string(Path::new("config").join(file)).unwrap());
    for (from, to) in edits {
        assert!(text.contains(from), "{file} has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text).unwrap();
}
