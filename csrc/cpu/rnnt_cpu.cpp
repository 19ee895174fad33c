// CPU backend: the stages of core/rnnt_kernels.h as loops over the per-cell math of core/rnnt_math.h and
// core/tdt_math.h (one lattice driver, lattice_run, for both lattices).
// Parallel over (sample, time row) for the V-wide stages and over samples for the lattice; a lattice
// much larger than the others is swept by anti-diagonals with the cells of each diagonal in parallel.
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <vector>

#include "../core/rnnt_kernels.h"
#include "../core/rnnt_math.h"
#include "../core/tdt_math.h"
#include "rows.h"

namespace swr {
namespace {


// Calls f(b, t) for every stored time row of every sample, in parallel.
template <typename F>
void for_each_row(const Layout& L, F f) {
  const int64_t rows = L.B * L.max_rows;
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / L.max_rows, t = r % L.max_rows;
      if (t < L.nrows[b]) f(b, t);
    }
  });
}

// The log-sum-exp of a row of V logits: rows.h's vectorised loop for float, a scalar loop otherwise.
template <typename scalar_t>
typename Acc<scalar_t>::type row_lse(const scalar_t* x, int64_t V) {
  using acc_t = typename Acc<scalar_t>::type;
  acc_t m = neg_inf<acc_t>(), z = 0;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, static_cast<acc_t>(x[v]));
  if (m == neg_inf<acc_t>()) return m;
  for (int64_t v = 0; v < V; ++v) z += fexp(static_cast<acc_t>(x[v]) - m);
  return lse_value(m, z);
}
template <>
float row_lse<float>(const float* x, int64_t V) {
  return rows::row_lse(x, V);
}

template <typename scalar_t>
void node_scores_impl(const scalar_t* logits, int64_t V, const Layout& L, int64_t blank,
                      typename Acc<scalar_t>::type* lse, typename Acc<scalar_t>::type* lp_blank,
                      typename Acc<scalar_t>::type* lp_label) {
  using acc_t = typename Acc<scalar_t>::type;
  for_each_row(L, [&](int64_t b, int64_t t) {
    const SampleView s = view(L, b);
    for (int64_t u = 0; u < s.stride; ++u) {
      const int64_t n = s.node(t, u);
      if (t >= s.T || u > s.U) {
        store_node_scores<acc_t>(n, false, 0, 0, 0, false, lse, lp_blank, lp_label);
        continue;
      }
      const scalar_t* x = logits + n * V;
      const bool has_label = u < s.U;
      const acc_t x_label = has_label ? static_cast<acc_t>(x[L.targets[b * L.target_stride + u]]) : acc_t(0);
      store_node_scores(n, true, row_lse(x, V), static_cast<acc_t>(x[blank]), x_label, has_label, lse, lp_blank,
                        lp_label);
    }
  });
}

// One sample's lattice (the cells' math: the policy Lat, core/rnnt_math.h's RnntLattice or core/tdt_math.h's
// TdtLattice). Sequential sweeps over rows by default; by anti-diagonals with at::parallel_for over each
// diagonal's cells when `wavefront` (only worth it for a long diagonal and idle threads). Both orders suit
// both lattices: every predecessor of (t, u) lies in an earlier row or earlier in its row, and on an earlier
// anti-diagonal.
template <typename Lat>
double lattice_one(const SampleView& s, const Lat& lat, double* alphas, double* betas, bool wavefront) {
  const int64_t T = s.T, U = s.U;
  if (!wavefront) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t u = 0; u <= U; ++u)
        alphas[s.node(t, u)] = (t == 0 && u == 0) ? 0.0 : lat.alpha(s, t, u, alphas);
    for (int64_t t = T - 1; t >= 0; --t)
      for (int64_t u = U; u >= 0; --u) betas[s.node(t, u)] = lat.beta(s, t, u, betas);
  } else {
    for (int64_t d = 0; d < T + U; ++d) {  // diagonal d holds t + u = d
      const int64_t u_lo = std::max<int64_t>(0, d - (T - 1)), u_hi = std::min<int64_t>(U, d);
      at::parallel_for(u_lo, u_hi + 1, 64, [&](int64_t b0, int64_t b1) {
        for (int64_t u = b0; u < b1; ++u) alphas[s.node(d - u, u)] = d == 0 ? 0.0 : lat.alpha(s, d - u, u, alphas);
      });
    }
    for (int64_t d = T + U - 1; d >= 0; --d) {
      const int64_t u_lo = std::max<int64_t>(0, d - (T - 1)), u_hi = std::min<int64_t>(U, d);
      at::parallel_for(u_lo, u_hi + 1, 64, [&](int64_t b0, int64_t b1) {
        for (int64_t u = b0; u < b1; ++u) betas[s.node(d - u, u)] = lat.beta(s, d - u, u, betas);
      });
    }
  }
  return -betas[s.node(0, 0)];
}

