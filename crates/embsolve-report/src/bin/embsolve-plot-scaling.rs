//! `embsolve-plot-scaling DIR`: PNG plots of a scaling study from the CSV files that
//! `slurm/scaling.sh` writes (`DIR/scaling_strong.csv`, `DIR/scaling_weak.csv`): time per phase
//! against ranks, strong-scaling speed-up against the ideal, and strong and weak efficiency.

use embsolve_kernels::results::PHASES;
use embsolve_report::FONT;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 560;

/// One row of a scaling CSV: one run.
#[derive(Debug, Clone)]
struct Run {
    n_ranks: usize,
    n_rows: usize,
    total_s: f64,
    phase_s: Vec<(String, f64)>,
    speedup: f64,
    efficiency: f64,
}

/// A series (strong or weak) read from `scaling_<name>.csv`, sorted by rank count.
struct Series {
    name: String,
    runs: Vec<Run>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0].starts_with('-') {
        eprintln!("usage: embsolve-plot-scaling DIR   (DIR holds scaling_strong.csv and/or scaling_weak.csv)");
        std::process::exit(2);
    }
    match plot_all(Path::new(&args[0])) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
        }
        Err(message) => {
            eprintln!("embsolve-plot-scaling: {message}");
            std::process::exit(1);
        }
    }
}

fn plot_all(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut series = Vec::new();
    for name in ["strong", "weak"] {
        let path = dir.join(format!("scaling_{name}.csv"));
        if path.exists() {
            series.push(Series {
                name: name.to_string(),
                runs: read_csv(&path)?,
            });
        }
    }
    if series.is_empty() {
        return Err(format!(
            "no scaling_strong.csv or scaling_weak.csv in {}",
            dir.display()
        ));
    }
    embsolve_report::register_font().map_err(|e| e.message)?;
    let mut written = Vec::new();
    // Time per phase: the strong series when there is one (fixed work), else the weak one.
    let main = series
        .iter()
        .find(|s| s.name == "strong")
        .unwrap_or(&series[0]);
    let path = dir.join("scaling_phases.png");
    plot_phases(&path, main)?;
    written.push(path);
    if let Some(strong) = series.iter().find(|s| s.name == "strong") {
        let path = dir.join("scaling_speedup.png");
        plot_speedup(&path, strong)?;
        written.push(path);
    }
    let path = dir.join("scaling_efficiency.png");
    plot_efficiency(&path, &series)?;
    written.push(path);
    Ok(written)
}

fn read_csv(path: &Path) -> Result<Vec<Run>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| format!("{}: empty file", path.display()))?
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("{}: no column {name}", path.display()))
    };
    let (ranks_col, rows_col, total_col) =
        (column("n_ranks")?, column("n_rows")?, column("total_s")?);
    let (speedup_col, efficiency_col) = (column("speedup")?, column("efficiency")?);
    let phase_cols: Vec<(String, usize)> = PHASES
        .iter()
        .filter_map(|p| column(&format!("{p}_s")).ok().map(|c| (p.to_string(), c)))
        .collect();
    let mut runs = Vec::new();
    for (line_no, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let row = line_no + 2;
        let number = |col: usize, name: &str| -> Result<f64, String> {
            fields
                .get(col)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| format!("{}: row {row}: bad {name}", path.display()))
        };
        runs.push(Run {
            n_ranks: number(ranks_col, "n_ranks")? as usize,
            n_rows: number(rows_col, "n_rows")? as usize,
            total_s: number(total_col, "total_s")?,
            phase_s: phase_cols
                .iter()
                .map(|(name, col)| Ok((name.clone(), number(*col, name)?)))
                .collect::<Result<_, String>>()?,
            speedup: number(speedup_col, "speedup")?,
            efficiency: number(efficiency_col, "efficiency")?,
        });
    }
    if runs.is_empty() || runs.iter().any(|r| r.n_ranks == 0) {
        return Err(format!(
            "{}: no runs (or a run with 0 ranks)",
            path.display()
        ));
    }
    runs.sort_by_key(|r| r.n_ranks);
    Ok(runs)
}

fn draw_error<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> String + '_ {
    move |e| format!("cannot draw {}: {e:?}", path.display())
}

/// Rank counts are drawn on a log2 axis: x = log2(P), labelled with P.
fn rank_axis(runs: &[Run]) -> std::ops::Range<f64> {
    let last = runs.last().map_or(1, |r| r.n_ranks) as f64;
    let first = runs.first().map_or(1, |r| r.n_ranks) as f64;
    (first.log2() - 0.25)..(last.log2() + 0.25).max(first.log2() + 0.5)
}

fn rank_label(x: &f64) -> String {
    let ranks = 2f64.powf(*x);
    if (ranks - ranks.round()).abs() < 1e-6 {
        format!("{}", ranks.round())
    } else {
        String::new()
    }
}

fn color(index: usize) -> RGBColor {
    const COLORS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLORS[index % COLORS.len()]
}

