// The Python module: each kernel with the positional arguments the Python side passes
// (antlr_exp/engine/backends/calls.py and fused.py), the scalars gathered into constants.h's structs.

#include <torch/extension.h>

#include "kernels.h"

namespace {

using lif_kernels::LifConstants;
using lif_kernels::RuleConstants;
using Tensors = std::vector<torch::Tensor>;

Tensors lif_forward(torch::Tensor drive, torch::Tensor bias_term, torch::Tensor current0, torch::Tensor potential0,
                    torch::Tensor keep0, torch::Tensor allowed0, double alpha_I, double alpha_V, double beta_I,
                    double beta_V, double theta, bool keep_current, int64_t B, bool emit_events) {
  TORCH_CHECK(drive.dim() == 2, "drive must be [T, M]");
  auto none = torch::empty({0}, drive.options().dtype(torch::kInt64));
  return lif_kernels::lif_forward_impl(drive, none, none, torch::empty({0}, drive.options()),
                                       torch::empty({0}, drive.options()), drive.size(0), B, bias_term, current0,
                                       potential0, keep0, allowed0,
                                       LifConstants{alpha_I, alpha_V, beta_I, beta_V, theta}, keep_current,
                                       emit_events, true);
}

Tensors lif_forward_events(torch::Tensor row_offsets, torch::Tensor cols, torch::Tensor values, torch::Tensor weight_t,
                           int64_t T, int64_t B, torch::Tensor bias_term, torch::Tensor current0,
                           torch::Tensor potential0, torch::Tensor keep0, torch::Tensor allowed0, double alpha_I,
                           double alpha_V, double beta_I, double beta_V, double theta, bool keep_current,
                           bool emit_events, bool store_times) {
  TORCH_CHECK(row_offsets.numel() == T * B + 1, "row_offsets must have T*B+1 entries");
  TORCH_CHECK(weight_t.dim() == 2 && weight_t.size(1) * B == current0.numel(), "weight_t must be [N_in, N]");
  return lif_kernels::lif_forward_impl(torch::empty({0}, current0.options()), row_offsets, cols, values, weight_t, T,
                                       B, bias_term, current0, potential0, keep0, allowed0,
                                       LifConstants{alpha_I, alpha_V, beta_I, beta_V, theta}, keep_current,
                                       emit_events, store_times);
}

Tensors srm_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor grad_s, torch::Tensor grad_t,
                    double alpha_I, double alpha_V, double theta, double act_w, double tim_w, double vstar_min,
                    int64_t surrogate_kind, double surrogate_a, double surrogate_b, bool single, double kernel_scale,
                    bool want_h) {
  const RuleConstants rule{alpha_I, alpha_V, theta, act_w, tim_w, vstar_min, surrogate_kind, surrogate_a,
                           surrogate_b, single, kernel_scale};
  return lif_kernels::srm_adjoint(potential, spikes, grad_s, grad_t, rule, want_h);
}

Tensors fused_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor ext_gs, torch::Tensor ext_gt,
                      torch::Tensor g_up, torch::Tensor h_up, torch::Tensor w_up, torch::Tensor in_offsets,
                      torch::Tensor in_cols, torch::Tensor in_values, int64_t K, int64_t B, int64_t n_in,
                      double alpha_I, double alpha_V, double theta, double act_w, double tim_w, double vstar_min,
                      int64_t surrogate_kind, double surrogate_a, double surrogate_b, bool single,
                      double kernel_scale, bool need_g, bool want_h) {
  const RuleConstants rule{alpha_I, alpha_V, theta, act_w, tim_w, vstar_min, surrogate_kind, surrogate_a,
                           surrogate_b, single, kernel_scale};
  return lif_kernels::fused_adjoint(potential, spikes, ext_gs, ext_gt, g_up, h_up, w_up, in_offsets, in_cols,
                                    in_values, K, B, n_in, rule, need_g, want_h);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("transpose_contiguous", &lif_kernels::transpose_contiguous, "contiguous transpose of the last two dims (2-D or 3-D), tiled");
  m.def("csr_events", &lif_kernels::csr_events, "nonzero spikes of [T, B, N] as CSR rows (or only their count when too dense)");
  m.def("lif_forward", &lif_forward, "LIF forward recurrence over [T, M]");
  m.def("lif_forward_events", &lif_forward_events, "LIF forward recurrence fed by CSR input events");
  m.def("srm_adjoint", &srm_adjoint, "reverse adjoint of the SRM-based rules");
  m.def("fused_adjoint", &fused_adjoint, "network-level adjoint of one layer, fed by the layer above");
  m.def("rnn_adjoint", &lif_kernels::rnn_adjoint, "reverse adjoint with reset paths (activation_rnn)");
}
