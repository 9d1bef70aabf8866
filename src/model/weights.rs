//! A network's weights on the host: what the wire encodes, what checkpoints keep, what a
//! federated server averages. One type for all three.

use super::Model;
use burn::prelude::Backend;
use serde::{Deserialize, Serialize};

/// A network's parameters and buffers as host vectors, in the model's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// Parameter values, in the model's order.
    pub params: Vec<Vec<f32>>,
    /// Buffer values (batch-norm statistics).
    pub buffers: Vec<Vec<f32>>,
}

impl Weights {
    /// The weights of `m`.
    pub fn of<B: Backend>(m: &Model<B>) -> Self {
        let (params, buffers) = m.to_host();
        Weights { params, buffers }
    }

    /// True when every tensor has the length of `other`'s (the same architecture).
    pub fn fits(&self, other: &Weights) -> bool {
        let same = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.len() == y.len())
        };
        same(&self.params, &other.params) && same(&self.buffers, &other.buffers)
    }

    /// Puts them into `m` (its architecture), or says why they do not fit it.
    pub fn restore<B: Backend>(
        &self,
        m: &mut Model<B>,
        device: &B::Device,
    ) -> std::result::Result<(), String> {
        if !Weights::of(m).fits(self) {
            return Err("its model weights do not fit the scenario's network".into());
        }
        *m = Model::from_host(m.spec.clone(), &self.params, &self.buffers, device);
        Ok(())
    }
}
