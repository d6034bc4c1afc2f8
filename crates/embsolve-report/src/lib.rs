//! `embsolve report RESULTS_DIR`: PNG plots drawn in Rust (plotters) from `results.h5` and
//! `run.json`, and a `report.html` that shows them with a table of `run.json`. The page and its
//! images are written atomically (temporary name, then rename).

use embsolve_io::results_reader::{self, ResultsData};
use embsolve_kernels::error::{Error, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 520;
/// The font family every plot uses (registered by `register_font`).
pub const FONT: &str = "sans-serif";
/// Where Debian's fonts-dejavu-core puts its sans face (scripts/deps.sh installs it).
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// One plot: file name, caption, and what it shows.
struct Figure {
    file: String,
    title: String,
    note: String,
}

/// Write report.html and its PNGs into `dir` (which holds results.h5 and run.json).
/// Returns the path of the page.
pub fn write_report(dir: &Path) -> Result<PathBuf> {
    register_font()?;
    let run_json_path = dir.join("run.json");
    let run_json: serde_json::Value = std::fs::read(&run_json_path)
        .map_err(|e| Error::input(format!("cannot read {}: {e}", run_json_path.display())))
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::input(format!(
                    "{} is not valid JSON: {e}",
                    run_json_path.display()
                ))
            })
        })?;
    let data = results_reader::read(&dir.join("results.h5"), 20_000)?;
    let mut figures = Vec::new();
    let mut draw =
        |name: &str, title: &str, note: &str, f: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
            let path = dir.join(name);
            let tmp = embsolve_io::atomic::partial_path(&path).with_extension("partial.png");
            f(&tmp)?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::output(format!("cannot write {}: {e}", path.display())))?;
            figures.push(Figure {
                file: name.into(),
                title: title.into(),
                note: note.into(),
            });
            Ok(())
        };
    if let Some(labels) = &data.leiden_labels {
        let sizes = group_sizes(labels.iter().copied());
        let note = format!(
            "{} Leiden communities (no cluster count given), modularity {}; largest {}, smallest {}.",
            sizes.len(),
            data.leiden_modularity
                .map(|q| format!("{q:.4}"))
                .unwrap_or("-".into()),
            sizes.first().unwrap_or(&0),
            sizes.last().unwrap_or(&0)
        );
        draw("leiden_sizes.png", "Leiden community sizes", &note, &|p| {
            plot_sizes(p, &sizes, "community (by size, first 100)", "rows")
        })?;
    }
    if let Some(values) = &data.eigenvalues {
        let note = format!("{} eigenvalues of D^-1/2 W D^-1/2, descending; the largest gap decides the cluster count ({} clusters).",
            values.len(), data.n_clusters.map(|k| k.to_string()).unwrap_or("-".into()));
        draw(
            "eigenvalues.png",
            "Eigenvalue spectrum and eigengap",
            &note,
            &|p| plot_eigenvalues(p, values, data.n_clusters),
        )?;
    }
    if let Some(labels) = &data.spectral_labels {
        let sizes = group_sizes(labels.iter().map(|&l| l as i64));
        let note = format!(
            "{} clusters; largest {}, smallest {}.",
            sizes.len(),
            sizes.first().unwrap_or(&0),
            sizes.last().unwrap_or(&0)
        );
        draw("cluster_sizes.png", "Spectral cluster sizes", &note, &|p| {
            plot_sizes(p, &sizes, "cluster (by size)", "rows")
        })?;
    }
    if let Some(points) = &data.embedding_2d {
        draw(
            "embedding.png",
            "Spectral embedding (eigenvectors 2 and 3), coloured by cluster",
            &format!("{} rows shown (subsampled evenly).", points.len()),
            &|p| plot_embedding(p, points),
        )?;
    }
    if let Some(labels) = &data.component_labels {
        let sizes = group_sizes(labels.iter().copied());
        let note = format!(
            "{} components; largest {} rows; {} singletons.",
            sizes.len(),
            sizes.first().unwrap_or(&0),
            sizes.iter().filter(|&&s| s == 1).count()
        );
        draw(
            "component_sizes.png",
            "Connected component sizes",
            &note,
            &|p| plot_sizes(p, &sizes, "component (by size, first 100)", "rows"),
        )?;
    }
    if let Some(scores) = &data.pagerank {
        draw(
            "pagerank.png",
            "PageRank distribution",
            "Histogram of log10(n x score): 0 is the uniform score.",
            &|p| plot_pagerank(p, scores),
        )?;
    }
    if let Some(power) = &data.fft_mean_power {
        draw(
            "fft_power.png",
            "Mean power spectrum of token-track windows",
            "Mean over all windows and channels; the period-3 peak sits at 1/3.",
            &|p| {
                plot_line(
                    p,
                    power,
                    "frequency (cycles per base)",
                    "mean power",
                    // Band b pools the frequencies around (b + 1/2) / (2 bins) cycles per base.
                    0.5 / power.len().max(1) as f64,
                )
            },
        )?;
    }
    if let Some(track) = &data.period3_track {
        draw(
            "period3.png",
            "Period-3 score along the first sequence",
            "Score per window (power at 1/3 over the mean power).",
            &|p| plot_track(p, track),
        )?;
    }
    if let Some(phases) = run_json.get("phases").and_then(|p| p.as_object()) {
        let rows: Vec<(String, f64, f64)> = embsolve_kernels::results::PHASES
            .iter()
            .filter_map(|name| {
                let span = phases.get(*name)?;
                let max = span["max_s"].as_f64().unwrap_or(0.0);
                (max > 0.0).then(|| (name.to_string(), max, span["min_s"].as_f64().unwrap_or(0.0)))
            })
            .collect();
        draw(
            "phases.png",
            "Time per phase across ranks",
            "Bars: slowest rank (max); marks: fastest rank (min).",
            &|p| plot_phases(p, &rows),
        )?;
    }
    let page = dir.join("report.html");
    embsolve_io::atomic::write_atomic(&page, render_html(&run_json, &data, &figures).as_bytes())?;
    Ok(page)
}

