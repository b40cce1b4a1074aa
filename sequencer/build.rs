//! With the `tch` feature, the `sequencer` binary and this crate's tests, examples and
//! benches find libtorch at run time through an rpath to the libtorch they were linked
//! against (`LIBTORCH/lib`, as `inference/build.rs` does), so they run without
//! `LD_LIBRARY_PATH`. Without the feature this does nothing.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let lib = std::env::var("LIBTORCH_LIB")
        .or_else(|_| std::env::var("LIBTORCH").map(|t| format!("{t}/lib")));
    if let Ok(lib) = lib {
        let lib = std::path::Path::new(&lib);
        let lib = lib.canonicalize().unwrap_or_else(|_| lib.to_path_buf());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
