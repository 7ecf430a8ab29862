//! Fitting the last layer: multinomial logistic (softmax) regression on embeddings,
//! started from the current weights and regularised toward them.
//!
//! Objective, over samples i with weights w_i (sum W):
//!
//! ```text
//! (1/W) Σ_i w_i ℓ_i(θ)  +  (λ/2) ‖θ − θ₀‖²
//! ℓ_i = −log p_y(x_i)            for a frame labelled y
//! ℓ_i = −log (1 − p_k(x_i))      for a "none of these" frame, k the parent's top-1
//! ℓ_i = −Σ_j q_j log p_j(x_i)     for an anchor frame, q the parent's scores
//! ```
//!
//! Anchor frames are unreviewed frames (what the device sees day to day) whose
//! parent scores the candidate is asked to keep ("learning without forgetting"):
//! they hold the decision in place where no reviewer looked.
//!
//! θ = (weights, bias), θ₀ the parent's layer (grown rows: their initial values). The
//! pull toward θ₀ is what lets 2-5 frames move the decision for what was reviewed
//! without wrecking the other classes: every class keeps its parent row unless the
//! data pays for a change. The problem is smooth and λ-strongly convex, so plain
//! accelerated gradient descent (Nesterov, with backtracking on the step and a restart
//! when the objective rises) reaches the optimum in a few hundred full-batch steps,
//! with no randomness: the same samples give the same layer, bit for bit. Why not a
//! crate: an optimiser crate brings a math-backend abstraction for a 40-line loop
//! over one dense matrix; nothing else here needs one.

use crate::model::head::{dot, softmax, DenseHead};

/// What one training sample asks of the layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective<'a> {
    /// The frame shows class `0`.
    Class(usize),
    /// The frame shows none of the classes; push down class `0` (the parent's top-1).
    NotClass(usize),
    /// An anchor: keep these scores (the parent's; 0 for new classes).
    Match(&'a [f32]),
}

#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// `features` floats.
    pub embedding: &'a [f32],
    pub objective: Objective<'a>,
    /// Relative weight (1 for a reviewed frame).
    pub weight: f32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct FitOptions {
    /// λ, the pull toward the parent's layer.
    pub l2_to_parent: f32,
    /// Most gradient steps.
    pub max_iterations: usize,
    /// Stop when the gradient's norm falls below this.
    pub gradient_tolerance: f32,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            l2_to_parent: 1e-3,
            max_iterations: 500,
            gradient_tolerance: 1e-5,
        }
    }
}

/// How the fit went, for the manifest and the terminal.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct FitSummary {
    pub samples: usize,
    pub iterations: usize,
    pub initial_objective: f64,
    pub final_objective: f64,
    pub gradient_norm: f64,
    /// ‖θ − θ₀‖ / ‖θ₀‖ over the whole layer.
    pub relative_change: f64,
}

/// Fits `start` (θ₀, already grown for new classes) to `samples`.
pub fn fit(
    start: &DenseHead,
    samples: &[Sample<'_>],
    options: &FitOptions,
) -> (DenseHead, FitSummary) {
    let problem = Problem {
        start,
        samples,
        lambda: options.l2_to_parent as f64,
        total_weight: samples
            .iter()
            .map(|s| s.weight as f64)
            .sum::<f64>()
            .max(1e-12),
    };
    let theta0 = flatten(start);
    let mut x = theta0.clone();
    let mut y = theta0.clone();
    let mut t = 1.0f64;
    let mut step = 1.0f64;
    let (initial, _) = problem.value_and_gradient(&theta0);
    let mut fx = initial;
    let mut iterations = 0;
    let mut gradient_norm = f64::INFINITY;
    let mut flat_steps = 0;
    while iterations < options.max_iterations {
        iterations += 1;
        let (fy, gy) = problem.value_and_gradient(&y);
        gradient_norm = norm(&gy);
        if gradient_norm < options.gradient_tolerance as f64 {
            x = y.clone();
            fx = fy;
            break;
        }
        // Backtracking: shrink the step until the quadratic upper bound holds.
        let g2 = gradient_norm * gradient_norm;
        let (candidate, fc) = loop {
            let c: Vec<f32> = y
                .iter()
                .zip(&gy)
                .map(|(v, g)| (*v as f64 - step * *g as f64) as f32)
                .collect();
            let fc = problem.value(&c);
            if fc <= fy - 0.5 * step * g2 || step < 1e-12 {
                break (c, fc);
            }
            step *= 0.5;
        };
        // Converged when the objective has stopped moving (relative 1e-7) for a
        // few steps in a row: the gradient of a flat optimum is rarely exactly tiny
        // in f32.
        if (fx - fc).abs() <= 1e-7 * fx.abs().max(1e-3) {
            flat_steps += 1;
            if flat_steps >= 5 {
                x = candidate;
                fx = fc;
                break;
            }
        } else {
            flat_steps = 0;
        }
        if fc > fx {
            // Momentum overshot: restart from the last iterate.
            t = 1.0;
            y = x.clone();
            continue;
        }
        let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        let beta = ((t - 1.0) / t_next) as f32;
        y = candidate
            .iter()
            .zip(&x)
            .map(|(c, old)| c + beta * (c - old))
            .collect();
        x = candidate;
        fx = fc;
        t = t_next;
        step *= 1.25; // let the step grow back after a backtrack
    }
    let base = norm(&theta0).max(1e-12);
    let change = norm(
        &x.iter()
            .zip(&theta0)
            .map(|(a, b)| a - b)
            .collect::<Vec<_>>(),
    );
    let head = unflatten(start, &x);
    let summary = FitSummary {
        samples: samples.len(),
        iterations,
        initial_objective: initial,
        final_objective: fx,
        gradient_norm,
        relative_change: change / base,
    };
    (head, summary)
}

struct Problem<'a> {
    start: &'a DenseHead,
    samples: &'a [Sample<'a>],
    lambda: f64,
    total_weight: f64,
}

