// Per-cell math of the transducer loss, written once for the CPU loops and the CUDA kernels.
//
// Nothing here depends on torch. A sample b is a block of nodes (t, u), t < T_b, u <= U_b, stored
// at node index offset_b + t * stride_b + u. Node arrays (log-sum-exp, per-node log-probabilities,
// alphas, betas, flows) use the same indexing as the rows of the [N, V] logits.
//
//   alpha(0, 0) = 0
//   alpha(t, u) = log_add(alpha(t-1, u) + lp_blank(t-1, u), alpha(t, u-1) + lp_label(t, u-1))
//   beta(T-1, U) = lp_blank(T-1, U)
//   beta(t, u)  = log_add(beta(t+1, u) + lp_blank(t, u), beta(t, u+1) + lp_label(t, u))
//   cost = -beta(0, 0)       (= -(alpha(T-1, U) + lp_blank(T-1, U)))
//   blank_flow(t, u) = exp(alpha(t, u) + lp_blank(t, u) + beta(t+1, u) + cost)   (t < T-1)
//   blank_flow(T-1, U) = exp(alpha(T-1, U) + lp_blank(T-1, U) + cost)
//   label_flow(t, u) = exp(alpha(t, u) + lp_label(t, u) + beta(t, u+1) + cost)   (u < U)
//   d cost / d logit(t, u, v) = softmax(v) * (blank_flow + w * label_flow)
//                               - [v == blank] blank_flow - [v == y_u] w label_flow,
//   with w = 1 + fastemit_lambda, then clipped to [-clamp, clamp] when clamp > 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "rnnt_kernels.h"

namespace swr {

template <typename acc_t>
SWR_HD acc_t neg_inf() {
  return -std::numeric_limits<acc_t>::infinity();
}

SWR_HD float fexp(float x) { return expf(x); }
SWR_HD double fexp(double x) { return ::exp(x); }
SWR_HD float flog1p(float x) { return log1pf(x); }
SWR_HD double flog1p(double x) { return ::log1p(x); }
SWR_HD float flog(float x) { return logf(x); }
SWR_HD double flog(double x) { return ::log(x); }

// Running log-sum-exp state (max m, sum s of exp(x - m)): add one value, or merge two states.
template <typename acc_t>
SWR_HD void lse_add(acc_t& m, acc_t& s, acc_t x) {
  if (x == neg_inf<acc_t>()) return;
  if (x > m) {
    s = s * fexp(m - x) + acc_t(1);
    m = x;
  } else {
    s += fexp(x - m);
  }
}
template <typename acc_t>
SWR_HD void lse_merge(acc_t& m, acc_t& s, acc_t m2, acc_t s2) {
  if (m2 == neg_inf<acc_t>()) return;
  if (m == neg_inf<acc_t>()) {
    m = m2;
    s = s2;
  } else if (m2 > m) {
    s = s * fexp(m - m2) + s2;
    m = m2;
  } else {
    s += s2 * fexp(m2 - m);
  }
}
template <typename acc_t>
SWR_HD acc_t lse_value(acc_t m, acc_t s) {
  return m == neg_inf<acc_t>() ? m : m + flog(s);
}

// log(exp(a) + exp(b)), exact for -inf operands.
template <typename acc_t>
SWR_HD acc_t log_add(acc_t a, acc_t b) {
  if (a == neg_inf<acc_t>()) return b;
  if (b == neg_inf<acc_t>()) return a;
  const acc_t m = a > b ? a : b;
  const acc_t d = a > b ? b - a : a - b;
  return m + flog1p(fexp(d));
}

// Where each node and its neighbours live.
struct SampleView {
  int64_t offset;  // node index of (0, 0)
  int64_t stride;  // nodes per time row
  int64_t T;       // frames
  int64_t U;       // labels (the lattice has U + 1 columns)
  SWR_HD int64_t node(int64_t t, int64_t u) const { return offset + t * stride + u; }
};

// Stage 1's result for node n: the log-sum-exp l over V and the log-probabilities of blank and of the
// next label (x_blank, x_label: their logits; has_label false in the last column); padding nodes
// (valid false) get l = 0 and -inf log-probabilities.
template <typename acc_t>
SWR_HD void store_node_scores(int64_t n, bool valid, acc_t l, acc_t x_blank, acc_t x_label, bool has_label, acc_t* lse,
                              acc_t* lp_blank, acc_t* lp_label) {
  lse[n] = valid ? l : acc_t(0);
  lp_blank[n] = valid ? x_blank - l : neg_inf<acc_t>();
  lp_label[n] = valid && has_label ? x_label - l : neg_inf<acc_t>();
}

// The recursions run in lat_t (double: alphas and betas are sums of hundreds of log-probabilities,
// and the flows exponentiate their differences, so fp32 would cost ~1e-5 relative accuracy) on
// per-node log-probabilities of type lp_t (float, or double for float64 logits).

// Sample b of a layout.
SWR_HD SampleView view(const Layout& L, int64_t b) { return SampleView{L.offsets[b], L.strides[b], L.T[b], L.U[b]}; }

// The accumulation type of a logits type: double for double, float for float, half and bfloat16.
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

// alpha(t, u) from its two predecessors (t, u) != (0, 0).
template <typename lat_t, typename lp_t>
SWR_HD lat_t alpha_cell(const SampleView& s, int64_t t, int64_t u, const lat_t* alphas, const lp_t* lp_blank,
                        const lp_t* lp_label) {
  lat_t from_blank = neg_inf<lat_t>(), from_label = neg_inf<lat_t>();
  if (t > 0) {
    const int64_t n = s.node(t - 1, u);
    from_blank = alphas[n] + lat_t(lp_blank[n]);
  }
  if (u > 0) {
    const int64_t n = s.node(t, u - 1);
    from_label = alphas[n] + lat_t(lp_label[n]);
  }
  return log_add(from_blank, from_label);
}

// beta(t, u) from its two successors; beta(T-1, U) = lp_blank(T-1, U).
template <typename lat_t, typename lp_t>
SWR_HD lat_t beta_cell(const SampleView& s, int64_t t, int64_t u, const lat_t* betas, const lp_t* lp_blank,
                       const lp_t* lp_label) {
  const int64_t n = s.node(t, u);
  if (t == s.T - 1 && u == s.U) return lat_t(lp_blank[n]);
  lat_t via_blank = neg_inf<lat_t>(), via_label = neg_inf<lat_t>();
  if (t < s.T - 1) via_blank = betas[s.node(t + 1, u)] + lat_t(lp_blank[n]);
  if (u < s.U) via_label = betas[s.node(t, u + 1)] + lat_t(lp_label[n]);
  return log_add(via_blank, via_label);
}

// Posterior probabilities of the blank and the label transition leaving (t, u); cost = -log P.
template <typename lat_t, typename lp_t>
SWR_HD void node_flows(const SampleView& s, int64_t t, int64_t u, const lat_t* alphas, const lat_t* betas,
                       const lp_t* lp_blank, const lp_t* lp_label, lat_t cost, lp_t* blank_flow, lp_t* label_flow) {
  const int64_t n = s.node(t, u);
  const lat_t a = alphas[n] + cost;
  lat_t bf = 0, lf = 0;
  if (t < s.T - 1) {
    bf = fexp(a + lat_t(lp_blank[n]) + betas[s.node(t + 1, u)]);
  } else if (u == s.U) {
    bf = fexp(a + lat_t(lp_blank[n]));
  }
  if (u < s.U) lf = fexp(a + lat_t(lp_label[n]) + betas[s.node(t, u + 1)]);
  *blank_flow = lp_t(bf);
  *label_flow = lp_t(lf);
}

// The RNN-T lattice as a policy for the backends' lattice drivers (tdt_math.h's TdtLattice is the other):
// alpha(), beta() and flows() of one cell, so that a driver's sweep is written once for both lattices.
template <typename lat_t, typename lp_t>
struct RnntLattice {
  const lp_t* lp_blank;
  const lp_t* lp_label;
  lp_t* blank_flow;  // nullptr: no flows
  lp_t* label_flow;

