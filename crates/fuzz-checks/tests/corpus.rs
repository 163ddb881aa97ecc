//! Every file of the fuzz corpus, replayed through its target's check on
//! stable: what the fuzzer once found stays fixed.

use std::path::{Path, PathBuf};

use frameway_fuzz_checks::TARGETS;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} has no seeds");
    for file in files {
        let data = std::fs::read(&file).expect("a readable corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            panic!("{} fails: {panic:?}", file.display());
        }
    }
}

#[test]
fn every_target_has_a_corpus_test() {
    let mut tested: Vec<&str> = TESTED.to_vec();
    let mut all: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    tested.sort();
    all.sort();
    assert_eq!(tested, all);
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        const TESTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*
    };
}

corpus_tests!(
    frame_decoder,
    protocol,
    protocol_deflate,
    relay,
    utf8,
    request_target,
    handshake_request,
    handshake_response,
    extensions,
    roundtrip,
    router,
    config,
);
