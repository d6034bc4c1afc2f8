//! The SPMD driver. It reads like the job: setup -> read -> preprocess -> knn -> graph ->
//! components -> pagerank -> spectral -> fft -> write, each phase timed (max over ranks), with the
//! ranks agreeing after every phase that can fail locally, so no rank waits alone in a collective.

use crate::checkpoint::{Checkpoints, Payload};
use embsolve_comm::{self as comm, Comm};
use crate::config::RunConfig;
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::layout::RowLayout;
use embsolve_kernels::results::{GlobalResults, LocalResults};
use crate::telemetry::{self, PhaseTimers, Span};
use serde::Serialize;
use std::collections::BTreeMap;
use embsolve_io::atomic::{partial_path, write_atomic};
use std::path::Path;

/// Options of `embsolve run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub resume: bool,
}

/// Everything a phase needs: the communicator, the resolved config and this rank's threads.
pub struct Context<'a> {
    pub comm: &'a dyn Comm,
    pub config: &'a RunConfig,
    pub threads: usize,
    pub timers: PhaseTimers,
}

impl Context<'_> {
    /// A collective check for SIGTERM/SIGINT: every rank learns whether any rank was signalled.
    pub fn safe_point(&self) -> Result<()> {
        if comm::any(self.comm, crate::signals::requested()) {
            return Err(Error::interrupted());
        }
        Ok(())
    }
}

pub use embsolve_comm::agree;

/// Threads per rank: the config, else SLURM_CPUS_PER_TASK, else this node's cores shared by the
/// ranks on the node.
pub fn resolve_threads(configured: usize, local_ranks: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        if n > 0 {
            return n;
        }
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / local_ranks.max(1)).max(1)
}

/// Summary of a finished run (what `run.json` holds).
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub version: String,
    pub n_rows: usize,
    pub dim: usize,
    pub n_ranks: usize,
    pub backend: String,
    pub threads_per_rank: usize,
    pub phases: BTreeMap<String, Span>,
    pub peak_rss_bytes: BTreeMap<String, u64>,
    pub results: serde_json::Value,
}

/// Run the whole job on this rank. Collective: every rank of `comm` calls it.
pub fn run(comm: &dyn Comm, config: &RunConfig, options: &RunOptions) -> Result<RunSummary> {
    let threads = resolve_threads(config.run.threads, comm.local_size());
    // One run per process: the global pool is sized once (a second call keeps the first size).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    let threads = rayon::current_num_threads();
    let allowed = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(threads);
    if threads > allowed {
        log::warn!(
            "{threads} threads per rank but this rank may run on only {allowed} core(s): the \
             launcher binds ranks to cores (mpirun binds to one core when there are 2 ranks or \
             fewer); use `mpirun --bind-to none` or `--map-by slot:PE={threads}`, or `srun -c {threads}`"
        );
    }
    let mut ctx = Context {
        comm,
        config,
        threads,
        timers: PhaseTimers::default(),
    };
    run_phases(&mut ctx, options)
}

