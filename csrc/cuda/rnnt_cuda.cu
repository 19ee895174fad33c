// CUDA backend: the stages of core/rnnt_kernels.h, calling the same per-cell math (core/rnnt_math.h)
// as the CPU loops. No torch headers here: the binding passes raw pointers and the stream.
//
//  node_scores: one warp per lattice node, lanes stride over V (coalesced), warp-shuffle reductions.
//  lattice:     one block per sample sweeping anti-diagonals (threads over u; the previous diagonal in shared
//               memory when U+1 <= 3072), then the flows.
//  logits_grad: V > kWarpGradMaxV: one block per (time row, sample), threads over V for each node of the row
//               (fp16/bf16 with V even: two adjacent logits per thread and access);
//               small V: one warp per node (lanes over V), as node_scores, so that few lanes idle.
//  TDT (core/tdt_math.h): node scores and gradient one warp per node (lanes over the V1 tokens, then over the
//               D durations); the lattice one block per sample sweeping anti-diagonals in global memory
//               (lattice_sweep_kernel, generic over the lattice policy: a TDT arc reaches back up to
//               max(durations) + 1 diagonals, so the previous diagonal alone does not suffice), then the flows.
//
// Batches of any size: grid.y is at most 65535, so the launchers cover the samples in chunks of at most
// kMaxGridY, each kernel adding the chunk's first sample b0 to blockIdx.y (blockIdx.x for the lattice).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "../core/rnnt_kernels.h"
#include "../core/rnnt_math.h"
#include "../core/tdt_math.h"

namespace swr {
namespace {

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ double load(const double* p) { return *p; }
__device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(double* p, double x) { *p = x; }
__device__ __forceinline__ void store(__half* p, float x) { *p = __float2half(x); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }
// Two adjacent half-precision values in one 4-byte access (rounded as store() rounds each).
__device__ __forceinline__ float2 load2(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ float2 load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
__device__ __forceinline__ void store2(__half* p, float a, float b) {
  *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
}
__device__ __forceinline__ void store2(__nv_bfloat16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}


void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("samplewise_rnnt CUDA ") + what + ": " +
                                                   cudaGetErrorString(err));
}

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int64_t kMaxGridY = 65535;    // the CUDA limit of gridDim.y (and z)
constexpr int64_t kWarpGradMaxV = 256;  // logits_grad: a warp per node up to this V, a block per time row above
// lattice: the shared-memory diagonals up to this size (48 KiB, the limit without an opt-in): max_stride <= 3072
constexpr size_t kMaxDiagSharedBytes = 48 * 1024;

// f(b0, n) for consecutive chunks [b0, b0 + n) of the B samples, n <= kMaxGridY.
template <typename F>
void for_chunks(int64_t B, F f) {
  for (int64_t b0 = 0; b0 < B; b0 += kMaxGridY) f(b0, B - b0 < kMaxGridY ? B - b0 : kMaxGridY);
}

// launch(acc_t(), b0, n) over the chunks, acc_t the lattice's node-array type (double or float).
template <typename F>
void for_chunks_acc(DType acc, int64_t B, F launch) {
  for_chunks(B, [&](int64_t b0, int64_t nb) {
    if (acc == DType::kFloat64)
      launch(double(), b0, nb);
    else
      launch(float(), b0, nb);
  });
}

// The node that warp threadIdx.x / 32 of block (x, y) handles in the warp-per-node grids
// (ceil(max_rows * max_stride / warps), B): node w + x * warps of sample b0 + y. False past the sample's nodes.
struct WarpNode {
  int64_t b, t, u, n;
  int lane;
  SampleView s;
  __device__ __forceinline__ bool padding() const { return t >= s.T || u > s.U; }
};

__device__ __forceinline__ bool warp_node(const Layout& L, int64_t b0, WarpNode& w) {
  w.b = b0 + blockIdx.y;
  w.s = view(L, w.b);
  const int64_t local = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  w.lane = threadIdx.x % kWarp;
  if (local >= L.nrows[w.b] * w.s.stride) return false;
  w.t = local / w.s.stride;
  w.u = local % w.s.stride;
  w.n = w.s.node(w.t, w.u);
  return true;
}

// grid (ceil(max_rows * max_stride / warps), B): warp w of block x handles node w + x * warps of sample y.
template <typename scalar_t>
__global__ void node_scores_kernel(const scalar_t* __restrict__ logits, int64_t V, Layout L, int64_t blank,
                                   typename Acc<scalar_t>::type* lse, typename Acc<scalar_t>::type* lp_blank,
                                   typename Acc<scalar_t>::type* lp_label, int64_t b0) {
  using acc_t = typename Acc<scalar_t>::type;
  WarpNode w;
  if (!warp_node(L, b0, w)) return;
  const int64_t b = w.b, u = w.u, n = w.n;
  const int lane = w.lane;
  const SampleView& s = w.s;
  if (w.padding()) {
    if (lane == 0) store_node_scores<acc_t>(n, false, 0, 0, 0, false, lse, lp_blank, lp_label);
    return;
  }
  const scalar_t* x = logits + n * V;
  acc_t m = neg_inf<acc_t>(), z = 0;
  for (int64_t v = lane; v < V; v += kWarp) lse_add(m, z, static_cast<acc_t>(load(x + v)));
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const acc_t m2 = __shfl_xor_sync(0xffffffffu, m, off);
    const acc_t z2 = __shfl_xor_sync(0xffffffffu, z, off);
    lse_merge(m, z, m2, z2);
  }
  if (lane == 0) {
    const bool has_label = u < s.U;
    const acc_t x_label = has_label ? static_cast<acc_t>(load(x + L.targets[b * L.target_stride + u])) : acc_t(0);
    store_node_scores(n, true, lse_value(m, z), static_cast<acc_t>(load(x + blank)), x_label, has_label, lse,
                      lp_blank, lp_label);
  }
}

