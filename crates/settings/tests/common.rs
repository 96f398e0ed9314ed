//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The corpus of real `.vbox` files (published machine files, byte-for-byte; where each
/// comes from is in its SOURCES.md).
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/vbox")
}

/// All corpus files, sorted. Panics loudly when the corpus is missing, so
/// the tests cannot pass vacuously.
pub fn corpus_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "vbox"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 20,
        "expected the corpus of 22 files, found {}",
        v.len()
    );
    v
}

/// Our own test data.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}
