//! The committed build: `artifacts/manifest.json` and the hash of the sources it was built
//! from, so that a test can tell when the artifacts are stale.
//!
//! `sourcesHash` is SHA3-256 over, for each `.sol` file under `contracts/src` in sorted
//! path order (relative to `contracts/`, `/`-separated), `path || 0x00 || contents || 0x00`,
//! then over `foundry.toml` (compiler settings). `scripts/export_artifacts.py` writes it.

use serde::Deserialize;
use sha3::{Digest, Sha3_256};
use std::path::{Path, PathBuf};

/// The manifest of the committed artifacts, as JSON.
pub const MANIFEST_JSON: &str = include_str!("../artifacts/manifest.json");

/// The compiler settings the artifacts were built with.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The EVM version (`cancun`).
    pub evm_version: String,
    /// Whether the IR pipeline was used.
    #[serde(rename = "viaIR")]
    pub via_ir: bool,
}

/// `artifacts/manifest.json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The solc version (`0.8.30+commit...`).
    pub compiler: String,
    /// Compiler settings.
    pub settings: Settings,
    /// The hash of the sources and `foundry.toml` (see the module docs), `0x`-prefixed hex.
    pub sources_hash: String,
    /// The source files covered, relative to `contracts/`.
    pub sources: Vec<String>,
    /// The exported contract names (one `artifacts/<Name>.json` each).
    pub contracts: Vec<String>,
}

impl Manifest {
    /// The committed manifest.
    pub fn committed() -> serde_json::Result<Self> {
        serde_json::from_str(MANIFEST_JSON)
    }
}

/// The directory of this crate (`contracts/`), where the sources and artifacts live.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.sol` files under `dir/src`, relative to `dir`, sorted.
pub fn solidity_sources(dir: &Path) -> std::io::Result<Vec<String>> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(at)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "sol") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, &dir.join("src"), &mut out)?;
    out.sort();
    Ok(out)
}

/// The `sourcesHash` of the sources under `dir` (see the module docs).
pub fn sources_hash(dir: &Path) -> std::io::Result<String> {
    let mut h = Sha3_256::new();
    for rel in solidity_sources(dir)? {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(std::fs::read(dir.join(&rel))?);
        h.update([0]);
    }
    h.update(std::fs::read(dir.join("foundry.toml"))?);
    Ok(format!("0x{}", hex::encode(h.finalize())))
}
