//! The pool of embedded, labelled frames a fit draws from: the parent's replay set
//! and the new frames, one item per image, and what is derived from it (the label
//! list, the training samples, the new classes' starting rows, the training-data
//! digest). Pure: no files, no inference.
//!
//! One item per image (by sha256): a manifest exported again, or a frame already in
//! the replay set, must neither count twice nor sit in both halves of the split. The
//! newest label wins (a later review corrects an earlier one).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::dataset::Target;
use super::fit::{self, Objective, Sample};
use super::replay::ReplayFrame;
use crate::model::head::DenseHead;

/// One embedded, labelled frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub embedding: Vec<f32>,
    pub target: Target,
    pub sha256: String,
    /// The image file; `None` for a frame from the replay set.
    pub file: Option<PathBuf>,
}

/// The items, in order: replayed frames first (in their order), then new frames.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    pub items: Vec<Item>,
    /// Occurrences dropped because their image was met again later.
    pub duplicates: usize,
}

impl Pool {
    /// Builds the pool; a later item with an image already present replaces it.
    pub fn build(replayed: Vec<Item>, new: impl IntoIterator<Item = Item>) -> Pool {
        let mut items: Vec<Item> = Vec::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut duplicates = 0;
        for item in replayed.into_iter().chain(new) {
            match position.get(&item.sha256) {
                Some(&i) => {
                    duplicates += 1;
                    items[i] = item;
                }
                None => {
                    position.insert(item.sha256.clone(), items.len());
                    items.push(item);
                }
            }
        }
        Pool { items, duplicates }
    }

    /// Items from the replay set (no file).
    pub fn replayed(&self) -> usize {
        self.items.iter().filter(|i| i.file.is_none()).count()
    }

