//! Datasets: NCHW f32 images with labels, loaders, normalisation and per-class indexing; the
//! datasets known by name ([`catalog`]), their data folder ([`store`]) and downloads ([`fetch`]).

pub mod augment;
pub mod catalog;
pub mod cifar;
pub mod cifar_py;
pub mod commands;
pub mod embedded;
pub mod fetch;
pub mod idx;
pub mod named;
pub mod partition;
pub mod pickle_guard;
pub mod spec;
pub mod store;
pub mod stream;
pub mod synthetic;
pub mod usps;
pub mod zca;

use rand::seq::SliceRandom;
use rand::Rng;

/// A labelled image set held in host memory as NCHW f32.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dataset {
    /// Pixels, NCHW row-major, `n * c * h * w` values.
    pub images: Vec<f32>,
    /// One class index per image.
    pub labels: Vec<usize>,
    /// Channels, height, width.
    pub shape: [usize; 3],
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

/// Per-channel normalisation constants (x - mean) / std.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Channel means.
    pub mean: Vec<f32>,
    /// Channel standard deviations.
    pub std: Vec<f32>,
}

/// A train/test pair with the normalisation applied to both.
#[derive(Clone, Debug)]
pub struct Split {
    /// Training images.
    pub train: Dataset,
    /// Test images.
    pub test: Dataset,
    /// The constants used to normalise both.
    pub norm: Normalization,
    /// A short dataset name (for provenance and normalisation lookup).
    pub name: String,
    /// The ZCA regulariser, when both sets were ZCA-whitened after normalisation.
    pub zca: Option<f64>,
}

impl Split {
    /// The reference's DSA preset for this dataset (no flips for digits and characters).
    pub fn dsa_preset(&self) -> augment::Preset {
        match self.name.as_str() {
            "mnist" | "digits" | "usps" | "kmnist" | "emnist" => augment::Preset::Glyphs,
            _ => augment::Preset::Natural,
        }
    }

    /// ZCA-whitens both sets with the training set's statistics (after normalisation).
    pub fn whiten(&mut self, eps: f64) -> crate::error::Result<()> {
        let z = zca::Zca::fit(&self.train, eps)?;
        z.apply(&mut self.train)?;
        z.apply(&mut self.test)?;
        self.zca = Some(eps);
        Ok(())
    }

    /// The name that keys on-disk caches (experts, difficulty scores) and provenance: the dataset
    /// name, with `-zca<eps>` when whitened, so whitened and plain data never share a cache.
    pub fn cache_name(&self) -> String {
        match self.zca {
            Some(eps) => format!("{}-zca{eps}", self.name),
            None => self.name.clone(),
        }
    }

    /// The normalisation that maps the sets' values back to pixels, for pictures: none once
    /// whitened (pictures are then contrast-stretched).
    pub fn pixel_normalization(&self) -> Option<Normalization> {
        match self.zca {
            Some(_) => None,
            None => Some(self.norm.clone()),
        }
    }
}

impl Dataset {
    /// No images of `shape`.
    pub fn empty(shape: [usize; 3]) -> Self {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            shape,
            classes: Vec::new(),
        }
    }

    /// A stable 64-bit hash of the shape, labels and pixels (FNV-1a over 32-bit words), the part
    /// of cache keys that tells one client's or task's data from another's.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |w: u32| {
            h ^= w as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        self.shape.iter().for_each(|&d| feed(d as u32));
        feed(self.labels.len() as u32);
        self.labels.iter().for_each(|&y| feed(y as u32));
        self.images.iter().for_each(|v| feed(v.to_bits()));
        h
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Values per image (c*h*w).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let l = self.image_len();
        &self.images[i * l..(i + 1) * l]
    }

    /// Indices of the images of each class, in dataset order.
    pub fn class_indices(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.num_classes()];
        for (i, &y) in self.labels.iter().enumerate() {
            out[y].push(i);
        }
        out
    }

    /// Number of images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        self.class_indices().iter().map(Vec::len).collect()
    }

    /// A new dataset holding the images at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let l = self.image_len();
        let mut images = Vec::with_capacity(idx.len() * l);
        for &i in idx {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes.clone(),
        }
    }

    /// A random selection of `ipc` images per class (all of a class if it has fewer).
    pub fn random_per_class<R: Rng>(&self, ipc: usize, rng: &mut R) -> Dataset {
        let mut idx = Vec::new();
        for mut c in self.class_indices() {
            c.shuffle(rng);
            idx.extend(c.into_iter().take(ipc));
        }
        self.subset(&idx)
    }

    /// Per-channel mean and standard deviation of the pixels.
    pub fn channel_stats(&self) -> Normalization {
        let [c, h, w] = self.shape;
        let hw = h * w;
        let mut mean = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for img in self.images.chunks_exact(c * hw) {
            for ch in 0..c {
                for &v in &img[ch * hw..(ch + 1) * hw] {
                    mean[ch] += v as f64;
                    sq[ch] += (v as f64) * (v as f64);
                }
            }
        }
        let count = (self.len() * hw).max(1) as f64;
        let mean: Vec<f64> = mean.iter().map(|m| m / count).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| ((s / count - m * m).max(1e-12)).sqrt() as f32)
            .collect();
        Normalization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// Applies (x - mean) / std per channel in place.
    pub fn normalize(&mut self, norm: &Normalization) {
        let [c, h, w] = self.shape;
        let hw = h * w;
        for img in self.images.chunks_exact_mut(c * hw) {
            for ch in 0..c {
                let (m, s) = (norm.mean[ch], norm.std[ch]);
                for v in &mut img[ch * hw..(ch + 1) * hw] {
                    *v = (*v - m) / s;
                }
            }
        }
    }

    /// Checks that labels are in range, pixels are finite and the buffer matches the shape.
    pub fn validate(&self) -> Result<(), String> {
        if self.images.len() != self.len() * self.image_len() {
            return Err(format!(
                "{} pixel values for {} images of shape {:?}",
                self.images.len(),
                self.len(),
                self.shape
            ));
        }
        if let Some(i) = self.images.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "image {} has a non-finite pixel ({})",
                i / self.image_len().max(1),
                self.images[i]
            ));
        }
        if let Some(&y) = self.labels.iter().find(|&&y| y >= self.num_classes()) {
            return Err(format!(
                "label {y} out of range for {} classes",
                self.num_classes()
            ));
        }
        Ok(())
    }
}

