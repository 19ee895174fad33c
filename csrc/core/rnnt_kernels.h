// The backend interface: the same stages on the CPU (cpu/rnnt_cpu.cpp) and on CUDA (cuda/rnnt_cuda.cu),
// for the RNN-T lattice (core/rnnt_math.h) and the TDT lattice (core/tdt_math.h). Plain pointers only, so
// that neither backend includes torch's headers beyond the light c10 scalar types; the pybind11 binding
// (binding.cpp) checks and dispatches.
//
// Arrays of nodes (lse, lp_blank, lp_label, alphas, betas, blank_flow, label_flow; TDT's lp_dur and dur_flow,
// [N, D]) hold acc_t: double for float64 logits, float otherwise. Every pointer in a Layout and every array
// lives on the device of the logits.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SWR_HD __host__ __device__ __forceinline__
#else
#define SWR_HD inline
#endif

namespace swr {

enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

struct Layout {
  int64_t B;               // samples
  const int64_t* offsets;  // [B] node index of (0, 0)
  const int64_t* strides;  // [B] nodes per time row (U_b + 1 packed, U_max + 1 padded)
  const int64_t* nrows;    // [B] time rows stored (T_b packed, T_max padded); nodes outside
                           //     t < T_b, u <= U_b are padding: scores -inf, gradient 0
  const int64_t* T;        // [B] frames
  const int64_t* U;        // [B] labels
  const int64_t* targets;  // [B, target_stride] labels
  int64_t target_stride;
  int64_t max_rows;        // max_b nrows[b] (grid size on CUDA)
  int64_t max_stride;      // max_b strides[b]
};

constexpr int kMaxDurations = 64;

// The TDT duration set (core/tdt_math.h), passed by value to every kernel: no device memory, no transfer.
struct Durations {
  int64_t d[kMaxDurations];  // the durations, ascending (d[0] = 0, d[1] = 1: the Python layer checks)
  int64_t D;                 // entries of d (= duration logits per node)
  bool rnnt;                 // RNN-T mode: arcs (label, 0) and (blank, 1) only, no duration scores

  // arcs i in [0, arcs()) with duration dur(i), and which transitions arc i carries
  SWR_HD int64_t arcs() const { return rnnt ? 2 : D; }
  SWR_HD int64_t dur(int64_t i) const { return rnnt ? i : d[i]; }
  SWR_HD bool label_arc(int64_t i) const { return rnnt ? i == 0 : true; }
  SWR_HD bool blank_arc(int64_t i) const { return rnnt ? i == 1 : d[i] > 0; }
  // the duration score of arc i at node n (lp_dur is [N, D]); 0 in RNN-T mode
  template <typename lp_t>
  SWR_HD lp_t score(const lp_t* lp_dur, int64_t n, int64_t i) const {
    return rnnt ? lp_t(0) : lp_dur[n * D + i];
  }
};

// Stage 1: per node, the log-sum-exp over V and the log-probabilities of blank and of the next label.
void node_scores_cpu(DType dt, const void* logits, int64_t V, const Layout& L, int64_t blank, void* lse,
                     void* lp_blank, void* lp_label);
// Stage 2: alphas, betas and costs; with flows != nullptr also the blank and label flows.
void lattice_cpu(DType acc, const Layout& L, const void* lp_blank, const void* lp_label, void* alphas,
                 void* betas, void* costs, void* blank_flow, void* label_flow);
// Stage 3: the gradient with respect to the logits (grad may alias logits), clamped, times scale[b].
void logits_grad_cpu(DType dt, const void* logits, void* grad, int64_t V, const Layout& L, int64_t blank,
                     const void* lse, const void* blank_flow, const void* label_flow, double clamp,
                     double fastemit_lambda, const float* scale);

// TDT (core/tdt_math.h): logits rows [V1 + D] (tokens, then durations); node arrays as above plus
// lp_dur and dur_flow [N, D] (acc_t). Stage 1: lse over the tokens, lp_blank and lp_label minus sigma,
// the duration log-softmax lp_dur.
void tdt_node_scores_cpu(DType dt, const void* logits, int64_t V1, const Layout& L, int64_t blank,
                         const Durations& dur, double sigma, void* lse, void* lp_blank, void* lp_label, void* lp_dur);
// Stage 2: costs; with blank_flow != nullptr also the blank, label and per-duration flows.
void tdt_lattice_cpu(DType acc, const Layout& L, const Durations& dur, const void* lp_blank, const void* lp_label,
                     const void* lp_dur, void* alphas, void* betas, void* costs, void* blank_flow, void* label_flow,
                     void* dur_flow);
// Stage 3: the gradient with respect to the [N, V1 + D] logits (grad may alias logits); tokens clamped.
void tdt_logits_grad_cpu(DType dt, const void* logits, void* grad, int64_t V1, const Layout& L, int64_t blank,
                         int64_t D, const void* lse, const void* lp_dur, const void* blank_flow,
                         const void* label_flow, const void* dur_flow, double clamp, double fastemit_lambda,
                         const float* scale);

// The fused output layer's activation for a tile (CPU, float32; CUDA uses torch's tanh): h[b, t, u, :] =
// tanh(f[b, t, :] + g[b, u, :]) for b < nb, t < nt, u < nu, with rows of J contiguous in f, g and h, sample b's
// f rows from f + b * f_bstride and its g rows from g + b * g_bstride, h contiguous [nb, nt, nu, J].
void joint_tanh_cpu(const float* f, int64_t f_bstride, const float* g, int64_t g_bstride, float* h, int64_t nb,
                    int64_t nt, int64_t nu, int64_t J);

#ifdef SWR_WITH_CUDA
void tdt_node_scores_cuda(DType dt, const void* logits, int64_t V1, const Layout& L, int64_t blank,
                          const Durations& dur, double sigma, void* lse, void* lp_blank, void* lp_label,
                          void* lp_dur, void* stream);
void tdt_lattice_cuda(DType acc, const Layout& L, const Durations& dur, const void* lp_blank, const void* lp_label,
                      const void* lp_dur, void* alphas, void* betas, void* costs, void* blank_flow, void* label_flow,
                      void* dur_flow, void* stream);
void tdt_logits_grad_cuda(DType dt, const void* logits, void* grad, int64_t V1, const Layout& L, int64_t blank,
                          int64_t D, const void* lse, const void* lp_dur, const void* blank_flow,
                          const void* label_flow, const void* dur_flow, double clamp, double fastemit_lambda,
                          const float* scale, void* stream);
void node_scores_cuda(DType dt, const void* logits, int64_t V, const Layout& L, int64_t blank, void* lse,
                      void* lp_blank, void* lp_label, void* stream);
void lattice_cuda(DType acc, const Layout& L, const void* lp_blank, const void* lp_label, void* alphas,
                  void* betas, void* costs, void* blank_flow, void* label_flow, void* stream);
void logits_grad_cuda(DType dt, const void* logits, void* grad, int64_t V, const Layout& L, int64_t blank,
                      const void* lse, const void* blank_flow, const void* label_flow, double clamp,
                      double fastemit_lambda, const float* scale, void* stream);
#endif

}  // namespace swr
