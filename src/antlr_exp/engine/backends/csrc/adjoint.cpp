// The reverse-time adjoints of one layer: the SRM-based rules (srm_adjoint) and plain BPTT with
// the reset paths (rnn_adjoint).

#include "common.h"
#include "kernels.h"

namespace lif_kernels {

namespace {

// The timing part of dL/dV at step t over one row of n columns, at the spikes only:
// d[k] -= tim_w dL/dt[k] / V*[k], skipping runs of 64 without a spike. St, Vt, GTt: step t's row
// of [T, M] tensors (the row before it M entries back).
template <typename scalar_t>
inline void timing_part_row(int64_t n, int64_t t, int64_t M, const scalar_t* St, const scalar_t* Vt,
                            const scalar_t* GTt, scalar_t tw, scalar_t vmin, scalar_t* d) {
  for (int64_t k0 = 0; k0 < n; k0 += 64) {  // skipping runs of 64 without a spike
    const int64_t k1 = std::min(n, k0 + 64);
    if (count_nonzero_row<scalar_t>(k1 - k0, St + k0) == 0) continue;
    for (int64_t k = k0; k < k1; ++k) {
      if (St[k] != scalar_t(0)) {
        scalar_t before = 0;
        if (t > 0) before = Vt[k - M] * (scalar_t(1) - St[k - M]);
        scalar_t vstar = Vt[k] - before;
        if (vstar < vmin) vstar = vmin;
        d[k] -= tw * GTt[k] / vstar;
      }
    }
  }
}

}  // namespace

// Reverse-time adjoint of the SRM-based rules with dL/dV formed on the fly:
//   dv[t]    = act_w * sigma(V[t]) * dL/dS[t] * allowed[t] + tim_w * S[t] * (-dL/dt[t] / V*[t])
//   lam_V[t] = dv[t] + alpha_V (1 - S[t]) lam_V[t+1]
//   lam_I[t] = lam_V[t] + alpha_I (1 - S[t]) lam_I[t+1]
// allowed[t] (single-spike mode) is 1 up to the neuron's first spike. grad_s / grad_t may be
// empty (no gradient of that kind).
// Returns {G [T,M] = kernel_scale * lam_I, H [T,M] (only if want_h, else empty), sum_t lam_V [M]} with
//   H[t] = ((1 - S[t]) G[t+1] - alpha_I G[t] - kernel_scale alpha_V lam_V[t]) / 2.
std::vector<torch::Tensor> srm_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor grad_s,
                                       torch::Tensor grad_t, const RuleConstants& rule, bool want_h) {
  const double alpha_I = rule.alpha_I, alpha_V = rule.alpha_V, theta = rule.theta;
  const double act_w = rule.act_w, tim_w = rule.tim_w, vstar_min = rule.vstar_min;
  const int64_t surrogate_kind = rule.surrogate_kind;
  const double surrogate_a = rule.surrogate_a, surrogate_b = rule.surrogate_b, kernel_scale = rule.kernel_scale;
  const bool single = rule.single;
  const int64_t T = potential.size(0), M = potential.size(1);
  const bool has_s = grad_s.numel() > 0 && act_w != 0.0;
  const bool has_t = grad_t.numel() > 0 && tim_w != 0.0;
  auto g_out = torch::empty_like(potential);
  auto h_out = want_h ? torch::empty_like(potential) : torch::empty({0}, potential.options());
  auto lam_v_sum = torch::empty({M}, potential.options());
  auto gs = has_s ? grad_s.contiguous() : grad_s;
  auto gt = has_t ? grad_t.contiguous() : grad_t;
  AT_DISPATCH_FLOATING_TYPES(potential.scalar_type(), "srm_adjoint", [&] {
    const scalar_t aI = alpha_I, aV = alpha_V, tw = tim_w, vmin = vstar_min, c = kernel_scale;
    const scalar_t th = theta, aw = act_w, sa = surrogate_a, sb = surrogate_b;
    const auto sigma_row = surrogate_row_for<scalar_t>(static_cast<int>(surrogate_kind));
    const scalar_t* V = potential.data_ptr<scalar_t>();
    const scalar_t* S = spikes.data_ptr<scalar_t>();
    const scalar_t* GS = has_s ? gs.data_ptr<scalar_t>() : nullptr;
    const scalar_t* GT = has_t ? gt.data_ptr<scalar_t>() : nullptr;
    scalar_t* G = g_out.data_ptr<scalar_t>();
    scalar_t* H = want_h ? h_out.data_ptr<scalar_t>() : nullptr;
    scalar_t* LVS = lam_v_sum.data_ptr<scalar_t>();
    at::parallel_for(0, M, kGrain, [&](int64_t begin, int64_t end) {
      FlushDenormals flush;
      const int64_t n = end - begin;
      const std::vector<int64_t> first_spike =
          single && has_s ? first_spikes(S, T, M, begin, end) : std::vector<int64_t>();
      std::vector<scalar_t> next_v(n, scalar_t(0)), next_i(n, scalar_t(0)), sum_v(n, scalar_t(0));
      std::vector<scalar_t> dv(n, scalar_t(0));
      scalar_t* __restrict nv = next_v.data();
      scalar_t* __restrict ni = next_i.data();
      scalar_t* __restrict sv = sum_v.data();
      scalar_t* __restrict d = dv.data();
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t row = t * M + begin;
        const scalar_t* __restrict St = S + row;
        // 1. activation part (vectorized surrogate), masked after the first spike in single-spike mode
        if (has_s) {
          sigma_row(V + row, GS + row, d, n, th, sa, sb, aw);
          if (single) mask_after_first<scalar_t>(n, t, first_spike.data(), d);
        } else {
          std::fill(d, d + n, scalar_t(0));
        }
        // 2. timing part at the spikes only
        if (has_t) timing_part_row(n, t, M, St, V + row, GT + row, tw, vmin, d);
        // 3. the recurrence over the spike-free windows (branch-free, vectorized)
        scalar_t* __restrict Gt = G + row;
        if (H) {
          adjoint_row<scalar_t, true>(n, St, d, nv, ni, sv, Gt, H + row, aI, aV, c);
        } else {
          adjoint_row<scalar_t, false>(n, St, d, nv, ni, sv, Gt, nullptr, aI, aV, c);
        }
      }
      for (int64_t m = begin; m < end; ++m) LVS[m] = sum_v[m - begin];
    });
  });
  return {g_out, h_out, lam_v_sum};
}