/// Reference normalisation constants by dataset name (REFERENCE.md §1.2), if known.
pub fn reference_normalization(name: &str) -> Option<Normalization> {
    let (mean, std): (&[f32], &[f32]) = match name {
        "mnist" => (&[0.1307], &[0.3081]),
        "fashion_mnist" => (&[0.2861], &[0.3530]),
        "cifar10" => (&[0.4914, 0.4822, 0.4465], &[0.2023, 0.1994, 0.2010]),
        "cifar100" => (&[0.5071, 0.4866, 0.4409], &[0.2673, 0.2564, 0.2762]),
        _ => return None,
    };
    Some(Normalization {
        mean: mean.to_vec(),
        std: std.to_vec(),
    })
}

/// Class names for a known dataset with `n` classes; numbers otherwise.
pub fn class_names(name: &str, n: usize) -> Vec<String> {
    const CIFAR10: [&str; 10] = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    // torchvision's KMNIST class names (the romanised hiragana).
    const KMNIST: [&str; 10] = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"];
    const FASHION: [&str; 10] = [
        "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
        "boot",
    ];
    match (name, n) {
        ("cifar10", 10) => CIFAR10.iter().map(|s| s.to_string()).collect(),
        ("fashion_mnist", 10) => FASHION.iter().map(|s| s.to_string()).collect(),
        ("kmnist", 10) => KMNIST.iter().map(|s| s.to_string()).collect(),
        _ => (0..n).map(|i| i.to_string()).collect(),
    }
}

/// Splits `data` into train and test with a seeded shuffle, stratified per class.
pub fn seeded_split(data: &Dataset, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut c in data.class_indices() {
        c.shuffle(&mut rng);
        let n_test = ((c.len() as f64) * test_fraction).round() as usize;
        test.extend_from_slice(&c[..n_test]);
        train.extend_from_slice(&c[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (data.subset(&train), data.subset(&test))
}

/// Normalises a train/test pair with `norm` (or the train set's own statistics if `None`).
pub fn make_split(
    name: &str,
    mut train: Dataset,
    mut test: Dataset,
    norm: Option<Normalization>,
) -> Split {
    let norm = norm.unwrap_or_else(|| train.channel_stats());
    train.normalize(&norm);
    test.normalize(&norm);
    Split {
        train,
        test,
        norm,
        name: name.to_string(),
        zca: None,
    }
}

/// The images of `classes` in `data`, relabelled `0..classes.len()` in the order given (so a
/// distiller sees a dataset with only those classes); class names follow.
pub fn localise(data: &Dataset, classes: &[usize]) -> Dataset {
    let idx: Vec<usize> = (0..data.len())
        .filter(|&i| classes.contains(&data.labels[i]))
        .collect();
    let mut d = data.subset(&idx);
    for y in &mut d.labels {
        *y = classes.iter().position(|c| c == y).unwrap_or(0);
    }
    d.classes = classes
        .iter()
        .map(|&c| {
            data.classes
                .get(c)
                .cloned()
                .unwrap_or_else(|| c.to_string())
        })
        .collect();
    d
}

/// The inverse of [`localise`]: labels `0..classes.len()` back to `classes`, with the full list
/// of class names `names`.
pub fn globalise(local: &Dataset, classes: &[usize], names: &[String]) -> Dataset {
    let mut d = local.clone();
    for y in &mut d.labels {
        *y = classes[*y];
    }
    d.classes = names.to_vec();
    d
}