// Every sample's lattice, costs and (when lat.want_flows()) flows.
template <typename Lat, typename acc_t>
void lattice_run(const Layout& L, const Lat& lat, double* alphas, double* betas, acc_t* costs) {
  // Samples in parallel; a sample whose diagonals are long while there are fewer samples than
  // threads is swept by anti-diagonals instead, each diagonal split over the threads.
  const int64_t threads = at::get_num_threads();
  std::vector<int64_t> big, small;
  for (int64_t b = 0; b < L.B; ++b) {
    const int64_t diag = std::min(L.T[b], L.U[b] + 1);
    (L.B < threads && diag >= 512 ? big : small).push_back(b);
  }
  auto finish = [&](int64_t b, bool wavefront) {
    const SampleView s = view(L, b);
    const double cost = lattice_one(s, lat, alphas, betas, wavefront);
    costs[b] = static_cast<acc_t>(cost);
    if (!lat.want_flows()) return;
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t u = 0; u <= s.U; ++u) lat.flows(s, t, u, alphas, betas, cost);
  };
  at::parallel_for(0, static_cast<int64_t>(small.size()), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i) finish(small[i], false);
  });
  for (int64_t b : big) finish(b, true);
}

template <typename acc_t>
void lattice_impl(const Layout& L, const acc_t* lp_blank, const acc_t* lp_label, double* alphas, double* betas,
                  acc_t* costs, acc_t* blank_flow, acc_t* label_flow) {
  lattice_run(L, RnntLattice<double, acc_t>{lp_blank, lp_label, blank_flow, label_flow}, alphas, betas, costs);
}

// ---- TDT (core/tdt_math.h): rows of W = V1 + D logits, tokens then durations ----

template <typename scalar_t>
void tdt_node_scores_impl(const scalar_t* logits, int64_t V1, const Layout& L, int64_t blank, const Durations& dur,
                          double sigma, typename Acc<scalar_t>::type* lse, typename Acc<scalar_t>::type* lp_blank,
                          typename Acc<scalar_t>::type* lp_label, typename Acc<scalar_t>::type* lp_dur) {
  using acc_t = typename Acc<scalar_t>::type;
  const int64_t D = dur.D, W = V1 + D;
  const acc_t sg = static_cast<acc_t>(sigma);
  for_each_row(L, [&](int64_t b, int64_t t) {
    const SampleView s = view(L, b);
    for (int64_t u = 0; u < s.stride; ++u) {
      const int64_t n = s.node(t, u);
      if (t >= s.T || u > s.U) {
        store_node_scores<acc_t>(n, false, 0, 0, 0, false, lse, lp_blank, lp_label);
        for (int64_t i = 0; i < D; ++i) store_duration_scores<acc_t>(n, false, i, 0, 0, D, lp_dur);
        continue;
      }
      const scalar_t* x = logits + n * W;
      const acc_t l = row_lse(x, V1);
      const bool has_label = u < s.U;
      const acc_t x_label = has_label ? static_cast<acc_t>(x[L.targets[b * L.target_stride + u]]) : acc_t(0);
      // sigma folded into the normaliser: lp = x - (lse + sigma); lse itself stays the softmax's normaliser
      store_node_scores(n, true, l, static_cast<acc_t>(x[blank]) - sg, x_label - sg, has_label, lse, lp_blank,
                        lp_label);
      acc_t md = neg_inf<acc_t>(), zd = 0;
      for (int64_t i = 0; i < D; ++i) lse_add(md, zd, static_cast<acc_t>(x[V1 + i]));
      const acc_t ld = lse_value(md, zd);
      for (int64_t i = 0; i < D; ++i) store_duration_scores(n, true, i, static_cast<acc_t>(x[V1 + i]), ld, D, lp_dur);
    }
  });
}

