//! The optimisers FRePo's reference uses, over host vectors (one vector per parameter "leaf"):
//! Adam for the pool's networks and LAMB (Adam's direction scaled per leaf by the trust ratio
//! `|p| / |u|`) for the synthetic images and labels, both as optax defines them (b1 0.9, b2
//! 0.999; eps 1e-8 for Adam, 1e-6 for LAMB; no weight decay). Their state is plain vectors so
//! a checkpoint stores it.

/// Adam or LAMB state over a list of leaves.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    /// First moments, one vector per leaf.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
    /// Steps taken (bias correction).
    pub t: u64,
}

const B1: f64 = 0.9;
const B2: f64 = 0.999;

impl Moments {
    /// Zero state for leaves of these lengths.
    pub fn zeros(lens: &[usize]) -> Self {
        Moments {
            m: lens.iter().map(|&n| vec![0.0; n]).collect(),
            v: lens.iter().map(|&n| vec![0.0; n]).collect(),
            t: 0,
        }
    }

    /// One step of rate `lr` on `params` down `grads`: Adam, or LAMB when `trust`.
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>], lr: f64, trust: bool) {
        self.t += 1;
        let eps = if trust { 1e-6 } else { 1e-8 };
        let c1 = 1.0 - B1.powi(self.t as i32);
        let c2 = 1.0 - B2.powi(self.t as i32);
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            let mut u = vec![0.0f64; p.len()];
            for j in 0..p.len() {
                let gj = g[j] as f64;
                m[j] = (B1 * m[j] as f64 + (1.0 - B1) * gj) as f32;
                v[j] = (B2 * v[j] as f64 + (1.0 - B2) * gj * gj) as f32;
                u[j] = (m[j] as f64 / c1) / ((v[j] as f64 / c2).sqrt() + eps);
            }
            let scale = if trust {
                let pn = p.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let un = u.iter().map(|x| x * x).sum::<f64>().sqrt();
                // optax's trust ratio: 1 where either norm is zero.
                if pn > 0.0 && un > 0.0 {
                    pn / un
                } else {
                    1.0
                }
            } else {
                1.0
            };
            for (x, d) in p.iter_mut().zip(&u) {
                *x -= (lr * scale * d) as f32;
            }
        }
    }
}

/// optax's `cosine_decay_schedule(lr, steps, alpha = 0.1)` at step `t`.
pub fn cosine(lr: f64, t: usize, steps: usize) -> f64 {
    let frac = t.min(steps) as f64 / steps.max(1) as f64;
    lr * (0.9 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()) + 0.1)
}