// One block per sample: anti-diagonal sweeps, threads over the cells of a diagonal.
// kSharedDiag (when 2 * max_stride doubles fit kMaxDiagSharedBytes): the previous diagonal's alphas (betas)
// are read from shared memory, two buffers of max_stride doubles indexed by u, instead of from global
// memory just written by other threads; the per-cell math is still rnnt_math.h's alpha_cell / beta_cell,
// applied to a 3-node patch (SampleView of stride 2) holding the cell's two neighbours.
template <typename acc_t, bool kSharedDiag>
__global__ void lattice_kernel(Layout L, const acc_t* __restrict__ lp_blank, const acc_t* __restrict__ lp_label,
                               double* alphas, double* betas, acc_t* costs, acc_t* blank_flow, acc_t* label_flow,
                               int64_t b0) {
  extern __shared__ double diag_smem[];  // kSharedDiag: [2, max_stride]
  const int64_t b = b0 + blockIdx.x;
  const SampleView s = view(L, b);
  const int64_t T = s.T, U = s.U;
  double* prev = diag_smem;
  double* cur = diag_smem + L.max_stride;
  for (int64_t d = 0; d < T + U; ++d) {
    const int64_t u_lo = d - (T - 1) > 0 ? d - (T - 1) : 0, u_hi = U < d ? U : d;
    for (int64_t u = u_lo + threadIdx.x; u <= u_hi; u += blockDim.x) {
      const int64_t t = d - u;
      double a = 0.0;
      if (d > 0) {
        if (kSharedDiag) {
          // patch: p.node(t-1, u) = 1 (from blank), p.node(t, u-1) = 2 (from label); both on diagonal d-1
          const SampleView p{-(2 * (t - 1) + (u - 1)), 2, T, U};
          double pa[3] = {0.0, 0.0, 0.0};
          acc_t pb[3] = {acc_t(0), acc_t(0), acc_t(0)}, pl[3] = {acc_t(0), acc_t(0), acc_t(0)};
          if (t > 0) {
            pa[1] = prev[u];
            pb[1] = lp_blank[s.node(t - 1, u)];
          }
          if (u > 0) {
            pa[2] = prev[u - 1];
            pl[2] = lp_label[s.node(t, u - 1)];
          }
          a = alpha_cell(p, t, u, pa, pb, pl);
        } else {
          a = alpha_cell(s, t, u, alphas, lp_blank, lp_label);
        }
      }
      alphas[s.node(t, u)] = a;
      if (kSharedDiag) cur[u] = a;
    }
    __syncthreads();  // diagonal d complete; the next one writes over d-1's buffer, which nobody reads any more
    double* tmp = prev;
    prev = cur;
    cur = tmp;
  }
  for (int64_t d = T + U - 1; d >= 0; --d) {
    const int64_t u_lo = d - (T - 1) > 0 ? d - (T - 1) : 0, u_hi = U < d ? U : d;
    for (int64_t u = u_lo + threadIdx.x; u <= u_hi; u += blockDim.x) {
      const int64_t t = d - u;
      double beta;
      if (kSharedDiag) {
        // patch: p.node(t, u) = 0 (the cell's log-probabilities), p.node(t, u+1) = 1, p.node(t+1, u) = 2
        // (its successors, on diagonal d+1, held in prev)
        const SampleView p{-(2 * t + u), 2, T, U};
        const int64_t n = s.node(t, u);
        double pbeta[3] = {0.0, 0.0, 0.0};
        const acc_t pb[1] = {lp_blank[n]}, pl[1] = {lp_label[n]};
        if (u < U) pbeta[1] = prev[u + 1];
        if (t < T - 1) pbeta[2] = prev[u];
        beta = beta_cell(p, t, u, pbeta, pb, pl);
      } else {
        beta = beta_cell(s, t, u, betas, lp_blank, lp_label);
      }
      betas[s.node(t, u)] = beta;
      if (kSharedDiag) cur[u] = beta;
    }
    __syncthreads();
    double* tmp = prev;
    prev = cur;
    cur = tmp;
  }
  const double cost = -betas[s.node(0, 0)];
  if (threadIdx.x == 0) costs[b] = static_cast<acc_t>(cost);
  if (blank_flow == nullptr) return;
  // the flows of the T x (U+1) nodes, thread i taking nodes i, i + blockDim.x, ... in row-major order; (t, u)
  // advances by (blockDim.x / (U+1), blockDim.x % (U+1)) with a carry: no 64-bit division in the loop
  const int64_t cols = U + 1;
  const int64_t dt = blockDim.x / cols, du = blockDim.x % cols;
  int64_t t = threadIdx.x / cols, u = threadIdx.x % cols;
  for (; t < T; t += dt) {
    const int64_t n = s.node(t, u);
    node_flows(s, t, u, alphas, betas, lp_blank, lp_label, cost, blank_flow + n, label_flow + n);
    u += du;
    if (u >= cols) {
      u -= cols;
      ++t;
    }
  }
}

