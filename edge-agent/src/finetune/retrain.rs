//! `retrain`: from a parent package and labelled frames to a candidate package and a
//! promotion verdict (the steps are listed in the module above). This file only
//! strings the steps together; each step's rules live in its own module.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::dataset::{self, ImageStore, LabelledFrame, Target};
use super::embed::{embed_all, Embedder};
use super::fit::{self, FitOptions, FitSummary, Objective, Sample};
use super::gate::{self, GateResult, GateSet};
use super::output::{self, NewPackage};
use super::replay::{self, ReplayFrame};
use super::split::split;
use super::FinetuneError;
use crate::inference::{BackendChoice, BackendOptions};
use crate::model::head::{replace_head, DenseHead};
use crate::model::{LineageSection, ModelPackage};

/// Everything `retrain` is told.
#[derive(Debug, Clone)]
pub struct RetrainOptions {
    /// Augmented manifests and class folders to fit on.
    pub data: Vec<PathBuf>,
    /// Extra held-out sets (manifests or class folders) for the gate.
    pub holdout: Vec<PathBuf>,
    /// Unreviewed frames (files or folders of images) whose parent scores the
    /// candidate must keep (see `fit`'s anchors).
    pub anchors: Vec<PathBuf>,
    pub attribute: String,
    pub store: ImageStore,
    pub out: PathBuf,
    pub version: Option<String>,
    pub seed: u64,
    /// Share of each class's frames held out for the gate.
    pub holdout_fraction: f64,
    pub max_regression: f64,
    pub skip_bad: bool,
    /// "none of these" becomes a class of its own instead of a negative.
    pub none_as_class: bool,
    pub fit: FitOptions,
    pub backend: BackendOptions,
    pub choice: BackendChoice,
    /// No progress bar.
    pub quiet: bool,
}

/// A reviewed frame as the parent and the candidate see it.
#[derive(Debug, Clone, Serialize)]
pub struct Relabelled {
    pub file: String,
    pub label: String,
    pub parent: (String, f32),
    pub candidate: (String, f32),
    pub held_out: bool,
}

/// What `retrain` did; printed as text or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RetrainReport {
    pub manifest: PathBuf,
    pub parent: String,
    pub version: String,
    pub backend: String,
    pub frames_trained: usize,
    pub frames_held_out: usize,
    pub frames_replayed: usize,
    pub frames_skipped: usize,
    /// Images met more than once (by content); each counted once, the newest label kept.
    pub frames_duplicate: usize,
    pub anchors: usize,
    pub new_classes: Vec<String>,
    pub fit: FitSummary,
    pub gate: GateResult,
    pub frames: Vec<Relabelled>,
    pub embedding_seconds: f64,
    pub fit_seconds: f64,
    pub total_seconds: f64,
}

/// One frame in the pool the split is drawn from.
struct Item {
    embedding: Vec<f32>,
    target: Target,
    sha256: String,
    file: Option<PathBuf>,
}

