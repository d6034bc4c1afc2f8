//! The only home of MPI. Solvers see the `Comm` trait: `SerialComm` drives unit tests and
//! singleton runs, `MpiComm` (in `mpi_comm.rs`) is the real thing. Typed collectives are free
//! functions over the byte-level trait methods, so the trait stays object safe (`&dyn Comm`).

mod agree;
mod mpi_comm;

pub use agree::agree;
pub use mpi_comm::MpiComm;

use bytemuck::Pod;
use embsolve_kernels::exact::{from_limbs, to_limbs, ExactSum};
use embsolve_kernels::linop::Reduce;

/// Collective operations a distributed solver needs. Every rank must call the same collectives
/// in the same order; [`agree`] turns local failures into a collective answer.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Rank among the processes on this node, and how many share the node (GPU binding, threads).
    fn local_rank(&self) -> usize;
    fn local_size(&self) -> usize;
    fn barrier(&self);

    fn allreduce_sum_f64(&self, values: &mut [f64]);
    fn allreduce_sum_u64(&self, values: &mut [u64]);
    fn allreduce_min_u64(&self, values: &mut [u64]);
    fn allreduce_max_u64(&self, values: &mut [u64]);
    fn allreduce_min_f64(&self, values: &mut [f64]);
    fn allreduce_max_f64(&self, values: &mut [f64]);

    /// Every rank's bytes, in rank order.
    fn allgatherv_bytes(&self, local: &[u8]) -> Vec<Vec<u8>>;
    /// Replace `data` on every rank with the root's bytes.
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>);
    /// Personalised all-to-all: `send_counts[r]` bytes of `send` (in rank order) go to rank r.
    /// Returns the received bytes (in rank order) and the byte count from each rank.
    fn alltoallv_bytes(&self, send: &[u8], send_counts: &[usize]) -> (Vec<u8>, Vec<usize>);
    /// Ring step: send `send` to rank+1 and receive `recv` from rank-1 (sizes known to both ends)
    /// while `overlap` runs on this thread. With one rank, `recv` gets a copy of `send`.
    fn ring_shift_f32(&self, send: &[f32], recv: &mut [f32], overlap: &mut dyn FnMut());
    /// Tear the whole job down (used only for panics: ordinary errors go through `agree`).
    fn abort(&self, status: i32) -> !;
}

/// One process, no MPI: collectives are identities.
#[derive(Debug, Default, Clone, Copy)]
pub struct SerialComm;

impl Comm for SerialComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn local_size(&self) -> usize {
        1
    }
    fn barrier(&self) {}
    fn allreduce_sum_f64(&self, _values: &mut [f64]) {}
    fn allreduce_sum_u64(&self, _values: &mut [u64]) {}
    fn allreduce_min_u64(&self, _values: &mut [u64]) {}
    fn allreduce_max_u64(&self, _values: &mut [u64]) {}
    fn allreduce_min_f64(&self, _values: &mut [f64]) {}
    fn allreduce_max_f64(&self, _values: &mut [f64]) {}
    fn allgatherv_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        vec![local.to_vec()]
    }
    fn broadcast_bytes(&self, _root: usize, _data: &mut Vec<u8>) {}
    fn alltoallv_bytes(&self, send: &[u8], send_counts: &[usize]) -> (Vec<u8>, Vec<usize>) {
        assert_eq!(send_counts.len(), 1);
        (send.to_vec(), vec![send.len()])
    }
    fn ring_shift_f32(&self, send: &[f32], recv: &mut [f32], overlap: &mut dyn FnMut()) {
        overlap();
        recv.copy_from_slice(send);
    }
    fn abort(&self, status: i32) -> ! {
        std::process::exit(status)
    }
}

/// All-to-all of typed items: `send_counts[r]` items go to rank r. Returns items and counts.
pub fn alltoallv<T: Pod>(
    comm: &dyn Comm,
    send: &[T],
    send_counts: &[usize],
) -> (Vec<T>, Vec<usize>) {
    let item = std::mem::size_of::<T>();
    let byte_counts: Vec<usize> = send_counts.iter().map(|c| c * item).collect();
    let (bytes, recv_bytes) = comm.alltoallv_bytes(bytemuck::cast_slice(send), &byte_counts);
    let items: Vec<T> = bytemuck::pod_collect_to_vec(&bytes);
    (items, recv_bytes.iter().map(|b| b / item).collect())
}