/// Register DejaVu Sans as `FONT` with plotters (once per process is enough).
pub fn register_font() -> Result<()> {
    for path in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| Error::internal(format!("{path} is not a usable font")));
        }
    }
    Err(Error::internal(
        "no DejaVuSans.ttf found (install Debian's fonts-dejavu-core)",
    ))
}

fn plot_error<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::output(format!("cannot draw {}: {e:?}", path.display()))
}

/// Sizes of the groups of equal labels, largest first.
fn group_sizes(labels: impl Iterator<Item = i64>) -> Vec<usize> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    labels.for_each(|l| *counts.entry(l).or_default() += 1);
    let mut sizes: Vec<usize> = counts.into_values().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

fn range_of(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-12);
    (lo - pad, hi + pad)
}

fn plot_eigenvalues(path: &Path, values: &[f64], n_clusters: Option<usize>) -> Result<()> {
    let err = plot_error(path);
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (lo, hi) = range_of(values.iter().copied());
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5f64..values.len() as f64 + 0.5, lo..hi)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("index")
        .y_desc("eigenvalue")
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(LineSeries::new(
            values.iter().enumerate().map(|(i, &v)| (i as f64 + 1.0, v)),
            BLUE.stroke_width(2),
        ))
        .map_err(&err)?;
    chart
        .draw_series(
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| Circle::new((i as f64 + 1.0, v), 4, BLUE.filled())),
        )
        .map_err(&err)?;
    if let Some(k) = n_clusters.filter(|&k| k >= 1 && k < values.len()) {
        let x = k as f64 + 0.5;
        chart
            .draw_series(LineSeries::new([(x, lo), (x, hi)], RED.stroke_width(2)))
            .map_err(&err)?
            .label(format!("largest gap: {k} clusters"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .label_font((FONT, 15))
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(&err)?;
    }
    root.present().map_err(&err)
}

fn plot_sizes(path: &Path, sizes: &[usize], x_desc: &str, y_desc: &str) -> Result<()> {
    let err = plot_error(path);
    let shown = &sizes[..sizes.len().min(100)];
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let top = shown.first().copied().unwrap_or(1) as f64 * 1.08;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..shown.len() as f64, 0f64..top.max(1.0))
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(shown.iter().enumerate().map(|(i, &s)| {
            Rectangle::new(
                [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, s as f64)],
                Palette99::pick(i).filled(),
            )
        }))
        .map_err(&err)?;
    root.present().map_err(&err)
}