  SWR_HD bool want_flows() const { return blank_flow != nullptr; }
  SWR_HD lat_t alpha(const SampleView& s, int64_t t, int64_t u, const lat_t* alphas) const {
    return alpha_cell(s, t, u, alphas, lp_blank, lp_label);
  }
  SWR_HD lat_t beta(const SampleView& s, int64_t t, int64_t u, const lat_t* betas) const {
    return beta_cell(s, t, u, betas, lp_blank, lp_label);
  }
  SWR_HD void flows(const SampleView& s, int64_t t, int64_t u, const lat_t* alphas, const lat_t* betas,
                    lat_t cost) const {
    const int64_t n = s.node(t, u);
    node_flows(s, t, u, alphas, betas, lp_blank, lp_label, cost, blank_flow + n, label_flow + n);
  }
};

// Gradient of the cost with respect to one logit from the logit's softmax probability p = exp(x - lse) and
// the node's flows (label_flow already multiplied by 1 + fastemit_lambda), clamped and scaled. The CPU's
// vectorised row loops compute p themselves and call this; everything else calls logit_grad below.
template <typename acc_t>
SWR_HD acc_t logit_grad_of_prob(acc_t p, acc_t blank_flow, acc_t label_flow_w, bool is_blank, bool is_label,
                                acc_t clamp, acc_t scale) {
  acc_t g = p * (blank_flow + label_flow_w);
  if (is_blank) g -= blank_flow;
  if (is_label) g -= label_flow_w;
  if (clamp > 0) g = g < -clamp ? -clamp : (g > clamp ? clamp : g);
  return g * scale;
}

// The same from the logit x and the node's log-sum-exp.
template <typename acc_t>
SWR_HD acc_t logit_grad(acc_t x, acc_t lse, acc_t blank_flow, acc_t label_flow_w, bool is_blank, bool is_label,
                        acc_t clamp, acc_t scale) {
  return logit_grad_of_prob(fexp(x - lse), blank_flow, label_flow_w, is_blank, is_label, clamp, scale);
}

}  // namespace swr
