//! The `embsolve` command line: parse, build the run configuration, call the pipeline, and map
//! errors to exit statuses (0 ok, 2 usage/config/input, 1 anything else), the same on every rank.

use clap::{Parser, Subcommand};
use embsolve::config::RunConfig;
use embsolve::pipeline::{self, RunOptions};
use embsolve::Error;
use embsolve_comm::{Comm, MpiComm, SerialComm};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "embsolve",
    version,
    about = "Exact kNN graphs, components, PageRank, spectral clustering and FFT analysis of sequence embeddings, on MPI ranks (stage 2 of a Ray -> HPC pipeline).",
    after_help = "Exit status: 0 success; 2 bad usage, config or input (the message names the file, key, row or shard); 1 any other failure. Every rank exits with the same status.\n\nEnvironment: EMBSOLVE_LOG (error|warn|info|debug; default info on rank 0, warn elsewhere), EMBSOLVE_NO_PROGRESS (no progress bar or lines), SLURM_CPUS_PER_TASK (threads per rank when [run] threads = 0).\n\nDocs: README.md, docs/config.md (every config key), docs/cluster.md (Slurm, Lmod), docs/reliability.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job described by CONFIG.toml (singleton, under mpirun -n P, or under srun --mpi=pmix).
    Run {
        /// The TOML configuration (see docs/config.md).
        config: PathBuf,
        /// Override a config value: section.key=value (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        /// Skip stages already finished by an earlier run of the same input and config.
        #[arg(long)]
        resume: bool,
    },
    /// Write a synthetic dataset: seeded Gaussian blobs (embeddings with id and label columns) or
    /// DNA token tracks.
    Generate(GenerateArgs),
    /// Print what a dataset holds: rows, dim, dtype, shards, ids and labels (no MPI needed).
    Inspect {
        /// A file, a directory of shards, or a dataset directory with manifest.json.
        path: PathBuf,
        /// The embedding column (Parquet) or dataset (HDF5).
        #[arg(long, default_value = "embedding")]
        column: String,
        /// Also read every row in K row blocks (as K ranks would), checking each row, and print
        /// the column means and the first and last ids.
        #[arg(long, value_name = "K")]
        check: Option<usize>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Predict the peak memory per rank and the kNN work of a run before it queues (reads only
    /// the dataset's metadata; no MPI needed). Exit 2 when the plan does not fit.
    Plan {
        /// The TOML configuration of the run.
        config: PathBuf,
        /// Override a config value: section.key=value (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        /// Ranks of the run.
        #[arg(long, default_value_t = 1)]
        ranks: usize,
        /// Ranks per node (they share the node's memory); default: all ranks on one node.
        #[arg(long)]
        ranks_per_node: Option<usize>,
        /// Sustained GEMM rate of one rank in GFLOP/s, for the time estimate.
        #[arg(long, default_value_t = 100.0)]
        gflops: f64,
    },
    /// Write report.html and PNG plots from RESULTS_DIR/results.h5 and run.json (no MPI needed).
    Report {
        /// A run's output.dir.
        results_dir: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Blobs,
    Tracks,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Parquet,
    Hdf5,
    Npy,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Dtype {
    F32,
    F16,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// What to generate.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Rows (blobs) or sequences (tracks).
    #[arg(long)]
    n: usize,
    /// Embedding dimension (blobs).
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Number of Gaussian clusters (blobs).
    #[arg(long, default_value_t = 8)]
    clusters: usize,
    /// Standard deviation around each cluster centre (blobs; centres are uniform in [-10, 10]^dim).
    #[arg(long, default_value_t = 1.0)]
    noise: f64,
    /// Seed: the same seed gives the same data for any shard count.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Approximate sequence length (tracks).
    #[arg(long, default_value_t = 10_000)]
    length: usize,
    /// File format: Parquet as Ray Data writes it, HDF5, or NumPy .npy.
    #[arg(long, value_enum)]
    format: OutputFormat,
    /// Number of files (a directory with manifest.json; 1 shard with a .parquet/.h5/.npy PATH
    /// writes that single file).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Element type of the embeddings.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Output: a dataset directory (with manifest.json), or a single file with one shard.
    #[arg(long)]
    out: PathBuf,
}

fn generate(args: &GenerateArgs) -> embsolve::Result<String> {
    let (format, format_name) = match args.format {
        OutputFormat::Parquet => (embsolve_io::Format::Parquet, "parquet"),
        OutputFormat::Hdf5 => (embsolve_io::Format::Hdf5, "hdf5"),
        OutputFormat::Npy => (embsolve_io::Format::Npy, "npy"),
    };
    match args.kind {
        Kind::Blobs => embsolve_io::generate::blobs(&embsolve_io::generate::BlobsParams {
            n_rows: args.n,
            dim: args.dim,
            clusters: args.clusters,
            noise: args.noise,
            seed: args.seed,
            format,
            shards: args.shards,
            half: args.dtype == Dtype::F16,
            out: args.out.clone(),
        }),
        Kind::Tracks => embsolve_io::tracks::generate_tracks(
            args.n,
            args.length,
            args.seed,
            format_name,
            args.shards,
            &args.out,
        )
        .map(|()| format!("wrote {} tracks to {}", args.n, args.out.display())),
    }
}

fn inspect(
    path: &std::path::Path,
    column: &str,
    check: Option<usize>,
    json: bool,
) -> embsolve::Result<String> {
    let info = embsolve_io::inspect(path, column)?;
    let checked = check
        .map(|blocks| embsolve_io::check_read(&info, blocks))
        .transpose()?;
    if json {
        let value = serde_json::json!({ "info": info, "check": checked });
        return Ok(format!("{value}\n"));
    }
    let mut text = embsolve_io::describe(&info);
    if let Some(c) = checked {
        text.push_str(&format!(
            "checked: {} rows read in {} blocks; ids {} .. {}\n",
            c.rows_read, c.blocks, c.first_id, c.last_id
        ));
    }
    Ok(text)
}

fn plan(
    config: &std::path::Path,
    set: &[String],
    ranks: usize,
    ranks_per_node: Option<usize>,
    gflops: f64,
) -> embsolve::Result<String> {
    use embsolve::plan::{human_bytes, visible_memory, MemoryPlan};
    if ranks == 0 || ranks_per_node == Some(0) {
        return Err(Error::usage(
            "--ranks and --ranks-per-node must be at least 1",
        ));
    }
    let cfg = RunConfig::load(config, set)?;
    let info = embsolve_io::scan(&cfg.input)?;
    cfg.check_against_data(info.n_rows, info.dim)?;
    let plan = MemoryPlan::new(&cfg, info.n_rows, info.dim, ranks);
    let local_ranks = ranks_per_node.unwrap_or(ranks).min(ranks);
    let threads = pipeline::resolve_threads(cfg.run.threads, local_ranks);
    let visible = visible_memory(cfg.run.memory_per_rank_bytes(), local_ranks, threads);
    let mut text = plan.lines().join("\n");
    text.push('\n');
    text.push_str(&format!(
        "visible memory per rank: {} ({})\n",
        human_bytes(visible.bytes),
        visible.source
    ));
    let work = embsolve::plan::knn_work(&cfg, info.n_rows, info.dim, ranks);
    text.push_str(&format!(
        "knn ({}): {:.3e} flop per rank, about {:.1} s at {gflops} GFLOP/s per rank\n",
        cfg.knn.method.name(),
        work,
        work / (gflops.max(1e-3) * 1e9)
    ));
    // The plan is printed whether or not it fits; the error follows it.
    print!("{text}");
    plan.check_fits(&visible)?;
    Ok("verdict: fits\n".to_string())
}

fn init_logging(rank: usize, size: usize) {
    let default = if rank == 0 { "info" } else { "warn" };
    let mut builder = env_logger::Builder::from_env(
        env_logger::Env::default().filter_or("EMBSOLVE_LOG", default),
    );
    builder.format(move |buf, record| {
        if size > 1 {
            writeln!(
                buf,
                "[embsolve rank {rank}/{size} {}] {}",
                record.level(),
                record.args()
            )
        } else {
            writeln!(buf, "[embsolve {}] {}", record.level(), record.args())
        }
    });
    let _ = builder.try_init();
}

/// Abort the whole MPI job on a panic so no rank waits forever for a dead peer.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        // SAFETY-free: MPI_Abort through the C API of the already-initialised library.
        embsolve_comm::abort_world(1);
    }));
}