// grid (max_rows, B): block (t, b) writes the gradient of every node of time row t of sample b.
// kPairs (fp16/bf16, V even, logits and grad 4-byte aligned): each thread reads and writes two adjacent logits.
template <typename scalar_t, bool kPairs>
__global__ void logits_grad_kernel(const scalar_t* logits, scalar_t* grad, int64_t V, Layout L, int64_t blank,
                                   const typename Acc<scalar_t>::type* __restrict__ lse,
                                   const typename Acc<scalar_t>::type* __restrict__ blank_flow,
                                   const typename Acc<scalar_t>::type* __restrict__ label_flow,
                                   typename Acc<scalar_t>::type clamp, typename Acc<scalar_t>::type w,
                                   const float* __restrict__ scale, int64_t b0) {
  using acc_t = typename Acc<scalar_t>::type;
  const int64_t b = b0 + blockIdx.y, t = blockIdx.x;
  if (t >= L.nrows[b]) return;
  const SampleView s = view(L, b);
  const acc_t sc = scale ? static_cast<acc_t>(scale[b]) : acc_t(1);
  for (int64_t u = 0; u < s.stride; ++u) {
    const int64_t n = s.node(t, u);
    scalar_t* g = grad + n * V;
    if (t >= s.T || u > s.U) {
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x) store(g + v, acc_t(0));
      continue;
    }
    const scalar_t* x = logits + n * V;
    const int64_t label = u < s.U ? L.targets[b * L.target_stride + u] : -1;
    const acc_t l = lse[n], bf = blank_flow[n], lf = label_flow[n] * w;
    if constexpr (kPairs) {
      for (int64_t v = 2 * int64_t(threadIdx.x); v < V; v += 2 * int64_t(blockDim.x)) {
        const float2 xv = load2(x + v);
        store2(g + v, logit_grad(xv.x, l, bf, lf, v == blank, v == label, clamp, sc),
               logit_grad(xv.y, l, bf, lf, v + 1 == blank, v + 1 == label, clamp, sc));
      }
    } else {
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
        store(g + v, logit_grad(static_cast<acc_t>(load(x + v)), l, bf, lf, v == blank, v == label, clamp, sc));
    }
  }
}

