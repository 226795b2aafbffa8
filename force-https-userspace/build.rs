//! Builds the XDP program (`force-https-ebpf`) for the bpf target with aya-build, so the
//! daemon embeds the object file it was built with. Prerequisites (nightly + rust-src,
//! bpf-linker): `cargo xtask setup` installs them.
//!
//! With the `fuzzing` feature (cargo-fuzz builds, whose sanitizer flags would break the
//! nested bpf build) an empty object is embedded instead, and the XDP loader refuses it.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    if std::env::var_os("CARGO_FEATURE_FUZZING").is_some() {
        let out = std::env::var_os("OUT_DIR").context("OUT_DIR")?;
        let object = std::path::Path::new(&out).join("force-https-ebpf");
        std::fs::write(&object, b"")
            .with_context(|| format!("cannot write {}", object.display()))?;
        return Ok(());
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?
        .join("force-https-ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "force-https-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
