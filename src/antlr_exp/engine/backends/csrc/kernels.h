// The kernels' entry points (one source each: forward.cpp, adjoint.cpp, fused_adjoint.cpp,
// events.cpp); bindings.cpp makes them the Python module's functions.
#pragma once

#include <torch/extension.h>

#include <vector>

#include "constants.h"

namespace lif_kernels {

std::vector<torch::Tensor> lif_forward_impl(torch::Tensor drive, torch::Tensor row_offsets, torch::Tensor cols,
                                            torch::Tensor values, torch::Tensor weight_t, int64_t T, int64_t B,
                                            torch::Tensor bias_term, torch::Tensor current0, torch::Tensor potential0,
                                            torch::Tensor keep0, torch::Tensor allowed0, const LifConstants& lif,
                                            bool keep_current, bool emit_events, bool store_times);

std::vector<torch::Tensor> srm_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor grad_s,
                                       torch::Tensor grad_t, const RuleConstants& rule, bool want_h);

std::vector<torch::Tensor> fused_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor ext_gs,
                                         torch::Tensor ext_gt, torch::Tensor g_up, torch::Tensor h_up,
                                         torch::Tensor w_up, torch::Tensor in_offsets, torch::Tensor in_cols,
                                         torch::Tensor in_values, int64_t K, int64_t B, int64_t n_in,
                                         const RuleConstants& rule, bool need_g, bool want_h);

std::vector<torch::Tensor> rnn_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor currents,
                                       torch::Tensor sigma_all, torch::Tensor grad_s, double alpha_I,
                                       double alpha_V, double beta_V, bool single, double kernel_scale);

std::vector<torch::Tensor> csr_events(torch::Tensor spikes_tbn, double max_density);

torch::Tensor transpose_contiguous(torch::Tensor x);

}  // namespace lif_kernels