impl Problem<'_> {
    fn value(&self, theta: &[f32]) -> f64 {
        self.evaluate(theta, None)
    }

    fn value_and_gradient(&self, theta: &[f32]) -> (f64, Vec<f32>) {
        let mut gradient = vec![0.0f32; theta.len()];
        let value = self.evaluate(theta, Some(&mut gradient));
        (value, gradient)
    }

    fn evaluate(&self, theta: &[f32], mut gradient: Option<&mut Vec<f32>>) -> f64 {
        let (c, d) = (self.start.classes, self.start.features);
        let (weights, bias) = theta.split_at(c * d);
        let mut loss = 0.0f64;
        let mut dlogits = vec![0.0f32; c];
        for sample in self.samples {
            let x = sample.embedding;
            let logits: Vec<f32> = weights
                .chunks_exact(d)
                .zip(bias)
                .map(|(row, b)| b + dot(row, x))
                .collect();
            let p = softmax(&logits);
            let scale = (sample.weight as f64 / self.total_weight) as f32;
            match sample.objective {
                Objective::Class(y) => {
                    loss += -(p[y].max(1e-30) as f64).ln() * scale as f64;
                    for (j, dl) in dlogits.iter_mut().enumerate() {
                        *dl = scale * (p[j] - if j == y { 1.0 } else { 0.0 });
                    }
                }
                Objective::Match(q) => {
                    for (j, dl) in dlogits.iter_mut().enumerate() {
                        let qj = q.get(j).copied().unwrap_or(0.0);
                        if qj > 0.0 {
                            loss -= (qj * p[j].max(1e-30).ln()) as f64 * scale as f64;
                        }
                        *dl = scale * (p[j] - qj);
                    }
                }
                Objective::NotClass(k) => {
                    let rest = (1.0 - p[k]).max(1e-30);
                    loss += -(rest as f64).ln() * scale as f64;
                    // d/dz_j −log(1 − p_k) = p_k (δ_jk − p_j) / (1 − p_k)
                    for (j, dl) in dlogits.iter_mut().enumerate() {
                        let delta = if j == k { 1.0 } else { 0.0 };
                        *dl = scale * p[k] * (delta - p[j]) / rest;
                    }
                }
            }
            if let Some(g) = gradient.as_deref_mut() {
                let (gw, gb) = g.split_at_mut(c * d);
                for (j, &dl) in dlogits.iter().enumerate() {
                    if dl == 0.0 {
                        continue;
                    }
                    gb[j] += dl;
                    for (gwj, xi) in gw[j * d..(j + 1) * d].iter_mut().zip(x) {
                        *gwj += dl * xi;
                    }
                }
            }
        }
        let theta0 = self.start.weights.iter().chain(&self.start.bias);
        let mut penalty = 0.0f64;
        for (i, (v, v0)) in theta.iter().zip(theta0).enumerate() {
            let diff = v - v0;
            penalty += (diff as f64) * (diff as f64);
            if let Some(g) = gradient.as_deref_mut() {
                g[i] += self.lambda as f32 * diff;
            }
        }
        loss + 0.5 * self.lambda * penalty
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt()
}

fn flatten(head: &DenseHead) -> Vec<f32> {
    head.weights.iter().chain(&head.bias).copied().collect()
}

fn unflatten(like: &DenseHead, theta: &[f32]) -> DenseHead {
    let (w, b) = theta.split_at(like.classes * like.features);
    DenseHead {
        weights: w.to_vec(),
        bias: b.to_vec(),
        ..like.clone()
    }
}

/// `head` with one row per new class, each a linear boundary halfway between the
/// class's mean embedding `m` and the `reference` mean embedding μ (of every frame at
/// hand): `w = s (m − μ)`, `b = −w · (m + μ) / 2`, with `s` chosen so that the logit
/// is `+target_logit` at `m` and `−target_logit` at μ. Why centred: the embeddings
/// come after a ReLU6 and an average, so all are non-negative and any two point
/// roughly the same way; a row along `m` alone would score every frame high.
pub fn grow(head: &DenseHead, new_classes: &[(Vec<f32>, f32)], reference: &[f32]) -> DenseHead {
    let mut out = head.clone();
    for (mean, target_logit) in new_classes {
        let diff: Vec<f32> = mean.iter().zip(reference).map(|(m, r)| m - r).collect();
        let norm2: f32 = diff.iter().map(|v| v * v).sum::<f32>().max(1e-12);
        let scale = 2.0 * target_logit.abs().max(1.0) / norm2;
        let row: Vec<f32> = diff.iter().map(|d| d * scale).collect();
        let bias = -row
            .iter()
            .zip(mean.iter().zip(reference))
            .map(|(w, (m, r))| w * (m + r) / 2.0)
            .sum::<f32>();
        out.weights.extend(row);
        out.bias.push(bias);
        out.classes += 1;
    }
    out
}

#[cfg(test)]
#[path = "fit_tests.rs"]
mod tests;