// Plain BPTT of the RNN-like equations with reset paths (activation_rnn). Returns {lam_V, lam_I}
// with lam_I = dL/dI / beta_V, as in antlr_exp/engine/lif.py's _adjoint_rnn.
// sigma = sigma(V) [T, M] is computed by the caller with torch's vectorized ops.
// Returns {G [T,M] = kernel_scale * lam_I, empty, sum_t lam_V [M]}.
std::vector<torch::Tensor> rnn_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor currents,
                                       torch::Tensor sigma_all, torch::Tensor grad_s, double alpha_I,
                                       double alpha_V, double beta_V, bool single, double kernel_scale) {
  const int64_t T = potential.size(0), M = potential.size(1);
  const bool has_s = grad_s.numel() > 0;
  auto g_out = torch::empty_like(potential);
  auto lam_v_sum = torch::empty({M}, potential.options());
  auto gs = has_s ? grad_s.contiguous() : grad_s;
  auto sigma_c = sigma_all.contiguous();
  AT_DISPATCH_FLOATING_TYPES(potential.scalar_type(), "rnn_adjoint", [&] {
    const scalar_t aI = alpha_I, aV = alpha_V, bV = beta_V, c = kernel_scale;
    const scalar_t* V = potential.data_ptr<scalar_t>();
    const scalar_t* S = spikes.data_ptr<scalar_t>();
    const scalar_t* I = currents.data_ptr<scalar_t>();
    const scalar_t* SG = sigma_c.data_ptr<scalar_t>();
    const scalar_t* GS = has_s ? gs.data_ptr<scalar_t>() : nullptr;
    scalar_t* G = g_out.data_ptr<scalar_t>();
    scalar_t* LVS = lam_v_sum.data_ptr<scalar_t>();
    at::parallel_for(0, M, kGrain, [&](int64_t begin, int64_t end) {
      FlushDenormals flush;
      const int64_t n = end - begin;
      const std::vector<int64_t> first_spike = single ? first_spikes(S, T, M, begin, end) : std::vector<int64_t>();
      std::vector<scalar_t> next_v(n, scalar_t(0)), next_i(n, scalar_t(0)), sum_v(n, scalar_t(0));
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t row = t * M;
        for (int64_t m = begin; m < end; ++m) {
          const int64_t idx = row + m;
          const int64_t k = m - begin;
          const scalar_t keep = scalar_t(1) - S[idx];
          const scalar_t g = has_s ? GS[idx] : scalar_t(0);
          const scalar_t total_s = g - aI * bV * I[idx] * next_i[k] - aV * V[idx] * next_v[k];
          scalar_t sigma = SG[idx];
          if (single && t > first_spike[k]) sigma = 0;
          const scalar_t lv = sigma * total_s + aV * keep * next_v[k];
          const scalar_t li = lv + aI * keep * next_i[k];
          next_v[k] = lv;
          next_i[k] = li;
          sum_v[k] += lv;
          G[idx] = c * li;
        }
      }
      for (int64_t m = begin; m < end; ++m) LVS[m] = sum_v[m - begin];
    });
  });
  return {g_out, torch::empty({0}, potential.options()), lam_v_sum};
}

}  // namespace lif_kernels
