//! Which curve25519-dalek backend does the arithmetic on this machine.
//!
//! curve25519-dalek chooses among its serial, AVX2 and AVX-512 IFMA backends
//! at run time with CPUID, among the backends the build compiled in. The
//! workspace's `.cargo/config.toml` compiles all three on x86_64 (cfg
//! `curve25519_dalek_backend = "avx512"`), so one portable binary uses IFMA
//! where the CPU has it and never executes an instruction the CPU lacks.
//! [`simd_backend`] repeats dalek's choice so that start-up logs and benches
//! can say which one is in use.

use std::fmt;

/// A curve25519-dalek arithmetic backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// 52-bit limbs on AVX-512 IFMA (`vpmadd52luq`), the fastest.
    Avx512Ifma,
    /// 4-way parallel field arithmetic on AVX2.
    Avx2,
    /// Portable 64-bit serial arithmetic.
    Serial,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Avx512Ifma => "avx512ifma",
            Backend::Avx2 => "avx2",
            Backend::Serial => "serial",
        })
    }
}

/// Whether this build compiled curve25519-dalek's IFMA backend.
pub const IFMA_COMPILED: bool = cfg!(any(
    curve25519_dalek_backend = "avx512",
    all(target_feature = "avx512ifma", target_feature = "avx512vl")
));

/// The backend curve25519-dalek selects on this CPU, by the same rules it
/// applies (`curve25519-dalek/src/backend.rs`, `get_selected_backend`).
pub fn simd_backend() -> Backend {
    #[cfg(target_arch = "x86_64")]
    {
        if IFMA_COMPILED
            && std::is_x86_feature_detected!("avx512ifma")
            && std::is_x86_feature_detected!("avx512vl")
        {
            return Backend::Avx512Ifma;
        }
        let simd_compiled = !cfg!(any(
            curve25519_dalek_backend = "serial",
            curve25519_dalek_backend = "fiat"
        ));
        if simd_compiled && std::is_x86_feature_detected!("avx2") {
            return Backend::Avx2;
        }
    }
    Backend::Serial
}

/// One line for start-up logs and bench headers.
pub fn describe() -> String {
    format!(
        "ed25519 backend: {} (ifma compiled in: {}, rayon threads: {})",
        simd_backend(),
        IFMA_COMPILED,
        rayon::current_num_threads()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_matches_cpu() {
        let b = simd_backend();
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512ifma")
            && std::is_x86_feature_detected!("avx512vl")
            && IFMA_COMPILED
        {
            assert_eq!(b, Backend::Avx512Ifma);
        }
        assert!(describe().contains(&b.to_string()));
    }
}
