//! The five SVG plots of the HTML report, drawn with plotters' SVG backend into
//! strings: confusion heatmap, reliability diagram, ROC / precision-recall curves and
//! the review-budget curve. No font support is compiled into plotters, so text is
//! written as `<text>` elements (escaped by the backend) for the browser to lay out.

use super::super::metrics::{Curve, Metrics, ReliabilityBin};
use super::{clip, confusion_view, pct, target_point, ReportContext, ReportError};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Classes that get a colour and a legend entry in the ROC and PR plots (those with
/// the most support); the others are drawn in grey behind them.
const LEGEND_CLASSES: usize = 10;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Draws one SVG into a string, without the `xmlns` attribute that inline SVG in HTML
/// does not need (it is the only URL plotters writes).
fn svg(
    plot: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Drawn,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
            .map_err(|e| ReportError::Plot {
                plot,
                source: Box::new(e),
            })?;
    }
    Ok(buf.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1))
}

/// Text of `px` pixels (plotters shrinks its font sizes by 1.24).
fn font(px: u32) -> TextStyle<'static> {
    ("sans-serif", f64::from(px) * 1.24)
        .into_font()
        .color(&BLACK)
}

pub(super) fn confusion_svg(m: &Metrics) -> Result<String, ReportError> {
    let (rows, cols) = confusion_view(m);
    let cell = (480 / rows.len().max(cols.len()).max(1)).clamp(12, 40) as i32;
    let longest = |idx: &[usize]| {
        idx.iter()
            .map(|&i| clip(&m.labels[i], 14).chars().count())
            .max()
            .unwrap_or(0) as i32
    };
    let (left, top) = (16 + 7 * longest(&rows), 30 + 7 * longest(&cols));
    let size = (
        left + cell * cols.len() as i32 + 20,
        top + cell * rows.len() as i32 + 20,
    );
    svg(
        "confusion matrix",
        (size.0.max(200) as u32, size.1.max(80) as u32),
        |root| {
            root.draw(&Text::new(
                "predicted →",
                (left, 6),
                font(12).pos(Pos::new(HPos::Left, VPos::Top)),
            ))?;
            let rotated = font(11)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Left, VPos::Center));
            for (j, &c) in cols.iter().enumerate() {
                let x = left + j as i32 * cell + cell / 2;
                root.draw(&Text::new(
                    clip(&m.labels[c], 14),
                    (x, top - 4),
                    rotated.clone(),
                ))?;
            }
            for (i, &r) in rows.iter().enumerate() {
                let y = top + i as i32 * cell;
                let name = font(11).pos(Pos::new(HPos::Right, VPos::Center));
                root.draw(&Text::new(
                    clip(&m.labels[r], 14),
                    (left - 4, y + cell / 2),
                    name,
                ))?;
                let total: u64 = m.confusion[r].iter().sum();
                for (j, &c) in cols.iter().enumerate() {
                    let (n, x) = (m.confusion[r][c], left + j as i32 * cell);
                    let share = if total == 0 {
                        0.0
                    } else {
                        n as f64 / total as f64
                    };
                    let shade = |light: f64, dark: f64| (light + (dark - light) * share) as u8;
                    let fill = RGBColor(shade(247.0, 8.0), shade(251.0, 48.0), shade(255.0, 107.0));
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        fill.filled(),
                    ))?;
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        RGBColor(220, 220, 220),
                    ))?;
                    if n > 0 && cell >= 18 {
                        let ink = if share > 0.5 { WHITE } else { BLACK };
                        let style = font(10)
                            .color(&ink)
                            .pos(Pos::new(HPos::Center, VPos::Center));
                        root.draw(&Text::new(
                            n.to_string(),
                            (x + cell / 2, y + cell / 2),
                            style,
                        ))?;
                    }
                }
            }
            Ok(())
        },
    )
}