// Small V: grid (ceil(max_rows * max_stride / warps), B) as node_scores; warp w of block x writes the gradient of
// node w + x * warps of sample y, lanes over V (the same per-logit math as logits_grad_kernel).
template <typename scalar_t>
__global__ void logits_grad_warp_kernel(const scalar_t* logits, scalar_t* grad, int64_t V, Layout L, int64_t blank,
                                        const typename Acc<scalar_t>::type* __restrict__ lse,
                                        const typename Acc<scalar_t>::type* __restrict__ blank_flow,
                                        const typename Acc<scalar_t>::type* __restrict__ label_flow,
                                        typename Acc<scalar_t>::type clamp, typename Acc<scalar_t>::type w,
                                        const float* __restrict__ scale, int64_t b0) {
  using acc_t = typename Acc<scalar_t>::type;
  WarpNode node;
  if (!warp_node(L, b0, node)) return;
  const int64_t b = node.b, u = node.u, n = node.n;
  const int lane = node.lane;
  const SampleView& s = node.s;
  scalar_t* g = grad + n * V;
  if (node.padding()) {
    for (int64_t v = lane; v < V; v += kWarp) store(g + v, acc_t(0));
    return;
  }
  const scalar_t* x = logits + n * V;
  const acc_t sc = scale ? static_cast<acc_t>(scale[b]) : acc_t(1);
  const int64_t label = u < s.U ? L.targets[b * L.target_stride + u] : -1;
  const acc_t l = lse[n], bf = blank_flow[n], lf = label_flow[n] * w;
  for (int64_t v = lane; v < V; v += kWarp)
    store(g + v, logit_grad(static_cast<acc_t>(load(x + v)), l, bf, lf, v == blank, v == label, clamp, sc));
}

// ---- TDT ----

// grid (ceil(max_rows * max_stride / warps), B) as node_scores_kernel; rows of W = V1 + D logits.
template <typename scalar_t>
__global__ void tdt_node_scores_kernel(const scalar_t* __restrict__ logits, int64_t V1, Layout L, int64_t blank,
                                       int64_t D, typename Acc<scalar_t>::type sigma,
                                       typename Acc<scalar_t>::type* lse, typename Acc<scalar_t>::type* lp_blank,
                                       typename Acc<scalar_t>::type* lp_label, typename Acc<scalar_t>::type* lp_dur,
                                       int64_t b0) {
  using acc_t = typename Acc<scalar_t>::type;
  WarpNode w;
  if (!warp_node(L, b0, w)) return;
  const int64_t b = w.b, u = w.u, n = w.n;
  const int lane = w.lane;
  const SampleView& s = w.s;
  if (w.padding()) {
    if (lane == 0) store_node_scores<acc_t>(n, false, 0, 0, 0, false, lse, lp_blank, lp_label);
    for (int64_t i = lane; i < D; i += kWarp) store_duration_scores<acc_t>(n, false, i, 0, 0, D, lp_dur);
    return;
  }
  const scalar_t* x = logits + n * (V1 + D);
  acc_t m = neg_inf<acc_t>(), z = 0, md = neg_inf<acc_t>(), zd = 0;
  for (int64_t v = lane; v < V1; v += kWarp) lse_add(m, z, static_cast<acc_t>(load(x + v)));
  for (int64_t i = lane; i < D; i += kWarp) lse_add(md, zd, static_cast<acc_t>(load(x + V1 + i)));
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const acc_t m2 = __shfl_xor_sync(0xffffffffu, m, off), z2 = __shfl_xor_sync(0xffffffffu, z, off);
    lse_merge(m, z, m2, z2);
    const acc_t md2 = __shfl_xor_sync(0xffffffffu, md, off), zd2 = __shfl_xor_sync(0xffffffffu, zd, off);
    lse_merge(md, zd, md2, zd2);
  }
  const acc_t ld = lse_value(md, zd);
  for (int64_t i = lane; i < D; i += kWarp)
    store_duration_scores(n, true, i, static_cast<acc_t>(load(x + V1 + i)), ld, D, lp_dur);
  if (lane == 0) {
    const bool has_label = u < s.U;
    const acc_t x_label = has_label ? static_cast<acc_t>(load(x + L.targets[b * L.target_stride + u])) : acc_t(0);
    store_node_scores(n, true, lse_value(m, z), static_cast<acc_t>(load(x + blank)) - sigma, x_label - sigma,
                      has_label, lse, lp_blank, lp_label);
  }
}

