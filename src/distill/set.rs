//! The synthetic set a distiller produces: images (in the dataset's normalised space), hard and
//! optional soft labels, an optional learned step size and its provenance. Saved as safetensors
//! (`images` NCHW float32, `labels` int64, readable by `safetensors.torch.load_file`), rendered as
//! a PNG grid with one row per class.

use super::tensor_file::{self, f32_bytes, f32_values};
use crate::data::{Dataset, Normalization};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The format tag written into every file's metadata.
pub const FORMAT: &str = "distillery.synthetic_set.v1";
/// The metadata key holding `{"format", "provenance"}` as JSON.
pub const META_KEY: &str = "distillery";

/// Where a synthetic set came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The method that made it (`dm`, `random`, `herding`, `kcenter`, ...).
    pub method: String,
    /// Images per class asked for.
    pub ipc: usize,
    /// The dataset's short name.
    pub dataset: String,
    /// The run seed.
    pub seed: u64,
    /// Optimisation iterations done (0 for a selection).
    pub iterations: usize,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// The normalisation the images live in (used to render them).
    pub normalization: Option<Normalization>,
    /// Each stored image holds `expand x expand` smaller images that training enlarges back to
    /// full size (IDM's partition and expansion, [`super::expand`]); 1: plain images.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub expand: usize,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

/// A distilled (or selected) training set.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSet {
    /// Pixels, NCHW row-major.
    pub images: Vec<f32>,
    /// Channels, height, width.
    pub shape: [usize; 3],
    /// Hard labels, one per image.
    pub labels: Vec<usize>,
    /// Optional soft labels, `len x classes`, row-major.
    pub soft_labels: Option<Vec<f32>>,
    /// Optional learned step size (trajectory matching).
    pub syn_lr: Option<f32>,
    /// Which images are real images kept as selected (SelMatch's D_select, never distilled);
    /// evaluation augments those plainly. None: all images are of one kind.
    pub fixed: Option<Vec<bool>>,
    /// Where it came from.
    pub provenance: Provenance,
}

/// Named extra tensors stored beside a set (optimiser state in checkpoints).
pub type Extras = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The extra tensor `name`: its shape and values.
pub fn find_extra<'a>(extras: &'a Extras, name: &str) -> Option<(&'a [usize], &'a [f32])> {
    (extras.iter())
        .find(|(n, _, _)| n == name)
        .map(|(_, s, v)| (s.as_slice(), v.as_slice()))
}

/// Row `row` of a `[rows, Σ lens]` tensor cut into pieces of `lens` (one network's parameters,
/// say, from a pool's checkpoint tensor).
pub fn row_pieces(flat: &[f32], row: usize, lens: &[usize]) -> Vec<Vec<f32>> {
    let mut at = row * lens.iter().sum::<usize>();
    lens.iter()
        .map(|&l| {
            at += l;
            flat[at - l..at].to_vec()
        })
        .collect()
}

impl SyntheticSet {
    /// Wraps a dataset (already normalised) as a synthetic set.
    pub fn from_dataset(data: &Dataset, provenance: Provenance) -> Self {
        SyntheticSet {
            images: data.images.clone(),
            shape: data.shape,
            labels: data.labels.clone(),
            soft_labels: None,
            syn_lr: None,
            fixed: None,
            provenance,
        }
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
        self.provenance.classes.len()
    }

    /// The set as a [`Dataset`] for training (its images decoded when they are partitioned).
    pub fn to_dataset(&self) -> Dataset {
        let decoded;
        let set = match self.provenance.expand {
            0 | 1 => self,
            _ => {
                decoded = self.decoded();
                &decoded
            }
        };
        Dataset {
            images: set.images.clone(),
            labels: set.labels.clone(),
            shape: self.shape,
            classes: self.provenance.classes.clone(),
        }
    }

    /// The set as training sees it: a partitioned set's parts enlarged into images of their own
    /// (labels, soft labels and flags repeated with them, block by block as
    /// [`super::expand::expand_host`] orders the parts; `expand` 1); a plain set as it is.
    pub fn decoded(&self) -> SyntheticSet {
        let f = self.provenance.expand.max(1);
        if f == 1 {
            return self.clone();
        }
        let blocks = f * f;
        let mut set = SyntheticSet {
            images: super::expand::expand_host(&self.images, self.shape, f),
            shape: self.shape,
            labels: self.labels.repeat(blocks),
            soft_labels: self.soft_labels.as_ref().map(|p| p.repeat(blocks)),
            syn_lr: self.syn_lr,
            fixed: self.fixed.as_ref().map(|x| x.repeat(blocks)),
            provenance: self.provenance.clone(),
        };
        set.provenance.expand = 1;
        set
    }