pub(super) fn reliability_svg(m: &Metrics) -> Result<String, ReportError> {
    svg("reliability", (520, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("reliability", font(16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("top-1 confidence")
            .y_desc("accuracy")
            .draw()?;
        let filled = |b: &ReliabilityBin| {
            b.accuracy
                .zip(b.mean_confidence)
                .map(|v| (b.lower, b.upper, v))
        };
        let bars = BLUE.mix(0.6);
        chart
            .draw_series(
                m.reliability
                    .iter()
                    .filter_map(filled)
                    .map(|(lo, hi, (acc, _))| {
                        Rectangle::new([(lo, 0.0), (hi, acc)], bars.filled())
                    }),
            )?
            .label("accuracy")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], bars.filled()));
        // The mean confidence as a mark across each bin: the gap to the bar's top is
        // the bin's calibration error.
        let mark = RED.stroke_width(3);
        chart
            .draw_series(
                m.reliability
                    .iter()
                    .filter_map(filled)
                    .map(|(lo, hi, (_, conf))| PathElement::new([(lo, conf), (hi, conf)], mark)),
            )?
            .label("mean confidence")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], mark));
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.6)))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.mix(0.6)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
    })
}

pub(super) fn curves_svg(
    plot: &'static str,
    m: &Metrics,
    curves: &[Curve],
    axes: (&str, &str),
) -> Result<String, ReportError> {
    let support = |label: &str| {
        m.per_class
            .iter()
            .find(|c| c.label == label)
            .map_or(0, |c| c.support)
    };
    let mut order: Vec<&Curve> = curves.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse(support(&c.label)));
    let (shown, rest) = order.split_at(order.len().min(LEGEND_CLASSES));
    svg(plot, (560, 460), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(plot, font(16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .draw()?;
        let grey = BLACK.mix(0.25);
        for (i, c) in rest.iter().enumerate() {
            let series = chart.draw_series(LineSeries::new(c.points.iter().copied(), grey))?;
            if i == 0 {
                series
                    .label(format!("{} more classes", rest.len()))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], grey));
            }
        }
        for (i, c) in shown.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(clip(&c.label, 24))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(2))
                });
        }
        if curves.is_empty() {
            chart.draw_series([Text::new(
                "no class has both positive and negative frames",
                (0.05, 0.5),
                font(13),
            )])?;
        }
        let corner = if plot == "ROC" {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::LowerLeft
        };
        chart
            .configure_series_labels()
            .position(corner)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
    })
}

pub(super) fn review_svg(m: &Metrics, ctx: &ReportContext) -> Result<String, ReportError> {
    let target = target_point(m, ctx);
    svg("review budget", (560, 460), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("review budget", font(16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1.02f64, 0f64..1.02f64)?;
        chart
            .configure_mesh()
            .x_desc("share of frames reviewed")
            .y_desc("share of mistakes caught")
            .draw()?;
        let grey = BLACK.mix(0.4);
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], grey))?
            .label("reviewing at random")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], grey));
        let points = m
            .review_curve
            .iter()
            .map(|p| (p.review_share, p.catch_share));
        chart
            .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?
            .label("review below a confidence threshold")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLUE.stroke_width(2)));
        if let Some(t) = target.filter(|_| m.mistakes > 0) {
            chart
                .draw_series([Circle::new(
                    (t.review_share, t.catch_share),
                    6,
                    RED.filled(),
                )])?
                .label(format!(
                    "catch {} (threshold {:.3})",
                    pct(ctx.catch_target),
                    t.threshold
                ))
                .legend(|(x, y)| Circle::new((x + 7, y), 5, RED.filled()));
        }
        if let Some(p) = ctx.policy_point {
            chart
                .draw_series([TriangleMarker::new(
                    (p.review_share, p.catch_share),
                    8,
                    GREEN.filled(),
                )])?
                .label("current policy")
                .legend(|(x, y)| TriangleMarker::new((x + 7, y), 6, GREEN.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
    })
}
