//! The replay memory of a continual learner: a few images per class under a budget.
//!
//! The memory holds slots, one per class of each task (class-incremental streams: one per class;
//! domain streams, where every task has every class: one per class and task).
//!
//! Shares: with a per-class budget `n`, every slot keeps `n` images. With a total budget
//! `B`, after each task every slot so far gets `floor(B / C)` images (`C` slots),
//! and the first `B mod C` slots in order of arrival one more; so older slots shrink as new
//! ones arrive and the memory never holds more than `B`. A slot that shrinks drops the images it
//! was given last (herding's least representative picks; random and distilled images have no
//! order among themselves, so simply the last ones).

use crate::data::Dataset;

/// How many images the memory may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Budget {
    /// This many images for every slot (class of a task).
    PerClass(usize),
    /// This many images in all, shared equally by the slots.
    Total(usize),
}

impl Budget {
    /// The images each slot gets when `seen` slots have arrived (in arrival order).
    pub fn shares(self, seen: usize) -> Vec<usize> {
        match self {
            Budget::PerClass(n) => vec![n; seen],
            Budget::Total(b) => {
                if seen == 0 {
                    return Vec::new();
                }
                (0..seen)
                    .map(|i| b / seen + usize::from(i < b % seen))
                    .collect()
            }
        }
    }

    /// The most images the memory may hold with `seen` slots.
    pub fn capacity(self, seen: usize) -> usize {
        self.shares(seen).iter().sum()
    }
}

/// Images per slot in arrival order, each slot's images in priority order (best first).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    budget: Budget,
    shape: [usize; 3],
    classes: Vec<String>,
    /// (task, class, its images flattened) in order of arrival.
    slots: Vec<(usize, usize, Vec<Vec<f32>>)>,
}

impl Memory {
    /// An empty memory for images of `shape` over the class names `classes`.
    pub fn new(budget: Budget, shape: [usize; 3], classes: Vec<String>) -> Self {
        Memory {
            budget,
            shape,
            classes,
            slots: Vec::new(),
        }
    }

    /// The budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// The shares the slots already stored plus `new` more would get.
    pub fn shares_with(&self, new: usize) -> Vec<usize> {
        self.budget.shares(self.slots.len() + new)
    }

    /// Adds the images chosen for task `task` (`set` holds them with global labels, each class's
    /// images in priority order; its classes arrive in ascending order), shrinking older slots to
    /// their new shares and keeping each new slot's first `share` images.
    pub fn add(&mut self, task: usize, set: &Dataset) -> Result<(), String> {
        if set.shape != self.shape {
            return Err(format!(
                "memory images are {:?}, got {:?}",
                self.shape, set.shape
            ));
        }
        let mut new: Vec<(usize, usize, Vec<Vec<f32>>)> = Vec::new();
        for (c, idx) in set.class_indices().into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            if self.slots.iter().any(|(t, k, _)| (*t, *k) == (task, c)) {
                return Err(format!("class {c} of task {task} is already in the memory"));
            }
            new.push((
                task,
                c,
                idx.iter().map(|&i| set.image(i).to_vec()).collect(),
            ));
        }
        self.slots.extend(new);
        let shares = self.budget.shares(self.slots.len());
        for ((_, _, imgs), &n) in self.slots.iter_mut().zip(&shares) {
            imgs.truncate(n);
        }
        Ok(())
    }

    /// Images held now.
    pub fn len(&self) -> usize {
        self.slots.iter().map(|(_, _, v)| v.len()).sum()
    }

    /// True when the memory holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (task, class, images held) in arrival order.
    pub fn counts(&self) -> Vec<(usize, usize, usize)> {
        self.slots
            .iter()
            .map(|(t, c, v)| (*t, *c, v.len()))
            .collect()
    }

    /// Everything held, as a dataset with global labels.
    pub fn dataset(&self) -> Dataset {
        let mut images = Vec::with_capacity(self.len() * self.shape.iter().product::<usize>());
        let mut labels = Vec::with_capacity(self.len());
        for (_, c, imgs) in &self.slots {
            for img in imgs {
                images.extend_from_slice(img);
                labels.push(*c);
            }
        }
        Dataset {
            images,
            labels,
            shape: self.shape,
            classes: self.classes.clone(),
        }
    }
}
