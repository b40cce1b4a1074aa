//! The `inference` binary as a user runs it: real files in, real files out, clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_inference"))
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails_with(out: Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure mentioning {needle:?}"
    );
    assert!(
        err.contains(needle),
        "stderr does not mention {needle:?}:\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "a panic is not an error message:\n{err}"
    );
}

fn fc(case: &Path, out: &Path, x: Option<&Path>) -> Output {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("meta.json")).unwrap()).unwrap();
    bin()
        .arg("op")
        .arg("fully-connected")
        .arg("--x")
        .arg(
            x.map(Path::to_path_buf)
                .unwrap_or_else(|| case.join("x.npy")),
        )
        .args(["--w".as_ref(), case.join("w.npy").as_os_str()])
        .args(["--bias".as_ref(), case.join("bias.npy").as_os_str()])
        .args([
            "--multiplier".as_ref(),
            case.join("multiplier.npy").as_os_str(),
        ])
        .args(["--shift".as_ref(), case.join("shift.npy").as_os_str()])
        .arg(format!("--x-zero-point={}", meta["x_zero_point"]))
        .args(["--y-zero-point", &meta["y_zero_point"].to_string()])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn fully_connected_command_reproduces_litert() {
    let dir = scratch("fc");
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litert_fully_connected");
    for case in ["case_009", "case_014", "case_027"] {
        let case = fixtures.join(case);
        let out = dir.join("y.npy");
        let v = ok(fc(&case, &out, None));
        assert_eq!(v["op"], "fully_connected");
        assert_eq!(
            std::fs::read(&out).unwrap()[128..],
            std::fs::read(case.join("y.npy")).unwrap()[128..]
        );
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = scratch("bad");
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litert_fully_connected/case_009");
    let out = dir.join("y.npy");
    fails_with(
        fc(&case, &out, Some(&dir.join("missing.npy"))),
        "missing.npy",
    );
    let x = std::fs::read(case.join("x.npy")).unwrap();
    let truncated = dir.join("truncated.npy");
    std::fs::write(&truncated, &x[..x.len() - 3]).unwrap();
    fails_with(fc(&case, &out, Some(&truncated)), "truncated");
    // x as the bias file: wrong dtype.
    fails_with(fc(&case, &out, Some(&case.join("bias.npy"))), "dtype");
    assert!(!out.exists(), "no output is written on failure");
    fails_with(
        bin()
            .args(["run", "--model", dir.to_str().unwrap(), "--input", "x.npy"])
            .output()
            .unwrap(),
        "manifest.json",
    );
}

#[test]
fn demo_writes_a_model_that_run_and_trace_reproduce() {
    let dir = scratch("demo");
    let model = dir.join("model");
    let demo = ok(bin()
        .args([
            "demo",
            "--json",
            "--text",
            "proofs",
            "--write-model",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    let input = model.join("demo-input.npy");
    let run = ok(bin()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    assert_eq!(run["output"], demo["output"]);
    assert_eq!(run["model_id"], demo["model_id"]);
    let trace = ok(bin()
        .args([
            "--threads",
            "1",
            "trace",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    assert_eq!(trace["trace_root"], demo["trace_root"]);
    let n = trace["op_count"].as_u64().unwrap() as usize;
    assert_eq!(trace["states"].as_array().unwrap().len(), n + 1);
    let info = ok(bin()
        .args(["info", "--model", model.to_str().unwrap()])
        .output()
        .unwrap());
    assert_eq!(info["model_id"], demo["model_id"]);
}

#[test]
fn help_explains_every_command() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["op", "run", "trace", "demo", "info"] {
        assert!(text.contains(cmd), "--help does not list {cmd}");
    }
    let out = bin()
        .args(["op", "fully-connected", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--x-zero-point"));
}
