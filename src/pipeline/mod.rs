//! The SPMD driver. It reads like the job: setup -> read -> preprocess -> knn -> graph ->
//! components -> pagerank -> leiden -> spectral -> fft -> write. Every phase goes through the stage helper
//! (`stage.rs`: timed, max over ranks; checkpointed where worth it; failures agreed on, so no rank
//! waits alone in a collective; a safe point after it). Each phase's outcome fills its own part of
//! the results (`crate::record` for `run.json`, `GlobalResults`/`LocalResults` for `results.h5`).

mod output;
mod sanity;
mod stage;

pub use crate::record::{AriRecord, MinMax, ResultsRecord, RunSummary};
pub use embsolve_comm::agree;
pub use stage::Context;

use crate::checkpoint::Checkpoints;
use crate::config::RunConfig;
use crate::distributed;
use crate::telemetry::{self, PhaseTimers};
use embsolve_comm::{self as comm, Comm};
use embsolve_kernels::error::{Error, Result};
use embsolve_kernels::layout::RowLayout;
use embsolve_kernels::results::{GlobalResults, LocalResults};

/// Options of `embsolve run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub resume: bool,
}

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
    agree(comm, output::prepare_output_dir(comm, &config.output.dir))?;
    let checkpoints = open_checkpoints(comm, config, options.resume)?;
    let mut ctx = Context {
        comm,
        config,
        threads,
        timers: PhaseTimers::default(),
        checkpoints,
    };
    run_phases(&mut ctx)
}

/// This rank's rows after reading and preprocessing, with what the input says about them.
struct Prepared {
    layout: RowLayout,
    embeddings: ndarray::Array2<f32>,
    labels: Option<Vec<i64>>,
    global: GlobalResults,
    local: LocalResults,
}

fn run_phases(ctx: &mut Context) -> Result<RunSummary> {
    let comm = ctx.comm;
    let config = ctx.config;
    let prepared = read_and_preprocess(ctx)?;
    let Prepared {
        layout,
        embeddings,
        labels,
        mut global,
        mut local,
    } = prepared;
    let (backend, results) = run_solvers(
        ctx,
        &layout,
        embeddings.view(),
        labels.as_deref(),
        &mut global,
        &mut local,
    )?;
    drop(embeddings);

    sanity::check_results(comm, &global, &local)?;
    ctx.phase("write", || {
        output::write_results(comm, &config.output.dir, &global, &local)
    })?;

    let phases = ctx.timers.reduce(comm);
    let rss = telemetry::peak_rss_bytes();
    let mut rss_max = [rss];
    let mut rss_min = [rss];
    comm.allreduce_max_u64(&mut rss_max);
    comm.allreduce_min_u64(&mut rss_min);
    let summary = RunSummary {
        version: crate::VERSION.to_string(),
        n_rows: global.n_rows,
        dim: global.dim,
        n_ranks: comm.size(),
        backend,
        threads_per_rank: ctx.threads,
        phases,
        peak_rss_bytes: MinMax {
            max: rss_max[0],
            min: rss_min[0],
        },
        results,
    };
    output::write_run_json(comm, &config.output.dir, &summary)?;
    Ok(summary)
}

