// pybind11 binding of samplewise_rnnt._C: tensor checks (TORCH_CHECK, never exit), allocation,
// and dispatch to the CPU or CUDA backend. The Python package validates user input first and gives
// the user-facing messages; these checks guard the internal contract.
#include <torch/extension.h>

#ifdef SWR_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <cstdint>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/rnnt_kernels.h"

namespace {

using swr::DType;

DType dtype_of(const torch::Tensor& x) {
  switch (x.scalar_type()) {
    case torch::kFloat32: return DType::kFloat32;
    case torch::kFloat64: return DType::kFloat64;
    case torch::kFloat16: return DType::kFloat16;
    case torch::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK(false, "samplewise_rnnt: logits must be float32, float64, float16 or bfloat16, got ",
                         x.scalar_type());
  }
}

torch::ScalarType acc_type(const torch::Tensor& logits) {
  return logits.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

void check_int64(const torch::Tensor& x, const char* name, const torch::Device& dev) {
  TORCH_CHECK(x.scalar_type() == torch::kInt64, "samplewise_rnnt: ", name, " must be int64");
  TORCH_CHECK(x.is_contiguous(), "samplewise_rnnt: ", name, " must be contiguous");
  TORCH_CHECK(x.device() == dev, "samplewise_rnnt: ", name, " must be on ", dev);
}

struct LayoutHolder {
  swr::Layout L;
};

// offsets, strides, nrows, T, U: [B] int64; targets [B, S] int64 (S may be 0). max_rows and max_stride
// (max_b nrows[b], max_b strides[b]) come from the caller, who knows them on the host: reading them
// here would synchronise with the device.
LayoutHolder make_layout(const torch::Tensor& offsets, const torch::Tensor& strides, const torch::Tensor& nrows,
                         const torch::Tensor& T, const torch::Tensor& U, const torch::Tensor& targets,
                         const torch::Device& dev, int64_t max_rows, int64_t max_stride) {
  check_int64(offsets, "offsets", dev);
  check_int64(strides, "strides", dev);
  check_int64(nrows, "nrows", dev);
  check_int64(T, "logit_lengths", dev);
  check_int64(U, "target_lengths", dev);
  const int64_t B = offsets.size(0);
  TORCH_CHECK(strides.size(0) == B && nrows.size(0) == B && T.size(0) == B && U.size(0) == B,
              "samplewise_rnnt: layout vectors must all have B entries");
  TORCH_CHECK(max_rows >= 0 && max_stride >= 0, "samplewise_rnnt: max_rows and max_stride must be >= 0");
  LayoutHolder h;
  h.L.B = B;
  h.L.offsets = offsets.data_ptr<int64_t>();
  h.L.strides = strides.data_ptr<int64_t>();
  h.L.nrows = nrows.data_ptr<int64_t>();
  h.L.T = T.data_ptr<int64_t>();
  h.L.U = U.data_ptr<int64_t>();
  if (targets.defined() && targets.numel() > 0) {
    check_int64(targets, "targets", dev);
    TORCH_CHECK(targets.dim() == 2 && targets.size(0) == B, "samplewise_rnnt: targets must be [B, U]");
    h.L.targets = targets.data_ptr<int64_t>();
    h.L.target_stride = targets.size(1);
  } else {
    h.L.targets = nullptr;
    h.L.target_stride = 0;
  }
  h.L.max_rows = B > 0 ? max_rows : 0;
  h.L.max_stride = B > 0 ? max_stride : 0;
  return h;
}

#ifdef SWR_WITH_CUDA
void* stream_of(const torch::Tensor& x) { return c10::cuda::getCurrentCUDAStream(x.device().index()).stream(); }
#endif

std::vector<torch::Tensor> node_scores(const torch::Tensor& logits, const torch::Tensor& offsets,
                                       const torch::Tensor& strides, const torch::Tensor& nrows,
                                       const torch::Tensor& T, const torch::Tensor& U, const torch::Tensor& targets,
                                       int64_t blank, int64_t max_rows, int64_t max_stride) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "samplewise_rnnt: logits must be contiguous [N, V]");
  const int64_t V = logits.size(1);
  TORCH_CHECK(blank >= 0 && blank < V, "samplewise_rnnt: blank out of range");
  auto h = make_layout(offsets, strides, nrows, T, U, targets, logits.device(), max_rows, max_stride);
  auto opts = logits.options().dtype(acc_type(logits));
  auto lse = torch::empty({logits.size(0)}, opts);
  auto lpb = torch::empty({logits.size(0)}, opts);
  auto lpl = torch::empty({logits.size(0)}, opts);
  if (logits.is_cuda()) {
#ifdef SWR_WITH_CUDA
    c10::cuda::CUDAGuard guard(logits.device());
    swr::node_scores_cuda(dtype_of(logits), logits.data_ptr(), V, h.L, blank, lse.data_ptr(), lpb.data_ptr(),
                          lpl.data_ptr(), stream_of(logits));
#else
    TORCH_CHECK(false, "samplewise_rnnt was built without CUDA kernels");
#endif
  } else {
    swr::node_scores_cpu(dtype_of(logits), logits.data_ptr(), V, h.L, blank, lse.data_ptr(), lpb.data_ptr(),
                         lpl.data_ptr());
  }
  return {lse, lpb, lpl};
}

