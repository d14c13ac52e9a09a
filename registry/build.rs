//! Emits the SDK build identity that plugins compile in and the host
//! compares at load time: rustc version, and a BLAKE3 over the lockfile,
//! the SDK's own sources (registry + dsl), enabled features, profile and
//! target. Any difference means the two sides
//! may disagree on type layouts, so the host refuses the plugin.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let lock_path = manifest.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    println!("cargo:rerun-if-changed=build.rs");
    let lock = fs::read(&lock_path).unwrap_or_default();
    // The SDK dylib contains these crates; any change to them changes its
    // symbols, so a plugin built before the change must be refused.
    let mut sources = Vec::new();
    for dir in ["src", "../dsl/src"] {
        let d = manifest.join(dir);
        println!("cargo:rerun-if-changed={}", d.display());
        collect(&d, &mut sources);
    }
    sources.sort();

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "rustc unknown".into());

    let mut features: Vec<String> = env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_lowercase))
        .collect();
    features.sort();
    let profile = env::var("PROFILE").unwrap_or_default();
    let target = env::var("TARGET").unwrap_or_default();

    let mut h = blake3::Hasher::new();
    h.update(&lock);
    for p in &sources {
        h.update(
            p.strip_prefix(&manifest)
                .unwrap_or(p)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update(&fs::read(p).unwrap_or_default());
    }
    h.update(version.as_bytes());
    h.update(features.join(",").as_bytes());
    h.update(profile.as_bytes());
    h.update(target.as_bytes());
    let id = h.finalize().to_hex()[..16].to_string();

    let code = format!(
        "/// `rustc -V` of the compiler that built the SDK.\n\
         pub const RUSTC_VERSION: &str = {version:?};\n\
         /// BLAKE3 (16 hex digits) of Cargo.lock, features, profile and target.\n\
         pub const SDK_BUILD_ID: &str = {id:?};\n\
         const RUSTC_VERSION_CSTR: &::core::ffi::CStr = c{version:?};\n\
         const SDK_BUILD_ID_CSTR: &::core::ffi::CStr = c{id:?};\n\
         /// Enabled SDK features, comma-separated.\n\
         pub const SDK_FEATURES: &str = {feat:?};\n\
         /// Build profile of the SDK (`debug` or `release`).\n\
         pub const SDK_PROFILE: &str = {profile:?};\n",
        feat = features.join(","),
    );
    fs::write(out.join("build_info.rs"), code).expect("write build_info.rs");
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}
