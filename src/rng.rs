//! Seeding: every random draw of a run comes from (seed, step), so a resumed run draws exactly
//! what the uninterrupted one would have and results never depend on the order work is done in.

/// A seed for step `i` of a run seeded `seed` (SplitMix64 of the pair), so a resumed run draws
/// exactly what the uninterrupted one would have.
pub fn step_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
