//! Renders a [`Metrics`] for people: a fixed-width terminal report and one
//! self-contained static HTML page (inline CSS, no scripts, nothing fetched from
//! anywhere) with the same tables and five inline SVG plots: confusion heatmap,
//! reliability diagram, ROC curves, precision-recall curves and the review-budget
//! curve. Plots are drawn by plotters' SVG backend without any font support compiled
//! in: text becomes `<text>` elements that the browser lays out, so nothing here needs
//! font files on the device. Labels are user data: the HTML escapes every one (the
//! SVG backend escapes its own text) and the terminal report replaces control
//! characters, so a label cannot inject markup or terminal escape sequences.

use super::metrics::{threshold_for_catch, Metrics, PolicyPoint, ReviewPoint};
use plots::{confusion_svg, curves_svg, reliability_svg, review_svg};
use std::collections::HashSet;
use std::fmt::Write as _;

/// Above this many labels the confusion matrix keeps only rows and columns with counts.
const FULL_CONFUSION_LABELS: usize = 12;
/// Above this many columns the terminal lists the largest confusions instead.
const MAX_MATRIX_COLUMNS: usize = 20;
/// Column headers of the terminal confusion matrix are cut to this many characters.
const SHORT_LABEL: usize = 6;

/// What the report is about, and the review-budget points to show. The default has
/// empty names, a catch target of 90% and no points.
#[derive(Debug, Clone)]
pub struct ReportContext {
    pub title: String,
    pub model: String,
    pub dataset: String,
    /// Share of mistakes the threshold line aims to catch, e.g. 0.9.
    pub catch_target: f64,
    /// The lowest threshold reaching `catch_target`, best found with
    /// `threshold_for_catch` on the full curve; when `None` it is looked up on the
    /// (downsampled) `Metrics::review_curve`.
    pub target_point: Option<ReviewPoint>,
    /// What the deployed review policy sent, if known.
    pub policy_point: Option<PolicyPoint>,
}

