#!/usr/bin/env python3
"""Export the compiled contracts of contracts/src into contracts/artifacts/.

Run after `forge build` (see `make contracts`). For every contract, library and interface
whose source lies under contracts/src it writes `contracts/artifacts/<Name>.json` with the
ABI, the creation bytecode and the deployed bytecode, and `manifest.json` with the compiler
settings and `sourcesHash`: SHA3-256 over, for each `.sol` file under contracts/src in
sorted path order, `path || 0x00 || contents || 0x00`, then over `foundry.toml`. The Rust
test `contracts/tests/artifacts.rs` recomputes that hash and fails when the committed
artifacts are stale.
"""

import hashlib
import json
import pathlib
import sys

CONTRACTS = pathlib.Path(__file__).resolve().parent.parent / "contracts"
OUT = CONTRACTS / "out"
ARTIFACTS = CONTRACTS / "artifacts"


def sources_hash() -> tuple[str, list[str]]:
    """The hash the Rust test recomputes, and the source paths it covers."""
    h = hashlib.sha3_256()
    paths = sorted(p.relative_to(CONTRACTS).as_posix() for p in (CONTRACTS / "src").rglob("*.sol"))
    for rel in paths:
        h.update(rel.encode() + b"\0" + (CONTRACTS / rel).read_bytes() + b"\0")
    h.update((CONTRACTS / "foundry.toml").read_bytes())
    return "0x" + h.hexdigest(), paths


def main() -> int:
    digest, paths = sources_hash()
    contracts = {}
    compiler = None
    settings = None
    for f in sorted(OUT.glob("*.sol/*.json")):
        data = json.loads(f.read_text())
        meta = data.get("metadata") or {}
        target = (meta.get("settings") or {}).get("compilationTarget") or {}
        for source, name in target.items():
            if not source.startswith("src/") or source not in paths:
                continue
            if name in contracts:
                print(f"two contracts named {name}", file=sys.stderr)
                return 1
            bytecode = data["bytecode"]["object"]
            deployed = data["deployedBytecode"]["object"]
            if "__$" in bytecode:
                print(f"{name} needs library linking, which the artifacts do not support", file=sys.stderr)
                return 1
            contracts[name] = {
                "contractName": name,
                "sourceName": source,
                "abi": data["abi"],
                "bytecode": bytecode,
                "deployedBytecode": deployed,
            }
            compiler = meta["compiler"]["version"]
            s = meta["settings"]
            settings = {
                "optimizer": s["optimizer"],
                "evmVersion": s["evmVersion"],
                "viaIR": s.get("viaIR", False),
                "metadata": s.get("metadata", {}),
            }
    if not contracts:
        print("no build output under contracts/out: run forge build first", file=sys.stderr)
        return 1
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("*.json"):
        old.unlink()
    for name, c in contracts.items():
        (ARTIFACTS / f"{name}.json").write_text(json.dumps(c, indent=2) + "\n")
    manifest = {
        "compiler": compiler,
        "settings": settings,
        "sourcesHash": digest,
        "sources": paths,
        "contracts": sorted(contracts),
    }
    (ARTIFACTS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"exported {len(contracts)} contracts from {len(paths)} sources, sourcesHash {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
