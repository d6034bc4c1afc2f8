// CPU emulation of the topk_tile kernel (kernels.rs) against a sort-based reference: each thread block
// runs as 128 std::threads with barriers for __syncthreads and the warp shuffles. Checks the kernel
// logic (ties to the smaller row, self exclusion, merging the previous tile's list, every metric)
// without a GPU. Run: crates/embsolve-cuda/tools/emulate_topk.sh (a few minutes on 2 cores).
#include <barrier>
#include <thread>
#include <vector>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cmath>
#include <tuple>
struct Dim3 { unsigned x, y, z; };
static thread_local Dim3 threadIdx, blockIdx;
static Dim3 blockDim;
static std::barrier<>* block_barrier;
static std::barrier<>* warp_barriers[4];
static float warp_buf_f[4][32]; static unsigned warp_buf_u[4][32]; static int warp_buf_i[4][32];
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
template <typename T> T* buf(int w);
template <> float* buf<float>(int w) { return warp_buf_f[w]; }
template <> unsigned* buf<unsigned>(int w) { return warp_buf_u[w]; }
template <> int* buf<int>(int w) { return warp_buf_i[w]; }
template <typename T> T __shfl_down_sync(unsigned, T v, int off) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  buf<T>(w)[lane] = v; warp_barriers[w]->arrive_and_wait();
  T r = lane + off < 32 ? buf<T>(w)[lane + off] : v; warp_barriers[w]->arrive_and_wait();
  return r;
}
#include "topk.cu.inc"
void launch(int grid, const float* dots, int nq, int nc, int ld, int metric, const float* qs, const float* cs,
            long long diag, unsigned base, int keep, float* keys, unsigned* rows) {
  blockDim = {128, 1, 1};
  for (int b = 0; b < grid; ++b) {
    std::barrier<> bb(128); block_barrier = &bb;
    std::vector<std::barrier<>*> wb; for (int w = 0; w < 4; ++w) warp_barriers[w] = new std::barrier<>(32);
    std::vector<std::thread> ts;
    for (int t = 0; t < 128; ++t) ts.emplace_back([=] { threadIdx = {unsigned(t), 0, 0}; blockIdx = {unsigned(b), 0, 0};
      topk_tile(dots, nq, nc, ld, metric, qs, cs, diag, base, keep, keys, rows); });
    for (auto& t : ts) t.join();
    for (int w = 0; w < 4; ++w) delete warp_barriers[w];
  }
}
int main() {
  srand(5); int failures = 0;
  for (int metric = 0; metric < 3; ++metric) for (int keep : {1, 7, 24, 64}) {
    int nq = 9, ntotal = 700, tile = 300; long long diag_base = 250; // query q is column q+250
    std::vector<float> dots(nq * ntotal), qs(nq), cs(ntotal);
    for (auto& d : dots) d = float(rand() % 7 - 3);
    for (auto& s : qs) s = float(rand() % 3 + 1); for (auto& s : cs) s = float(rand() % 3 + 1);
    std::vector<float> keys(nq * keep, __int_as_float(0x7f800000)); std::vector<unsigned> rows(nq * keep, 0xffffffffu);
    for (int c0 = 0; c0 < ntotal; c0 += tile) {
      int n = std::min(tile, ntotal - c0);
      std::vector<float> t(nq * n); for (int q = 0; q < nq; ++q) for (int j = 0; j < n; ++j) t[q * n + j] = dots[q * ntotal + c0 + j];
      launch(nq, t.data(), nq, n, n, metric, qs.data(), cs.data() + c0, diag_base - c0, c0, keep, keys.data(), rows.data());
    }
    for (int q = 0; q < nq; ++q) {
      std::vector<std::pair<float, unsigned>> all;
      for (int j = 0; j < ntotal; ++j) { if (j == q + diag_base) continue; float d = dots[q * ntotal + j];
        float key = metric == 1 ? -(d * qs[q]) * cs[j] : metric == 2 ? (qs[q] + cs[j]) - 2.0f * d : -d; all.push_back({key, unsigned(j)}); }
      std::sort(all.begin(), all.end());
      for (int s = 0; s < keep; ++s) if (all[s].first != keys[q * keep + s] || all[s].second != rows[q * keep + s]) {
        if (failures++ < 5) printf("metric %d keep %d q %d slot %d: want (%g,%u) got (%g,%u)\n", metric, keep, q, s, all[s].first, all[s].second, keys[q*keep+s], rows[q*keep+s]); }
    }
  }
  printf("%s (%d mismatches)\n", failures ? "FAIL" : "kernel emulation matches the reference", failures);
  return failures != 0;
}
