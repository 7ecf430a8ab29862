use super::*;

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn frame(truth: usize, scores: &[f32]) -> Prediction {
    Prediction {
        truth,
        scores: scores.to_vec(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_perfect_classifier_scores_one_everywhere_and_has_nothing_to_catch() {
    let preds = vec![
        frame(0, &[0.9, 0.05, 0.05]),
        frame(1, &[0.05, 0.9, 0.05]),
        frame(2, &[0.05, 0.05, 0.9]),
        frame(2, &[0.05, 0.05, 0.9]),
    ];
    let m = evaluate(&labels(&["a", "b", "c"]), &preds, 10);
    assert_eq!((m.frames, m.mistakes, m.accuracy), (4, 0, 1.0));
    for c in &m.per_class {
        assert_eq!(
            (c.precision, c.recall, c.f1),
            (1.0, 1.0, 1.0),
            "{}",
            c.label
        );
        assert_eq!((c.auroc, c.auprc), (Some(1.0), Some(1.0)), "{}", c.label);
    }
    assert_eq!(
        m.confusion,
        vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 0, 2]]
    );
    assert_eq!(
        (m.macro_f1, m.macro_auroc, m.macro_auprc),
        (1.0, Some(1.0), Some(1.0))
    );
    // Every frame is 90% confident and right: 10 points of underconfidence.
    assert!(close(m.ece, 0.1), "{}", m.ece);
    assert!(m.review_curve.iter().all(|p| p.catch_share == 1.0));
    let point = threshold_for_catch(&m.review_curve, 0.9).unwrap();
    assert_eq!((point.threshold, point.reviewed), (0.0, 0));
}

#[test]
fn an_all_wrong_classifier_scores_zero_and_every_review_is_a_catch() {
    let preds = vec![frame(0, &[0.2, 0.8]), frame(1, &[0.7, 0.3])];
    let m = evaluate(&labels(&["a", "b"]), &preds, 5);
    assert_eq!((m.accuracy, m.mistakes), (0.0, 2));
    for c in &m.per_class {
        assert_eq!((c.precision, c.recall, c.f1), (0.0, 0.0, 0.0));
        assert_eq!(c.auroc, Some(0.0));
    }
    assert_eq!(m.confusion, vec![vec![0, 1], vec![1, 0]]);
    let last = m.review_curve.last().unwrap();
    assert_eq!((last.reviewed, last.caught, last.catch_share), (2, 2, 1.0));
}

#[test]
fn tied_scores_count_half_in_auroc_and_as_one_threshold_in_average_precision() {
    // Class 0 scores: positives 0.8 and 0.5, negatives 0.5 and 0.2. Of the four
    // positive-negative pairs, three are ordered right and one is tied: 3.5 / 4.
    let preds = vec![
        frame(0, &[0.8, 0.2]),
        frame(0, &[0.5, 0.5]),
        frame(1, &[0.5, 0.5]),
        frame(1, &[0.2, 0.8]),
    ];
    let m = evaluate(&labels(&["a", "b"]), &preds, 10);
    assert!(close(m.per_class[0].auroc.unwrap(), 0.875));
    // Thresholds 0.8 (P=1, R=1/2) and 0.5 (P=2/3, R=1): AP = 1/2·1 + 1/2·2/3.
    assert!(close(m.per_class[0].auprc.unwrap(), 0.5 + 1.0 / 3.0));
    // The tie at 0.5/0.5 goes to the lowest index, so frame 2 is predicted as `a`.
    assert_eq!(m.confusion, vec![vec![2, 0], vec![1, 1]]);
}

#[test]
fn top1_ties_go_to_the_lowest_index() {
    assert_eq!(top1(&[0.1, 0.4, 0.4, 0.1]), Some((1, 0.4)));
    assert_eq!(top1(&[]), None);
}

#[test]
fn a_class_never_predicted_counts_in_the_macro_average_with_zero_precision() {
    let preds = vec![frame(0, &[0.9, 0.1, 0.0]), frame(1, &[0.6, 0.4, 0.0])];
    let m = evaluate(&labels(&["a", "b", "c"]), &preds, 10);
    let b = &m.per_class[1];
    assert_eq!(
        (b.support, b.predicted, b.precision, b.recall, b.f1),
        (1, 0, 0.0, 0.0, 0.0)
    );
    // `c` is neither a truth nor a prediction, so it is left out of the macro average:
    // a: P=1/2 R=1 F1=2/3; b: all 0.
    assert!(close(m.macro_precision, 0.25));
    assert!(close(m.macro_recall, 0.5));
    assert!(close(m.macro_f1, 1.0 / 3.0));
    assert_eq!(m.per_class[2].auroc, None, "c has no positive frame");
    assert_eq!(m.roc.len(), 2);
}

#[test]
fn a_truth_outside_the_model_classes_is_always_a_mistake_with_no_auc() {
    let preds = vec![
        frame(0, &[0.9, 0.1]),
        frame(2, &[0.3, 0.7]),
        frame(1, &[0.2, 0.8]),
    ];
    let m = evaluate(&labels(&["a", "b", "unknown"]), &preds, 10);
    assert_eq!((m.model_classes, m.mistakes), (2, 1));
    assert_eq!(m.confusion, vec![vec![1, 0], vec![0, 1], vec![0, 1]]);
    let unknown = &m.per_class[2];
    assert_eq!(
        (
            unknown.support,
            unknown.recall,
            unknown.auroc,
            unknown.auprc
        ),
        (1, 0.0, None, None)
    );
    assert!(close(m.per_class[1].precision, 0.5));
    assert!(m.roc.iter().all(|c| c.label != "unknown"));
}

#[test]
fn indices_without_a_label_are_named_like_top_k_does() {
    let m = evaluate(&labels(&["a"]), &[frame(3, &[0.5, 0.5])], 10);
    assert_eq!(m.labels, labels(&["a", "#1", "#2", "#3"]));
    assert_eq!(m.confusion.len(), 4);
}

#[test]
fn empty_input_gives_zeros_nones_and_a_two_point_curve() {
    let m = evaluate(&labels(&["a", "b"]), &[], 10);
    assert_eq!(
        (m.frames, m.accuracy, m.macro_f1, m.ece),
        (0, 0.0, 0.0, 0.0)
    );
    assert_eq!((m.macro_auroc, m.macro_auprc), (None, None));
    assert_eq!(m.per_class.len(), 2);
    assert_eq!(m.reliability.len(), 10);
    assert!(m
        .reliability
        .iter()
        .all(|b| b.frames == 0 && b.accuracy.is_none()));
    assert_eq!(m.review_curve.len(), 2);
    assert!(m
        .review_curve
        .iter()
        .all(|p| p.review_share == 0.0 && p.catch_share == 1.0));
    assert!(serde_json::to_string(&m).is_ok());
    let nothing = evaluate(&[], &[], 0);
    assert_eq!((nothing.labels.len(), nothing.reliability.len()), (0, 1));
}

/// Top-1 confidences 0.2 (wrong), 0.5 (right), 0.5 (wrong), 0.9 (right).
fn four_frames() -> Vec<Prediction> {
    vec![
        frame(1, &[0.2, 0.1]),
        frame(0, &[0.5, 0.5]),
        frame(1, &[0.5, 0.5]),
        frame(1, &[0.1, 0.9]),
    ]
}

#[test]
fn ece_weights_each_bins_gap_by_its_share_of_frames() {
    let m = evaluate(&labels(&["a", "b"]), &four_frames(), 2);
    // [0, .5): one wrong frame at .2 → |0 - .2|·1/4 = .05; [.5, 1]: 2 of 3 right at a
    // mean confidence of 1.9/3 → |2/3 - 1.9/3|·3/4 = .025.
    let frames: Vec<u64> = m.reliability.iter().map(|b| b.frames).collect();
    assert_eq!(frames, [1, 3], "0.5 is an edge and opens the upper bin");
    assert!(close(m.reliability[1].accuracy.unwrap(), 2.0 / 3.0));
    assert!(close(m.reliability[1].mean_confidence.unwrap(), 1.9 / 3.0));
    assert!(close(m.ece, 0.075), "{}", m.ece);
}

#[test]
fn a_confidence_of_exactly_one_lands_in_the_closed_last_bin() {
    let m = evaluate(&labels(&["a"]), &[frame(0, &[1.0]), frame(0, &[0.0])], 4);
    let frames: Vec<u64> = m.reliability.iter().map(|b| b.frames).collect();
    assert_eq!(frames, [1, 0, 0, 1]);
    assert_eq!(
        (m.reliability[3].lower, m.reliability[3].upper),
        (0.75, 1.0)
    );
}

#[test]
fn the_review_curve_has_a_point_per_distinct_confidence_plus_both_ends() {
    let curve = review_curve(&four_frames());
    let got: Vec<(u64, u64)> = curve.iter().map(|p| (p.reviewed, p.caught)).collect();
    assert_eq!(got, [(0, 0), (0, 0), (1, 1), (3, 2), (4, 2)]);
    assert_eq!(curve[0].threshold, 0.0);
    assert!(curve[4].threshold > 1.0);
    assert!(curve.windows(2).all(|w| w[0].threshold < w[1].threshold));
    assert_eq!(curve[3].review_share, 0.75);
    let all = threshold_for_catch(&curve, 1.0).unwrap();
    assert_eq!(all.threshold, f64::from(0.9f32));
    assert_eq!(threshold_for_catch(&curve, 0.5).unwrap().threshold, 0.5);
    assert_eq!(threshold_for_catch(&curve, 1.5), None);
}

#[test]
fn a_policy_point_counts_the_sent_frames_and_the_mistakes_among_them() {
    let preds = vec![
        frame(1, &[0.2, 0.1]),
        frame(0, &[0.5, 0.5]),
        frame(1, &[0.5, 0.5]),
    ];
    let p = review_point(&preds, &[true, true, false]);
    assert_eq!((p.reviewed, p.caught), (2, 1));
    assert!(close(p.review_share, 2.0 / 3.0));
    assert_eq!(p.catch_share, 0.5);
    assert_eq!(
        review_point(&preds, &[true]).reviewed,
        1,
        "missing flags are not sent"
    );
}

/// A deterministic pseudo-random data set: `n` frames over `classes` classes whose
/// scores are quantised to `levels` steps so that ties are common.
fn noisy(n: usize, classes: usize, levels: u32, seed: u64) -> Vec<Prediction> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    (0..n)
        .map(|_| {
            let truth = next() as usize % classes;
            let mut raw: Vec<f32> = (0..classes)
                .map(|_| (next() % levels) as f32 + 1.0)
                .collect();
            raw[truth] += (next() % levels) as f32;
            let sum: f32 = raw.iter().sum();
            Prediction {
                truth,
                scores: raw.iter().map(|r| r / sum).collect(),
            }
        })
        .collect()
}