// Returns costs [B] and, with want_flows, the blank and label flows ([N]; undefined otherwise).
std::vector<torch::Tensor> lattice(const torch::Tensor& lp_blank, const torch::Tensor& lp_label,
                                   const torch::Tensor& offsets, const torch::Tensor& strides, const torch::Tensor& T,
                                   const torch::Tensor& U, bool want_flows, int64_t max_rows, int64_t max_stride) {
  TORCH_CHECK(lp_blank.dim() == 1 && lp_blank.is_contiguous() && lp_label.is_contiguous() &&
                  lp_label.sizes() == lp_blank.sizes() && lp_label.scalar_type() == lp_blank.scalar_type(),
              "samplewise_rnnt: lp_blank and lp_label must be contiguous [N] of one dtype");
  TORCH_CHECK(lp_blank.scalar_type() == torch::kFloat32 || lp_blank.scalar_type() == torch::kFloat64,
              "samplewise_rnnt: lattice scores must be float32 or float64");
  auto h = make_layout(offsets, strides, T, T, U, torch::Tensor(), lp_blank.device(), max_rows, max_stride);
  const DType acc = lp_blank.scalar_type() == torch::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  auto alphas = torch::empty_like(lp_blank, lp_blank.options().dtype(torch::kFloat64));
  auto betas = torch::empty_like(lp_blank, lp_blank.options().dtype(torch::kFloat64));
  auto costs = torch::empty({h.L.B}, lp_blank.options());
  torch::Tensor bf, lf;
  if (want_flows) {
    bf = torch::zeros_like(lp_blank);
    lf = torch::zeros_like(lp_blank);
  }
  void* bfp = want_flows ? bf.data_ptr() : nullptr;
  void* lfp = want_flows ? lf.data_ptr() : nullptr;
  if (lp_blank.is_cuda()) {
#ifdef SWR_WITH_CUDA
    c10::cuda::CUDAGuard guard(lp_blank.device());
    swr::lattice_cuda(acc, h.L, lp_blank.data_ptr(), lp_label.data_ptr(), alphas.data_ptr(), betas.data_ptr(),
                      costs.data_ptr(), bfp, lfp, stream_of(lp_blank));
#else
    TORCH_CHECK(false, "samplewise_rnnt was built without CUDA kernels");
#endif
  } else {
    swr::lattice_cpu(acc, h.L, lp_blank.data_ptr(), lp_label.data_ptr(), alphas.data_ptr(), betas.data_ptr(),
                     costs.data_ptr(), bfp, lfp);
  }
  return {costs, bf, lf};
}