fn run_phases(ctx: &mut Context, options: &RunOptions) -> Result<RunSummary> {
    let comm = ctx.comm;
    let config = ctx.config;
    let rank = comm.rank();
    let out_dir = config.output.dir.clone();
    agree(comm, prepare_output_dir(comm, &out_dir))?;
    let checkpoints = open_checkpoints(comm, config, options.resume)?;

    // read
    let (info, block, layout) = {
        let start = std::time::Instant::now();
        let scanned = if rank == 0 {
            Some(embsolve_io::scan(&config.input))
        } else {
            None
        };
        let scan_status = scanned
            .as_ref()
            .map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone))
            .unwrap_or(Ok(()));
        agree(comm, scan_status)?;
        let info: embsolve_io::DatasetInfo =
            comm::broadcast_json(comm, 0, scanned.as_ref().and_then(|r| r.as_ref().ok()));
        let layout = RowLayout::new(info.n_rows, comm.size());
        if config.knn.k >= info.n_rows {
            return Err(agree_config(
                comm,
                format!(
                    "knn.k = {} must be smaller than the number of rows ({})",
                    config.knn.k, info.n_rows
                ),
            ));
        }
        let block = agree(
            comm,
            embsolve_io::read_rows(&info, &config.input, layout.range(rank)),
        )?;
        ctx.timers.add("read", start.elapsed().as_secs_f64());
        log::info!(
            "read {} rows x {} ({} local)",
            info.n_rows,
            info.dim,
            block.embeddings.nrows()
        );
        (info, block, layout)
    };
    ctx.safe_point()?;
    let row_start = layout.start(rank);
    agree(
        comm,
        crate::distributed::ids::check_unique_ids(comm, &block.ids, row_start),
    )?;

    // preprocess
    let start = std::time::Instant::now();
    let mut embeddings = block.embeddings;
    agree(
        comm,
        crate::distributed::preprocess::check_finite(embeddings.view(), row_start),
    )?;
    let stats = crate::distributed::preprocess::global_stats(comm, embeddings.view());
    let prepared = crate::distributed::preprocess::apply(
        comm,
        &config.preprocess,
        config.knn.metric,
        &mut embeddings,
        row_start,
    );
    let embeddings = agree(comm, prepared.map(|()| embeddings))?;
    ctx.timers.add("preprocess", start.elapsed().as_secs_f64());
    ctx.safe_point()?;

    let mut global = GlobalResults {
        version: crate::VERSION.to_string(),
        config_toml: config.to_toml(),
        n_rows: info.n_rows,
        dim: info.dim,
        n_ranks: comm.size(),
        stats_mean: stats.mean,
        norm_min: stats.norm_min,
        norm_max: stats.norm_max,
        ..Default::default()
    };
    let mut local = LocalResults {
        row_start,
        n_local: layout.local_rows(rank),
        ..Default::default()
    };
    crate::distributed::ids::describe_ids(comm, &block.ids, &mut global);
    local.ids = Some(block.ids);

    let stage = run_solvers(
        ctx,
        &checkpoints,
        &layout,
        embeddings.view(),
        block.labels.as_deref(),
        &mut global,
        &mut local,
    )?;

    // write
    let start = std::time::Instant::now();
    write_results(comm, &out_dir, &global, &local)?;
    ctx.timers.add("write", start.elapsed().as_secs_f64());

    let phases = ctx.timers.reduce(comm);
    let rss = telemetry::peak_rss_bytes();
    let mut rss_max = [rss];
    let mut rss_min = [rss];
    comm.allreduce_max_u64(&mut rss_max);
    comm.allreduce_min_u64(&mut rss_min);
    let summary = RunSummary {
        version: crate::VERSION.to_string(),
        n_rows: info.n_rows,
        dim: info.dim,
        n_ranks: comm.size(),
        backend: stage.backend,
        threads_per_rank: ctx.threads,
        phases,
        peak_rss_bytes: BTreeMap::from([
            ("max".to_string(), rss_max[0]),
            ("min".to_string(), rss_min[0]),
        ]),
        results: stage.results_json,
    };
    if rank == 0 {
        let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
        agree(comm, write_atomic(&out_dir.join("run.json"), &json))?;
    } else {
        agree(comm, Ok(()))?;
    }
    Ok(summary)
}

/// The checkpoint store of this run: rank 0 hashes the input files and config, every rank gets
/// the stamp (collective).
fn open_checkpoints(comm: &dyn Comm, config: &RunConfig, resume: bool) -> Result<Checkpoints> {
    let stamp = if comm.rank() == 0 {
        crate::checkpoint::stamp(config, comm.size())
    } else {
        Ok([0u8; 32])
    };
    let stamp = agree(comm, stamp)?;
    let mut bytes = stamp.to_vec();
    comm.broadcast_bytes(0, &mut bytes);
    let stamp: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::internal("checkpoint stamp broadcast"))?;
    agree(
        comm,
        Checkpoints::open(
            comm,
            &config.output.dir,
            stamp,
            config.output.checkpoint,
            resume,
        ),
    )
}

/// A config error known to every rank (same test on every rank): rank 0 prints it.
fn agree_config(comm: &dyn Comm, message: String) -> Error {
    let outcome: Result<()> = if comm.rank() == 0 {
        Err(Error::config(message))
    } else {
        Err(Error::peer(0, 2))
    };
    match agree(comm, outcome) {
        Err(e) => e,
        Ok(()) => unreachable!("a failed outcome stays failed"),
    }
}

