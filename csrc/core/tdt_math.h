// Per-cell math of the TDT (Token-and-Duration Transducer) loss, written once for the CPU loops and the
// CUDA kernels, on top of rnnt_math.h (lse_add, log_add, SampleView, logit_grad).
//
// Logits rows are [V1 + D] (NeMo's layout): V1 token classes (blank included), then D duration logits,
// one per entry of the duration set durations[0..D). Per node (t, u) of sample b:
//
//   lse           = logsumexp(x[0..V1))                           (tokens)
//   lp_blank      = x[blank] - lse - sigma                         (sigma: logit under-normalisation)
//   lp_label      = x[y_u] - lse - sigma                           (u < U; -inf in the last column)
//   lp_dur[i]     = x[V1 + i] - logsumexp(x[V1..V1+D))             (duration log-softmax)
//
// Arcs (arc i carries duration d_i = durations[i]):
//   blank of duration d_i > 0:   (t, u) -> (t + d_i, u)
//   label y_u of duration d_i:   (t, u) -> (t + d_i, u + 1)        (d_i = 0 allowed)
// with score lp_blank(t, u) + lp_dur(t, u, i) resp. lp_label(t, u) + lp_dur(t, u, i). Arcs must land on a
// node (t + d_i < T), except the final blank arcs (T - d_i, U) -> end for d_i > 0 (exactly NeMo's lattice):
//
//   alpha(0, 0) = 0
//   alpha(t, u) = logsumexp_i [ alpha(t - d_i, u) + blank score at (t - d_i, u)       (d_i > 0)
//                               alpha(t - d_i, u - 1) + label score at (t - d_i, u - 1) ]
//   beta(t, u)  = logsumexp_i [ beta(t + d_i, u) + blank score          (d_i > 0, t + d_i < T)
//                               blank score                              (d_i > 0, t + d_i = T, u = U)
//                               beta(t + d_i, u + 1) + label score ]     (u < U, t + d_i < T)
//   cost = -beta(0, 0)
//
// Every predecessor of (t, u) lies on an earlier anti-diagonal (t' + u' < t + u) and in an earlier row or
// earlier in the same row, so the RNN-T sweeps (rows, or anti-diagonals) serve TDT unchanged.
//
// Flows (posterior probabilities) of the arcs leaving (t, u): flow_blank_i, flow_label_i (alpha + arc score +
// beta of the arc's end + cost, exponentiated). Per node we keep
//   blank_flow = sum_i flow_blank_i,  label_flow = sum_i flow_label_i,  dur_flow[i] = flow_blank_i + flow_label_i
// and the gradient of the cost is
//   d cost / d x[v]        = rnnt_math.h's logit_grad(x[v], lse, blank_flow, (1 + lambda) label_flow)  (v < V1)
//   d cost / d x[V1 + i]   = exp(lp_dur[i]) * sum_j dur_flow[j] - dur_flow[i]
// (sigma is a constant offset of lp_blank and lp_label and does not change their derivatives). As in NeMo's
// numba loss, clamping clips the token part only, and FastEmit (lambda) acts on the token part only.
//
// RNN-T mode (NeMo's omega: the standard RNN-T loss on the token logits): the same lattice code with a fixed
// arc set, label arcs of duration 0 and blank arcs of duration 1, and no duration scores; its dur_flow is 0,
// hence the duration logits get a zero gradient. (Sigma is 0 in this mode: the caller's stage 1 passes 0.)
// The duration set and the mode travel in rnnt_kernels.h's Durations (by value: no device memory).
#pragma once

#include <cstdint>

#include "rnnt_math.h"

namespace swr {

// Stage 1's duration part for node n: lp_dur[n, i] = x_dur[i] - logsumexp(x_dur) (-inf on padding nodes).
template <typename acc_t>
SWR_HD void store_duration_scores(int64_t n, bool valid, int64_t i, acc_t x_dur_i, acc_t lse_dur, int64_t D,
                                  acc_t* lp_dur) {
  lp_dur[n * D + i] = valid ? x_dur_i - lse_dur : neg_inf<acc_t>();
}

// The TDT lattice as a policy for the backends' lattice drivers (rnnt_math.h's RnntLattice is the other):
// alpha(), beta() and flows() of one cell, given the sample's alphas / betas.
template <typename lat_t, typename lp_t>
struct TdtLattice {
  const lp_t* lp_blank;
  const lp_t* lp_label;
  const lp_t* lp_dur;  // [N, D]
  Durations dur;
  lp_t* blank_flow;    // [N] or nullptr (no flows)
  lp_t* label_flow;    // [N]
  lp_t* dur_flow;      // [N, D]