// One block per sample: the alphas, then the betas, by anti-diagonals (threads over the cells of a diagonal;
// every predecessor of a cell lies on an earlier diagonal, read from global memory after __syncthreads), then
// the cost and, when lat.want_flows(), the flows. The cells' math is the policy Lat's (core/*_math.h).
template <typename Lat, typename acc_t>
__global__ void lattice_sweep_kernel(Layout L, Lat lat, double* alphas, double* betas, acc_t* costs, int64_t b0) {
  const int64_t b = b0 + blockIdx.x;
  const SampleView s = view(L, b);
  const int64_t T = s.T, U = s.U;
  for (int64_t d = 0; d < T + U; ++d) {
    const int64_t u_lo = d - (T - 1) > 0 ? d - (T - 1) : 0, u_hi = U < d ? U : d;
    for (int64_t u = u_lo + threadIdx.x; u <= u_hi; u += blockDim.x)
      alphas[s.node(d - u, u)] = d == 0 ? 0.0 : lat.alpha(s, d - u, u, alphas);
    __syncthreads();
  }
  for (int64_t d = T + U - 1; d >= 0; --d) {
    const int64_t u_lo = d - (T - 1) > 0 ? d - (T - 1) : 0, u_hi = U < d ? U : d;
    for (int64_t u = u_lo + threadIdx.x; u <= u_hi; u += blockDim.x) betas[s.node(d - u, u)] = lat.beta(s, d - u, u, betas);
    __syncthreads();
  }
  const double cost = -betas[s.node(0, 0)];
  if (threadIdx.x == 0) costs[b] = static_cast<acc_t>(cost);
  if (!lat.want_flows()) return;
  const int64_t cols = U + 1;
  for (int64_t i = threadIdx.x; i < T * cols; i += blockDim.x) lat.flows(s, i / cols, i % cols, alphas, betas, cost);
}

// grid as tdt_node_scores_kernel: warp w of block x writes the gradient of node w + x * warps of sample y, lanes
// over the D durations, then over the V1 tokens (grad may alias logits: each element is read, then written, by
// one lane).
template <typename scalar_t>
__global__ void tdt_logits_grad_kernel(const scalar_t* logits, scalar_t* grad, int64_t V1, Layout L, int64_t blank,
                                       int64_t D, const typename Acc<scalar_t>::type* __restrict__ lse,
                                       const typename Acc<scalar_t>::type* __restrict__ lp_dur,
                                       const typename Acc<scalar_t>::type* __restrict__ blank_flow,
                                       const typename Acc<scalar_t>::type* __restrict__ label_flow,
                                       const typename Acc<scalar_t>::type* __restrict__ dur_flow,
                                       typename Acc<scalar_t>::type clamp, typename Acc<scalar_t>::type w,
                                       const float* __restrict__ scale, int64_t b0) {
  using acc_t = typename Acc<scalar_t>::type;
  WarpNode node;
  if (!warp_node(L, b0, node)) return;
  const int64_t b = node.b, u = node.u, n = node.n, W = V1 + D;
  const int lane = node.lane;
  const SampleView& s = node.s;
  scalar_t* g = grad + n * W;
  if (node.padding()) {
    for (int64_t v = lane; v < W; v += kWarp) store(g + v, acc_t(0));
    return;
  }
  const scalar_t* x = logits + n * W;
  const acc_t sc = scale ? static_cast<acc_t>(scale[b]) : acc_t(1);
  acc_t out = 0;
  for (int64_t i = 0; i < D; ++i) out += dur_flow[n * D + i];
  for (int64_t i = lane; i < D; i += kWarp)
    store(g + V1 + i, duration_grad(lp_dur[n * D + i], out, dur_flow[n * D + i], sc));
  const int64_t label = u < s.U ? L.targets[b * L.target_stride + u] : -1;
  const acc_t l = lse[n], bf = blank_flow[n], lf = label_flow[n] * w;
  for (int64_t v = lane; v < V1; v += kWarp)
    store(g + v, logit_grad(static_cast<acc_t>(load(x + v)), l, bf, lf, v == blank, v == label, clamp, sc));
}

template <typename F>
void dispatch(DType dt, F f) {
  switch (dt) {
    case DType::kFloat32: f(float()); break;
    case DType::kFloat64: f(double()); break;
    case DType::kFloat16: f(__half()); break;
    case DType::kBFloat16: f(__nv_bfloat16()); break;
    default: throw std::runtime_error("samplewise_rnnt: unsupported dtype");
  }
}

}  // namespace

