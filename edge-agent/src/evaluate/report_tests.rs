use super::*;
use crate::evaluate::metrics::{evaluate, review_point, Prediction};

fn sample(labels: &[&str]) -> (Metrics, ReportContext) {
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    let preds = vec![
        Prediction {
            truth: 0,
            scores: vec![0.9, 0.05, 0.05],
        },
        Prediction {
            truth: 0,
            scores: vec![0.6, 0.3, 0.1],
        },
        Prediction {
            truth: 1,
            scores: vec![0.2, 0.7, 0.1],
        },
        Prediction {
            truth: 1,
            scores: vec![0.5, 0.4, 0.1],
        },
        Prediction {
            truth: 2,
            scores: vec![0.1, 0.2, 0.7],
        },
        Prediction {
            truth: 2,
            scores: vec![0.4, 0.35, 0.25],
        },
    ];
    let m = evaluate(&labels, &preds, 5);
    let ctx = ReportContext {
        title: "nightly <eval>".into(),
        model: "m.tflite".into(),
        dataset: "field-2024".into(),
        catch_target: 0.9,
        target_point: None,
        policy_point: Some(review_point(
            &preds,
            &[false, true, false, true, false, false],
        )),
    };
    (m, ctx)
}

#[test]
fn the_terminal_report_carries_the_headline_the_table_and_the_review_budget() {
    let (m, ctx) = sample(&["cat", "dog", "fox"]);
    let text = terminal(&m, &ctx);
    assert!(text.contains("frames 6  accuracy 0.667"), "{text}");
    assert!(text.contains(&format!("macro F1 {:.3}", m.macro_f1)));
    assert!(text.contains(&format!("ECE {:.3}", m.ece)));
    assert!(
        text.contains("cat         2     0.500  1.000  0.667"),
        "{text}"
    );
    // Mistakes at confidence 0.5 and 0.4: reviewing below 0.6 catches both.
    assert!(
        text.contains("to catch 90% of mistakes: review frames below confidence 0.600 → 33% of frames (2 of 6), catching 100% (2 of 2)"),
        "{text}"
    );
    assert!(
        text.contains(
            "current policy: reviews 33% of frames (2 of 6), catches 50% of mistakes (1 of 2)"
        ),
        "{text}"
    );
    assert!(text.contains("0.80-1.00"), "{text}");
}

#[test]
fn long_labels_are_cut_in_the_matrix_and_named_in_a_legend() {
    let (m, ctx) = sample(&["pedestrian", "bicycle", "car"]);
    let text = terminal(&m, &ctx);
    assert!(text.contains("pedes…"), "{text}");
    assert!(
        text.contains("columns: pedes… = pedestrian, bicyc… = bicycle"),
        "{text}"
    );
}

#[test]
fn a_wide_matrix_shows_only_labels_with_counts() {
    let labels: Vec<String> = (0..30).map(|i| format!("class{i}")).collect();
    let preds = vec![
        Prediction {
            truth: 3,
            scores: [vec![0.0; 3], vec![1.0], vec![0.0; 26]].concat(),
        },
        Prediction {
            truth: 5,
            scores: [vec![0.0; 3], vec![1.0], vec![0.0; 26]].concat(),
        },
    ];
    let m = evaluate(&labels, &preds, 10);
    let text = terminal(&m, &ReportContext::default());
    assert!(
        text.contains("showing the 2 truth and 1 predicted labels with counts"),
        "{text}"
    );
    let matrix = &text[text.find("confusion").unwrap()..text.find("reliability").unwrap()];
    assert_eq!(
        matrix.lines().filter(|l| l.starts_with("class")).count(),
        2,
        "{matrix}"
    );
}

#[test]
fn terminal_labels_cannot_carry_escape_sequences() {
    let (m, ctx) = sample(&["a\u{1b}[2J", "b", "c"]);
    assert!(!terminal(&m, &ctx).contains('\u{1b}'));
}

#[test]
fn the_html_page_has_five_plots_and_no_external_reference() {
    let (m, ctx) = sample(&["cat", "dog", "fox"]);
    let page = html(&m, &ctx).unwrap();
    assert_eq!(page.matches("<svg").count(), 5);
    for banned in [
        "http://", "https://", "src=", "href=", "<script", "<link", "@import", "url(",
    ] {
        assert!(!page.contains(banned), "{banned} in the page");
    }
    assert!(page.contains("<title>nightly &lt;eval&gt;</title>"));
    assert!(page.contains("review frames below confidence 0.600"));
}

#[test]
fn a_hostile_label_comes_out_as_text_in_tables_and_plots() {
    let hostile = "<script>alert('x')</script>";
    let (m, ctx) = sample(&[hostile, "dog", "<img src=x onerror=alert(1)>"]);
    let page = html(&m, &ctx).unwrap();
    assert!(!page.contains("<script"), "script tag in the page");
    assert!(!page.contains("<img"), "img tag in the page");
    assert!(
        page.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2F;script&gt;"),
        "table cell"
    );
    assert!(page.contains("&lt;script&gt;"), "plot text");
}

#[test]
fn empty_metrics_still_render() {
    let m = evaluate(&[], &[], 10);
    let page = html(&m, &ReportContext::default()).unwrap();
    assert_eq!(page.matches("<svg").count(), 5);
    assert!(terminal(&m, &ReportContext::default()).contains("no mistakes to catch"));
}

#[test]
fn many_classes_get_a_bounded_legend() {
    let labels: Vec<String> = (0..25).map(|i| format!("k{i}")).collect();
    let preds: Vec<Prediction> = (0..200)
        .map(|i| {
            let mut scores = vec![0.01f32; 25];
            scores[(i * 7) % 25] = 0.5;
            Prediction {
                truth: i % 25,
                scores,
            }
        })
        .collect();
    let m = evaluate(&labels, &preds, 10);
    let page = html(&m, &ReportContext::default()).unwrap();
    assert!(page.contains("15 more classes"));
}

#[test]
fn a_matrix_too_wide_even_with_counts_becomes_a_list_of_the_largest_confusions() {
    let labels: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
    let preds: Vec<Prediction> = (0..90)
        .map(|i| {
            let mut scores = vec![0.0f32; 30];
            scores[(i + usize::from(i >= 60)) % 30] = 1.0;
            Prediction {
                truth: i % 30,
                scores,
            }
        })
        .collect();
    let m = evaluate(&labels, &preds, 10);
    let text = terminal(&m, &ReportContext::default());
    assert!(text.contains("the largest confusions"), "{text}");
    assert!(text.contains("  c0 → c1: 1"), "{text}");
}