  SWR_HD bool want_flows() const { return blank_flow != nullptr; }

  // alpha(t, u), (t, u) != (0, 0)
  SWR_HD lat_t alpha(const SampleView& s, int64_t t, int64_t u, const lat_t* alphas) const {
    lat_t m = neg_inf<lat_t>(), z = 0;
    for (int64_t i = 0; i < dur.arcs(); ++i) {
      const int64_t d = dur.dur(i);
      if (t < d) continue;
      if (dur.blank_arc(i)) {
        const int64_t p = s.node(t - d, u);
        lse_add(m, z, alphas[p] + lat_t(lp_blank[p]) + lat_t(dur.score(lp_dur, p, i)));
      }
      if (u > 0 && dur.label_arc(i)) {
        const int64_t p = s.node(t - d, u - 1);
        lse_add(m, z, alphas[p] + lat_t(lp_label[p]) + lat_t(dur.score(lp_dur, p, i)));
      }
    }
    return lse_value(m, z);
  }

  // the score of arc i's blank / label leaving n, plus the beta of its end (0 for the final blank arcs,
  // -inf where the arc does not exist)
  SWR_HD lat_t blank_term(const SampleView& s, int64_t t, int64_t u, int64_t i, const lat_t* betas) const {
    const int64_t d = dur.dur(i);
    if (!dur.blank_arc(i)) return neg_inf<lat_t>();
    const int64_t n = s.node(t, u);
    const lat_t arc = lat_t(lp_blank[n]) + lat_t(dur.score(lp_dur, n, i));
    if (t + d < s.T) return betas[s.node(t + d, u)] + arc;
    if (t + d == s.T && u == s.U) return arc;
    return neg_inf<lat_t>();
  }
  SWR_HD lat_t label_term(const SampleView& s, int64_t t, int64_t u, int64_t i, const lat_t* betas) const {
    const int64_t d = dur.dur(i);
    if (u >= s.U || t + d >= s.T || !dur.label_arc(i)) return neg_inf<lat_t>();
    const int64_t n = s.node(t, u);
    return betas[s.node(t + d, u + 1)] + lat_t(lp_label[n]) + lat_t(dur.score(lp_dur, n, i));
  }

  SWR_HD lat_t beta(const SampleView& s, int64_t t, int64_t u, const lat_t* betas) const {
    lat_t m = neg_inf<lat_t>(), z = 0;
    for (int64_t i = 0; i < dur.arcs(); ++i) {
      lse_add(m, z, blank_term(s, t, u, i, betas));
      lse_add(m, z, label_term(s, t, u, i, betas));
    }
    return lse_value(m, z);
  }

  // blank_flow, label_flow and dur_flow of node (t, u); cost = -log P
  SWR_HD void flows(const SampleView& s, int64_t t, int64_t u, const lat_t* alphas, const lat_t* betas,
                    lat_t cost) const {
    const int64_t n = s.node(t, u);
    const lat_t a = alphas[n] + cost;
    lat_t bf = 0, lf = 0;
    for (int64_t i = 0; i < dur.arcs(); ++i) {
      const lat_t fb = fexp(a + blank_term(s, t, u, i, betas));
      const lat_t fl = fexp(a + label_term(s, t, u, i, betas));
      bf += fb;
      lf += fl;
      if (!dur.rnnt) dur_flow[n * dur.D + i] = lp_t(fb + fl);
    }
    if (dur.rnnt)
      for (int64_t i = 0; i < dur.D; ++i) dur_flow[n * dur.D + i] = lp_t(0);
    blank_flow[n] = lp_t(bf);
    label_flow[n] = lp_t(lf);
  }
};

// d cost / d x[V1 + i] from the node's duration log-probability lp_dur_i, the sum of its duration flows
// (the node's total outflow) and dur_flow_i; times the sample's scale (no clamping: NeMo clamps tokens only).
template <typename acc_t>
SWR_HD acc_t duration_grad(acc_t lp_dur_i, acc_t out_flow, acc_t dur_flow_i, acc_t scale) {
  return (fexp(lp_dur_i) * out_flow - dur_flow_i) * scale;
}

}  // namespace swr
