use super::*;

fn head(classes: usize, features: usize) -> DenseHead {
    DenseHead {
        classes,
        features,
        weights: vec![0.0; classes * features],
        bias: vec![0.0; classes],
        softmax: true,
    }
}

fn points() -> Vec<(Vec<f32>, usize)> {
    vec![
        (vec![2.0, 0.1, 0.0], 0),
        (vec![1.5, -0.2, 0.0], 0),
        (vec![0.1, 2.0, 0.0], 1),
        (vec![-0.3, 1.7, 0.0], 1),
        (vec![0.0, 0.2, 2.2], 2),
    ]
}

fn samples(points: &[(Vec<f32>, usize)]) -> Vec<Sample<'_>> {
    points
        .iter()
        .map(|(e, y)| Sample {
            embedding: e,
            objective: Objective::Class(*y),
            weight: 1.0,
        })
        .collect()
}

fn top1(head: &DenseHead, x: &[f32]) -> usize {
    let s = head.scores(x);
    (0..s.len()).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap()
}

#[test]
fn separable_classes_are_learned_from_a_zero_layer() {
    let pts = points();
    let (fitted, summary) = fit(&head(3, 3), &samples(&pts), &FitOptions::default());
    for (x, y) in &pts {
        assert_eq!(top1(&fitted, x), *y, "{x:?}");
    }
    assert!(
        summary.final_objective < summary.initial_objective / 4.0,
        "{summary:?}"
    );
}

#[test]
fn a_strong_pull_keeps_the_parent_layer() {
    let pts = points();
    let mut start = head(3, 3);
    start.weights[0] = 1.0;
    let options = FitOptions {
        l2_to_parent: 1e4,
        ..FitOptions::default()
    };
    let (fitted, summary) = fit(&start, &samples(&pts), &options);
    assert!(summary.relative_change < 1e-3, "{summary:?}");
    assert!((fitted.weights[0] - 1.0).abs() < 1e-3);
}

#[test]
fn the_same_samples_give_the_same_layer_bit_for_bit() {
    let pts = points();
    let a = fit(&head(3, 3), &samples(&pts), &FitOptions::default());
    let b = fit(&head(3, 3), &samples(&pts), &FitOptions::default());
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
}

#[test]
fn gradients_match_finite_differences_for_both_objectives() {
    let pts = points();
    let mut all = samples(&pts);
    all.push(Sample {
        embedding: &pts[0].0,
        objective: Objective::NotClass(1),
        weight: 2.0,
    });
    let soft = [0.2f32, 0.7, 0.1];
    all.push(Sample {
        embedding: &pts[2].0,
        objective: Objective::Match(&soft),
        weight: 1.5,
    });
    let mut start = head(3, 3);
    start.weights = (0..9).map(|i| (i as f32 * 0.37).sin()).collect();
    start.bias = vec![0.1, -0.2, 0.3];
    let problem = Problem {
        start: &start,
        samples: &all,
        lambda: 0.1,
        total_weight: all.iter().map(|s| s.weight as f64).sum(),
    };
    let mut theta: Vec<f32> = flatten(&start);
    theta[4] += 0.3; // away from θ₀ so the penalty's gradient counts too
    let (_, gradient) = problem.value_and_gradient(&theta);
    for i in 0..theta.len() {
        let h = 1e-2f32;
        let (mut up, mut down) = (theta.clone(), theta.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (problem.value(&up) - problem.value(&down)) / (2.0 * h as f64);
        assert!(
            (numeric - gradient[i] as f64).abs() < 2e-3,
            "θ[{i}]: numeric {numeric}, analytic {}",
            gradient[i]
        );
    }
}

#[test]
fn a_none_of_these_frame_lowers_its_parents_top1() {
    let x = vec![1.0, 0.0, 0.0];
    let mut start = head(2, 3);
    start.weights = vec![2.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let before = start.scores(&x)[0];
    let s = [Sample {
        embedding: &x,
        objective: Objective::NotClass(0),
        weight: 1.0,
    }];
    let (fitted, _) = fit(&start, &s, &FitOptions::default());
    assert!(
        fitted.scores(&x)[0] < before - 0.2,
        "{} -> {}",
        before,
        fitted.scores(&x)[0]
    );
}

#[test]
fn a_grown_row_separates_its_mean_from_the_reference() {
    let start = head(2, 3);
    let grown = grow(&start, &[(vec![0.0, 3.0, 4.0], 5.0)], &[1.0, 1.0, 1.0]);
    assert_eq!(
        (grown.classes, grown.weights.len(), grown.bias.len()),
        (3, 9, 3)
    );
    let at_mean = grown.logits(&[0.0, 3.0, 4.0])[2];
    let at_reference = grown.logits(&[1.0, 1.0, 1.0])[2];
    assert!((at_mean - 5.0).abs() < 1e-4, "{at_mean}");
    assert!((at_reference + 5.0).abs() < 1e-4, "{at_reference}");
}

#[test]
fn an_anchor_keeps_its_scores_while_a_reviewed_frame_moves() {
    let reviewed = vec![1.0, 0.0, 0.0];
    let anchor = vec![0.8, 0.6, 0.0];
    let mut start = head(2, 3);
    start.weights = vec![0.0, 2.0, 0.0, 1.0, 0.0, 0.0];
    let keep = start.scores(&anchor);
    let samples = [
        Sample {
            embedding: &reviewed,
            objective: Objective::Class(0),
            weight: 1.0,
        },
        Sample {
            embedding: &anchor,
            objective: Objective::Match(&keep),
            weight: 1.0,
        },
    ];
    let (fitted, _) = fit(&start, &samples, &FitOptions::default());
    assert_eq!(top1(&fitted, &reviewed), 0);
    assert_eq!(top1(&fitted, &anchor), top1(&start, &anchor));
}