// Writes the gradient into grad (which may be logits itself).
void logits_grad(const torch::Tensor& logits, torch::Tensor& grad, const torch::Tensor& lse,
                 const torch::Tensor& blank_flow, const torch::Tensor& label_flow, const torch::Tensor& offsets,
                 const torch::Tensor& strides, const torch::Tensor& nrows, const torch::Tensor& T,
                 const torch::Tensor& U, const torch::Tensor& targets, int64_t blank, double clamp,
                 double fastemit_lambda, const torch::Tensor& scale, int64_t max_rows, int64_t max_stride) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() && grad.is_contiguous() &&
                  grad.sizes() == logits.sizes() && grad.scalar_type() == logits.scalar_type(),
              "samplewise_rnnt: grad must be a contiguous tensor like logits");
  TORCH_CHECK(lse.scalar_type() == acc_type(logits) && blank_flow.scalar_type() == acc_type(logits) &&
                  label_flow.scalar_type() == acc_type(logits),
              "samplewise_rnnt: node arrays have the wrong dtype");
  auto h = make_layout(offsets, strides, nrows, T, U, targets, logits.device(), max_rows, max_stride);
  const float* sp = nullptr;
  if (scale.numel() > 0) {
    TORCH_CHECK(scale.scalar_type() == torch::kFloat32 && scale.numel() == h.L.B && scale.is_contiguous(),
                "samplewise_rnnt: scale must be float32 [B]");
    sp = scale.data_ptr<float>();
  }
  const int64_t V = logits.size(1);
  if (logits.is_cuda()) {
#ifdef SWR_WITH_CUDA
    c10::cuda::CUDAGuard guard(logits.device());
    swr::logits_grad_cuda(dtype_of(logits), logits.data_ptr(), grad.data_ptr(), V, h.L, blank, lse.data_ptr(),
                          blank_flow.data_ptr(), label_flow.data_ptr(), clamp, fastemit_lambda, sp,
                          stream_of(logits));
#else
    TORCH_CHECK(false, "samplewise_rnnt was built without CUDA kernels");
#endif
  } else {
    swr::logits_grad_cpu(dtype_of(logits), logits.data_ptr(), grad.data_ptr(), V, h.L, blank, lse.data_ptr(),
                         blank_flow.data_ptr(), label_flow.data_ptr(), clamp, fastemit_lambda, sp);
  }
}

// ---- TDT (core/tdt_math.h): logits [N, V1 + D], the duration set as a host list ----

swr::Durations make_durations(const std::vector<int64_t>& durations, bool rnnt_mode) {
  TORCH_CHECK(!durations.empty() && durations.size() <= static_cast<size_t>(swr::kMaxDurations),
              "samplewise_rnnt: durations must have 1 to ", swr::kMaxDurations, " entries");
  swr::Durations d{};
  for (size_t i = 0; i < durations.size(); ++i) {
    TORCH_CHECK(durations[i] >= 0, "samplewise_rnnt: durations must be >= 0");
    d.d[i] = durations[i];
  }
  d.D = static_cast<int64_t>(durations.size());
  d.rnnt = rnnt_mode;
  return d;
}

void check_node_array(const torch::Tensor& x, const char* name, torch::ScalarType dt, int64_t N, int64_t width) {
  TORCH_CHECK(x.scalar_type() == dt && x.is_contiguous() && x.numel() == N * width,
              "samplewise_rnnt: ", name, " must be a contiguous ", dt, " array of ", N, " x ", width, " entries");
}

