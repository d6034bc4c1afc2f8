//! CPU-feature dispatch for the kernels, in one place: [`Features`], the run-time check of what
//! the CPU supports, and [`dispatch!`], which compiles one function body twice (for the baseline
//! target and with AVX2) and picks one at run time.
//!
//! Both versions run the same source, so they do the same floating-point operations in the same
//! order: Rust never contracts `a * b + c` into a fused multiply-add or reassociates a sum, and
//! only AVX2 (not FMA) is enabled. Enabling AVX2 changes the instructions, never the bits.

/// The CPU features the kernels may use. Only [`Features::detect`] reports a feature as present,
/// so a `Features` with [`Features::avx2`] true proves the CPU has AVX2 (the `unsafe` calls of
/// AVX2 code rely on this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    avx2: bool,
}

impl Features {
    /// The features of this CPU. The CPUID query runs once per process: `std` caches its answer,
    /// so this is a load and a bit test.
    #[inline]
    pub fn detect() -> Features {
        Features {
            avx2: avx2_detected(),
        }
    }

    /// No optional feature: the baseline versions (tests compare the two).
    #[cfg(test)]
    pub const fn baseline() -> Features {
        Features { avx2: false }
    }

    /// Whether AVX2 code may run.
    #[inline]
    pub fn avx2(self) -> bool {
        self.avx2
    }
}

#[inline]
fn avx2_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn name(features: Features, args..)` that runs `body` compiled with
/// `#[target_feature(enable = "avx2")]` when `features.avx2()`, else compiled for the baseline
/// target. The body is written once, as an `#[inline(always)]` function that both versions
/// inline, so the two do the same arithmetic in the same order. Attributes and doc comments apply
/// to the defined function; const generic parameters are allowed.
///
/// ```text
/// crate::simd::dispatch! {
///     /// sum_i x[i] * y[i]
///     pub fn dot(x: &[f64], y: &[f64]) -> f64 {
///         x.iter().zip(y).map(|(a, b)| a * b).sum()
///     }
/// }
/// let value = dot(Features::detect(), &x, &y);
/// ```
macro_rules! dispatch {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident $(<$(const $generic:ident : $generic_ty:ty),+>)?
            ($($arg:ident : $arg_ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name $(<$(const $generic: $generic_ty),+>)?
            (features: $crate::simd::Features, $($arg: $arg_ty),*) $(-> $ret)?
        {
            #[inline(always)]
            fn baseline $(<$(const $generic: $generic_ty),+>)?
                ($($arg: $arg_ty),*) $(-> $ret)?
            $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2 $(<$(const $generic: $generic_ty),+>)?
                ($($arg: $arg_ty),*) $(-> $ret)?
            {
                baseline $(::<$($generic),+>)? ($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if features.avx2() {
                // SAFETY: `Features` reports AVX2 only when the CPU has it (`Features::detect`).
                return unsafe { avx2 $(::<$($generic),+>)? ($($arg),*) };
            }
            let _ = features;
            baseline $(::<$($generic),+>)? ($($arg),*)
        }
    };
}

pub(crate) use dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    dispatch! {
        /// A sum in a fixed order (both versions give the same bits).
        fn ordered_sum<const SQUARE: bool>(values: &[f32]) -> f32 {
            let mut total = 0.0f32;
            for &value in values {
                total += if SQUARE { value * value } else { value };
            }
            total
        }
    }

    #[test]
    fn baseline_and_detected_versions_give_the_same_bits() {
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for features in [Features::baseline(), Features::detect()] {
            assert_eq!(
                ordered_sum::<false>(features, &values).to_bits(),
                ordered_sum::<false>(Features::baseline(), &values).to_bits()
            );
            assert_eq!(
                ordered_sum::<true>(features, &values).to_bits(),
                ordered_sum::<true>(Features::baseline(), &values).to_bits()
            );
        }
        assert!(!Features::baseline().avx2());
    }
}