    /// The encoded safetensors bytes (with optional extra tensors).
    pub fn encode(&self, extras: &Extras) -> Result<Vec<u8>> {
        let [c, h, w] = self.shape;
        let n = self.len();
        let k = self.num_classes();
        if self.images.len() != n * c * h * w {
            return Err(Error::Setting(format!(
                "synthetic set: {} pixel values for {n} labels of shape {:?}",
                self.images.len(),
                self.shape
            )));
        }
        let labels: Vec<u8> = self
            .labels
            .iter()
            .flat_map(|&y| (y as i64).to_le_bytes())
            .collect();
        let mut owned: Vec<tensor_file::Owned> = vec![
            (
                "images".into(),
                Dtype::F32,
                vec![n, c, h, w],
                f32_bytes(&self.images),
            ),
            ("labels".into(), Dtype::I64, vec![n], labels),
        ];
        if let Some(s) = &self.soft_labels {
            owned.push(("soft_labels".into(), Dtype::F32, vec![n, k], f32_bytes(s)));
        }
        if let Some(lr) = self.syn_lr {
            owned.push(("syn_lr".into(), Dtype::F32, vec![1], f32_bytes(&[lr])));
        }
        if let Some(f) = &self.fixed {
            if f.len() != n {
                return Err(Error::Setting(format!(
                    "synthetic set: {} selected-image flags for {n} images",
                    f.len()
                )));
            }
            let v: Vec<f32> = f.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
            owned.push(("fixed".into(), Dtype::F32, vec![n], f32_bytes(&v)));
        }
        for (name, shape, v) in extras {
            owned.push((name.clone(), Dtype::F32, shape.clone(), f32_bytes(v)));
        }
        let tag = serde_json::json!({ "format": FORMAT, "provenance": self.provenance });
        tensor_file::encode(&owned, Some((META_KEY, tag.to_string())))
    }

