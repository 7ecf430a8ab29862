//! The held-out split: per class, a seeded shuffle puts `round(n × fraction)` frames
//! aside (never all of a class: at least one stays for training). Per class, so a
//! class with 3 frames is not left out of training by chance; seeded (ChaCha8), so the
//! same data and seed give the same split and the same model.

use std::collections::BTreeMap;

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha8Rng;

/// Indices of the training and held-out items, each in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub train: Vec<usize>,
    pub holdout: Vec<usize>,
}

/// Splits items by their `class` key.
pub fn split<K: Ord + Clone>(classes: &[K], fraction: f64, seed: u64) -> Split {
    let mut by_class: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, k) in classes.iter().enumerate() {
        by_class.entry(k.clone()).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Split::default();
    for (_, mut items) in by_class {
        // Fisher-Yates with the seeded generator.
        for i in (1..items.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
        let held = ((items.len() as f64 * fraction.clamp(0.0, 1.0)).round() as usize)
            .min(items.len().saturating_sub(1));
        out.holdout.extend_from_slice(&items[..held]);
        out.train.extend_from_slice(&items[held..]);
    }
    out.train.sort_unstable();
    out.holdout.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_keeps_at_least_one_training_frame() {
        let classes = ["a", "a", "b", "c", "c", "c", "c", "c"];
        let s = split(&classes, 0.5, 7);
        assert_eq!(s.train.len() + s.holdout.len(), classes.len());
        for k in ["a", "b", "c"] {
            assert!(
                s.train.iter().any(|&i| classes[i] == k),
                "{k} left out of training"
            );
        }
        assert!(
            !s.holdout.iter().any(|&i| classes[i] == "b"),
            "a lone frame is held out"
        );
        assert_eq!(s.holdout.iter().filter(|&&i| classes[i] == "c").count(), 3);
    }

    #[test]
    fn the_same_seed_gives_the_same_split_and_another_seed_may_not() {
        let classes: Vec<u8> = (0..40).map(|i| i % 2).collect();
        assert_eq!(split(&classes, 0.3, 1), split(&classes, 0.3, 1));
        let differs = (2..20).any(|seed| split(&classes, 0.3, seed) != split(&classes, 0.3, 1));
        assert!(differs);
    }

    #[test]
    fn fraction_zero_holds_nothing_out() {
        let s = split(&[1, 1, 2], 0.0, 3);
        assert_eq!((s.train, s.holdout), (vec![0, 1, 2], vec![]));
    }
}
