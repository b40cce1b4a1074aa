//! The committed artifacts must be the build of the committed sources: this fails when a
//! `.sol` file or `foundry.toml` changed without `make contracts`.

use contracts::artifacts::{Manifest, crate_dir, solidity_sources, sources_hash};
use contracts::bindings::OneStepVerifier;

#[test]
fn artifacts_match_the_sources() {
    let manifest = Manifest::committed().expect("artifacts/manifest.json parses");
    let dir = crate_dir();
    assert_eq!(
        manifest.sources,
        solidity_sources(&dir).expect("list sources"),
        "the set of .sol files changed: run `make contracts`"
    );
    assert_eq!(
        sources_hash(&dir).expect("hash sources"),
        manifest.sources_hash,
        "contracts/artifacts is stale: run `make contracts` and commit contracts/artifacts"
    );
    assert_eq!(manifest.settings.evm_version, "cancun");
    for name in &manifest.contracts {
        assert!(
            dir.join(format!("artifacts/{name}.json")).is_file(),
            "artifacts/{name}.json"
        );
    }
}

#[test]
fn verifier_fits_the_code_size_limit() {
    // EIP-170: 24,576 bytes of deployed code.
    let size = OneStepVerifier::DEPLOYED_BYTECODE.len();
    assert!(
        size > 0 && size <= 24_576,
        "OneStepVerifier is {size} bytes"
    );
}
