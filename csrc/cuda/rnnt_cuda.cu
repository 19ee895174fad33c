// CUDA backend: the stages of core/rnnt_kernels.h, calling the same per-cell math (core/rnnt_math.h)
// as the CPU loops. No torch headers here: the binding passes raw pointers and the stream.
//
//  node_scores: one warp per lattice node, lanes stride over V (coalesced), warp-shuffle reductions.
//  lattice:     one block per sample sweeping anti-diagonals (threads over u), then the flows.
//  logits_grad: one block per (time row, sample), threads over V for each node of the row.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "../core/rnnt_kernels.h"
#include "../core/rnnt_math.h"

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


void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("samplewise_rnnt CUDA ") + what + ": " +
                                                   cudaGetErrorString(err));
}

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

// grid (ceil(max_rows * max_stride / warps), B): warp w of block x handles node w + x * warps of sample y.
template <typename scalar_t>
__global__ void node_scores_kernel(const scalar_t* __restrict__ logits, int64_t V, Layout L, int64_t blank,
                                   typename Acc<scalar_t>::type* lse, typename Acc<scalar_t>::type* lp_blank,
                                   typename Acc<scalar_t>::type* lp_label) {
  using acc_t = typename Acc<scalar_t>::type;
  const int64_t b = blockIdx.y;
  const SampleView s = view(L, b);
  const int64_t local = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (local >= L.nrows[b] * s.stride) return;
  const int64_t t = local / s.stride, u = local % s.stride;
  const int64_t n = s.node(t, u);
  if (t >= s.T || u > s.U) {
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
template <typename acc_t>
__global__ void lattice_kernel(Layout L, const acc_t* __restrict__ lp_blank, const acc_t* __restrict__ lp_label,
                               double* alphas, double* betas, acc_t* costs, acc_t* blank_flow, acc_t* label_flow) {
  const int64_t b = blockIdx.x;
  const SampleView s = view(L, b);
  const int64_t T = s.T, U = s.U;
  for (int64_t d = 0; d < T + U; ++d) {
    const int64_t u_lo = d - (T - 1) > 0 ? d - (T - 1) : 0, u_hi = U < d ? U : d;
    for (int64_t u = u_lo + threadIdx.x; u <= u_hi; u += blockDim.x)
      alphas[s.node(d - u, u)] = d == 0 ? 0.0 : alpha_cell(s, d - u, u, alphas, lp_blank, lp_label);
    __syncthreads();
  }
  for (int64_t d = T + U - 1; d >= 0; --d) {
    const int64_t u_lo = d - (T - 1) > 0 ? d - (T - 1) : 0, u_hi = U < d ? U : d;
    for (int64_t u = u_lo + threadIdx.x; u <= u_hi; u += blockDim.x)
      betas[s.node(d - u, u)] = beta_cell(s, d - u, u, betas, lp_blank, lp_label);
    __syncthreads();
  }
  const double cost = -betas[s.node(0, 0)];
  if (threadIdx.x == 0) costs[b] = static_cast<acc_t>(cost);
  if (blank_flow == nullptr) return;
  for (int64_t i = threadIdx.x; i < T * (U + 1); i += blockDim.x) {
    const int64_t t = i / (U + 1), u = i % (U + 1);
    const int64_t n = s.node(t, u);
    node_flows(s, t, u, alphas, betas, lp_blank, lp_label, cost, blank_flow + n, label_flow + n);
  }
}

// grid (max_rows, B): block (t, b) writes the gradient of every node of time row t of sample b.
template <typename scalar_t>
__global__ void logits_grad_kernel(const scalar_t* logits, scalar_t* grad, int64_t V, Layout L, int64_t blank,
                                   const typename Acc<scalar_t>::type* __restrict__ lse,
                                   const typename Acc<scalar_t>::type* __restrict__ blank_flow,
                                   const typename Acc<scalar_t>::type* __restrict__ label_flow,
                                   typename Acc<scalar_t>::type clamp, typename Acc<scalar_t>::type w,
                                   const float* __restrict__ scale) {
  using acc_t = typename Acc<scalar_t>::type;
  const int64_t b = blockIdx.y, t = blockIdx.x;
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
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
      store(g + v, logit_grad(static_cast<acc_t>(load(x + v)), l, bf, lf, v == blank, v == label, clamp, sc));
  }
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
    dim3 grid(static_cast<unsigned>((nodes + kWarpsPerBlock - 1) / kWarpsPerBlock), static_cast<unsigned>(L.B));
    node_scores_kernel<scalar_t><<<grid, kWarp * kWarpsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(logits), V, L, blank, static_cast<acc_t*>(lse), static_cast<acc_t*>(lp_blank),
        static_cast<acc_t*>(lp_label));
  });
  check(cudaGetLastError(), "node_scores");
}

void lattice_cuda(DType acc, const Layout& L, const void* lp_blank, const void* lp_label, void* alphas, void* betas,
                  void* costs, void* blank_flow, void* label_flow, void* stream) {
  if (L.B == 0) return;
  const int threads = L.max_stride >= 256 ? 256 : (L.max_stride >= 64 ? 128 : 32);
  auto st = static_cast<cudaStream_t>(stream);
  if (acc == DType::kFloat64) {
    lattice_kernel<double><<<static_cast<unsigned>(L.B), threads, 0, st>>>(
        L, static_cast<const double*>(lp_blank), static_cast<const double*>(lp_label), static_cast<double*>(alphas),
        static_cast<double*>(betas), static_cast<double*>(costs), static_cast<double*>(blank_flow),
        static_cast<double*>(label_flow));
  } else {
    lattice_kernel<float><<<static_cast<unsigned>(L.B), threads, 0, st>>>(
        L, static_cast<const float*>(lp_blank), static_cast<const float*>(lp_label), static_cast<double*>(alphas),
        static_cast<double*>(betas), static_cast<float*>(costs), static_cast<float*>(blank_flow),
        static_cast<float*>(label_flow));
  }
  check(cudaGetLastError(), "lattice");
}

void logits_grad_cuda(DType dt, const void* logits, void* grad, int64_t V, const Layout& L, int64_t blank,
                      const void* lse, const void* blank_flow, const void* label_flow, double clamp,
                      double fastemit_lambda, const float* scale, void* stream) {
  if (L.B == 0 || L.max_rows == 0) return;
  dispatch(dt, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename Acc<scalar_t>::type;
    const int threads = V >= 512 ? 256 : 128;
    dim3 grid(static_cast<unsigned>(L.max_rows), static_cast<unsigned>(L.B));
    logits_grad_kernel<scalar_t><<<grid, threads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(logits), static_cast<scalar_t*>(grad), V, L, blank,
        static_cast<const acc_t*>(lse), static_cast<const acc_t*>(blank_flow), static_cast<const acc_t*>(label_flow),
        static_cast<acc_t>(clamp), static_cast<acc_t>(1.0 + fastemit_lambda), scale);
  });
  check(cudaGetLastError(), "logits_grad");
}

}  // namespace swr