/// MPI when a launcher started this process (or `EMBSOLVE_MPI=1`), else one rank without MPI.
/// Starts the logger too, and says which it is.
fn open_comm() -> Box<dyn Comm> {
    if !embsolve_comm::launched_by_mpi() {
        init_logging(0, 1);
        log::debug!(
            "no MPI launcher in the environment: one rank without MPI ({}=1 to initialise MPI)",
            embsolve_comm::MPI_SWITCH_VARIABLE
        );
        return Box::new(SerialComm);
    }
    match MpiComm::init() {
        Some(comm) => {
            init_logging(comm.rank(), comm.size());
            log::debug!("MPI initialised: {} ranks", comm.size());
            Box::new(comm)
        }
        None => {
            eprintln!("embsolve: MPI was already initialised");
            std::process::exit(1);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run {
            config,
            set,
            resume,
        } => {
            let comm = open_comm();
            let comm = comm.as_ref();
            abort_on_panic();
            embsolve::signals::install();
            let outcome = pipeline::agree(comm, RunConfig::load(&config, &set)).and_then(|cfg| {
                pipeline::run(comm, &cfg, &RunOptions { resume }).map(|s| (cfg, s))
            });
            match outcome {
                Ok((cfg, summary)) => {
                    if comm.rank() == 0 {
                        print_summary(&cfg, &summary);
                    }
                    0
                }
                Err(e) => report_error(&e),
            }
        }
        Command::Generate(args) => {
            init_logging(0, 1);
            match generate(&args) {
                Ok(summary) => {
                    println!("{summary}");
                    0
                }
                Err(e) => report_error(&e),
            }
        }
        Command::Inspect {
            path,
            column,
            check,
            json,
        } => {
            init_logging(0, 1);
            match inspect(&path, &column, check, json) {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => report_error(&e),
            }
        }
        Command::Plan {
            config,
            set,
            ranks,
            ranks_per_node,
            gflops,
        } => {
            init_logging(0, 1);
            match plan(&config, &set, ranks, ranks_per_node, gflops) {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => report_error(&e),
            }
        }
        Command::Report { results_dir } => {
            init_logging(0, 1);
            match embsolve_report::write_report(&results_dir) {
                Ok(page) => {
                    println!("{}", page.display());
                    0
                }
                Err(e) => report_error(&e),
            }
        }
    };
    std::process::exit(status);
}

/// Print an error (only the rank that owns it does; peers stay silent) and return its status.
fn report_error(e: &Error) -> i32 {
    if e.kind != embsolve::ErrorKind::Peer {
        eprintln!("embsolve: {e}");
    }
    e.exit_status()
}

fn print_summary(config: &RunConfig, summary: &pipeline::RunSummary) {
    println!(
        "embsolve {}: {} rows x {} on {} ranks x {} threads ({}); results in {}",
        summary.version,
        summary.n_rows,
        summary.dim,
        summary.n_ranks,
        summary.threads_per_rank,
        summary.backend,
        config.output.dir.display()
    );
    for (phase, span) in &summary.phases {
        if span.max_s > 0.0 {
            println!("  {phase:<11} {:>9.3} s (max over ranks)", span.max_s);
        }
    }
    println!(
        "  results     {}",
        serde_json::to_string(&summary.results).expect("results serialise")
    );
}
