//! The small real dataset shipped inside the binary: scikit-learn's 8x8 digits (CC BY 4.0).

use super::{Dataset, Split};

static IMAGES: &[u8] = include_bytes!("../../data/digits/digits-images-idx3-ubyte.gz");
static LABELS: &[u8] = include_bytes!("../../data/digits/digits-labels-idx1-ubyte.gz");

/// All 1797 digits, 1x8x8, pixels scaled from 0..16 to [0, 1].
pub fn digits() -> Dataset {
    let im = super::idx::decompress_if_gz(IMAGES.to_vec()).expect("embedded digits images");
    let lb = super::idx::decompress_if_gz(LABELS.to_vec()).expect("embedded digits labels");
    super::idx::dataset_from_bytes(&im, &lb, 16.0, "digits").expect("embedded digits parse")
}

/// The digits split into train and test (stratified, 20% test, seeded), normalised by train statistics.
pub fn digits_split(split_seed: u64) -> Split {
    let all = digits();
    let (train, test) = super::seeded_split(&all, 0.2, split_seed);
    super::make_split("digits", train, test, None)
}