/// Rank 0 creates the output directory and checks it is writable; the others wait for the verdict.
fn prepare_output_dir(comm: &dyn Comm, dir: &Path) -> Result<()> {
    if comm.rank() != 0 {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::config(format!(
            "output.dir {} cannot be created: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".embsolve-write-probe");
    std::fs::write(&probe, b"")
        .map_err(|e| Error::config(format!("output.dir {} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}


/// `results.h5`: rank 0 creates the file with every dataset, then each rank in turn writes its
/// slices (one writer at a time, no rank holds another's rows), then rank 0 renames it into place.
fn write_results(
    comm: &dyn Comm,
    dir: &Path,
    global: &GlobalResults,
    local: &LocalResults,
) -> Result<()> {
    let final_path = dir.join("results.h5");
    let tmp = partial_path(&final_path);
    let created = if comm.rank() == 0 {
        embsolve_io::results::create(&tmp, global)
    } else {
        Ok(())
    };
    agree(comm, created)?;
    let mut outcome = Ok(());
    for writer in 0..comm.size() {
        if writer == comm.rank() {
            outcome = embsolve_io::results::write_local(&tmp, global, local);
        }
        comm.barrier();
    }
    agree(comm, outcome)?;
    let renamed = if comm.rank() == 0 {
        std::fs::rename(&tmp, &final_path)
            .map_err(|e| Error::output(format!("cannot rename to {}: {e}", final_path.display())))
    } else {
        Ok(())
    };
    agree(comm, renamed)
}

/// What the solver phases report for `run.json`.
pub struct SolverOutcome {
    pub backend: String,
    pub results_json: serde_json::Value,
}

/// knn -> graph -> components -> pagerank -> spectral -> fft, each timed and followed by a safe point.
fn run_solvers(
    ctx: &mut Context,
    checkpoints: &Checkpoints,
    layout: &RowLayout,
    embeddings: ndarray::ArrayView2<f32>,
    labels: Option<&[i64]>,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) -> Result<SolverOutcome> {
    let comm = ctx.comm;
    let config = ctx.config;
    let mut results = serde_json::Map::new();
    let mut ari = serde_json::Map::new();

    // knn
    let start = std::time::Instant::now();
    let mut backend = agree(
        comm,
        crate::backend::select_knn_backend(config.knn.backend, config.knn.k, comm.local_rank()),
    )?;
    let backend_name = backend.name().to_string();
    log::info!("knn backend: {backend_name}");
    let knn = match checkpoints.load(comm, "knn").and_then(|mut p| {
        Some(embsolve_kernels::types::KnnLists {
            k: p.u64()? as usize,
            indices: p.vec()?,
            distances: p.vec()?,
        })
    }) {
        Some(knn) => knn,
        None => {
            let knn = agree(
                comm,
                crate::distributed::knn::exact_knn(
                    comm,
                    layout,
                    embeddings,
                    config.knn.k,
                    config.knn.metric,
                    backend.as_mut(),
                ),
            )?;
            let mut payload = Payload::default();
            payload
                .put_u64(knn.k as u64)
                .put_slice(&knn.indices)
                .put_slice(&knn.distances);
            agree(comm, checkpoints.save("knn", &payload))?;
            knn
        }
    };
    ctx.timers.add("knn", start.elapsed().as_secs_f64());
    ctx.safe_point()?;
    global.knn_k = Some(knn.k);
    if config.output.write_knn {
        local.knn_indices = Some(knn.indices.iter().map(|&i| i as i64).collect());
        local.knn_distances = Some(knn.distances.clone());
    }

    // graph
    let start = std::time::Instant::now();
    let graph = agree(
        comm,
        crate::distributed::graph::DistGraph::build(comm, layout, &knn, &config.graph, config.knn.metric),
    )?;
    drop(knn);
    ctx.timers.add("graph", start.elapsed().as_secs_f64());
    ctx.safe_point()?;

    if config.components.enabled {
        let start = std::time::Instant::now();
        let saved = checkpoints
            .load(comm, "components")
            .and_then(|mut p| Some((p.vec::<i64>()?, p.u64()?)));
        let (component_labels, n_components) = match saved {
            Some(saved) => saved,
            None => {
                let (labels, n) = crate::distributed::components::connected_components(comm, &graph);
                let mut payload = Payload::default();
                payload.put_slice(&labels).put_u64(n);
                agree(comm, checkpoints.save("components", &payload))?;
                (labels, n)
            }
        };
        ctx.timers.add("components", start.elapsed().as_secs_f64());
        results.insert("n_components".into(), n_components.into());
        if let Some(truth) = labels {
            ari.insert(
                "components".into(),
                crate::distributed::ari::adjusted_rand_index(comm, truth, &component_labels).into(),
            );
        }
        global.n_components = Some(n_components);
        local.component_labels = Some(component_labels);
        ctx.safe_point()?;
    }

    if config.pagerank.enabled {
        let start = std::time::Instant::now();
        let saved = checkpoints.load(comm, "pagerank").and_then(|mut p| {
            Some(crate::distributed::pagerank::PagerankOutcome {
                scores: p.vec()?,
                iterations: p.u64()? as usize,
                residual: p.f64()?,
            })
        });
        let outcome = match saved {
            Some(outcome) => outcome,
            None => {
                let outcome = crate::distributed::pagerank::pagerank(comm, &graph, &config.pagerank);
                let mut payload = Payload::default();
                payload
                    .put_slice(&outcome.scores)
                    .put_u64(outcome.iterations as u64)
                    .put_f64(outcome.residual);
                agree(comm, checkpoints.save("pagerank", &payload))?;
                outcome
            }
        };
        ctx.timers.add("pagerank", start.elapsed().as_secs_f64());
        results.insert("pagerank_iterations".into(), outcome.iterations.into());
        global.pagerank = Some(embsolve_kernels::results::PagerankSummary {
            iterations: outcome.iterations,
            residual: outcome.residual,
        });
        local.pagerank_scores = Some(outcome.scores);
        ctx.safe_point()?;
    }

    if config.spectral.enabled {
        let start = std::time::Instant::now();
        let outcome = match checkpoints
            .load(comm, "spectral")
            .and_then(|mut p| load_spectral(&mut p))
        {
            Some(outcome) => outcome,
            None => {
                let outcome = agree(
                    comm,
                    crate::distributed::spectral::spectral_clustering(
                        comm,
                        &graph,
                        &config.spectral,
                        local.component_labels.as_deref(),
                    ),
                )?;
                agree(comm, checkpoints.save("spectral", &save_spectral(&outcome)))?;
                outcome
            }
        };
        ctx.timers.add("spectral", start.elapsed().as_secs_f64());
        if !outcome.converged {
            log::warn!(
                "spectral: Lanczos stopped at spectral.max_iter = {} before every residual reached \
                 spectral.tol = {:e}: the eigenpairs and clusters are approximate (raise \
                 spectral.max_iter)",
                config.spectral.max_iter,
                config.spectral.tol
            );
        }
        results.insert("n_clusters".into(), outcome.n_clusters.into());
        results.insert("eigenvalues".into(), outcome.eigenvalues.clone().into());
        results.insert("lanczos_iterations".into(), outcome.iterations.into());
        results.insert("lanczos_converged".into(), outcome.converged.into());
        if let Some(truth) = labels {
            let predicted: Vec<i64> = outcome.labels.iter().map(|&l| l as i64).collect();
            ari.insert(
                "spectral".into(),
                crate::distributed::ari::adjusted_rand_index(comm, truth, &predicted).into(),
            );
        }
        global.spectral = Some(embsolve_kernels::results::SpectralSummary {
            eigenvalues: outcome.eigenvalues,
            n_clusters: outcome.n_clusters,
            n_eigs: config.spectral.n_eigs,
            iterations: outcome.iterations,
            converged: outcome.converged,
        });
        local.spectral_embedding = Some(outcome.embedding);
        local.spectral_labels = Some(outcome.labels);
        ctx.safe_point()?;
    }
    drop(graph);

    if config.fft.enabled {
        let start = std::time::Instant::now();
        let outcome = agree(comm, crate::distributed::fft::run(comm, &config.fft))?;
        ctx.timers.add("fft", start.elapsed().as_secs_f64());
        results.insert("fft_windows".into(), outcome.summary.n_windows.into());
        results.insert("fft_sequences".into(), outcome.summary.n_sequences.into());
        global.fft = Some(outcome.summary);
        local.fft_seq_start = outcome.seq_start;
        local.fft_features = Some(outcome.features);
        local.fft_window_start = outcome.window_start;
        local.fft_period3 = Some(outcome.period3);
        ctx.safe_point()?;
    }

    if labels.is_some() {
        results.insert("ari".into(), serde_json::Value::Object(ari));
    }
    Ok(SolverOutcome {
        backend: backend_name,
        results_json: serde_json::Value::Object(results),
    })
}

/// The spectral stage as a checkpoint payload: eigenpairs, this rank's embedding rows and labels.
fn save_spectral(outcome: &crate::distributed::spectral::SpectralOutcome) -> Payload {
    let mut payload = Payload::default();
    let embedding: Vec<f32> = outcome.embedding.iter().copied().collect();
    payload
        .put_slice(&outcome.eigenvalues)
        .put_u64(outcome.embedding.ncols() as u64)
        .put_slice(&embedding)
        .put_slice(&outcome.labels)
        .put_u64(outcome.n_clusters as u64)
        .put_u64(outcome.iterations as u64)
        .put_u64(outcome.converged as u64);
    payload
}

fn load_spectral(payload: &mut Payload) -> Option<crate::distributed::spectral::SpectralOutcome> {
    let eigenvalues = payload.vec()?;
    let n_cols = payload.u64()? as usize;
    let embedding: Vec<f32> = payload.vec()?;
    let n_local = embedding.len().checked_div(n_cols).unwrap_or(0);
    let embedding = ndarray::Array2::from_shape_vec((n_local, n_cols), embedding).ok()?;
    Some(crate::distributed::spectral::SpectralOutcome {
        eigenvalues,
        embedding,
        labels: payload.vec()?,
        n_clusters: payload.u64()? as usize,
        iterations: payload.u64()? as usize,
        converged: payload.u64()? != 0,
    })
}