impl Default for ReportContext {
    fn default() -> Self {
        ReportContext {
            title: String::new(),
            model: String::new(),
            dataset: String::new(),
            catch_target: 0.9,
            target_point: None,
            policy_point: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing the {plot} plot")]
    Plot {
        plot: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `writeln!` into a String, which cannot fail.
macro_rules! put {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// At most `width` characters of `label`, control characters replaced.
fn clip(label: &str, width: usize) -> String {
    let clean = label.chars().map(|c| if c.is_control() { '?' } else { c });
    if label.chars().count() <= width {
        clean.collect()
    } else {
        clean.take(width.saturating_sub(1)).chain(['…']).collect()
    }
}

fn target_point(m: &Metrics, ctx: &ReportContext) -> Option<ReviewPoint> {
    ctx.target_point
        .or_else(|| threshold_for_catch(&m.review_curve, ctx.catch_target))
}

/// The review-budget sentences, shared by both reports.
fn review_lines(m: &Metrics, ctx: &ReportContext) -> Vec<String> {
    let goal = pct(ctx.catch_target);
    let caught = |c: u64| format!("{c} of {}", m.mistakes);
    let mut lines = vec![match target_point(m, ctx) {
        _ if m.mistakes == 0 => "no mistakes to catch: every top-1 prediction is right".to_string(),
        None => format!("to catch {goal} of mistakes: no confidence threshold does"),
        Some(p) if p.threshold > 1.0 => format!(
            "to catch {goal} of mistakes: review every frame ({}), catching {} ({})",
            p.reviewed, pct(p.catch_share), caught(p.caught)
        ),
        Some(p) => format!(
            "to catch {goal} of mistakes: review frames below confidence {:.3} → {} of frames ({} of {}), catching {} ({})",
            p.threshold, pct(p.review_share), p.reviewed, m.frames, pct(p.catch_share), caught(p.caught)
        ),
    }];
    if let Some(p) = ctx.policy_point {
        lines.push(format!(
            "current policy: reviews {} of frames ({} of {}), catches {} of mistakes ({})",
            pct(p.review_share),
            p.reviewed,
            m.frames,
            pct(p.catch_share),
            caught(p.caught)
        ));
    }
    lines
}

/// Rows (truth labels) and columns (model classes) of the confusion matrix to show:
/// all up to [`FULL_CONFUSION_LABELS`] labels, else only those with counts.
fn confusion_view(m: &Metrics) -> (Vec<usize>, Vec<usize>) {
    let rows = (0..m.confusion.len()).filter(|&r| {
        m.labels.len() <= FULL_CONFUSION_LABELS || m.confusion[r].iter().any(|&n| n > 0)
    });
    let cols = (0..m.model_classes).filter(|&c| {
        m.labels.len() <= FULL_CONFUSION_LABELS || m.confusion.iter().any(|row| row[c] > 0)
    });
    (rows.collect(), cols.collect())
}

/// Column headers: labels cut to [`SHORT_LABEL`] characters, or `#index` if cutting
/// makes two alike.
fn short_names(labels: &[String], idx: &[usize]) -> Vec<String> {
    let cut: Vec<String> = idx.iter().map(|&i| clip(&labels[i], SHORT_LABEL)).collect();
    if cut.iter().collect::<HashSet<_>>().len() == cut.len() {
        cut
    } else {
        idx.iter().map(|i| format!("#{i}")).collect()
    }
}

/// A fixed-width plain-text report.
pub fn terminal(m: &Metrics, ctx: &ReportContext) -> String {
    let mut out = String::new();
    let w = m
        .labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 24);
    put!(out, "== {} ==", clip(&ctx.title, 200));
    put!(out, "model:   {}", clip(&ctx.model, 200));
    put!(out, "dataset: {}", clip(&ctx.dataset, 200));
    put!(out);
    put!(
        out,
        "frames {}  accuracy {:.3}  macro F1 {:.3}  macro AUROC {}  macro AUPRC {}  ECE {:.3}",
        m.frames,
        m.accuracy,
        m.macro_f1,
        opt(m.macro_auroc),
        opt(m.macro_auprc),
        m.ece
    );
    let occurring = m
        .per_class
        .iter()
        .filter(|c| c.support > 0 || c.predicted > 0)
        .count();
    put!(
        out,
        "macro precision {:.3}, recall {:.3}, F1 {:.3} over the {occurring} labels seen as truth or prediction",
        m.macro_precision, m.macro_recall, m.macro_f1
    );

    put!(out, "\nper class");
    put!(
        out,
        "{:<w$} {:>7} {:>9} {:>6} {:>6} {:>6} {:>6}",
        "label",
        "support",
        "precision",
        "recall",
        "F1",
        "AUROC",
        "AUPRC"
    );
    for c in &m.per_class {
        put!(
            out,
            "{:<w$} {:>7} {:>9.3} {:>6.3} {:>6.3} {:>6} {:>6}",
            clip(&c.label, w),
            c.support,
            c.precision,
            c.recall,
            c.f1,
            opt(c.auroc),
            opt(c.auprc)
        );
    }

    terminal_confusion(&mut out, m, w);

    put!(
        out,
        "\nreliability (top-1 confidence in {} equal bins)",
        m.reliability.len()
    );
    put!(
        out,
        "{:<11} {:>7} {:>10} {:>9}",
        "confidence",
        "frames",
        "mean conf",
        "accuracy"
    );
    for b in &m.reliability {
        let range = format!("{:.2}-{:.2}", b.lower, b.upper);
        put!(
            out,
            "{range:<11} {:>7} {:>10} {:>9}",
            b.frames,
            opt(b.mean_confidence),
            opt(b.accuracy)
        );
    }
    put!(out, "expected calibration error {:.3}", m.ece);

    put!(
        out,
        "\nreview budget ({} mistakes in {} frames)",
        m.mistakes,
        m.frames
    );
    for l in review_lines(m, ctx) {
        put!(out, "{l}");
    }
    out
}

fn terminal_confusion(out: &mut String, m: &Metrics, w: usize) {
    let (rows, cols) = confusion_view(m);
    put!(out, "\nconfusion (rows: truth, columns: predicted)");
    if rows.len() < m.confusion.len() || cols.len() < m.model_classes {
        put!(
            out,
            "showing the {} truth and {} predicted labels with counts",
            rows.len(),
            cols.len()
        );
    }
    if cols.len() > MAX_MATRIX_COLUMNS {
        let mut cells: Vec<(u64, usize, usize)> = rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| (m.confusion[r][c], r, c)))
            .filter(|&(n, r, c)| n > 0 && r != c)
            .collect();
        cells.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        put!(
            out,
            "too wide to print; the largest confusions (truth → predicted: frames):"
        );
        for (n, r, c) in cells.into_iter().take(15) {
            put!(
                out,
                "  {} → {}: {n}",
                clip(&m.labels[r], w),
                clip(&m.labels[c], w)
            );
        }
        return;
    }
    let names = short_names(&m.labels, &cols);
    let digits = m
        .confusion
        .iter()
        .flatten()
        .max()
        .map_or(1, |n| n.to_string().len());
    let cw = digits.max(SHORT_LABEL) + 1;
    let header: String = names.iter().map(|n| format!("{n:>cw$}")).collect();
    put!(out, "{:<w$}{header}", "");
    for &r in &rows {
        let counts: String = cols
            .iter()
            .map(|&c| format!("{:>cw$}", m.confusion[r][c]))
            .collect();
        put!(out, "{:<w$}{counts}", clip(&m.labels[r], w));
    }
    let legend: Vec<String> = cols
        .iter()
        .zip(&names)
        .filter(|(&c, n)| **n != m.labels[c])
        .map(|(&c, n)| format!("{n} = {}", clip(&m.labels[c], 60)))
        .collect();
    if !legend.is_empty() {
        put!(out, "columns: {}", legend.join(", "));
    }
}

/// HTML-escapes user text for element content and quoted attribute values
/// (`& < > " ' /`, by the html-escape crate).
fn esc(text: &str) -> String {
    html_escape::encode_safe(text).into_owned()
}

/// A table whose header and cells are escaped here.
fn table(head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", esc(h));
    }
    t.push_str("</tr></thead><tbody>\n");
    for row in rows {
        t.push_str("<tr>");
        for cell in row {
            let _ = write!(t, "<td>{}</td>", esc(&cell));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody></table>\n");
    t
}

const CSS: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:70em}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em}\
td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}\
figure{margin:1.5em 0}svg{max-width:100%;height:auto}p.review{font-size:1.1em}";