pub fn retrain(
    parent: &ModelPackage,
    options: &RetrainOptions,
) -> Result<RetrainReport, FinetuneError> {
    let started = Instant::now();
    output::check_out(&options.out)?;
    let frames = dataset::load(&options.data, &options.attribute, &options.store)?;
    let holdout_sets: Vec<(String, Vec<LabelledFrame>)> = options
        .holdout
        .iter()
        .map(|p| {
            Ok((
                p.display().to_string(),
                dataset::load(std::slice::from_ref(p), &options.attribute, &options.store)?,
            ))
        })
        .collect::<Result<_, FinetuneError>>()?;

    let mut embedder = Embedder::load(parent, &options.backend, &options.choice)?;
    let head = embedder.head.clone();
    let replayed = replay::load(
        parent
            .manifest_path
            .parent()
            .unwrap_or(std::path::Path::new(".")),
        head.features,
    )?;
    if frames.is_empty() && replayed.is_empty() {
        return Err(FinetuneError::EmptyTrainingSet(format!(
            "no labelled frames in {:?} and no replay set beside the parent",
            options.data
        )));
    }

    let anchor_frames: Vec<LabelledFrame> = crate::cli::expand_paths(&options.anchors)
        .map_err(|e| FinetuneError::Io {
            what: format!("listing the anchors {:?}", options.anchors),
            source: e,
        })?
        .into_iter()
        .map(|path| LabelledFrame {
            origin: format!("anchor {}", path.display()),
            path,
            target: Target::NoneOfThese,
        })
        .collect();
    let total = frames.len()
        + anchor_frames.len()
        + holdout_sets.iter().map(|(_, f)| f.len()).sum::<usize>();
    let progress = super::progress_bar(total as u64, "embedding", options.quiet);
    let t_embed = Instant::now();
    let input = &parent.manifest.input;
    let embedded = embed_all(&mut embedder, input, &frames, options.skip_bad, &progress)?;
    let mut holdout_embedded = Vec::new();
    for (name, set) in &holdout_sets {
        holdout_embedded.push((
            name.clone(),
            set.clone(),
            embed_all(&mut embedder, input, set, options.skip_bad, &progress)?,
        ));
    }
    let anchors: Vec<Vec<f32>> = embed_all(
        &mut embedder,
        input,
        &anchor_frames,
        options.skip_bad,
        &progress,
    )?
    .into_iter()
    .flatten()
    .map(|e| e.embedding)
    .collect();
    progress.finish_and_clear();
    let embedding_time = t_embed.elapsed();
    let skipped = embedded.iter().filter(|e| e.is_none()).count()
        + holdout_embedded
            .iter()
            .map(|(_, _, e)| e.iter().filter(|x| x.is_none()).count())
            .sum::<usize>();

    let none_target = |t: Target| match t {
        Target::NoneOfThese if options.none_as_class => {
            Target::Label(protocol::a2i::NONE_OF_THESE.into())
        }
        t => t,
    };
    let mut pool: Vec<Item> = replayed
        .iter()
        .map(|r| Item {
            embedding: r.embedding.clone(),
            target: none_target(
                r.label
                    .clone()
                    .map(Target::Label)
                    .unwrap_or(Target::NoneOfThese),
            ),
            sha256: r.image_sha256.clone(),
            file: None,
        })
        .collect();
    let replay_count = pool.len();
    // One item per image (by sha256): a manifest exported again, or a frame already
    // in the replay set, must neither count twice nor sit in both halves of the split.
    // The newest label wins (a later review corrects an earlier one).
    let mut duplicates = 0;
    let mut position: std::collections::HashMap<String, usize> = pool
        .iter()
        .enumerate()
        .map(|(i, item)| (item.sha256.clone(), i))
        .collect();
    duplicates += replay_count - position.len();
    for (frame, e) in frames.iter().zip(embedded) {
        let Some(e) = e else { continue };
        let item = Item {
            embedding: e.embedding,
            target: none_target(frame.target.clone()),
            sha256: e.image_sha256,
            file: Some(e.path),
        };
        match position.get(&item.sha256) {
            Some(&i) => {
                duplicates += 1;
                pool[i] = item;
            }
            None => {
                position.insert(item.sha256.clone(), pool.len());
                pool.push(item);
            }
        }
    }
    if duplicates > 0 {
        pool = dedup_keep_last(pool);
    }
    let replay_count = pool.iter().filter(|i| i.file.is_none()).count();
    if pool.is_empty() {
        return Err(FinetuneError::EmptyTrainingSet(format!(
            "all {skipped} images were skipped"
        )));
    }

    // Labels: the parent's, then new ones in name order.
    let mut labels = parent.labels.clone();
    let new_classes: Vec<String> = pool
        .iter()
        .filter_map(|i| match &i.target {
            Target::Label(l) if !parent.labels.contains(l) => Some(l.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    labels.extend(new_classes.iter().cloned());
    let index_of = |t: &Target| match t {
        Target::Label(l) => labels.iter().position(|x| x == l),
        Target::NoneOfThese => None,
    };

    let keys: Vec<Target> = pool.iter().map(|i| i.target.clone()).collect();
    let parts = split(&keys, options.holdout_fraction, options.seed);
    // The mean embedding of every frame fitted on (the new classes' rows start as
    // boundaries between their frames and it; see `fit::grow`). Held-out frames stay
    // out of it, as out of everything the fit sees.
    let mut reference = vec![0.0f32; head.features];
    let fitted: Vec<&[f32]> = parts
        .train
        .iter()
        .map(|&i| pool[i].embedding.as_slice())
        .chain(anchors.iter().map(Vec::as_slice))
        .collect();
    for e in &fitted {
        for (r, x) in reference.iter_mut().zip(*e) {
            *r += x / fitted.len() as f32;
        }
    }
    let start = fit::grow(
        &head,
        &new_classes
            .iter()
            .map(|label| {
                let members: Vec<&Item> = parts
                    .train
                    .iter()
                    .map(|&i| &pool[i])
                    .filter(|i| i.target == Target::Label(label.clone()))
                    .collect();
                let mut mean = vec![0.0f32; head.features];
                let mut top_logit = 0.0f32;
                for m in &members {
                    for (a, x) in mean.iter_mut().zip(&m.embedding) {
                        *a += x / members.len() as f32;
                    }
                    top_logit += head
                        .logits(&m.embedding)
                        .into_iter()
                        .fold(f32::MIN, f32::max)
                        / members.len() as f32;
                }
                (mean, top_logit)
            })
            .collect::<Vec<_>>(),
        &reference,
    );
    let samples: Vec<Sample> = parts
        .train
        .iter()
        .map(|&i| {
            let item = &pool[i];
            let objective = match index_of(&item.target) {
                Some(c) => Objective::Class(c),
                None => Objective::NotClass(argmax(&head.scores(&item.embedding))),
            };
            Sample {
                embedding: &item.embedding,
                objective,
                weight: 1.0,
            }
        })
        .collect();
    // The parent's probabilities (a softmax of the logits, also for a model that
    // outputs logits: the fit's loss is on probabilities).
    let anchor_targets: Vec<Vec<f32>> = anchors
        .iter()
        .map(|e| crate::model::head::softmax(&head.logits(e)))
        .collect();
    let samples: Vec<Sample> = samples
        .into_iter()
        .chain(anchors.iter().zip(&anchor_targets).map(|(e, q)| Sample {
            embedding: e,
            objective: Objective::Match(q),
            weight: 1.0,
        }))
        .collect();
    let t_fit = Instant::now();
    let (candidate, fit_summary) = fit::fit(&start, &samples, &options.fit);
    let fit_time = t_fit.elapsed();
    if !candidate
        .weights
        .iter()
        .chain(&candidate.bias)
        .all(|v| v.is_finite())
    {
        return Err(FinetuneError::Fit(format!(
            "the fit diverged (non-finite weights after {} iterations); try a larger --l2",
            fit_summary.iterations
        )));
    }

    // The gate: the held-out split, then each --holdout set.
    let score_set = |name: String, items: Vec<(&[f32], Option<usize>)>| {
        let truth: Vec<Option<usize>> = items.iter().map(|(_, t)| *t).collect();
        let parent_pred: Vec<usize> = items.iter().map(|(e, _)| argmax(&head.scores(e))).collect();
        let cand_pred: Vec<usize> = items
            .iter()
            .map(|(e, _)| argmax(&candidate.scores(e)))
            .collect();
        let (frames, parent_accuracy) = gate::accuracy(&parent_pred, &truth);
        let (_, candidate_accuracy) = gate::accuracy(&cand_pred, &truth);
        GateSet {
            name,
            frames,
            parent_accuracy,
            candidate_accuracy,
        }
    };
    let mut sets = vec![score_set(
        "the held-out split".into(),
        parts
            .holdout
            .iter()
            .map(|&i| (pool[i].embedding.as_slice(), index_of(&pool[i].target)))
            .collect(),
    )];
    for (name, set, embedded) in &holdout_embedded {
        sets.push(score_set(
            name.clone(),
            set.iter()
                .zip(embedded)
                .filter_map(|(f, e)| {
                    e.as_ref()
                        .map(|e| (e.embedding.as_slice(), index_of(&f.target)))
                })
                .collect(),
        ));
    }
    let verdict = gate::decide(sets, options.max_regression);

    let check_input = parent.self_test_input.clone().unwrap_or_else(|| {
        // A parent without a self-test: a fixed pattern in the normalized range.
        (0..parent.manifest.input_len())
            .map(|i| (i as f32 * 0.618_034).fract() * 2.0 - 1.0)
            .collect()
    });
    let check_scores = candidate.scores(&embedder.embed(&check_input)?);
    let parent_bytes = parent.read_model()?;
    let model_bytes = replace_head(&parent_bytes, &candidate)?;
    let mut digest_lines: Vec<String> = parts
        .train
        .iter()
        .map(|&i| format!("{}\t{}\n", target_name(&pool[i].target), pool[i].sha256))
        .collect();
    digest_lines.sort();
    let version = options
        .version
        .clone()
        .unwrap_or_else(|| output::next_version(&parent.manifest.model.version));
    let lineage = LineageSection {
        parent_name: parent.manifest.model.name.clone(),
        parent_version: parent.manifest.model.version.clone(),
        parent_sha256: parent.manifest.model.sha256.clone(),
        training_data_sha256: protocol::sha256_hex(digest_lines.concat().as_bytes()),
        created: protocol::timestamp::format_rfc3339_utc(now_ms()),
        frames_trained: parts.train.len() as u64,
        frames_replayed: replay_count as u64,
        frames_held_out: parts.holdout.len() as u64,
        new_classes: new_classes.clone(),
        fit_iterations: fit_summary.iterations as u64,
        fit_objective_start: fit_summary.initial_objective,
        fit_objective_end: fit_summary.final_objective,
        fit_relative_change: fit_summary.relative_change,
        decision: verdict.decision.clone(),
        decision_reason: verdict.reason.clone(),
    };
    let replay_out: Vec<ReplayFrame> = pool
        .iter()
        .map(|i| ReplayFrame {
            label: match &i.target {
                Target::Label(l) => Some(l.clone()),
                Target::NoneOfThese => None,
            },
            image_sha256: i.sha256.clone(),
            embedding: i.embedding.clone(),
        })
        .collect();
    let manifest = output::write(
        &options.out,
        NewPackage {
            parent,
            model_bytes,
            labels: labels.clone(),
            version: version.clone(),
            lineage,
            replay: &replay_out,
            features: head.features,
            check_input,
            check_scores,
        },
    )?;

    let held: BTreeSet<usize> = parts.holdout.iter().copied().collect();
    let top = |h: &DenseHead, e: &[f32], names: &[String]| {
        let s = h.scores(e);
        let i = argmax(&s);
        (names[i].clone(), s[i])
    };
    let relabelled = pool
        .iter()
        .enumerate()
        .filter(|(_, item)| item.file.is_some())
        .map(|(i, item)| Relabelled {
            file: item
                .file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            label: target_name(&item.target),
            parent: top(&head, &item.embedding, &parent.labels),
            candidate: top(&candidate, &item.embedding, &labels),
            held_out: held.contains(&i),
        })
        .collect();
    Ok(RetrainReport {
        manifest,
        parent: parent.display_name(),
        version,
        backend: embedder.backend_name().into(),
        frames_trained: parts.train.len(),
        frames_held_out: parts.holdout.len(),
        frames_replayed: replay_count,
        frames_skipped: skipped,
        frames_duplicate: duplicates,
        anchors: anchors.len(),
        new_classes,
        fit: fit_summary,
        gate: verdict,
        frames: relabelled,
        embedding_seconds: secs(embedding_time),
        fit_seconds: secs(fit_time),
        total_seconds: secs(started.elapsed()),
    })
}

fn target_name(t: &Target) -> String {
    match t {
        Target::Label(l) => l.clone(),
        Target::NoneOfThese => protocol::a2i::NONE_OF_THESE.into(),
    }
}

/// Index of the highest score; ties: the lowest index (as `top_k`).
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `pool` with the items an image's later occurrence replaced removed; used only
/// when there were duplicates. (Replacement happens in place, so what is left to do
/// is dropping any item whose sha256 occurs again later.)
fn dedup_keep_last(pool: Vec<Item>) -> Vec<Item> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Item> = pool
        .into_iter()
        .rev()
        .filter(|i| seen.insert(i.sha256.clone()))
        .collect();
    out.reverse();
    out
}
