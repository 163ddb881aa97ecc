//! The Python peers' interpreter, shared by the library's and the gateway's
//! tests (the gateway's support module includes this file).

use std::path::{Path, PathBuf};

/// The interpreter of the Python peers' venv (made by scripts/install-test-deps).
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-peers/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-deps (scripts/test does)",
        python.display()
    );
    python
}
