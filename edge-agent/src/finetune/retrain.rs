//! `retrain`: from a parent package and labelled frames to a candidate package and a
//! promotion verdict (the steps are listed in the module above). This file only
//! strings the steps together; each step's rules live in its own module.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::dataset::{self, ImageStore, LabelledFrame, Target};
use super::embed::{embed_all, Embedder};
use super::fit::{self, FitOptions, FitSummary};
use super::gate::{self, GateResult};
use super::output::{self, NewPackage};
use super::pool::{index_of, target_name, Item, Pool};
use super::replay;
use super::split::split;
use super::FinetuneError;
use crate::inference::{argmax, BackendChoice, BackendOptions};
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

    if let Some(missing) = options.anchors.iter().find(|p| !p.exists()) {
        return Err(FinetuneError::Data(format!(
            "anchor {}: no such file or folder",
            missing.display()
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
    let replay_items: Vec<Item> = replayed
        .into_iter()
        .map(|r| Item {
            embedding: r.embedding,
            target: none_target(r.label.map(Target::Label).unwrap_or(Target::NoneOfThese)),
            sha256: r.image_sha256,
            file: None,
        })
        .collect();
    let new_items = frames.iter().zip(embedded).filter_map(|(frame, e)| {
        e.map(|e| Item {
            embedding: e.embedding,
            target: none_target(frame.target.clone()),
            sha256: e.image_sha256,
            file: Some(e.path),
        })
    });
    let pool = Pool::build(replay_items, new_items);
    if pool.items.is_empty() {
        return Err(FinetuneError::EmptyTrainingSet(format!(
            "all {skipped} images were skipped"
        )));
    }
    let (labels, new_classes) = pool.labels(&parent.labels);
    let keys: Vec<Target> = pool.items.iter().map(|i| i.target.clone()).collect();
    let parts = split(&keys, options.holdout_fraction, options.seed);
    let start = pool.start_head(&head, &new_classes, &parts.train, &anchors);
    // The parent's probabilities (a softmax of the logits, also for a model that
    // outputs logits: the fit's loss is on probabilities).
    let anchor_targets: Vec<Vec<f32>> = anchors
        .iter()
        .map(|e| crate::model::head::softmax(&head.logits(e)))
        .collect();
    let samples = pool.samples(&head, &labels, &parts.train, &anchors, &anchor_targets);
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
    let index = |t: &Target| index_of(&labels, t);
    let mut sets = vec![gate::score_set(
        "the held-out split".into(),
        &head,
        &candidate,
        parts.holdout.iter().map(|&i| {
            (
                pool.items[i].embedding.as_slice(),
                index(&pool.items[i].target),
            )
        }),
    )];
    for (name, set, embedded) in &holdout_embedded {
        sets.push(gate::score_set(
            name.clone(),
            &head,
            &candidate,
            set.iter().zip(embedded).filter_map(|(f, e)| {
                e.as_ref()
                    .map(|e| (e.embedding.as_slice(), index(&f.target)))
            }),
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
    let version = options
        .version
        .clone()
        .unwrap_or_else(|| output::next_version(&parent.manifest.model.version));
    let lineage = LineageSection {
        parent_name: parent.manifest.model.name.clone(),
        parent_version: parent.manifest.model.version.clone(),
        parent_sha256: parent.manifest.model.sha256.clone(),
        training_data_sha256: pool.digest(&parts.train),
        created: protocol::timestamp::format_rfc3339_utc(crate::source::now_ms() as i64),
        frames_trained: parts.train.len() as u64,
        frames_replayed: pool.replayed() as u64,
        frames_held_out: parts.holdout.len() as u64,
        new_classes: new_classes.clone(),
        fit_iterations: fit_summary.iterations as u64,
        fit_objective_start: fit_summary.initial_objective,
        fit_objective_end: fit_summary.final_objective,
        fit_relative_change: fit_summary.relative_change,
        decision: verdict.decision.clone(),
        decision_reason: verdict.reason.clone(),
    };
    let replay_out = pool.to_replay();
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
        .items
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
        frames_replayed: pool.replayed(),
        frames_skipped: skipped,
        frames_duplicate: pool.duplicates,
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
