//! DSA, differentiable Siamese augmentation (Zhao & Bilen, ICML 2021), as the reference's
//! `DiffAugment` defines it (REFERENCE.md §1.3).
//!
//! Each call picks **one** family at random from the strategy (the reference's mode 'S'). A
//! [`Draw`] holds its random parameters: one shared value for the whole batch (Siamese: the same
//! draw is applied to a class's real and synthetic batches, whatever their sizes) or one value per
//! sample (evaluation). Applying a draw is differentiable with respect to the images.

use burn::prelude::*;
use burn::tensor::ops::{GridSampleOptions, InterpolateMode};
use rand::Rng;

/// An augmentation family of the strategy string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Brightness, then saturation, then contrast.
    Color,
    /// Translation by up to `ratio_crop_pad` of the size (zero-padded by 1 px and clamped, as the reference).
    Crop,
    /// One zeroed square of `ratio_cutout` of the size.
    Cutout,
    /// Horizontal flip with probability `prob_flip`.
    Flip,
    /// Independent x/y scaling in [1/ratio, ratio] (affine resampling).
    Scale,
    /// Rotation by up to `ratio_rotate` degrees (affine resampling).
    Rotate,
}

/// The DSA strategy and its parameters (reference defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Dsa {
    /// The families one of which is drawn per call.
    pub families: Vec<Family>,
    /// Flip probability (0.5).
    pub prob_flip: f32,
    /// Scale ratio (1.2).
    pub ratio_scale: f32,
    /// Rotation range in degrees (15).
    pub ratio_rotate: f32,
    /// Translation as a fraction of the size (0.125).
    pub ratio_crop_pad: f32,
    /// Cutout square side as a fraction of the size (0.5).
    pub ratio_cutout: f32,
    /// Brightness range (1.0).
    pub brightness: f32,
    /// Saturation factor (2.0).
    pub saturation: f32,
    /// Contrast offset (0.5).
    pub contrast: f32,
}

/// The reference strategy for colour and natural images.
pub const STRATEGY_DEFAULT: &str = "color_crop_cutout_flip_scale_rotate";
/// The reference strategy for digit datasets (no flip).
pub const STRATEGY_DIGITS: &str = "color_crop_cutout_scale_rotate";

/// The reference's two DSA presets: which one a dataset takes depends on whether a mirrored
/// image keeps its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Natural images: every family, flips included.
    Natural,
    /// Digits and characters, whose mirror images are other glyphs: no flip.
    Glyphs,
}

impl Preset {
    /// The preset's strategy string.
    pub fn strategy(self) -> &'static str {
        match self {
            Preset::Natural => STRATEGY_DEFAULT,
            Preset::Glyphs => STRATEGY_DIGITS,
        }
    }
}

