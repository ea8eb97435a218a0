//! Links `kontti-runc` as a position-dependent executable (`-no-pie`).
//!
//! It is short-lived and its peak RSS counts: in a PIE, the dynamic loader
//! writes every page of `.data.rel.ro` that holds a pointer (about 300 KB of
//! private dirty pages here) before `main` runs; linked at a fixed address
//! those pages need no relocation and stay clean page cache that is only
//! mapped when touched. Only this package's binaries are affected (tests
//! and other crates keep the target's default).
#![allow(clippy::disallowed_macros)] // cargo reads build script output

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