#[test]
fn downsampling_keeps_the_ends_and_every_catch_step() {
    // Right on all but at most every 20th frame: fewer catch steps than points.
    let mut preds = noisy(6000, 4, 1000, 7);
    for (i, p) in preds.iter_mut().enumerate() {
        if i % 20 != 0 {
            p.truth = top1(&p.scores).unwrap().0;
        }
    }
    let full = review_curve(&preds);
    assert!(full.len() > MAX_REVIEW_POINTS, "{}", full.len());
    let m = evaluate(&labels(&["a", "b", "c", "d"]), &preds, 10);
    let short = &m.review_curve;
    assert_eq!(short.len(), MAX_REVIEW_POINTS);
    assert_eq!(
        (short[0], short[short.len() - 1]),
        (full[0], full[full.len() - 1])
    );
    assert!(short.windows(2).all(|w| w[0].threshold < w[1].threshold));
    for target in [0.1, 0.25, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0] {
        assert_eq!(
            threshold_for_catch(short, target),
            threshold_for_catch(&full, target)
        );
    }
    assert!(m
        .roc
        .iter()
        .chain(&m.pr)
        .all(|c| c.points.len() <= MAX_CURVE_POINTS));
    assert_eq!(m.roc[0].points[0], (0.0, 0.0));
    assert_eq!(*m.roc[0].points.last().unwrap(), (1.0, 1.0));
}

#[test]
fn downsampling_with_more_catch_steps_than_points_keeps_the_ends() {
    let preds = noisy(4000, 2, 100_000, 3);
    let full = review_curve(&preds);
    let short = downsample_review_curve(&full, 50);
    assert_eq!(short.len(), 50);
    assert_eq!((short[0], short[49]), (full[0], full[full.len() - 1]));
}

#[test]
fn downsample_spreads_evenly_and_keeps_both_ends() {
    let items: Vec<usize> = (0..10).collect();
    assert_eq!(downsample(&items, 4), [0, 3, 6, 9]);
    assert_eq!(downsample(&items, 20), items);
    assert_eq!(downsample(&items, 1), [0]);
    assert!(downsample(&items, 0).is_empty());
}
