//! `Comm` over rsmpi. Messages larger than `i32::MAX` elements are refused with a clear panic
//! message (MPI counts are 32-bit); callers keep per-rank messages below that.

use super::Comm;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;

/// The world communicator of an initialised MPI environment. Dropping it finalises MPI.
pub struct MpiComm {
    world: SimpleCommunicator,
    local_rank: usize,
    local_size: usize,
    _universe: mpi::environment::Universe,
}

fn count(n: usize) -> Count {
    Count::try_from(n).unwrap_or_else(|_| panic!("MPI message of {n} elements exceeds i32 counts"))
}

fn displacements(counts: &[Count]) -> Vec<Count> {
    let mut displs = Vec::with_capacity(counts.len());
    let mut acc: i64 = 0;
    for &c in counts {
        displs.push(count(acc as usize));
        acc += c as i64;
    }
    displs
}

impl MpiComm {
    /// Initialise MPI (funneled threading: only the main thread calls MPI). Returns None when MPI
    /// was already initialised.
    pub fn init() -> Option<MpiComm> {
        let (universe, _threading) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        let world = universe.world();
        let node = world.split_shared(world.rank());
        let local_rank = node.rank() as usize;
        let local_size = node.size() as usize;
        Some(MpiComm {
            world,
            local_rank,
            local_size,
            _universe: universe,
        })
    }

    fn allreduce<T: Equivalence + Copy + Default>(&self, values: &mut [T], op: SystemOperation) {
        if values.is_empty() {
            return;
        }
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, op);
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn local_size(&self) -> usize {
        self.local_size
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn allreduce_sum_f64(&self, values: &mut [f64]) {
        self.allreduce(values, SystemOperation::sum());
    }
    fn allreduce_sum_u64(&self, values: &mut [u64]) {
        self.allreduce(values, SystemOperation::sum());
    }
    fn allreduce_min_u64(&self, values: &mut [u64]) {
        self.allreduce(values, SystemOperation::min());
    }
    fn allreduce_max_u64(&self, values: &mut [u64]) {
        self.allreduce(values, SystemOperation::max());
    }
    fn allreduce_min_f64(&self, values: &mut [f64]) {
        self.allreduce(values, SystemOperation::min());
    }
    fn allreduce_max_f64(&self, values: &mut [f64]) {
        self.allreduce(values, SystemOperation::max());
    }

    fn allgatherv_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        let size = self.size();
        let mut counts = vec![0 as Count; size];
        self.world
            .all_gather_into(&count(local.len()), &mut counts[..]);
        let displs = displacements(&counts);
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut all = heap_bytes(total);
        let mut local_storage = Vec::new();
        let local = heap_slice(local, &mut local_storage);
        {
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(local, &mut partition);
        }
        let mut parts = Vec::with_capacity(size);
        for r in 0..size {
            let start = displs[r] as usize;
            parts.push(all[start..start + counts[r] as usize].to_vec());
        }
        parts
    }

    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) {
        let root_process = self.world.process_at_rank(root as i32);
        let mut len = data.len() as u64;
        root_process.broadcast_into(&mut len);
        data.resize(len as usize, 0);
        if len > 0 {
            root_process.broadcast_into(&mut data[..]);
        }
    }

    fn alltoallv_bytes(&self, send: &[u8], send_counts: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let size = self.size();
        assert_eq!(
            send_counts.len(),
            size,
            "alltoallv needs one count per rank"
        );
        let send_counts: Vec<Count> = send_counts.iter().map(|&c| count(c)).collect();
        let mut recv_counts = vec![0 as Count; size];
        self.world
            .all_to_all_into(&send_counts[..], &mut recv_counts[..]);
        let send_displs = displacements(&send_counts);
        let recv_displs = displacements(&recv_counts);
        let total: usize = recv_counts.iter().map(|&c| c as usize).sum();
        let mut recv = heap_bytes(total);
        let mut send_storage = Vec::new();
        let send = heap_slice(send, &mut send_storage);
        {
            let partition = Partition::new(send, &send_counts[..], &send_displs[..]);
            let mut recv_partition =
                PartitionMut::new(&mut recv[..], &recv_counts[..], &recv_displs[..]);
            self.world
                .all_to_all_varcount_into(&partition, &mut recv_partition);
        }
        (recv, recv_counts.iter().map(|&c| c as usize).collect())
    }

    fn ring_shift_f32(&self, send: &[f32], recv: &mut [f32], overlap: &mut dyn FnMut()) {
        let size = self.size() as i32;
        if size == 1 {
            overlap();
            recv.copy_from_slice(send);
            return;
        }
        count(send.len());
        count(recv.len());
        let rank = self.world.rank();
        let next = self.world.process_at_rank((rank + 1) % size);
        let prev = self.world.process_at_rank((rank + size - 1) % size);
        mpi::request::scope(|scope| {
            let receive = prev.immediate_receive_into(scope, recv);
            let sending = next.immediate_send(scope, send);
            overlap();
            receive.wait();
            sending.wait();
        });
    }

    fn abort(&self, status: i32) -> ! {
        self.world.abort(status)
    }
}

/// `len` zero bytes at a heap address. An empty `Vec<u8>` or `&[u8]` points at address 1, which
/// OpenMPI reads as `MPI_IN_PLACE`; buffers handed to MPI must never be that.
fn heap_bytes(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len.max(1));
    bytes.resize(len, 0);
    bytes
}

/// `bytes`, or an empty slice at a heap address (`storage`) when `bytes` is empty.
fn heap_slice<'a>(bytes: &'a [u8], storage: &'a mut Vec<u8>) -> &'a [u8] {
    if bytes.is_empty() {
        storage.reserve(1);
        &storage[..]
    } else {
        bytes
    }
}

/// MPI_Abort(MPI_COMM_WORLD) when MPI is up; a plain exit otherwise.
pub fn abort_world(status: i32) -> ! {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        // The world handle is valid while MPI is initialised.
        let world = mpi::topology::SimpleCommunicator::world();
        world.abort(status)
    }
    std::process::exit(status)
}