// Returns lse, lp_blank, lp_label ([N]) and lp_dur ([N, D]).
std::vector<torch::Tensor> tdt_node_scores(const torch::Tensor& logits, const torch::Tensor& offsets,
                                           const torch::Tensor& strides, const torch::Tensor& nrows,
                                           const torch::Tensor& T, const torch::Tensor& U,
                                           const torch::Tensor& targets, int64_t blank,
                                           const std::vector<int64_t>& durations, double sigma, int64_t max_rows,
                                           int64_t max_stride) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "samplewise_rnnt: logits must be contiguous [N, V1 + D]");
  const auto dur = make_durations(durations, false);
  const int64_t V1 = logits.size(1) - dur.D;
  TORCH_CHECK(V1 >= 1, "samplewise_rnnt: logits must have more than D = ", dur.D, " columns");
  TORCH_CHECK(blank >= 0 && blank < V1, "samplewise_rnnt: blank out of range");
  auto h = make_layout(offsets, strides, nrows, T, U, targets, logits.device(), max_rows, max_stride);
  auto opts = logits.options().dtype(acc_type(logits));
  const int64_t N = logits.size(0);
  auto lse = torch::empty({N}, opts), lpb = torch::empty({N}, opts), lpl = torch::empty({N}, opts);
  auto lpd = torch::empty({N, dur.D}, opts);
  if (logits.is_cuda()) {
#ifdef SWR_WITH_CUDA
    c10::cuda::CUDAGuard guard(logits.device());
    swr::tdt_node_scores_cuda(dtype_of(logits), logits.data_ptr(), V1, h.L, blank, dur, sigma, lse.data_ptr(),
                              lpb.data_ptr(), lpl.data_ptr(), lpd.data_ptr(), stream_of(logits));
#else
    TORCH_CHECK(false, "samplewise_rnnt was built without CUDA kernels");
#endif
  } else {
    swr::tdt_node_scores_cpu(dtype_of(logits), logits.data_ptr(), V1, h.L, blank, dur, sigma, lse.data_ptr(),
                             lpb.data_ptr(), lpl.data_ptr(), lpd.data_ptr());
  }
  return {lse, lpb, lpl, lpd};
}

// Returns costs [B] and, with want_flows, blank_flow, label_flow ([N]) and dur_flow ([N, D]) (undefined
// otherwise). rnnt_mode: the standard RNN-T lattice on lp_blank / lp_label (lp_dur unused, dur_flow 0).
std::vector<torch::Tensor> tdt_lattice(const torch::Tensor& lp_blank, const torch::Tensor& lp_label,
                                       const torch::Tensor& lp_dur, const torch::Tensor& offsets,
                                       const torch::Tensor& strides, const torch::Tensor& T, const torch::Tensor& U,
                                       const std::vector<int64_t>& durations, bool rnnt_mode, bool want_flows,
                                       int64_t max_rows, int64_t max_stride) {
  TORCH_CHECK(lp_blank.dim() == 1 && lp_blank.is_contiguous(), "samplewise_rnnt: lp_blank must be contiguous [N]");
  TORCH_CHECK(lp_blank.scalar_type() == torch::kFloat32 || lp_blank.scalar_type() == torch::kFloat64,
              "samplewise_rnnt: lattice scores must be float32 or float64");
  const auto dur = make_durations(durations, rnnt_mode);
  const int64_t N = lp_blank.size(0);
  check_node_array(lp_label, "lp_label", lp_blank.scalar_type(), N, 1);
  check_node_array(lp_dur, "lp_dur", lp_blank.scalar_type(), N, dur.D);
  TORCH_CHECK(lp_label.device() == lp_blank.device() && lp_dur.device() == lp_blank.device(),
              "samplewise_rnnt: node arrays must be on one device");
  auto h = make_layout(offsets, strides, T, T, U, torch::Tensor(), lp_blank.device(), max_rows, max_stride);
  const DType acc = lp_blank.scalar_type() == torch::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  auto alphas = torch::empty_like(lp_blank, lp_blank.options().dtype(torch::kFloat64));
  auto betas = torch::empty_like(lp_blank, lp_blank.options().dtype(torch::kFloat64));
  auto costs = torch::empty({h.L.B}, lp_blank.options());
  torch::Tensor bf, lf, df;
  if (want_flows) {
    bf = torch::zeros_like(lp_blank);
    lf = torch::zeros_like(lp_blank);
    df = torch::zeros({N, dur.D}, lp_blank.options());
  }
  void* bfp = want_flows ? bf.data_ptr() : nullptr;
  void* lfp = want_flows ? lf.data_ptr() : nullptr;
  void* dfp = want_flows ? df.data_ptr() : nullptr;
  if (lp_blank.is_cuda()) {
#ifdef SWR_WITH_CUDA
    c10::cuda::CUDAGuard guard(lp_blank.device());
    swr::tdt_lattice_cuda(acc, h.L, dur, lp_blank.data_ptr(), lp_label.data_ptr(), lp_dur.data_ptr(),
                          alphas.data_ptr(), betas.data_ptr(), costs.data_ptr(), bfp, lfp, dfp, stream_of(lp_blank));
#else
    TORCH_CHECK(false, "samplewise_rnnt was built without CUDA kernels");
#endif
  } else {
    swr::tdt_lattice_cpu(acc, h.L, dur, lp_blank.data_ptr(), lp_label.data_ptr(), lp_dur.data_ptr(),
                         alphas.data_ptr(), betas.data_ptr(), costs.data_ptr(), bfp, lfp, dfp);
  }
  return {costs, bf, lf, df};
}