void node_scores_cuda(DType dt, const void* logits, int64_t V, const Layout& L, int64_t blank, void* lse,
                      void* lp_blank, void* lp_label, void* stream) {
  if (L.B == 0 || L.max_rows == 0) return;
  dispatch(dt, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename Acc<scalar_t>::type;
    const int64_t nodes = L.max_rows * L.max_stride;
    for_chunks(L.B, [&](int64_t b0, int64_t nb) {
      dim3 grid(static_cast<unsigned>((nodes + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(nb));
      node_scores_kernel<scalar_t><<<grid, kWarp * kWarpsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<const scalar_t*>(logits), V, L, blank, static_cast<acc_t*>(lse), static_cast<acc_t*>(lp_blank),
          static_cast<acc_t*>(lp_label), b0);
    });
  });
  check(cudaGetLastError(), "node_scores");
}

void lattice_cuda(DType acc, const Layout& L, const void* lp_blank, const void* lp_label, void* alphas, void* betas,
                  void* costs, void* blank_flow, void* label_flow, void* stream) {
  if (L.B == 0) return;
  const int threads = L.max_stride >= 256 ? 256 : (L.max_stride >= 64 ? 128 : 32);
  auto st = static_cast<cudaStream_t>(stream);
  const size_t smem = 2 * static_cast<size_t>(L.max_stride) * sizeof(double);
  const bool shared_diag = smem <= kMaxDiagSharedBytes;
  auto launch = [&](auto tag, int64_t b0, int64_t nb) {
    using acc_t = decltype(tag);
    auto* lpb = static_cast<const acc_t*>(lp_blank);
    auto* lpl = static_cast<const acc_t*>(lp_label);
    auto *a = static_cast<double*>(alphas), *be = static_cast<double*>(betas);
    auto *c = static_cast<acc_t*>(costs), *bf = static_cast<acc_t*>(blank_flow), *lf = static_cast<acc_t*>(label_flow);
    if (shared_diag)
      lattice_kernel<acc_t, true><<<static_cast<unsigned>(nb), threads, smem, st>>>(L, lpb, lpl, a, be, c, bf, lf, b0);
    else
      lattice_kernel<acc_t, false><<<static_cast<unsigned>(nb), threads, 0, st>>>(L, lpb, lpl, a, be, c, bf, lf, b0);
  };
  // grid.x may reach 2^31 - 1; chunks anyway, as the other stages (one launch for any B below 65536)
  for_chunks_acc(acc, L.B, launch);
  check(cudaGetLastError(), "lattice");
}