// One node's token gradient: rows.h's vectorised loop for float, a scalar loop over logit_grad otherwise.
template <typename scalar_t, typename acc_t>
void row_grad(const scalar_t* x, scalar_t* g, int64_t V, int64_t blank, int64_t label, acc_t lse, acc_t bf, acc_t lf,
              acc_t clamp, acc_t sc) {
  for (int64_t v = 0; v < V; ++v)
    g[v] = static_cast<scalar_t>(logit_grad(static_cast<acc_t>(x[v]), lse, bf, lf, v == blank, v == label, clamp, sc));
}
template <>
void row_grad<float, float>(const float* x, float* g, int64_t V, int64_t blank, int64_t label, float lse, float bf,
                            float lf, float clamp, float sc) {
  rows::row_grad(x, g, V, blank, label, lse, bf, lf, clamp, sc);
}

template <typename scalar_t>
void tdt_logits_grad_impl(const scalar_t* logits, scalar_t* grad, int64_t V1, const Layout& L, int64_t blank,
                          int64_t D, const typename Acc<scalar_t>::type* lse,
                          const typename Acc<scalar_t>::type* lp_dur, const typename Acc<scalar_t>::type* blank_flow,
                          const typename Acc<scalar_t>::type* label_flow, const typename Acc<scalar_t>::type* dur_flow,
                          double clamp, double fastemit_lambda, const float* scale) {
  using acc_t = typename Acc<scalar_t>::type;
  const acc_t w = acc_t(1) + static_cast<acc_t>(fastemit_lambda);
  const int64_t W = V1 + D;
  for_each_row(L, [&](int64_t b, int64_t t) {
    const SampleView s = view(L, b);
    const acc_t sc = scale ? static_cast<acc_t>(scale[b]) : acc_t(1);
    for (int64_t u = 0; u < s.stride; ++u) {
      const int64_t n = s.node(t, u);
      scalar_t* g = grad + n * W;
      if (t >= s.T || u > s.U) {
        std::fill(g, g + W, scalar_t(0));
        continue;
      }
      const scalar_t* x = logits + n * W;
      const int64_t label = u < s.U ? L.targets[b * L.target_stride + u] : -1;
      const acc_t l = lse[n], bf = blank_flow[n], lf = label_flow[n] * w;
      acc_t out = 0;
      for (int64_t i = 0; i < D; ++i) out += dur_flow[n * D + i];
      // the duration part first: in place, the token part below overwrites only x[0..V1)
      for (int64_t i = 0; i < D; ++i)
        g[V1 + i] = static_cast<scalar_t>(duration_grad(lp_dur[n * D + i], out, dur_flow[n * D + i], sc));
      row_grad(x, g, V1, blank, label, l, bf, lf, static_cast<acc_t>(clamp), sc);
    }
  });
}

// RNN-T's stage 3 is TDT's token part: rows of V logits and no duration logits (D = 0).
template <typename scalar_t>
void logits_grad_impl(const scalar_t* logits, scalar_t* grad, int64_t V, const Layout& L, int64_t blank,
                      const typename Acc<scalar_t>::type* lse, const typename Acc<scalar_t>::type* blank_flow,
                      const typename Acc<scalar_t>::type* label_flow, double clamp, double fastemit_lambda,
                      const float* scale) {
  tdt_logits_grad_impl<scalar_t>(logits, grad, V, L, blank, 0, lse, nullptr, blank_flow, label_flow, nullptr, clamp,
                                 fastemit_lambda, scale);
}

}  // namespace

#define SWR_DISPATCH(dt, ...)                                 \
  switch (dt) {                                               \
    case DType::kFloat32: {                                   \
      using scalar_t = float;                                 \
      __VA_ARGS__;                                            \
      break;                                                  \
    }                                                         \
    case DType::kFloat64: {                                   \
      using scalar_t = double;                                \
      __VA_ARGS__;                                            \
      break;                                                  \
    }                                                         \
    case DType::kFloat16: {                                   \
      using scalar_t = c10::Half;                             \
      __VA_ARGS__;                                            \
      break;                                                  \
    }                                                         \
    case DType::kBFloat16: {                                  \
      using scalar_t = c10::BFloat16;                         \
      __VA_ARGS__;                                            \
      break;                                                  \
    }                                                         \
    default:                                                  \
      TORCH_CHECK(false, "samplewise_rnnt: unsupported dtype"); \
  }

void node_scores_cpu(DType dt, const void* logits, int64_t V, const Layout& L, int64_t blank, void* lse,
                     void* lp_blank, void* lp_label) {
  SWR_DISPATCH(dt, {
    using acc_t = typename Acc<scalar_t>::type;
    node_scores_impl(static_cast<const scalar_t*>(logits), V, L, blank, static_cast<acc_t*>(lse),
                     static_cast<acc_t*>(lp_blank), static_cast<acc_t*>(lp_label));
  })
}