// Writes the gradient with respect to the [N, V1 + D] logits into grad (which may be logits itself).
void tdt_logits_grad(const torch::Tensor& logits, torch::Tensor& grad, const torch::Tensor& lse,
                     const torch::Tensor& lp_dur, const torch::Tensor& blank_flow, const torch::Tensor& label_flow,
                     const torch::Tensor& dur_flow, const torch::Tensor& offsets, const torch::Tensor& strides,
                     const torch::Tensor& nrows, const torch::Tensor& T, const torch::Tensor& U,
                     const torch::Tensor& targets, int64_t blank, double clamp, double fastemit_lambda,
                     const torch::Tensor& scale, int64_t max_rows, int64_t max_stride) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() && grad.is_contiguous() &&
                  grad.sizes() == logits.sizes() && grad.scalar_type() == logits.scalar_type(),
              "samplewise_rnnt: grad must be a contiguous tensor like logits");
  TORCH_CHECK(lp_dur.dim() == 2, "samplewise_rnnt: lp_dur must be [N, D]");
  const int64_t N = logits.size(0), D = lp_dur.size(1), V1 = logits.size(1) - D;
  TORCH_CHECK(D >= 1 && V1 >= 1 && blank >= 0 && blank < V1, "samplewise_rnnt: bad D, V1 or blank");
  const auto acc = acc_type(logits);
  check_node_array(lse, "lse", acc, N, 1);
  check_node_array(lp_dur, "lp_dur", acc, N, D);
  check_node_array(blank_flow, "blank_flow", acc, N, 1);
  check_node_array(label_flow, "label_flow", acc, N, 1);
  check_node_array(dur_flow, "dur_flow", acc, N, D);
  auto h = make_layout(offsets, strides, nrows, T, U, targets, logits.device(), max_rows, max_stride);
  const float* sp = nullptr;
  if (scale.numel() > 0) {
    TORCH_CHECK(scale.scalar_type() == torch::kFloat32 && scale.numel() == h.L.B && scale.is_contiguous(),
                "samplewise_rnnt: scale must be float32 [B]");
    sp = scale.data_ptr<float>();
  }
  if (logits.is_cuda()) {
#ifdef SWR_WITH_CUDA
    c10::cuda::CUDAGuard guard(logits.device());
    swr::tdt_logits_grad_cuda(dtype_of(logits), logits.data_ptr(), grad.data_ptr(), V1, h.L, blank, D, lse.data_ptr(),
                              lp_dur.data_ptr(), blank_flow.data_ptr(), label_flow.data_ptr(), dur_flow.data_ptr(),
                              clamp, fastemit_lambda, sp, stream_of(logits));
#else
    TORCH_CHECK(false, "samplewise_rnnt was built without CUDA kernels");
#endif
  } else {
    swr::tdt_logits_grad_cpu(dtype_of(logits), logits.data_ptr(), grad.data_ptr(), V1, h.L, blank, D, lse.data_ptr(),
                             lp_dur.data_ptr(), blank_flow.data_ptr(), label_flow.data_ptr(), dur_flow.data_ptr(),
                             clamp, fastemit_lambda, sp);
  }
}