fn plot_embedding(path: &Path, points: &[(f32, f32, i32)]) -> Result<()> {
    let err = plot_error(path);
    let root = BitMapBackend::new(path, (WIDTH, WIDTH)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (x0, x1) = range_of(points.iter().map(|p| p.0 as f64));
    let (y0, y1) = range_of(points.iter().map(|p| p.1 as f64));
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("eigenvector 2")
        .y_desc("eigenvector 3")
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(points.iter().map(|&(x, y, c)| {
            Circle::new(
                (x as f64, y as f64),
                2,
                Palette99::pick(c.max(0) as usize).mix(0.7).filled(),
            )
        }))
        .map_err(&err)?;
    root.present().map_err(&err)
}

fn plot_pagerank(path: &Path, scores: &[f64]) -> Result<()> {
    let n = scores.len().max(1) as f64;
    let logs: Vec<f64> = scores
        .iter()
        .filter(|&&s| s > 0.0)
        .map(|&s| (s * n).log10())
        .collect();
    let (lo, hi) = range_of(logs.iter().copied());
    let bins = 60usize;
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in &logs {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let err = plot_error(path);
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.08;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(lo..hi, 0f64..top.max(1.0))
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("log10(n x PageRank)")
        .y_desc("rows")
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let a = lo + i as f64 * width;
            Rectangle::new([(a, 0.0), (a + width, c as f64)], BLUE.mix(0.6).filled())
        }))
        .map_err(&err)?;
    root.present().map_err(&err)
}

/// Values at the centres of equal steps: value i is drawn at (i + 1/2) x_step.
fn plot_line(path: &Path, values: &[f64], x_desc: &str, y_desc: &str, x_step: f64) -> Result<()> {
    let err = plot_error(path);
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (lo, hi) = range_of(values.iter().copied());
    let x_max = x_step * values.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, lo..hi)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(LineSeries::new(
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| ((i as f64 + 0.5) * x_step, v)),
            BLUE.stroke_width(2),
        ))
        .map_err(&err)?;
    root.present().map_err(&err)
}

fn plot_track(path: &Path, track: &[(i64, f32)]) -> Result<()> {
    let err = plot_error(path);
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (lo, hi) = range_of(track.iter().map(|t| t.1 as f64));
    let x_max = track.last().map(|t| t.0 as f64).unwrap_or(1.0).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, lo.min(0.0)..hi)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("window start (bases)")
        .y_desc("period-3 score")
        .label_style((FONT, 15))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(LineSeries::new(
            track.iter().map(|&(s, v)| (s as f64, v as f64)),
            GREEN.stroke_width(1),
        ))
        .map_err(&err)?;
    root.present().map_err(&err)
}

fn plot_phases(path: &Path, rows: &[(String, f64, f64)]) -> Result<()> {
    let err = plot_error(path);
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let top = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..rows.len() as f64, 0f64..top)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 && i < labels.len() {
                labels[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc("seconds")
        .label_style((FONT, 14))
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Rectangle::new(
                [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, r.1)],
                Palette99::pick(i).filled(),
            )
        }))
        .map_err(&err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            PathElement::new(
                [(i as f64 + 0.15, r.2), (i as f64 + 0.85, r.2)],
                BLACK.stroke_width(3),
            )
        }))
        .map_err(&err)?;
    root.present().map_err(&err)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Flatten run.json into (key path, value) rows.
fn flatten(prefix: &str, value: &serde_json::Value, rows: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        serde_json::Value::Array(items) if items.iter().all(|v| v.is_number()) => {
            let text: Vec<String> = items
                .iter()
                .map(|v| match v.as_f64() {
                    Some(f) if f.fract() != 0.0 => format!("{f:.6}"),
                    _ => v.to_string(),
                })
                .collect();
            rows.push((prefix.to_string(), text.join(", ")));
        }
        serde_json::Value::Number(n) => {
            let text = match n.as_f64() {
                Some(f) if !n.is_i64() && !n.is_u64() => format!("{f:.6}"),
                _ => n.to_string(),
            };
            rows.push((prefix.to_string(), text));
        }
        other => rows.push((
            prefix.to_string(),
            other.to_string().trim_matches('"').to_string(),
        )),
    }
}

