//! A test's scratch folder, removed when the test is done: a test run leaves the temporary folder
//! as it found it. A failing test keeps its folder for a look, and says where.
//!
//! Shared by the unit tests (`crate::test_dir`) and the integration tests (`support::test_dir`,
//! the same file). Each test crate uses what it needs of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// `<temp>/th-<name>-<pid>-<n>`, made empty; removed with everything in it when dropped.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        // The process id keeps parallel test binaries apart, the counter two folders of one name.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("th-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test_dir: kept {} for a look (the test failed)", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A path inside a `TestDir` of its own, removed with it when dropped; it reads as the path
/// (`&TestPath` is a `&Path`).
pub struct TestPath {
    _dir: TestDir,
    path: PathBuf,
}

impl TestDir {
    /// `rel` inside this folder, the folder going with it.
    pub fn into_path(self, rel: impl AsRef<Path>) -> TestPath {
        let path = self.path.join(rel);
        TestPath { _dir: self, path }
    }
}

impl std::ops::Deref for TestPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TestPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}
