//! Writes the hostile corpus to `tests/corpus/hostile/` (the case files,
//! `manifest.toml`, `trust.toml`, `policy.toml`). Run after changing
//! `tests/src/hostile.rs`; `tests/tests/hostile.rs` fails until the
//! committed files match the generator.
//!
//!     cargo run -p warrant-tests --example hostile_corpus

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = warrant_tests::workspace_root().join("tests/corpus/hostile");
    if dir.exists() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "bin") {
                std::fs::remove_file(p)?;
            }
        }
    }
    std::fs::create_dir_all(&dir)?;
    let cases = warrant_tests::hostile::cases();
    let write = |name: &str, bytes: &[u8]| std::fs::write(Path::new(&dir).join(name), bytes);
    for c in &cases {
        write(&c.file, &c.bytes)?;
    }
    write(
        "manifest.toml",
        warrant_tests::hostile::manifest(&cases).as_bytes(),
    )?;
    write(
        "trust.toml",
        warrant_tests::hostile::trust_toml().as_bytes(),
    )?;
    write("policy.toml", warrant_tests::hostile::POLICY.as_bytes())?;
    println!("wrote {} cases to {}", cases.len(), dir.display());
    Ok(())
}
