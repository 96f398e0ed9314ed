//! Every real `.vbox` in the corpus loads, and round-trips byte for byte.

mod common;

use settings::MachineFile;

#[test]
fn every_corpus_file_loads() {
    for p in common::corpus_files() {
        let f = MachineFile::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.machine.name.is_empty(), "{}", p.display());
    }
}

#[test]
fn unchanged_save_is_byte_identical() {
    for p in common::corpus_files() {
        let bytes = std::fs::read(&p).unwrap();
        let mut f = MachineFile::from_bytes(&p, &bytes).unwrap();
        assert_eq!(f.to_bytes(), bytes, "{}", p.display());
    }
}