fn plot_phases(path: &Path, series: &Series) -> Result<(), String> {
    let err = draw_error(path);
    let runs = &series.runs;
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = vec![(
        "total".to_string(),
        runs.iter()
            .map(|r| ((r.n_ranks as f64).log2(), r.total_s))
            .collect(),
    )];
    for (index, name) in PHASES.iter().enumerate() {
        let points: Vec<(f64, f64)> = runs
            .iter()
            .filter_map(|r| {
                r.phase_s
                    .get(index)
                    .map(|(_, s)| ((r.n_ranks as f64).log2(), *s))
            })
            .collect();
        // Phases that did not run (all zero) are left out; the axis is logarithmic.
        if points.iter().any(|(_, s)| *s > 0.0) {
            lines.push((name.to_string(), points));
        }
    }
    let positive = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, s)| *s))
        .filter(|s| *s > 0.0);
    let (lo, hi) = positive.fold((f64::INFINITY, 0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let (lo, hi) = if lo.is_finite() {
        (lo / 2.0, hi * 2.0)
    } else {
        (1e-3, 1.0)
    };

    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    // The legend goes in its own column on the right: the lines fill the whole plot.
    let (plot_area, legend_area) = root.split_horizontally(WIDTH - 150);
    let rows = runs.first().map_or(0, |r| r.n_rows);
    let caption = if series.name == "strong" {
        format!("strong scaling: time per phase, {rows} rows (slowest rank)")
    } else {
        format!("weak scaling: time per phase, {rows} rows per smallest run (slowest rank)")
    };
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(caption, (FONT, 20))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(rank_axis(runs), (lo..hi).log_scale())
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("MPI ranks")
        .y_desc("seconds")
        .x_label_formatter(&rank_label)
        .x_labels(16)
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    for (index, (name, points)) in lines.iter().enumerate() {
        let style = color(index);
        let width = if name == "total" { 3 } else { 2 };
        let shown: Vec<(f64, f64)> = points.iter().copied().filter(|(_, s)| *s > 0.0).collect();
        chart
            .draw_series(LineSeries::new(shown.clone(), style.stroke_width(width)))
            .map_err(&err)?;
        let y = 70 + 24 * index as i32;
        legend_area
            .draw(&PathElement::new([(5, y), (30, y)], style.stroke_width(3)))
            .map_err(&err)?;
        legend_area
            .draw(&Text::new(name.clone(), (38, y - 8), (FONT, 15)))
            .map_err(&err)?;
        chart
            .draw_series(shown.into_iter().map(|p| Circle::new(p, 4, style.filled())))
            .map_err(&err)?;
    }
    root.present().map_err(&err)
}

fn plot_speedup(path: &Path, strong: &Series) -> Result<(), String> {
    let err = draw_error(path);
    let runs = &strong.runs;
    let base = runs[0].n_ranks as f64;
    let top = runs
        .iter()
        .map(|r| r.speedup.max(r.n_ranks as f64 / base))
        .fold(1.0, f64::max)
        * 1.15;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("strong scaling: speed-up over {} rank(s)", runs[0].n_ranks),
            (FONT, 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(rank_axis(runs), 0f64..top)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("MPI ranks")
        .y_desc("speed-up")
        .x_label_formatter(&rank_label)
        .x_labels(16)
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    let ideal: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| ((r.n_ranks as f64).log2(), r.n_ranks as f64 / base))
        .collect();
    chart
        .draw_series(LineSeries::new(ideal, BLACK.stroke_width(1)))
        .map_err(&err)?
        .label("ideal")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    let measured: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| ((r.n_ranks as f64).log2(), r.speedup))
        .collect();
    let style = color(0);
    chart
        .draw_series(LineSeries::new(measured.clone(), style.stroke_width(3)))
        .map_err(&err)?
        .label("measured (total)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style.stroke_width(3)));
    chart
        .draw_series(
            measured
                .into_iter()
                .map(|p| Circle::new(p, 5, style.filled())),
        )
        .map_err(&err)?;
    legend(&mut chart, &err)?;
    root.present().map_err(&err)
}

fn plot_efficiency(path: &Path, series: &[Series]) -> Result<(), String> {
    let err = draw_error(path);
    let all_runs: Vec<Run> = series.iter().flat_map(|s| s.runs.iter().cloned()).collect();
    let mut sorted = all_runs.clone();
    sorted.sort_by_key(|r| r.n_ranks);
    let top = all_runs.iter().map(|r| r.efficiency).fold(1.0, f64::max) * 1.15;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("parallel efficiency", (FONT, 20))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(rank_axis(&sorted), 0f64..top)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("MPI ranks")
        .y_desc("efficiency")
        .x_label_formatter(&rank_label)
        .x_labels(16)
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    let axis = rank_axis(&sorted);
    chart
        .draw_series(LineSeries::new(
            [(axis.start, 1.0), (axis.end, 1.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(&err)?
        .label("ideal")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for (index, s) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = s
            .runs
            .iter()
            .map(|r| ((r.n_ranks as f64).log2(), r.efficiency))
            .collect();
        let style = color(index);
        let label = if s.name == "strong" {
            "strong: T(P0) P0 / (T(P) P)"
        } else {
            "weak: T(P0) / T(P)"
        };
        chart
            .draw_series(LineSeries::new(points.clone(), style.stroke_width(3)))
            .map_err(&err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style.stroke_width(3)));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 5, style.filled())),
            )
            .map_err(&err)?;
    }
    legend(&mut chart, &err)?;
    root.present().map_err(&err)
}

fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    err: &impl Fn(DrawingAreaErrorKind<DB::ErrorType>) -> String,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}
