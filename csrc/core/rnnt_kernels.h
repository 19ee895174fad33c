// The backend interface: the same four stages on the CPU (cpu/rnnt_cpu.cpp) and on CUDA
// (cuda/rnnt_cuda.cu). Plain pointers only, so that neither backend includes torch's headers
// beyond the light c10 scalar types; the pybind11 binding (binding.cpp) checks and dispatches.
//
// Arrays of nodes (lse, lp_blank, lp_label, alphas, betas, blank_flow, label_flow) hold acc_t:
// double for float64 logits, float otherwise. Every pointer in a Layout and every array lives on
// the device of the logits.
#pragma once

#include <cstdint>

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

#ifdef SWR_WITH_CUDA
void node_scores_cuda(DType dt, const void* logits, int64_t V, const Layout& L, int64_t blank, void* lse,
                      void* lp_blank, void* lp_label, void* stream);
void lattice_cuda(DType acc, const Layout& L, const void* lp_blank, const void* lp_label, void* alphas,
                  void* betas, void* costs, void* blank_flow, void* label_flow, void* stream);
void logits_grad_cuda(DType dt, const void* logits, void* grad, int64_t V, const Layout& L, int64_t blank,
                      const void* lse, const void* blank_flow, const void* label_flow, double clamp,
                      double fastemit_lambda, const float* scale, void* stream);
#endif

}  // namespace swr