    /// The parent's labels, then the labels it lacks, in name order; and those.
    pub fn labels(&self, parent: &[String]) -> (Vec<String>, Vec<String>) {
        let new: Vec<String> = self
            .items
            .iter()
            .filter_map(|i| match &i.target {
                Target::Label(l) if !parent.contains(l) => Some(l.clone()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut all = parent.to_vec();
        all.extend(new.iter().cloned());
        (all, new)
    }

    /// The parent's layer grown by a row per label in `new`, each started from the
    /// mean of its training frames against the mean of everything fitted on
    /// (`train` items and `anchors`); see [`fit::grow`].
    pub fn start_head(
        &self,
        head: &DenseHead,
        new: &[String],
        train: &[usize],
        anchors: &[Vec<f32>],
    ) -> DenseHead {
        let fitted: Vec<&[f32]> = train
            .iter()
            .map(|&i| self.items[i].embedding.as_slice())
            .chain(anchors.iter().map(Vec::as_slice))
            .collect();
        let reference = mean(head.features, &fitted);
        let rows: Vec<(Vec<f32>, f32)> = new
            .iter()
            .map(|label| {
                let members: Vec<&[f32]> = train
                    .iter()
                    .map(|&i| &self.items[i])
                    .filter(|i| matches!(&i.target, Target::Label(l) if l == label))
                    .map(|i| i.embedding.as_slice())
                    .collect();
                let top_logit = members
                    .iter()
                    .map(|e| head.logits(e).into_iter().fold(f32::MIN, f32::max))
                    .sum::<f32>()
                    / members.len().max(1) as f32;
                (mean(head.features, &members), top_logit)
            })
            .collect();
        fit::grow(head, &rows, &reference)
    }

    /// What the fit is asked: each training item's class (or, for "none of these",
    /// to push down the parent's top-1), and each anchor's parent probabilities.
    pub fn samples<'a>(
        &'a self,
        head: &DenseHead,
        labels: &[String],
        train: &[usize],
        anchors: &'a [Vec<f32>],
        anchor_targets: &'a [Vec<f32>],
    ) -> Vec<Sample<'a>> {
        let reviewed = train.iter().map(|&i| {
            let item = &self.items[i];
            let objective = match index_of(labels, &item.target) {
                Some(c) => Objective::Class(c),
                None => {
                    Objective::NotClass(crate::inference::argmax(&head.scores(&item.embedding)))
                }
            };
            Sample {
                embedding: &item.embedding,
                objective,
                weight: 1.0,
            }
        });
        let kept = anchors.iter().zip(anchor_targets).map(|(e, q)| Sample {
            embedding: e,
            objective: Objective::Match(q),
            weight: 1.0,
        });
        reviewed.chain(kept).collect()
    }

    /// sha256 over the sorted `label<TAB>image sha256` lines of the `train` items.
    pub fn digest(&self, train: &[usize]) -> String {
        let mut lines: Vec<String> = train
            .iter()
            .map(|&i| {
                let item = &self.items[i];
                format!("{}\t{}\n", target_name(&item.target), item.sha256)
            })
            .collect();
        lines.sort();
        protocol::sha256_hex(lines.concat().as_bytes())
    }

    /// Every item, for the new package's replay set.
    pub fn to_replay(&self) -> Vec<ReplayFrame> {
        self.items
            .iter()
            .map(|i| ReplayFrame {
                label: match &i.target {
                    Target::Label(l) => Some(l.clone()),
                    Target::NoneOfThese => None,
                },
                image_sha256: i.sha256.clone(),
                embedding: i.embedding.clone(),
            })
            .collect()
    }
}

/// The index of a target's label; `None` for "none of these" (no class).
pub fn index_of(labels: &[String], target: &Target) -> Option<usize> {
    match target {
        Target::Label(l) => labels.iter().position(|x| x == l),
        Target::NoneOfThese => None,
    }
}

pub fn target_name(t: &Target) -> String {
    match t {
        Target::Label(l) => l.clone(),
        Target::NoneOfThese => protocol::a2i::NONE_OF_THESE.into(),
    }
}

fn mean(features: usize, rows: &[&[f32]]) -> Vec<f32> {
    let mut out = vec![0.0f32; features];
    for row in rows {
        for (a, x) in out.iter_mut().zip(*row) {
            *a += x / rows.len() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sha: &str, label: &str, file: bool) -> Item {
        Item {
            embedding: vec![1.0, 0.0],
            target: Target::Label(label.into()),
            sha256: sha.into(),
            file: file.then(|| PathBuf::from(format!("{sha}.jpg"))),
        }
    }

    #[test]
    fn an_image_met_again_counts_once_with_its_newest_label() {
        let pool = Pool::build(
            vec![item("a", "cat", false), item("b", "pug", false)],
            [
                item("a", "lynx", true),
                item("c", "cat", true),
                item("c", "cat", true),
            ],
        );
        let shas: Vec<&str> = pool.items.iter().map(|i| i.sha256.as_str()).collect();
        assert_eq!(shas, ["a", "b", "c"]);
        assert_eq!(pool.items[0].target, Target::Label("lynx".into()));
        assert_eq!(pool.duplicates, 2);
        assert_eq!(
            pool.replayed(),
            1,
            "a replayed frame seen again is a new frame now"
        );
    }

    #[test]
    fn new_labels_follow_the_parents_in_name_order() {
        let pool = Pool::build(
            vec![],
            [
                item("a", "zebra", true),
                item("b", "pug", true),
                item("c", "ant", true),
            ],
        );
        let parent = vec!["pug".to_string()];
        let (all, new) = pool.labels(&parent);
        assert_eq!(all, ["pug", "ant", "zebra"]);
        assert_eq!(new, ["ant", "zebra"]);
    }

    #[test]
    fn the_digest_depends_on_labels_and_images_not_on_order() {
        let a = Pool::build(vec![], [item("a", "cat", true), item("b", "pug", true)]);
        let b = Pool::build(vec![], [item("b", "pug", true), item("a", "cat", true)]);
        let c = Pool::build(vec![], [item("a", "dog", true), item("b", "pug", true)]);
        assert_eq!(a.digest(&[0, 1]), b.digest(&[0, 1]));
        assert_ne!(a.digest(&[0, 1]), c.digest(&[0, 1]));
    }
}
