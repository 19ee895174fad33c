// The CPU's float row loops over V: a branch-free exp and lane-wise accumulators, so that GCC vectorises them
// (AVX-512, AVX2 or SSE2, chosen at load time by target_clones), in a fixed summation order that does not depend
// on the instruction set or on the row's alignment. The per-logit formula is core/rnnt_math.h's
// logit_grad_of_prob, as on CUDA; only the exp differs (CUDA: expf).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "../core/rnnt_math.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SWR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SWR_CLONES
#endif

namespace swr {
namespace rows {

constexpr int kLanes = 16;

// exp(x) to about 1 ulp (Cody-Waite reduction to r in [-ln2/2, ln2/2] and Cephes' degree-6 polynomial for
// exp(r), times 2^n built in the exponent bits; n = 128 as 2 * 2^127); 0 below -87.3 (where expf's result is
// subnormal), +inf above log(FLT_MAX), NaN for NaN. Branch-free: the selects vectorise.
inline float vexp(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.75f ? 88.75f : x);
  const float t = xc * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const float n127 = n > 127.0f ? 127.0f : n;
  const int32_t e = (static_cast<int32_t>(x == x ? n127 : 0.0f) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, sizeof(scale));
  const float out = x < -87.3f ? 0.0f : (n > 127.0f ? 2.0f * y : y) * scale;
  return x == x ? out : x;
}

// tanh(x) to about 2 ulp, branch-free (Cephes' tanhf: an odd polynomial for |x| < 0.625, else
// 1 - 2 / (exp(2|x|) + 1) with the sign of x); NaN for NaN.
inline float vtanh(float x) {
  const float a = x < 0 ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = 1.0f - 2.0f / (vexp(2.0f * (a < 44.0f ? a : 44.0f)) + 1.0f);
  const float out = a < 0.625f ? small : (x < 0 ? -big : big);
  return x == x ? out : x;
}

// out[u, :] = tanh(f + g[u, :]) for u < nu (rows of J; out may not overlap f or g).
SWR_CLONES static void tanh_of_sums(const float* __restrict f, const float* __restrict g, float* __restrict out,
                                    int64_t nu, int64_t J) {
  for (int64_t u = 0; u < nu; ++u)
    for (int64_t j = 0; j < J; ++j) out[u * J + j] = vtanh(f[j] + g[u * J + j]);
}

// max_v x[v] (NaN entries ignored, as std::max(m, x) ignores them).
SWR_CLONES static float row_max(const float* x, int64_t V) {
  float m[kLanes];
  for (int k = 0; k < kLanes; ++k) m[k] = neg_inf<float>();
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes)
    for (int k = 0; k < kLanes; ++k) m[k] = m[k] < x[v + k] ? x[v + k] : m[k];
  float r = neg_inf<float>();
  for (int k = 0; k < kLanes; ++k) r = r < m[k] ? m[k] : r;
  for (; v < V; ++v) r = r < x[v] ? x[v] : r;
  return r;
}

// sum_v exp(x[v] - m), in 16 lanes then the tail.
inline float sum_exp(const float* x, int64_t V, float m) {
  float s[kLanes] = {};
  int64_t v = 0;
  for (; v + kLanes <= V; v += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += vexp(x[v + k] - m);
  float r = 0;
  for (int k = 0; k < kLanes; ++k) r += s[k];
  for (; v < V; ++v) r += vexp(x[v] - m);
  return r;
}

// The log-sum-exp of a row (-inf for a row of -inf).
SWR_CLONES static float row_lse(const float* x, int64_t V) {
  const float m = row_max(x, V);
  if (m == neg_inf<float>()) return m;
  return lse_value(m, sum_exp(x, V, m));
}

// g[v] = logit_grad_of_prob(exp(x[v] - lse), ...) for the row of a node whose blank is `blank` and whose next label
// is `label` (-1: none); g may be x (then one pointer, so that the loop vectorises without an overlap check).
SWR_CLONES static void row_grad(const float* x, float* g, int64_t V, int64_t blank, int64_t label, float lse,
                                float bf, float lfw, float clamp, float sc) {
  const float xb = x[blank], xl = label >= 0 ? x[label] : 0.0f;  // read before an in-place row overwrites them
  if (g == x) {
    for (int64_t v = 0; v < V; ++v) g[v] = logit_grad_of_prob(vexp(g[v] - lse), bf, lfw, false, false, clamp, sc);
  } else {
    const float* __restrict xr = x;
    float* __restrict gr = g;
    for (int64_t v = 0; v < V; ++v) gr[v] = logit_grad_of_prob(vexp(xr[v] - lse), bf, lfw, false, false, clamp, sc);
  }
  g[blank] = logit_grad_of_prob(vexp(xb - lse), bf, lfw, true, false, clamp, sc);
  if (label >= 0) g[label] = logit_grad_of_prob(vexp(xl - lse), bf, lfw, false, true, clamp, sc);
}

}  // namespace rows
}  // namespace swr
