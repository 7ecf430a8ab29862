//! The benchmark's output: one Markdown table, edge-agent per backend beside the peer,
//! with the ratio of the faster backend to the peer and the target for each metric.

use std::time::Duration;

use edge_agent::inference::BackendKind;

use super::{EndToEnd, ImageSet, Peer, Preparation};

fn percentile_ms(xs: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

/// p50 and p99 in milliseconds.
fn p50_p99(xs: &[Duration]) -> (f64, f64) {
    (percentile_ms(xs, 50.0), percentile_ms(xs, 99.0))
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// Prints the table (stdout), then why any backend or peer run is missing.
pub fn print(
    sets: &[ImageSet],
    backends: &[(BackendKind, Option<String>)],
    stages: &[Preparation],
    inference: &[Option<Vec<Duration>>],
    ours: &[Vec<Option<EndToEnd>>],
    peer: &[Result<Peer, String>],
) {
    let peer_stage = |set: usize, key: &str| match &peer[set] {
        Ok(p) => p.stages[key].as_f64().unwrap_or(f64::NAN),
        Err(_) => f64::NAN,
    };
    let peer_value =
        |set: usize, f: fn(&Peer) -> f64| peer[set].as_ref().map(f).unwrap_or(f64::NAN);
    // The backend compared with the peer: litert when it ran, else tflite.
    let best = if inference.get(1).is_some_and(Option::is_some) {
        1
    } else {
        0
    };
    let cell = |v: Option<f64>, digits: usize| match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "-".into(),
    };
    let pair = |v: Option<(f64, f64)>| match v {
        Some((a, b)) => format!("{a:.2} / {b:.2}"),
        None => "-".into(),
    };

    println!();
    let heads: Vec<String> = backends
        .iter()
        .map(|(k, _)| format!("edge-agent ({})", k.as_str()))
        .collect();
    println!(
        "| metric | {} | peer (Python, LiteRT/XNNPACK) | {} / peer | target |",
        heads.join(" | "),
        backends[best].0.as_str()
    );
    println!("|---|{}---|---|---|", "---|".repeat(backends.len()));

    let inf: Vec<Option<(f64, f64)>> = inference
        .iter()
        .map(|i| i.as_deref().map(p50_p99))
        .collect();
    let row = |metric: &str, cells: Vec<String>, peer: String, ratio: String, target: &str| {
        println!(
            "| {metric} | {} | {peer} | {ratio} | {target} |",
            cells.join(" | ")
        );
    };
    row(
        "inference p50 / p99 (ms)",
        inf.iter().map(|v| pair(*v)).collect(),
        format!(
            "{:.2} / {:.2}",
            peer_stage(0, "inference_p50_ms"),
            peer_stage(0, "inference_p99_ms")
        ),
        ratio(
            inf[best].map_or(f64::NAN, |v| v.0),
            peer_stage(0, "inference_p50_ms"),
        ),
        "<= 1.1x",
    );
    for (s, set) in sets.iter().enumerate() {
        let (d50, d99) = p50_p99(&stages[s].decode);
        let (r50, r99) = p50_p99(&stages[s].resize);
        // Decode and resize do not depend on the backend: one value for both columns.
        row(
            &format!("decode p50 / p99, {} (ms)", set.name),
            backends.iter().map(|_| pair(Some((d50, d99)))).collect(),
            format!(
                "{:.2} / {:.2}",
                peer_stage(s, "decode_p50_ms"),
                peer_stage(s, "decode_p99_ms")
            ),
            ratio(d50, peer_stage(s, "decode_p50_ms")),
            "",
        );
        row(
            &format!("resize+normalize p50 / p99, {} (ms)", set.name),
            backends.iter().map(|_| pair(Some((r50, r99)))).collect(),
            format!(
                "{:.2} / {:.2}",
                peer_stage(s, "resize_p50_ms"),
                peer_stage(s, "resize_p99_ms")
            ),
            ratio(r50, peer_stage(s, "resize_p50_ms")),
            "",
        );
    }
    for (s, set) in sets.iter().enumerate() {
        let fps: Vec<Option<f64>> = ours.iter().map(|o| o[s].as_ref().map(|e| e.fps)).collect();
        let pfps = peer_value(s, |p| p.fps);
        row(
            &format!("end-to-end frames/s, {}", set.name),
            fps.iter().map(|v| cell(*v, 1)).collect(),
            cell(Some(pfps), 1),
            ratio(fps[best].unwrap_or(f64::NAN), pfps),
            ">= 2x",
        );
    }
    for (s, set) in sets.iter().enumerate() {
        let rss: Vec<Option<f64>> = ours
            .iter()
            .map(|o| o[s].as_ref().map(|e| e.max_rss_mb))
            .collect();
        let prss = peer_value(s, |p| p.max_rss_mb);
        row(
            &format!("peak RSS, {} (MiB)", set.name),
            rss.iter().map(|v| cell(*v, 1)).collect(),
            cell(Some(prss), 1),
            ratio(rss[best].unwrap_or(f64::NAN), prss),
            "<= 0.5x",
        );
    }
    let first: Vec<Option<f64>> = ours
        .iter()
        .map(|o| o[0].as_ref().map(|e| e.first_result_ms))
        .collect();
    row(
        "first result after process start (ms)",
        first.iter().map(|v| cell(*v, 0)).collect(),
        format!(
            "{} (model load, after imports)",
            cell(Some(peer_value(0, |p| p.startup_ms)), 0)
        ),
        String::new(),
        "<= 300 ms",
    );
    for (kind, why) in backends {
        if let Some(why) = why {
            println!("\n{}: {why}", kind.as_str());
        }
    }
    for (s, p) in peer.iter().enumerate() {
        if let Err(why) = p {
            println!("\npeer ({}): {why}", sets[s].name);
        }
    }
}
