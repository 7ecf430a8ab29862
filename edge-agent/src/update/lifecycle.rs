//! The frame-by-frame part of a model update, as a pure state machine the frame
//! thread feeds: **shadow** (the candidate scores every frame beside the serving
//! model; top-1 disagreements are counted, and the serving model's signals become the
//! baseline), then **switch** between two frames, then **watch** (the new model's
//! live signals against that baseline; past a threshold, roll back by itself).
//!
//! Signals, per frame: whether the review policy selected it (or would have, but for
//! the rate limit or the near-duplicate memory), and the top-1 confidence. The watch
//! compares the share selected and the mean confidence; a model that suddenly sends
//! many more frames to humans, or is much less sure, is worse than the one it
//! replaced, whatever its offline accuracy said.

use serde::Serialize;

/// Thresholds and window lengths (`[update]` in the agent's config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecycleConfig {
    /// Frames the candidate shadows the serving model before the switch (0: switch at
    /// the next frame).
    pub shadow_frames: u32,
    /// Frames watched after the switch (0: no watch).
    pub watch_frames: u32,
    /// Roll back when the share of frames selected for review rises by more than this
    /// (absolute, 0..=1) over the old model's.
    pub max_selected_increase: f64,
    /// Roll back when the mean top-1 confidence falls by more than this (absolute).
    pub max_confidence_drop: f64,
}

/// What one model made of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub top1: String,
    pub confidence: f32,
    pub selected: bool,
}

/// Running sums of the signals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Signals {
    pub frames: u32,
    pub selected: u32,
    pub confidence_sum: f64,
}

impl Signals {
    fn add(&mut self, o: &Observation) {
        self.frames += 1;
        self.selected += u32::from(o.selected);
        self.confidence_sum += f64::from(o.confidence);
    }
    /// Share of frames selected for review, 0..=1 (0 with no frames).
    pub fn selected_share(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            f64::from(self.selected) / f64::from(self.frames)
        }
    }
    /// Mean top-1 confidence (0 with no frames).
    pub fn mean_confidence(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.confidence_sum / f64::from(self.frames)
        }
    }
}

/// The shadow window's result, reported with the switch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShadowReport {
    pub frames: u32,
    pub disagreements: u32,
    pub serving: Signals,
    pub candidate: Signals,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Shadow {
        disagreements: u32,
        serving: Signals,
        candidate: Signals,
    },
    Watch {
        baseline: Signals,
        live: Signals,
    },
    Done,
}

/// What the frame thread does after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Keep going as now.
    Continue,
    /// Serve the candidate from the next frame on (keep the old model loaded).
    Switch(ShadowReport),
    /// The watch window passed: the update succeeded; the old model can be dropped.
    Keep { baseline: Signals, live: Signals },
    /// Serve the old model again, from the next frame on.
    RollBack {
        reason: String,
        baseline: Signals,
        live: Signals,
    },
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    config: LifecycleConfig,
    phase: Phase,
}

impl Lifecycle {
    pub fn new(config: LifecycleConfig) -> Self {
        Lifecycle {
            config,
            phase: Phase::Shadow {
                disagreements: 0,
                serving: Signals::default(),
                candidate: Signals::default(),
            },
        }
    }

    /// Whether the candidate must score the next frame too.
    pub fn shadowing(&self) -> bool {
        matches!(self.phase, Phase::Shadow { .. })
    }

    /// Whether the new model is serving under watch.
    pub fn watching(&self) -> bool {
        matches!(self.phase, Phase::Watch { .. })
    }

    /// With `shadow_frames = 0`, the switch happens before any frame: call this once
    /// after `new` (and before the first `observe`).
    pub fn start(&mut self) -> Step {
        if self.config.shadow_frames == 0 {
            self.switch()
        } else {
            Step::Continue
        }
    }

    /// One frame: `serving` is the serving model's view; `candidate` the candidate's
    /// while shadowing (ignored otherwise).
    pub fn observe(&mut self, serving: &Observation, candidate: Option<&Observation>) -> Step {
        match &mut self.phase {
            Phase::Shadow {
                disagreements,
                serving: s,
                candidate: c,
            } => {
                let Some(cand) = candidate else {
                    return Step::Continue;
                };
                s.add(serving);
                c.add(cand);
                *disagreements += u32::from(cand.top1 != serving.top1);
                if s.frames >= self.config.shadow_frames {
                    self.switch()
                } else {
                    Step::Continue
                }
            }
            Phase::Watch { baseline, live } => {
                live.add(serving);
                let (baseline, live) = (*baseline, *live);
                if let Some(reason) = self.verdict(&baseline, &live) {
                    self.phase = Phase::Done;
                    return Step::RollBack {
                        reason,
                        baseline,
                        live,
                    };
                }
                if live.frames >= self.config.watch_frames {
                    self.phase = Phase::Done;
                    return Step::Keep { baseline, live };
                }
                Step::Continue
            }
            Phase::Done => Step::Continue,
        }
    }

    fn switch(&mut self) -> Step {
        let (disagreements, serving, candidate) = match &self.phase {
            Phase::Shadow {
                disagreements,
                serving,
                candidate,
            } => (*disagreements, *serving, *candidate),
            _ => return Step::Continue,
        };
        let report = ShadowReport {
            frames: serving.frames,
            disagreements,
            serving,
            candidate,
        };
        self.phase = if self.config.watch_frames == 0 {
            Phase::Done
        } else {
            Phase::Watch {
                baseline: serving,
                live: Signals::default(),
            }
        };
        Step::Switch(report)
    }