/// read -> the second config stage (checks that need the data's shape) -> preprocess.
fn read_and_preprocess(ctx: &mut Context) -> Result<Prepared> {
    let comm = ctx.comm;
    let config = ctx.config;
    let rank = comm.rank();
    let start = std::time::Instant::now();
    let scanned = (rank == 0).then(|| embsolve_io::scan(&config.input));
    let scan_status = scanned
        .as_ref()
        .map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone))
        .unwrap_or(Ok(()));
    agree(comm, scan_status)?;
    let info: embsolve_io::DatasetInfo =
        comm::broadcast_json(comm, 0, scanned.as_ref().and_then(|r| r.as_ref().ok()));
    // The same test on every rank (the shape is global): rank 0 prints the verdict.
    if let Err(error) = config.check_against_data(info.n_rows, info.dim) {
        return Err(agree_config(comm, error.message));
    }
    // The memory plan, before a row is read: rank 0 prints it; every rank checks it against the
    // memory it can see (ranks on other nodes may see less), and all leave together if one fails.
    let plan = crate::plan::MemoryPlan::new(config, info.n_rows, info.dim, comm.size());
    if rank == 0 {
        for line in plan.lines() {
            log::info!("{line}");
        }
    }
    let visible = crate::plan::visible_memory(
        config.run.memory_per_rank_bytes(),
        comm.local_size(),
        ctx.threads,
    );
    agree(comm, plan.check_fits(&visible))?;
    let layout = RowLayout::new(info.n_rows, comm.size());
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
    ctx.safe_point()?;
    let row_start = layout.start(rank);
    agree(
        comm,
        distributed::ids::check_unique_ids(comm, &block.ids, row_start),
    )?;

    let mut embeddings = block.embeddings;
    agree(
        comm,
        distributed::preprocess::check_finite(embeddings.view(), row_start),
    )?;
    let stats = ctx.phase("preprocess", || {
        let stats = distributed::preprocess::global_stats(comm, embeddings.view());
        distributed::preprocess::apply(
            comm,
            &config.preprocess,
            config.knn.metric,
            &mut embeddings,
            row_start,
        )?;
        Ok(stats)
    })?;

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
    distributed::ids::describe_ids(comm, &block.ids, &mut global);
    local.ids = Some(block.ids);
    Ok(Prepared {
        layout,
        embeddings,
        labels: block.labels,
        global,
        local,
    })
}

/// knn -> graph -> components -> pagerank -> leiden -> spectral -> fft. Returns the kNN backend's name and
/// the `run.json` results.
fn run_solvers(
    ctx: &mut Context,
    layout: &RowLayout,
    embeddings: ndarray::ArrayView2<f32>,
    truth: Option<&[i64]>,
    global: &mut GlobalResults,
    local: &mut LocalResults,
) -> Result<(String, ResultsRecord)> {
    let comm = ctx.comm;
    let config = ctx.config;
    let mut record = ResultsRecord::default();
    let mut ari = AriRecord::default();

    let mut backend = agree(
        comm,
        crate::backend::select_knn_backend(config.knn.backend, config.knn.k, comm.local_rank()),
    )?;
    let backend_name = backend.name().to_string();
    log::info!("knn backend: {backend_name}");
    let knn = ctx.stage("knn", || {
        distributed::knn::find_knn(comm, layout, embeddings, &config.knn, backend.as_mut())
    })?;
    distributed::knn::publish(&knn, config.output.write_knn, &mut record, global, local);

    let graph = ctx.phase("graph", || {
        distributed::graph::DistGraph::build(
            comm,
            layout,
            &knn.lists,
            &config.graph,
            config.knn.metric,
        )
    })?;
    drop(knn);

    if config.components.enabled {
        let components = ctx.stage("components", || {
            Ok(distributed::components::component_labels(comm, &graph))
        })?;
        ari.components =
            truth.map(|t| distributed::ari::adjusted_rand_index(comm, t, &components.labels));
        distributed::components::publish(components, &mut record, global, local);
    }

    if config.pagerank.enabled {
        let outcome = ctx.stage("pagerank", || {
            Ok(distributed::pagerank::pagerank(
                comm,
                &graph,
                &config.pagerank,
            ))
        })?;
        distributed::pagerank::publish(outcome, &mut record, global, local);
    }

    if config.leiden.enabled {
        let outcome = ctx.stage("leiden", || {
            Ok(distributed::leiden::leiden(comm, &graph, &config.leiden))
        })?;
        ari.leiden = truth.map(|t| distributed::ari::adjusted_rand_index(comm, t, &outcome.labels));
        distributed::leiden::publish(outcome, &mut record, global, local);
    }

    if config.spectral.enabled {
        let components = local.component_labels.as_deref();
        let outcome = ctx.stage("spectral", || {
            distributed::spectral::spectral_clustering(comm, &graph, &config.spectral, components)
        })?;
        if let Some(t) = truth {
            let predicted: Vec<i64> = outcome.labels.iter().map(|&l| l as i64).collect();
            ari.spectral = Some(distributed::ari::adjusted_rand_index(comm, t, &predicted));
        }
        distributed::spectral::publish(outcome, &config.spectral, &mut record, global, local);
    }
    drop(graph);

    if config.fft.enabled {
        let outcome = ctx.phase("fft", || distributed::fft::run(comm, &config.fft))?;
        distributed::fft::publish(outcome, &mut record, global, local);
    }

    if truth.is_some() {
        record.ari = Some(ari);
    }
    Ok((backend_name, record))
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
