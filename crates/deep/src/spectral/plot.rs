//! `probity spectral --plot FILE.svg|png`: per-layer statistics across
//! depth, one line per kind of matrix, so that a layer whose change is far
//! more concentrated than its neighbours stands out at a glance.
//!
//! With a base: top-1 energy of ΔW (concentration) and relative ‖ΔW‖.
//! Base-free: σ1 over the Marchenko–Pastur bulk edge and the power-law α.
//! Matrices without a layer number (embeddings, LM head) are left out of
//! the lines; the text and JSON reports list them.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{LayerStats, SpectralReport};

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts): plotters needs
/// a font to lay out labels, and a build machine may have none.
static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");

fn register_font() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the bundled font could not be read".to_string())
    })
    .clone()
}

/// The plot formats, by file extension.
pub fn check_path(path: &Path) -> Result<(), String> {
    match ext(path).as_deref() {
        Some("svg") | Some("png") => Ok(()),
        _ => Err(format!(
            "{}: unsupported plot format (the file name must end in .svg or .png)",
            path.display()
        )),
    }
}

fn ext(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

/// The layer number in a tensor name (`model.layers.12.mlp…` → 12).
fn depth(name: &str) -> Option<u32> {
    name.split('.').find_map(|p| p.parse::<u32>().ok())
}

/// `model.layers.*.mlp.down_proj.weight` → `mlp.down_proj`.
fn short_kind(kind: &str) -> String {
    let k = kind.strip_suffix(".weight").unwrap_or(kind);
    match k.find("*.") {
        Some(i) => k[i + 2..].to_string(),
        None => k.to_string(),
    }
}

type Stat = fn(&LayerStats) -> Option<f64>;

/// Draws the report's per-layer panels to `path` (.svg or .png).
pub fn plot(r: &SpectralReport, path: &Path) -> Result<(), String> {
    check_path(path)?;
    register_font()?;
    let fail = |e: String| format!("{}: cannot draw the plot: {e}", path.display());
    if ext(path).as_deref() == Some("svg") {
        let root = SVGBackend::new(path, (1000, 720)).into_drawing_area();
        draw(r, &root).map_err(fail)
    } else {
        let root = BitMapBackend::new(path, (1000, 720)).into_drawing_area();
        draw(r, &root).map_err(fail)
    }
}

fn draw<DB: DrawingBackend>(r: &SpectralReport, root: &DrawingArea<DB, Shift>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let panels: [(&str, Stat); 2] = if r.mode == "weights" {
        [
            ("σ1 / MP bulk edge", |l| {
                l.weights.as_ref().map(|w| w.sigma1_over_edge)
            }),
            ("power-law α (lower = heavier tail)", |l| {
                l.weights.as_ref().map(|w| w.alpha)
            }),
        ]
    } else {
        [
            ("top-1 energy of ΔW", |l| Some(l.top1_energy)),
            ("relative ‖ΔW‖", |l| l.rel_delta),
        ]
    };
    let title = match (&r.base, r.mode.as_str()) {
        (Some(b), _) => format!("ΔW by layer: {} − {}", r.suspect.path, b.path),
        (None, _) => format!("Weight spectra by layer (base-free): {}", r.suspect.path),
    };
    let root = root.titled(&title, ("sans-serif", 18)).map_err(e)?;
    let areas = root.split_evenly((2, 1));
    for (area, (label, get)) in areas.iter().zip(panels) {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for l in &r.layers {
            if let (Some(d), Some(v)) = (depth(&l.name), get(l)) {
                if v.is_finite() {
                    series
                        .entry(short_kind(&l.kind))
                        .or_default()
                        .push((d as f64, v));
                }
            }
        }
        let xmax = series
            .values()
            .flatten()
            .map(|p| p.0)
            .fold(0.0f64, f64::max);
        let ymax = series
            .values()
            .flatten()
            .map(|p| p.1)
            .fold(0.0f64, f64::max);
        let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5f64..xmax + 0.5, 0f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("layer")
            .y_desc(label)
            .x_labels((xmax as usize + 2).min(24))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(e)?;
        for (i, (kind, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(e)?
                .label(kind.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                )
                .map_err(e)?;
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(e)?;
        }
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_depth_and_kind() {
        assert_eq!(depth("model.layers.12.mlp.down_proj.weight"), Some(12));
        assert_eq!(depth("lm_head.weight"), None);
        assert_eq!(
            short_kind("model.layers.*.mlp.down_proj.weight"),
            "mlp.down_proj"
        );
        assert!(check_path(Path::new("a.SVG")).is_ok());
        assert!(check_path(Path::new("a.pdf")).is_err());
    }
}