    /// Writes the set to `path` (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with(path, &Vec::new())
    }

    /// Writes the set and extra tensors to `path` atomically.
    pub fn save_with(&self, path: &Path, extras: &Extras) -> Result<()> {
        write_atomic(path, &self.encode(extras)?)
    }

    /// Reads a set written by [`SyntheticSet::save`].
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self::load_with(path)?.0)
    }

    /// Reads a set and its extra tensors.
    pub fn load_with(path: &Path) -> Result<(Self, Extras)> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes).map_err(|m| Error::data(path, m))
    }

    /// Parses encoded bytes; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<(Self, Extras), String> {
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file ({e})"))?;
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
        let provenance = provenance_of(&meta.metadata().clone().unwrap_or_default())?;
        let f32s = |name: &str| -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
            let t = st
                .tensor(name)
                .map_err(|_| format!("missing tensor `{name}`"))?;
            if t.dtype() != Dtype::F32 {
                return Err(format!("tensor `{name}` is {:?}, expected F32", t.dtype()));
            }
            Ok((t.shape().to_vec(), f32_values(t.data())))
        };
        let (ishape, images) = f32s("images")?;
        if ishape.len() != 4 {
            return Err(format!("`images` has shape {ishape:?}, expected NCHW"));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "`images` holds a non-finite value at index {i}: {}",
                images[i]
            ));
        }
        let f = provenance.expand;
        if f == 0 || ishape[2] % f != 0 || ishape[3] % f != 0 {
            return Err(format!(
                "`expand` = {f} does not divide the {}x{} images into equal parts",
                ishape[2], ishape[3]
            ));
        }
        let n = ishape[0];
        let k = provenance.classes.len();
        let labels = labels_of(&st, n, k)?;
        let soft_labels = match st.tensor("soft_labels") {
            Ok(_) => {
                let (s, v) = f32s("soft_labels")?;
                if s != [n, k] {
                    return Err(format!(
                        "`soft_labels` has shape {s:?}, expected [{n}, {k}]"
                    ));
                }
                Some(v)
            }
            Err(_) => None,
        };
        let syn_lr = match st.tensor("syn_lr") {
            Ok(_) => Some(f32s("syn_lr")?.1.first().copied().unwrap_or(f32::NAN)),
            Err(_) => None,
        };
        let fixed = match st.tensor("fixed") {
            Ok(_) => {
                let (s, v) = f32s("fixed")?;
                if s != [n] || v.iter().any(|&x| x != 0.0 && x != 1.0) {
                    return Err(format!(
                        "`fixed` must be [{n}] zeros and ones, got shape {s:?}"
                    ));
                }
                Some(v.iter().map(|&x| x == 1.0).collect())
            }
            Err(_) => None,
        };
        let known = ["images", "labels", "soft_labels", "syn_lr", "fixed"];
        let mut extras = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        for name in names {
            if !known.contains(&name.as_str()) {
                let (s, v) = f32s(&name)?;
                extras.push((name, s, v));
            }
        }
        Ok((
            SyntheticSet {
                images,
                shape: [ishape[1], ishape[2], ishape[3]],
                labels,
                soft_labels,
                syn_lr,
                fixed,
                provenance,
            },
            extras,
        ))
    }

    /// Renders the images as a PNG grid: one row per class, one column per image of that class
    /// (a single row when there is one image per class),
    /// de-normalised with the provenance's constants (else min-max scaled), upscaled to >= 32 px.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let bytes = self
            .png_bytes()
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }

    /// The grid [`SyntheticSet::save_png`] writes, as PNG bytes.
    pub fn png_bytes(&self) -> std::result::Result<Vec<u8>, png::EncodingError> {
        let [c, h, w] = self.shape;
        let k = self.num_classes().max(1);
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (i, &y) in self.labels.iter().enumerate() {
            rows[y.min(k - 1)].push(i);
        }
        let per_class = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        // (grid row, grid column, image): a row per class, or one row of classes at one image each.
        let cells: Vec<(usize, usize, usize)> = rows
            .iter()
            .enumerate()
            .flat_map(|(r, idx)| {
                idx.iter().enumerate().map(move |(col, &i)| {
                    if per_class == 1 {
                        (0, r, i)
                    } else {
                        (r, col, i)
                    }
                })
            })
            .collect();
        let (grid_rows, grid_cols) = if per_class == 1 {
            (1, k)
        } else {
            (k, per_class)
        };
        let scale = 32usize.div_ceil(h.max(w)).max(1);
        let (ch, cw) = (h * scale + 2, w * scale + 2);
        let (width, height) = (grid_cols * cw, grid_rows * ch);
        let mut pix = vec![255u8; width * height * 3];
        let (lo, hi) = self
            .images
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let norm = self.provenance.normalization.as_ref();
        let hw = h * w;
        for &(r, col, i) in &cells {
            let img = &self.images[i * c * hw..(i + 1) * c * hw];
            for y in 0..h * scale {
                for x in 0..w * scale {
                    let p = (y / scale) * w + x / scale;
                    let mut rgb = [0u8; 3];
                    for (o, v) in rgb.iter_mut().enumerate() {
                        let chn = if c == 3 { o } else { 0 };
                        let raw = img[chn * hw + p];
                        let v01 = match norm {
                            Some(n) if n.mean.len() == c => raw * n.std[chn] + n.mean[chn],
                            _ => (raw - lo) / (hi - lo).max(1e-12),
                        };
                        *v = (v01.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                    let py = r * ch + 1 + y;
                    let px = col * cw + 1 + x;
                    let at = (py * width + px) * 3;
                    pix[at..at + 3].copy_from_slice(&rgb);
                }
            }
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header()?;
        wr.write_image_data(&pix)?;
        wr.finish()?;
        Ok(out)
    }
}

/// The provenance kept in a set file's metadata.
fn provenance_of(
    md: &std::collections::HashMap<String, String>,
) -> std::result::Result<Provenance, String> {
    match md.get(META_KEY) {
        Some(p) => serde_json::from_str::<serde_json::Value>(p)
            .and_then(|v| serde_json::from_value(v["provenance"].clone()))
            .map_err(|e| format!("bad `{META_KEY}` metadata ({e})")),
        None => Err(format!(
            "no `{META_KEY}` metadata: not a distillery synthetic set"
        )),
    }
}

/// The `labels` tensor of a set file: `n` class indices below `k`.
fn labels_of(st: &SafeTensors<'_>, n: usize, k: usize) -> std::result::Result<Vec<usize>, String> {
    let lt = st
        .tensor("labels")
        .map_err(|_| "missing tensor `labels`".to_string())?;
    if lt.dtype() != Dtype::I64 || lt.shape() != [n] {
        return Err(format!(
            "`labels` is {:?} {:?}, expected I64 [{n}]",
            lt.dtype(),
            lt.shape()
        ));
    }
    lt.data()
        .chunks_exact(8)
        .map(|b| {
            let y = i64::from_le_bytes(b.try_into().expect("8 bytes"));
            if y < 0 || y as usize >= k {
                Err(format!("label {y} outside 0..{k}"))
            } else {
                Ok(y as usize)
            }
        })
        .collect()
}