/// What the kNN lists are: exact, or partitioned with the recall measured on the exact sample.
fn knn_sentence(run_json: &serde_json::Value) -> String {
    let knn = &run_json["results"]["knn"];
    match knn["method"].as_str() {
        Some("partitioned") if knn["exact_fallback"].as_bool() == Some(true) => format!(
            "kNN: partitioned, but knn.recall needed more probes than the exact search costs \
             ({} of {} cells): the exact lists were computed (recall 1).",
            knn["probes"], knn["partitions"]
        ),
        Some("partitioned") => {
            let mut text = format!(
                "kNN: partitioned (approximate), {} cells, {} probes{}.",
                knn["partitions"],
                knn["probes"],
                if knn["probes_from_recall"].as_bool() == Some(true) {
                    " (chosen to reach knn.recall on the certificate sample)"
                } else {
                    ""
                }
            );
            match knn["recall_estimate"].as_f64() {
                Some(recall) => text.push_str(&format!(
                    " Recall@k against the exact lists: {recall:.4} (95% interval {:.4} to {:.4}, \
                     {} rows searched exactly).",
                    knn["recall_interval"][0].as_f64().unwrap_or(f64::NAN),
                    knn["recall_interval"][1].as_f64().unwrap_or(f64::NAN),
                    knn["recall_sample"]
                )),
                None => text.push_str(" No certificate sample: the recall was not measured."),
            }
            text
        }
        Some(method) => format!("kNN: {method} (every pair of rows compared; recall 1)."),
        None => "kNN: not recorded in run.json.".to_string(),
    }
}

fn render_html(run_json: &serde_json::Value, data: &ResultsData, figures: &[Figure]) -> String {
    let mut rows = Vec::new();
    flatten("", run_json, &mut rows);
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>embsolve report</title>\n<style>\
         body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}\
         figure{margin:2em 0}img{max-width:100%;border:1px solid #ddd}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}\
         </style>\n<script>window.addEventListener('load',function(){var i=document.images,n=0;\
         for(var j=0;j<i.length;j++){if(i[j].complete&&i[j].naturalWidth>0)n++;}\
         document.body.setAttribute('data-images-total',i.length);document.body.setAttribute('data-images-loaded',n);});</script>\n\
         </head><body data-images-loaded=\"0\">\n<h1>embsolve report</h1>\n",
    );
    html.push_str(&format!(
        "<p>{} rows, {} ranks, backend {}, version {}.</p>\n",
        run_json["n_rows"].as_u64().unwrap_or(data.n_rows as u64),
        run_json["n_ranks"],
        escape(run_json["backend"].as_str().unwrap_or("?")),
        escape(run_json["version"].as_str().unwrap_or("?")),
    ));
    html.push_str(&format!("<p>{}</p>\n", escape(&knn_sentence(run_json))));
    for f in figures {
        html.push_str(&format!(
            "<figure><h2>{}</h2><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
            escape(&f.title),
            f.file,
            escape(&f.title),
            escape(&f.note)
        ));
    }
    html.push_str("<h2>run.json</h2>\n<table><tr><th>key</th><th>value</th></tr>\n");
    for (k, v) in rows {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            escape(&k),
            escape(&v)
        ));
    }
    html.push_str("</table>\n</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knn_sentence_gives_the_recall_of_a_partitioned_run() {
        let run: serde_json::Value = serde_json::json!({"results": {"knn": {
            "method": "partitioned", "partitions": 447, "probes": 2, "probes_from_recall": true,
            "recall_estimate": 0.9912, "recall_interval": [0.99, 0.9924], "recall_sample": 979}}});
        let text = knn_sentence(&run);
        assert!(text.contains("447 cells, 2 probes"), "{text}");
        assert!(
            text.contains("0.9912 (95% interval 0.9900 to 0.9924, 979 rows"),
            "{text}"
        );
        let exact = serde_json::json!({"results": {"knn": {"method": "exact"}}});
        assert!(knn_sentence(&exact).contains("recall 1"));
    }

    #[test]
    fn group_sizes_are_sorted_and_complete() {
        assert_eq!(
            group_sizes([3i64, 1, 3, 3, 7, 1].into_iter()),
            vec![3, 2, 1]
        );
    }

    #[test]
    fn run_json_flattens_to_dotted_keys() {
        let value = serde_json::json!({"phases": {"knn": {"max_s": 0.5}}, "results": {"eigenvalues": [1.0, 0.5]}, "n_rows": 3});
        let mut rows = Vec::new();
        flatten("", &value, &mut rows);
        assert!(
            rows.contains(&("phases.knn.max_s".into(), "0.500000".into())),
            "{rows:?}"
        );
        assert!(rows.contains(&("n_rows".into(), "3".into())));
        assert!(rows
            .iter()
            .any(|(k, v)| k == "results.eigenvalues" && v.contains("0.5")));
    }
}