bool cuda_built() {
#ifdef SWR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

// Asks Linux for transparent huge pages behind a fresh, untouched CPU tensor (its 2 MiB-aligned interior): a
// gradient the size of the logits then costs a few hundred page faults on first touch instead of one per 4 KiB
// (what torch's THP_MEM_ALLOC_ENABLE does for every allocation). Advice only: a no-op where THP is off, small
// tensors, other systems. Returns whether the advice was taken.
bool advise_hugepages(const torch::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (!t.device().is_cpu() || t.nbytes() < 2 * kHuge) return false;
  const uintptr_t p = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t a = (p + kHuge - 1) & ~(kHuge - 1), e = (p + t.nbytes()) & ~(kHuge - 1);
  return e > a && madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE) == 0;
#else
  (void)t;
  return false;
#endif
}

// f [nb, nt, J], g [nb, nu, J] (float32, CPU, rows of J contiguous), h [nb * nt * nu, J] contiguous.
void joint_tanh(const torch::Tensor& f, const torch::Tensor& g, torch::Tensor& h) {
  for (const torch::Tensor* x : {&f, &g, static_cast<const torch::Tensor*>(&h)}) {
    TORCH_CHECK(x->device().is_cpu() && x->scalar_type() == torch::kFloat32,
                "samplewise_rnnt: joint_tanh takes float32 CPU tensors");
  }
  TORCH_CHECK(f.dim() == 3 && g.dim() == 3 && h.dim() == 2, "samplewise_rnnt: joint_tanh: f, g [nb, n, J], h [N, J]");
  const int64_t nb = f.size(0), nt = f.size(1), nu = g.size(1), J = f.size(2);
  TORCH_CHECK(g.size(0) == nb && g.size(2) == J && h.size(0) == nb * nt * nu && h.size(1) == J,
              "samplewise_rnnt: joint_tanh: shapes do not match");
  if (h.numel() == 0) return;  // J = 0 or no node: nothing to write (and strides of empty tensors mean nothing)
  TORCH_CHECK((f.stride(2) == 1 || J <= 1) && (f.stride(1) == J || nt <= 1) && (g.stride(2) == 1 || J <= 1) &&
                  (g.stride(1) == J || nu <= 1) && h.is_contiguous(),
              "samplewise_rnnt: joint_tanh: rows of J must be contiguous");
  swr::joint_tanh_cpu(f.data_ptr<float>(), f.stride(0), g.data_ptr<float>(), g.stride(0), h.data_ptr<float>(), nb,
                      nt, nu, J);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "samplewise_rnnt kernels (RNN-T and TDT): per-node scores, the lattice recursion and the logits gradient";
  m.def("advise_hugepages", &advise_hugepages, "transparent huge pages behind a fresh CPU tensor (advice)");
  m.def("joint_tanh", &joint_tanh, "the fused layer's h = tanh(f[:, t] + g[:, u]) for a tile (CPU, float32)");
  m.def("node_scores", &node_scores, "log-sum-exp, blank and label log-probabilities per lattice node");
  m.def("lattice", &lattice, "alphas/betas -> costs and (optionally) blank and label flows");
  m.def("logits_grad", &logits_grad, "gradient of each sample's cost with respect to its logits");
  m.def("tdt_node_scores", &tdt_node_scores, "TDT: token log-sum-exp, blank/label and duration log-probabilities");
  m.def("tdt_lattice", &tdt_lattice, "TDT lattice -> costs and (optionally) blank, label and duration flows");
  m.def("tdt_logits_grad", &tdt_logits_grad, "TDT: gradient of each sample's cost w.r.t. its token+duration logits");
  m.def("cuda_built", &cuda_built, "whether the CUDA kernels are compiled in");
}