impl Dsa {
    /// Parses a strategy string such as `color_crop_cutout_flip_scale_rotate`.
    pub fn new(strategy: &str) -> Result<Self, String> {
        let families = strategy
            .split('_')
            .map(|p| match p {
                "color" => Ok(Family::Color),
                "crop" => Ok(Family::Crop),
                "cutout" => Ok(Family::Cutout),
                "flip" => Ok(Family::Flip),
                "scale" => Ok(Family::Scale),
                "rotate" => Ok(Family::Rotate),
                other => Err(format!(
                    "unknown DSA operation {other:?} in {strategy:?}: expected color, crop, cutout, flip, scale or rotate joined by '_'"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dsa {
            families,
            prob_flip: 0.5,
            ratio_scale: 1.2,
            ratio_rotate: 15.0,
            ratio_crop_pad: 0.125,
            ratio_cutout: 0.5,
            brightness: 1.0,
            saturation: 2.0,
            contrast: 0.5,
        })
    }

    /// The strategy string (`color_crop_cutout_flip_scale_rotate`, ...).
    pub fn name(&self) -> String {
        let names: Vec<&str> = self
            .families
            .iter()
            .map(|f| match f {
                Family::Color => "color",
                Family::Crop => "crop",
                Family::Cutout => "cutout",
                Family::Flip => "flip",
                Family::Scale => "scale",
                Family::Rotate => "rotate",
            })
            .collect();
        names.join("_")
    }

    /// Draws one family and its parameters for images of size `h` x `w`: `n = None` gives one
    /// shared draw (Siamese), `Some(n)` one per sample.
    pub fn draw<R: Rng>(&self, n: Option<usize>, h: usize, w: usize, rng: &mut R) -> Draw {
        let k = n.unwrap_or(1);
        let family = self.families[rng.random_range(0..self.families.len())];
        let mut u =
            |lo: f32, hi: f32| -> Vec<f32> { (0..k).map(|_| rng.random_range(lo..hi)).collect() };
        match family {
            Family::Color => Draw::Color {
                brightness: u(-0.5 * self.brightness, 0.5 * self.brightness),
                saturation: u(0.0, self.saturation),
                contrast: u(self.contrast, 1.0 + self.contrast),
            },
            Family::Scale => {
                let r = self.ratio_scale;
                let (sx, sy) = (u(1.0 / r, r), u(1.0 / r, r));
                Draw::Affine((0..k).map(|i| [sx[i], 0.0, 0.0, 0.0, sy[i], 0.0]).collect())
            }
            Family::Rotate => {
                let r = self.ratio_rotate.to_radians();
                Draw::Affine(
                    u(-r, r)
                        .into_iter()
                        .map(|t| [t.cos(), -t.sin(), 0.0, t.sin(), t.cos(), 0.0])
                        .collect(),
                )
            }
            Family::Flip => Draw::Flip(
                u(0.0, 1.0)
                    .into_iter()
                    .map(|v| v < self.prob_flip)
                    .collect(),
            ),
            Family::Crop => {
                let sh = (h as f32 * self.ratio_crop_pad + 0.5) as i64;
                let sw = (w as f32 * self.ratio_crop_pad + 0.5) as i64;
                Draw::Crop(
                    (0..k)
                        .map(|_| (rng.random_range(-sh..=sh), rng.random_range(-sw..=sw)))
                        .collect(),
                )
            }
            Family::Cutout => {
                let (ch, cw) = (
                    (h as f32 * self.ratio_cutout + 0.5) as usize,
                    (w as f32 * self.ratio_cutout + 0.5) as usize,
                );
                let oy = h + 1 - ch % 2;
                let ox = w + 1 - cw % 2;
                Draw::Cutout {
                    size: (ch, cw),
                    offsets: (0..k)
                        .map(|_| (rng.random_range(0..oy), rng.random_range(0..ox)))
                        .collect(),
                }
            }
        }
    }

    /// Draws and applies in one go (per-sample when `siamese` is false).
    pub fn augment<B: Backend, R: Rng>(
        &self,
        x: Tensor<B, 4>,
        siamese: bool,
        rng: &mut R,
    ) -> Tensor<B, 4> {
        let [n, _, h, w] = x.dims();
        let d = self.draw(if siamese { None } else { Some(n) }, h, w, rng);
        d.apply(x)
    }
}

/// The random parameters of one augmentation call; vectors of length 1 are shared by the batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Draw {
    /// `x + b`, then `(x - mean_c) * s + mean_c`, then `(x - mean) * c + mean`.
    Color {
        /// Brightness offsets.
        brightness: Vec<f32>,
        /// Saturation factors.
        saturation: Vec<f32>,
        /// Contrast factors.
        contrast: Vec<f32>,
    },
    /// Affine maps `[a, b, tx, c, d, ty]` on normalised coordinates (align_corners), bilinear.
    Affine(Vec<[f32; 6]>),
    /// Whether each image is flipped horizontally.
    Flip(Vec<bool>),
    /// Integer translations (rows, columns).
    Crop(Vec<(i64, i64)>),
    /// Cutout square size and centre offsets.
    Cutout {
        /// Square height and width.
        size: (usize, usize),
        /// Offsets (rows, columns), each in 0..=size as the reference draws them.
        offsets: Vec<(usize, usize)>,
    },
}

fn pick<T: Copy>(v: &[T], i: usize) -> T {
    v[if v.len() == 1 { 0 } else { i }]
}

fn per_sample<B: Backend>(v: &[f32], n: usize, device: &B::Device) -> Tensor<B, 4> {
    let vals: Vec<f32> = (0..n).map(|i| pick(v, i)).collect();
    Tensor::from_data(TensorData::new(vals, [n, 1, 1, 1]), device)
}

/// Gathers output pixel `(i, j)` of image `s` from padded position `src(s, i, j)` of the image
/// zero-padded by one pixel on each side.
fn remap<B: Backend>(
    x: Tensor<B, 4>,
    src: impl Fn(usize, usize, usize) -> (usize, usize),
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let device = x.device();
    let (hp, wp) = (h + 2, w + 2);
    let mut idx = Vec::with_capacity(n * c * h * w);
    for s in 0..n {
        let img: Vec<i64> = (0..h * w)
            .map(|p| {
                let (y, xx) = src(s, p / w, p % w);
                (y * wp + xx) as i64
            })
            .collect();
        for _ in 0..c {
            idx.extend_from_slice(&img);
        }
    }
    let idx = Tensor::<B, 3, Int>::from_data(TensorData::new(idx, [n, c, h * w]), &device);
    x.pad((1, 1, 1, 1), 0.0)
        .reshape([n, c, hp * wp])
        .gather(2, idx)
        .reshape([n, c, h, w])
}

impl Draw {
    /// Applies the draw to a batch (differentiable in `x`).
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let device = x.device();
        match self {
            Draw::Color {
                brightness,
                saturation,
                contrast,
            } => {
                let x = x + per_sample::<B>(brightness, n, &device);
                let m = x.clone().mean_dim(1);
                let x = (x - m.clone()) * per_sample::<B>(saturation, n, &device) + m;
                let m = x
                    .clone()
                    .reshape([n, c * h * w])
                    .mean_dim(1)
                    .reshape([n, 1, 1, 1]);
                (x - m.clone()) * per_sample::<B>(contrast, n, &device) + m
            }
            Draw::Flip(on) => remap(x, |s, i, j| {
                (i + 1, if pick(on, s) { w - j } else { j + 1 })
            }),
            Draw::Crop(t) => remap(x, |s, i, j| {
                let (ty, tx) = pick(t, s);
                let y = (i as i64 + ty + 1).clamp(0, h as i64 + 1) as usize;
                let xx = (j as i64 + tx + 1).clamp(0, w as i64 + 1) as usize;
                (y, xx)
            }),
            Draw::Cutout { size, offsets } => {
                let mut mask = vec![1f32; n * h * w];
                for s in 0..n {
                    let (oy, ox) = pick(offsets, s);
                    for a in 0..size.0 {
                        for b in 0..size.1 {
                            let y = (a + oy).saturating_sub(size.0 / 2).min(h - 1);
                            let xx = (b + ox).saturating_sub(size.1 / 2).min(w - 1);
                            mask[(s * h + y) * w + xx] = 0.0;
                        }
                    }
                }
                x * Tensor::<B, 4>::from_data(TensorData::new(mask, [n, 1, h, w]), &device)
            }
            Draw::Affine(thetas) => {
                let norm = |k: usize, len: usize| {
                    if len > 1 {
                        -1.0 + 2.0 * k as f32 / (len - 1) as f32
                    } else {
                        0.0
                    }
                };
                let mut grid = Vec::with_capacity(n * h * w * 2);
                for s in 0..n {
                    let t = pick(thetas, s);
                    for i in 0..h {
                        for j in 0..w {
                            let (gx, gy) = (norm(j, w), norm(i, h));
                            grid.push(t[0] * gx + t[1] * gy + t[2]);
                            grid.push(t[3] * gx + t[4] * gy + t[5]);
                        }
                    }
                }
                let grid = Tensor::<B, 4>::from_data(TensorData::new(grid, [n, h, w, 2]), &device);
                x.grid_sample_2d(
                    grid,
                    GridSampleOptions::new(InterpolateMode::Bilinear).with_align_corners(true),
                )
            }
        }
    }
}

/// Plain augmentation, torchvision's `RandomCrop(size, padding = pad)` then
/// `RandomHorizontalFlip()`: an integer shift of up to `pad` pixels with zero fill and, when `flip`,
/// a mirror with probability 1/2, both drawn per image and both applied (DSA applies one family).
#[derive(Clone, Debug, PartialEq)]
pub struct Plain {
    /// Largest shift in pixels (4).
    pub pad: usize,
    /// Mirror half of the images (off for digits).
    pub flip: bool,
}

impl Plain {
    /// Shifts (and mirrors) every image of the batch with its own draw.
    pub fn augment<B: Backend, R: Rng>(&self, x: Tensor<B, 4>, rng: &mut R) -> Tensor<B, 4> {
        let n = x.dims()[0];
        let p = self.pad as i64;
        let shifts = (0..n)
            .map(|_| (rng.random_range(-p..=p), rng.random_range(-p..=p)))
            .collect();
        let x = Draw::Crop(shifts).apply(x);
        if self.flip {
            Draw::Flip((0..n).map(|_| rng.random_bool(0.5)).collect()).apply(x)
        } else {
            x
        }
    }
}

/// SelMatch's combined augmentation: DSA on the distilled images and plain augmentation on the
/// images selected from the real set (`fixed[i]` for training row `i`).
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    /// DSA for the distilled rows (None: they are not augmented).
    pub dsa: Option<Dsa>,
    /// Plain augmentation for the selected rows.
    pub plain: Plain,
    /// Which training rows are selected real images.
    pub fixed: Vec<bool>,
}