void lattice_cpu(DType acc, const Layout& L, const void* lp_blank, const void* lp_label, void* alphas, void* betas,
                 void* costs, void* blank_flow, void* label_flow) {
  if (acc == DType::kFloat64) {
    lattice_impl(L, static_cast<const double*>(lp_blank), static_cast<const double*>(lp_label),
                 static_cast<double*>(alphas), static_cast<double*>(betas), static_cast<double*>(costs),
                 static_cast<double*>(blank_flow), static_cast<double*>(label_flow));
  } else {
    lattice_impl(L, static_cast<const float*>(lp_blank), static_cast<const float*>(lp_label),
                 static_cast<double*>(alphas), static_cast<double*>(betas), static_cast<float*>(costs),
                 static_cast<float*>(blank_flow), static_cast<float*>(label_flow));
  }
}

void logits_grad_cpu(DType dt, const void* logits, void* grad, int64_t V, const Layout& L, int64_t blank,
                     const void* lse, const void* blank_flow, const void* label_flow, double clamp,
                     double fastemit_lambda, const float* scale) {
  SWR_DISPATCH(dt, {
    using acc_t = typename Acc<scalar_t>::type;
    logits_grad_impl(static_cast<const scalar_t*>(logits), static_cast<scalar_t*>(grad), V, L, blank,
                     static_cast<const acc_t*>(lse), static_cast<const acc_t*>(blank_flow),
                     static_cast<const acc_t*>(label_flow), clamp, fastemit_lambda, scale);
  })
}

void tdt_node_scores_cpu(DType dt, const void* logits, int64_t V1, const Layout& L, int64_t blank,
                         const Durations& dur, double sigma, void* lse, void* lp_blank, void* lp_label, void* lp_dur) {
  SWR_DISPATCH(dt, {
    using acc_t = typename Acc<scalar_t>::type;
    tdt_node_scores_impl(static_cast<const scalar_t*>(logits), V1, L, blank, dur, sigma, static_cast<acc_t*>(lse),
                         static_cast<acc_t*>(lp_blank), static_cast<acc_t*>(lp_label), static_cast<acc_t*>(lp_dur));
  })
}

void tdt_lattice_cpu(DType acc, const Layout& L, const Durations& dur, const void* lp_blank, const void* lp_label,
                     const void* lp_dur, void* alphas, void* betas, void* costs, void* blank_flow, void* label_flow,
                     void* dur_flow) {
  auto run = [&](auto tag) {
    using acc_t = decltype(tag);
    const TdtLattice<double, acc_t> lat{static_cast<const acc_t*>(lp_blank), static_cast<const acc_t*>(lp_label),
                                        static_cast<const acc_t*>(lp_dur),   dur,
                                        static_cast<acc_t*>(blank_flow),     static_cast<acc_t*>(label_flow),
                                        static_cast<acc_t*>(dur_flow)};
    lattice_run(L, lat, static_cast<double*>(alphas), static_cast<double*>(betas), static_cast<acc_t*>(costs));
  };
  if (acc == DType::kFloat64)
    run(double());
  else
    run(float());
}

void tdt_logits_grad_cpu(DType dt, const void* logits, void* grad, int64_t V1, const Layout& L, int64_t blank,
                         int64_t D, const void* lse, const void* lp_dur, const void* blank_flow,
                         const void* label_flow, const void* dur_flow, double clamp, double fastemit_lambda,
                         const float* scale) {
  SWR_DISPATCH(dt, {
    using acc_t = typename Acc<scalar_t>::type;
    tdt_logits_grad_impl(static_cast<const scalar_t*>(logits), static_cast<scalar_t*>(grad), V1, L, blank, D,
                         static_cast<const acc_t*>(lse), static_cast<const acc_t*>(lp_dur),
                         static_cast<const acc_t*>(blank_flow), static_cast<const acc_t*>(label_flow),
                         static_cast<const acc_t*>(dur_flow), clamp, fastemit_lambda, scale);
  })
}

void joint_tanh_cpu(const float* f, int64_t f_bstride, const float* g, int64_t g_bstride, float* h, int64_t nb,
                    int64_t nt, int64_t nu, int64_t J) {
  at::parallel_for(0, nb * nt, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / nt, t = r % nt;
      rows::tanh_of_sums(f + b * f_bstride + t * J, g + b * g_bstride, h + r * nu * J, nu, J);
    }
  });
}

}  // namespace swr