void logits_grad_cuda(DType dt, const void* logits, void* grad, int64_t V, const Layout& L, int64_t blank,
                      const void* lse, const void* blank_flow, const void* label_flow, double clamp,
                      double fastemit_lambda, const float* scale, void* stream) {
  if (L.B == 0 || L.max_rows == 0) return;
  dispatch(dt, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename Acc<scalar_t>::type;
    auto st = static_cast<cudaStream_t>(stream);
    const auto* x = static_cast<const scalar_t*>(logits);
    auto* g = static_cast<scalar_t*>(grad);
    const auto *l = static_cast<const acc_t*>(lse), *bf = static_cast<const acc_t*>(blank_flow),
               *lf = static_cast<const acc_t*>(label_flow);
    const acc_t c = static_cast<acc_t>(clamp), w = static_cast<acc_t>(1.0 + fastemit_lambda);
    for_chunks(L.B, [&](int64_t b0, int64_t nb) {
      if (V <= kWarpGradMaxV) {
        const int64_t nodes = L.max_rows * L.max_stride;
        dim3 grid(static_cast<unsigned>((nodes + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(nb));
        logits_grad_warp_kernel<scalar_t><<<grid, kWarp * kWarpsPerBlock, 0, st>>>(x, g, V, L, blank, l, bf, lf, c,
                                                                                   w, scale, b0);
      } else {
        const int threads = V >= 512 ? 256 : 128;
        dim3 grid(static_cast<unsigned>(L.max_rows), static_cast<unsigned>(nb));
        constexpr bool half_precision = std::is_same_v<scalar_t, __half> || std::is_same_v<scalar_t, __nv_bfloat16>;
        if constexpr (half_precision) {
          const bool pairs = V % 2 == 0 && reinterpret_cast<std::uintptr_t>(x) % 4 == 0 &&
                             reinterpret_cast<std::uintptr_t>(g) % 4 == 0;
          if (pairs) {
            logits_grad_kernel<scalar_t, true><<<grid, threads, 0, st>>>(x, g, V, L, blank, l, bf, lf, c, w, scale, b0);
            return;
          }
        }
        logits_grad_kernel<scalar_t, false><<<grid, threads, 0, st>>>(x, g, V, L, blank, l, bf, lf, c, w, scale, b0);
      }
    });
  });
  check(cudaGetLastError(), "logits_grad");
}

void tdt_node_scores_cuda(DType dt, const void* logits, int64_t V1, const Layout& L, int64_t blank,
                          const Durations& dur, double sigma, void* lse, void* lp_blank, void* lp_label,
                          void* lp_dur, void* stream) {
  if (L.B == 0 || L.max_rows == 0) return;
  dispatch(dt, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename Acc<scalar_t>::type;
    const int64_t nodes = L.max_rows * L.max_stride;
    for_chunks(L.B, [&](int64_t b0, int64_t nb) {
      dim3 grid(static_cast<unsigned>((nodes + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(nb));
      tdt_node_scores_kernel<scalar_t><<<grid, kWarp * kWarpsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<const scalar_t*>(logits), V1, L, blank, dur.D, static_cast<acc_t>(sigma),
          static_cast<acc_t*>(lse), static_cast<acc_t*>(lp_blank), static_cast<acc_t*>(lp_label),
          static_cast<acc_t*>(lp_dur), b0);
    });
  });
  check(cudaGetLastError(), "tdt_node_scores");
}

void tdt_lattice_cuda(DType acc, const Layout& L, const Durations& dur, const void* lp_blank, const void* lp_label,
                      const void* lp_dur, void* alphas, void* betas, void* costs, void* blank_flow, void* label_flow,
                      void* dur_flow, void* stream) {
  if (L.B == 0) return;
  const int threads = L.max_stride >= 256 ? 256 : (L.max_stride >= 64 ? 128 : 32);
  auto st = static_cast<cudaStream_t>(stream);
  auto launch = [&](auto tag, int64_t b0, int64_t nb) {
    using acc_t = decltype(tag);
    const TdtLattice<double, acc_t> lat{static_cast<const acc_t*>(lp_blank), static_cast<const acc_t*>(lp_label),
                                        static_cast<const acc_t*>(lp_dur),   dur,
                                        static_cast<acc_t*>(blank_flow),     static_cast<acc_t*>(label_flow),
                                        static_cast<acc_t*>(dur_flow)};
    lattice_sweep_kernel<<<static_cast<unsigned>(nb), threads, 0, st>>>(
        L, lat, static_cast<double*>(alphas), static_cast<double*>(betas), static_cast<acc_t*>(costs), b0);
  };
  for_chunks_acc(acc, L.B, launch);
  check(cudaGetLastError(), "tdt_lattice");
}

void tdt_logits_grad_cuda(DType dt, const void* logits, void* grad, int64_t V1, const Layout& L, int64_t blank,
                          int64_t D, const void* lse, const void* lp_dur, const void* blank_flow,
                          const void* label_flow, const void* dur_flow, double clamp, double fastemit_lambda,
                          const float* scale, void* stream) {
  if (L.B == 0 || L.max_rows == 0) return;
  dispatch(dt, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename Acc<scalar_t>::type;
    const int64_t nodes = L.max_rows * L.max_stride;
    for_chunks(L.B, [&](int64_t b0, int64_t nb) {
      dim3 grid(static_cast<unsigned>((nodes + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(nb));
      tdt_logits_grad_kernel<scalar_t><<<grid, kWarp * kWarpsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<const scalar_t*>(logits), static_cast<scalar_t*>(grad), V1, L, blank, D,
          static_cast<const acc_t*>(lse), static_cast<const acc_t*>(lp_dur), static_cast<const acc_t*>(blank_flow),
          static_cast<const acc_t*>(label_flow), static_cast<const acc_t*>(dur_flow), static_cast<acc_t>(clamp),
          static_cast<acc_t>(1.0 + fastemit_lambda), scale, b0);
    });
  });
  check(cudaGetLastError(), "tdt_logits_grad");
}

}  // namespace swr