/// One self-contained static HTML page.
pub fn html(m: &Metrics, ctx: &ReportContext) -> Result<String, ReportError> {
    let mut p = String::new();
    put!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    );
    put!(
        p,
        "<title>{}</title><style>{CSS}</style></head><body>",
        esc(&ctx.title)
    );
    put!(p, "<h1>{}</h1>", esc(&ctx.title));
    put!(
        p,
        "<p>model: <b>{}</b><br>dataset: <b>{}</b></p>",
        esc(&ctx.model),
        esc(&ctx.dataset)
    );
    let headline = [
        ("frames", m.frames.to_string()),
        ("accuracy", format!("{:.3}", m.accuracy)),
        ("macro precision", format!("{:.3}", m.macro_precision)),
        ("macro recall", format!("{:.3}", m.macro_recall)),
        ("macro F1", format!("{:.3}", m.macro_f1)),
        ("macro AUROC", opt(m.macro_auroc)),
        ("macro AUPRC", opt(m.macro_auprc)),
        ("ECE", format!("{:.3}", m.ece)),
    ];
    p += &table(
        &["metric", "value"],
        headline.into_iter().map(|(k, v)| vec![k.to_string(), v]),
    );

    put!(p, "<h2>Review budget</h2>");
    for l in review_lines(m, ctx) {
        put!(p, "<p class=\"review\">{}</p>", esc(&l));
    }
    put!(p, "<figure>{}</figure>", review_svg(m, ctx)?);

    put!(p, "<h2>Per class</h2>");
    let head = [
        "label",
        "support",
        "predicted",
        "precision",
        "recall",
        "F1",
        "AUROC",
        "AUPRC",
    ];
    p += &table(
        &head,
        m.per_class.iter().map(|c| {
            let f = |v: f64| format!("{v:.3}");
            let (s, n) = (c.support.to_string(), c.predicted.to_string());
            vec![
                c.label.clone(),
                s,
                n,
                f(c.precision),
                f(c.recall),
                f(c.f1),
                opt(c.auroc),
                opt(c.auprc),
            ]
        }),
    );

    put!(
        p,
        "<h2>Confusion matrix</h2><p>Rows: truth; columns: predicted; shade: share of the row.</p>"
    );
    put!(p, "<figure>{}</figure>", confusion_svg(m)?);

    put!(
        p,
        "<h2>Calibration</h2><p>Expected calibration error {:.3}.</p>",
        m.ece
    );
    put!(p, "<figure>{}</figure>", reliability_svg(m)?);
    p += &table(
        &["confidence", "frames", "mean confidence", "accuracy"],
        m.reliability.iter().map(|b| {
            let range = format!("{:.2}-{:.2}", b.lower, b.upper);
            vec![
                range,
                b.frames.to_string(),
                opt(b.mean_confidence),
                opt(b.accuracy),
            ]
        }),
    );

    put!(
        p,
        "<h2>ROC and precision-recall curves</h2><p>One-vs-rest, per model class.</p>"
    );
    let roc = curves_svg(
        "ROC",
        m,
        &m.roc,
        ("false positive rate", "true positive rate"),
    )?;
    let pr = curves_svg("precision-recall", m, &m.pr, ("recall", "precision"))?;
    put!(p, "<figure>{roc}</figure>\n<figure>{pr}</figure>");
    put!(p, "</body></html>");
    Ok(p)
}

// The SVG plots live in a child module of their own so that each file stays short;
// `#[path]` keeps the pair droppable next to each other without a `mod` line elsewhere.
#[path = "report_plots.rs"]
mod plots;

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