/// How a training minibatch is augmented: the trainer hands over the batch and its row indices.
pub trait BatchAug {
    /// The augmented batch (rows `rows` of the training set, in that order).
    fn apply<B: Backend>(
        &self,
        x: Tensor<B, 4>,
        rows: &[usize],
        rng: &mut dyn rand::RngCore,
    ) -> Tensor<B, 4>;
}

impl BatchAug for Dsa {
    fn apply<B: Backend>(
        &self,
        x: Tensor<B, 4>,
        _: &[usize],
        rng: &mut dyn rand::RngCore,
    ) -> Tensor<B, 4> {
        let mut r = rng;
        self.augment(x, false, &mut r)
    }
}

impl BatchAug for Combined {
    fn apply<B: Backend>(
        &self,
        x: Tensor<B, 4>,
        rows: &[usize],
        rng: &mut dyn rand::RngCore,
    ) -> Tensor<B, 4> {
        let mut r = rng;
        let (sel, dis): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| self.fixed.get(rows[i]).copied().unwrap_or(false));
        let dsa = |x: Tensor<B, 4>, r: &mut &mut dyn rand::RngCore| match &self.dsa {
            Some(d) => d.augment(x, false, r),
            None => x,
        };
        if sel.is_empty() {
            return dsa(x, &mut r);
        }
        if dis.is_empty() {
            return self.plain.augment(x, &mut r);
        }
        let device = x.device();
        let take = |v: &[usize]| {
            let idx: Vec<i64> = v.iter().map(|&i| i as i64).collect();
            Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [v.len()]), &device)
        };
        let a = dsa(x.clone().select(0, take(&dis)), &mut r);
        let b = self.plain.augment(x.select(0, take(&sel)), &mut r);
        // Back to the batch's row order: position p of the concatenation holds row order[p].
        let order: Vec<usize> = dis.iter().chain(&sel).copied().collect();
        let mut back = vec![0usize; order.len()];
        for (p, &i) in order.iter().enumerate() {
            back[i] = p;
        }
        Tensor::cat(vec![a, b], 0).select(0, take(&back))
    }
}
