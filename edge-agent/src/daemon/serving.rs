//! The model the frame thread serves with, and the swap of it for another between
//! two frames. The update worker ([`crate::update`]) loads and self-tests a candidate
//! on its own thread and hands it over ([`SwapCommand`]); from then on the frame
//! thread drives [`Lifecycle`]: the candidate scores each frame beside the serving
//! model (shadow), then takes its place after a frame is finished (switch), is
//! watched, and is kept or replaced by the old model again (rollback), which stays
//! loaded until the watch ends, so a rollback also costs no frame. Outbox and MQTT
//! never see any of it; events name the model that classified their frame.

use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};

use protocol::ModelInfo;

use crate::pipeline::Classifier;
use crate::policy::ReviewPolicy;
use crate::preprocess::Preprocessor;
use crate::update::lifecycle::{Lifecycle, Observation, ShadowReport, Signals, Step};

/// Everything that depends on the model: input preparation, inference, the review
/// policy (built for its labels) and its identity in events and status.
pub struct ServingModel {
    pub pre: Preprocessor,
    pub classifier: Classifier,
    pub policy: ReviewPolicy,
    pub info: ModelInfo,
}

/// The serving model's identity and backend, read by the status publisher.
pub type SharedIdentity = Arc<Mutex<(ModelInfo, &'static str)>>;

/// From the update worker to the frame thread.
pub enum SwapCommand {
    /// Shadow this model, then switch to it (see [`Lifecycle`]).
    Candidate {
        model: Box<ServingModel>,
        lifecycle: Lifecycle,
    },
    /// Serve this model from the next frame on, no shadow and no watch (an
    /// operator's rollback to the previous package).
    Replace(Box<ServingModel>),
}

/// From the frame thread to the update worker.
#[derive(Debug, Clone, PartialEq)]
pub enum SwapEvent {
    /// The candidate serves from the next frame on.
    Switched {
        version: String,
        shadow: ShadowReport,
    },
    /// The watch passed; the old model was dropped.
    Kept {
        version: String,
        baseline: Signals,
        live: Signals,
    },
    /// The watch failed; the old model serves again from the next frame on.
    RolledBack {
        version: String,
        reason: String,
        baseline: Signals,
        live: Signals,
    },
    /// The candidate failed on a frame during the shadow window and was dropped.
    CandidateFailed { version: String, error: String },
    /// A `Replace` took effect.
    Replaced { version: String },
}

/// Whether the policy wanted a human to see the frame: sent, or held back only by
/// the rate limit or the near-duplicate memory (the watch compares what a model
/// asks for, not what the budget let through).
pub fn wants_review(decision: &crate::policy::Decision) -> bool {
    use crate::policy::{Decision, SkipCause};
    match decision {
        Decision::Review { .. } => true,
        Decision::Skip(cause) => matches!(
            cause,
            SkipCause::RateLimited | SkipCause::NearDuplicate { .. }
        ),
    }
}

/// The swap under way, if any.
pub struct Swapper {
    commands: Receiver<SwapCommand>,
    events: Sender<SwapEvent>,
    identity: SharedIdentity,
    candidate: Option<Box<ServingModel>>,
    previous: Option<Box<ServingModel>>,
    lifecycle: Option<Lifecycle>,
    tensor: Vec<f32>,
}

impl Swapper {
    pub fn new(
        commands: Receiver<SwapCommand>,
        events: Sender<SwapEvent>,
        identity: SharedIdentity,
    ) -> Self {
        Swapper {
            commands,
            events,
            identity,
            candidate: None,
            previous: None,
            lifecycle: None,
            tensor: Vec::new(),
        }
    }

    /// Takes a command sent since the last frame, if any (between two frames).
    pub fn poll(&mut self, serving: &mut ServingModel) {
        match self.commands.try_recv() {
            Ok(SwapCommand::Candidate {
                model,
                mut lifecycle,
            }) => {
                self.previous = None;
                self.candidate = Some(model);
                let step = lifecycle.start();
                self.lifecycle = Some(lifecycle);
                self.apply(step, serving);
            }
            Ok(SwapCommand::Replace(mut model)) => {
                self.candidate = None;
                self.previous = None;
                self.lifecycle = None;
                std::mem::swap(serving, &mut model);
                self.publish_identity(serving);
                let _ = self.events.send(SwapEvent::Replaced {
                    version: serving.info.version.clone(),
                });
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
        }
    }

    /// Whether the candidate must score this frame.
    pub fn shadowing(&self) -> bool {
        self.candidate.is_some() && self.lifecycle.as_ref().is_some_and(Lifecycle::shadowing)
    }

    /// Scores the frame's decoded image with the candidate (shadow window only); its
    /// own review policy decides too, with the frame's hash and time.
    pub fn shadow(
        &mut self,
        image: &image::RgbImage,
        frame_hash: u64,
        now_ms: u64,
    ) -> Option<Observation> {
        if !self.shadowing() {
            return None;
        }
        let candidate = self.candidate.as_mut()?;
        self.tensor.resize(candidate.pre.input_len(), 0.0);
        candidate.pre.prepare(image, &mut self.tensor);
        match candidate.classifier.classify(&self.tensor) {
            Ok(c) => Some(Observation {
                top1: c.top_k.first().map(|l| l.label.clone()).unwrap_or_default(),
                confidence: c.top_k.first().map(|l| l.score).unwrap_or(0.0),
                selected: candidate
                    .policy
                    .decide(&c.scores, frame_hash, now_ms)
                    .is_ok_and(|d| wants_review(&d)),
            }),
            Err(e) => {
                let version = candidate.info.version.clone();
                self.candidate = None;
                self.lifecycle = None;
                let _ = self.events.send(SwapEvent::CandidateFailed {
                    version,
                    error: e.to_string(),
                });
                None
            }
        }
    }

    /// After a frame: feeds the lifecycle and switches or rolls back as it says.
    pub fn observe(
        &mut self,
        serving: &mut ServingModel,
        seen: &Observation,
        candidate: Option<&Observation>,
    ) {
        let Some(lifecycle) = self.lifecycle.as_mut() else {
            return;
        };
        let step = lifecycle.observe(seen, candidate);
        self.apply(step, serving);
    }

    fn apply(&mut self, step: Step, serving: &mut ServingModel) {
        match step {
            Step::Continue => {}
            Step::Switch(shadow) => {
                let Some(mut new) = self.candidate.take() else {
                    return;
                };
                std::mem::swap(serving, &mut new);
                self.previous = Some(new);
                self.publish_identity(serving);
                let _ = self.events.send(SwapEvent::Switched {
                    version: serving.info.version.clone(),
                    shadow,
                });
                if !self.lifecycle.as_ref().is_some_and(|l| l.watching()) {
                    self.finish_kept(serving, Signals::default(), Signals::default());
                }
            }
            Step::Keep { baseline, live } => self.finish_kept(serving, baseline, live),
            Step::RollBack {
                reason,
                baseline,
                live,
            } => {
                self.lifecycle = None;
                let Some(mut old) = self.previous.take() else {
                    return;
                };
                std::mem::swap(serving, &mut old);
                self.publish_identity(serving);
                let _ = self.events.send(SwapEvent::RolledBack {
                    version: old.info.version.clone(),
                    reason,
                    baseline,
                    live,
                });
            }
        }
    }

    fn finish_kept(&mut self, serving: &ServingModel, baseline: Signals, live: Signals) {
        self.lifecycle = None;
        self.previous = None;
        let _ = self.events.send(SwapEvent::Kept {
            version: serving.info.version.clone(),
            baseline,
            live,
        });
    }

    fn publish_identity(&self, serving: &ServingModel) {
        *self.identity.lock().unwrap() = (serving.info.clone(), serving.classifier.backend_name());
    }
}