/// Every rank's typed items, concatenated in rank order, with the count from each rank.
pub fn allgatherv<T: Pod>(comm: &dyn Comm, local: &[T]) -> (Vec<T>, Vec<usize>) {
    let parts = comm.allgatherv_bytes(bytemuck::cast_slice(local));
    let item = std::mem::size_of::<T>();
    let counts = parts.iter().map(|p| p.len() / item).collect();
    let mut all = Vec::with_capacity(parts.iter().map(|p| p.len() / item).sum());
    for part in &parts {
        all.extend(bytemuck::pod_collect_to_vec::<u8, T>(part));
    }
    (all, counts)
}

/// One value from every rank, in rank order.
pub fn allgather_u64(comm: &dyn Comm, value: u64) -> Vec<u64> {
    allgatherv(comm, &[value]).0
}

/// Exclusive prefix sum over ranks: the sum of `value` on lower ranks, and the total.
pub fn exscan_u64(comm: &dyn Comm, value: u64) -> (u64, u64) {
    let all = allgather_u64(comm, value);
    let before = all[..comm.rank()].iter().sum();
    (before, all.iter().sum())
}

/// Environment variables that MPI launchers (Open MPI's mpirun, PMIx, MPICH/Intel MPI's hydra,
/// Slurm's srun, Cray PALS/ALPS, MVAPICH) set in every process they start.
const LAUNCHER_VARIABLES: &[&str] = &[
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "PMI_SIZE",
    "PMI_FD",
    "SLURM_PROCID",
    "MV2_COMM_WORLD_RANK",
    "PALS_RANKID",
    "ALPS_APP_PE",
];

/// Set to `1` to initialise MPI even without a launcher (a singleton MPI job).
pub const MPI_SWITCH_VARIABLE: &str = "EMBSOLVE_MPI";

/// Whether this process should initialise MPI: it was started by a launcher (or `EMBSOLVE_MPI=1`).
/// A process started alone is one rank either way; without MPI it skips the singleton start-up
/// (Open MPI spawns an `orted` for it, a few hundred milliseconds) and runs on `SerialComm`.
pub fn launched_by_mpi() -> bool {
    std::env::var(MPI_SWITCH_VARIABLE).as_deref() == Ok("1")
        || LAUNCHER_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some())
}

/// True on every rank when `flag` is true on any rank.
pub fn any(comm: &dyn Comm, flag: bool) -> bool {
    let mut value = [flag as u64];
    comm.allreduce_max_u64(&mut value);
    value[0] != 0
}

/// Serialise with serde_json on `root` and hand the value to every rank.
pub fn broadcast_json<T>(comm: &dyn Comm, root: usize, value: Option<&T>) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut bytes = match value {
        Some(v) if comm.rank() == root => serde_json::to_vec(v).expect("serialisable value"),
        _ => Vec::new(),
    };
    comm.broadcast_bytes(root, &mut bytes);
    serde_json::from_slice(&bytes).expect("root sent valid json")
}

/// MPI_Abort on the world communicator, if MPI is initialised (for panics). Exits otherwise.
pub fn abort_world(status: i32) -> ! {
    mpi_comm::abort_world(status)
}

/// Exact sums over all ranks (limb-wise u64 allreduce of 128-bit fixed point).
pub fn allreduce_exact(comm: &dyn Comm, values: &mut [ExactSum]) {
    if comm.size() == 1 || values.is_empty() {
        return;
    }
    let mut limbs: Vec<u64> = values.iter().flat_map(|v| to_limbs(v.0)).collect();
    comm.allreduce_sum_u64(&mut limbs);
    for (value, chunk) in values.iter_mut().zip(limbs.chunks_exact(3)) {
        *value = ExactSum(from_limbs([chunk[0], chunk[1], chunk[2]]));
    }
}

/// `Reduce` over a communicator.
pub struct CommReduce<'a>(pub &'a dyn Comm);

impl Reduce for CommReduce<'_> {
    fn sum_exact(&self, values: &mut [ExactSum]) {
        allreduce_exact(self.0, values);
    }
    fn sum_f64(&self, values: &mut [f64]) {
        self.0.allreduce_sum_f64(values);
    }
    fn max_f64(&self, values: &mut [f64]) {
        self.0.allreduce_max_f64(values);
    }
}
