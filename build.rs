//! Lets `target/<profile>/mer` run outside cargo: mer links the SDK
//! (`libmer_registry.so`, one shared copy of candle) and Rust's `libstd`
//! dynamically, so the binary records where to find them.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string());
    // The SDK sits next to the binary (uplifted) or in deps/.
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN:$ORIGIN/deps");
    if let Some(root) = sysroot {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{root}/lib/rustlib/{target}/lib");
    }
}