    /// The watch's judgement once the window is full (or, for a model that is
    /// already hopeless, as soon as even a perfect rest could not save it).
    fn verdict(&self, baseline: &Signals, live: &Signals) -> Option<String> {
        let window = self.config.watch_frames;
        if live.frames < window {
            // Early: the share selected can no longer end below the limit.
            let limit = baseline.selected_share() + self.config.max_selected_increase;
            let least_share = f64::from(live.selected) / f64::from(window);
            if baseline.frames > 0 && least_share > limit {
                return Some(self.selected_reason(baseline, live));
            }
            return None;
        }
        if baseline.frames == 0 {
            // Nothing to compare with (the shadow window was 0): trust the switch.
            return None;
        }
        if live.selected_share() - baseline.selected_share() > self.config.max_selected_increase {
            return Some(self.selected_reason(baseline, live));
        }
        let drop = baseline.mean_confidence() - live.mean_confidence();
        if drop > self.config.max_confidence_drop {
            return Some(format!(
                "mean confidence fell from {:.3} to {:.3} over {} frames (more than the allowed {:.3})",
                baseline.mean_confidence(),
                live.mean_confidence(),
                live.frames,
                self.config.max_confidence_drop
            ));
        }
        None
    }

    fn selected_reason(&self, baseline: &Signals, live: &Signals) -> String {
        format!(
            "{} of {} frames selected for review against {:.1}% before (more than {:.1} points above)",
            live.selected,
            live.frames,
            baseline.selected_share() * 100.0,
            self.config.max_selected_increase * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(shadow: u32, watch: u32) -> LifecycleConfig {
        LifecycleConfig {
            shadow_frames: shadow,
            watch_frames: watch,
            max_selected_increase: 0.2,
            max_confidence_drop: 0.2,
        }
    }

    fn obs(top1: &str, confidence: f32, selected: bool) -> Observation {
        Observation {
            top1: top1.into(),
            confidence,
            selected,
        }
    }

    #[test]
    fn the_candidate_shadows_the_configured_frames_then_switches_counting_disagreements() {
        let mut l = Lifecycle::new(cfg(3, 0));
        assert_eq!(l.start(), Step::Continue);
        let serving = obs("pug", 0.9, false);
        assert_eq!(
            l.observe(&serving, Some(&obs("pug", 0.8, false))),
            Step::Continue
        );
        assert_eq!(
            l.observe(&serving, Some(&obs("beagle", 0.6, true))),
            Step::Continue
        );
        match l.observe(&serving, Some(&obs("pug", 0.7, false))) {
            Step::Switch(r) => {
                assert_eq!((r.frames, r.disagreements), (3, 1));
                assert_eq!(r.candidate.selected, 1);
            }
            other => panic!("{other:?}"),
        }
        // No watch window: done.
        assert_eq!(l.observe(&serving, None), Step::Continue);
    }

    #[test]
    fn no_shadow_window_switches_before_the_first_frame() {
        let mut l = Lifecycle::new(cfg(0, 2));
        assert!(matches!(l.start(), Step::Switch(r) if r.frames == 0));
        // With no baseline the watch cannot judge: it keeps the model.
        l.observe(&obs("a", 0.1, true), None);
        assert!(matches!(
            l.observe(&obs("a", 0.1, true), None),
            Step::Keep { .. }
        ));
    }

    #[test]
    fn a_watch_within_the_thresholds_keeps_the_new_model() {
        let mut l = Lifecycle::new(cfg(2, 2));
        l.observe(&obs("a", 0.9, false), Some(&obs("a", 0.9, false)));
        assert!(matches!(
            l.observe(&obs("a", 0.8, true), Some(&obs("a", 0.9, false))),
            Step::Switch(_)
        ));
        assert_eq!(l.observe(&obs("a", 0.85, true), None), Step::Continue);
        assert!(matches!(
            l.observe(&obs("a", 0.8, false), None),
            Step::Keep { .. }
        ));
    }

    #[test]
    fn many_more_frames_selected_after_the_switch_roll_back_with_the_reason() {
        let mut l = Lifecycle::new(cfg(4, 10));
        for _ in 0..3 {
            l.observe(&obs("a", 0.9, false), Some(&obs("a", 0.5, true)));
        }
        assert!(matches!(
            l.observe(&obs("a", 0.9, false), Some(&obs("a", 0.5, true))),
            Step::Switch(_)
        ));
        // 0% before; at 3 selected of a 10-frame window the share cannot end below 20%.
        assert_eq!(l.observe(&obs("a", 0.5, true), None), Step::Continue);
        assert_eq!(l.observe(&obs("a", 0.5, true), None), Step::Continue);
        match l.observe(&obs("a", 0.5, true), None) {
            Step::RollBack { reason, live, .. } => {
                assert_eq!(live.frames, 3);
                assert!(reason.contains("3 of 3 frames selected"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_confidence_collapse_over_the_window_rolls_back() {
        let mut l = Lifecycle::new(cfg(1, 2));
        assert!(matches!(
            l.observe(&obs("a", 0.95, false), Some(&obs("a", 0.3, false))),
            Step::Switch(_)
        ));
        l.observe(&obs("a", 0.3, false), None);
        match l.observe(&obs("a", 0.35, false), None) {
            Step::RollBack { reason, .. } => {
                assert!(reason.contains("mean confidence fell"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
