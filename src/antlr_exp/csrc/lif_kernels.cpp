// Fused CPU kernels for the LIF time recurrences of antlr_exp.layer.
//
// Layout: every [T, M] tensor is time-major and contiguous, M = batch * neurons.
// The math is exactly that of the PyTorch path in layer.py (simulate_lif, dv_from_rule,
// _adjoint_srm, _adjoint_rnn); the tests compare both paths.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kGrain = 2048;

}  // namespace

// Forward recurrence over the steps of `drive` [T, M] (beta_I not applied).
// state: current, potential, keep [M]; allowed [M] (single-spike mode) or an empty tensor.
// Returns {potential [T,M], spikes [T,M], times [T,M] (= t * S), current_final, potential_final,
//          keep_final, allowed_final, currents [T,M] (only if keep_current, else empty)}.
std::vector<torch::Tensor> lif_forward(torch::Tensor drive, torch::Tensor bias_term, torch::Tensor current0,
                                       torch::Tensor potential0, torch::Tensor keep0, torch::Tensor allowed0,
                                       double alpha_I, double alpha_V, double beta_I, double beta_V, double theta,
                                       bool keep_current) {
  TORCH_CHECK(drive.dim() == 2 && drive.is_contiguous(), "drive must be contiguous [T, M]");
  const int64_t T = drive.size(0), M = drive.size(1);
  const bool single = allowed0.numel() > 0;
  auto potential = torch::empty_like(drive);
  auto spikes = torch::empty_like(drive);
  auto times = torch::empty_like(drive);
  auto currents = keep_current ? torch::empty_like(drive) : torch::empty({0}, drive.options());
  auto current_f = current0.contiguous().clone();
  auto potential_f = potential0.contiguous().clone();
  auto keep_f = keep0.contiguous().clone();
  auto allowed_f = single ? allowed0.contiguous().clone() : torch::empty({0}, drive.options());
  auto bias_c = bias_term.contiguous();
  AT_DISPATCH_FLOATING_TYPES(drive.scalar_type(), "lif_forward", [&] {
    const scalar_t aI = alpha_I, aV = alpha_V, bI = beta_I, bV = beta_V, th = theta;
    const scalar_t* x = drive.data_ptr<scalar_t>();
    const scalar_t* bias = bias_c.data_ptr<scalar_t>();
    scalar_t* V = potential.data_ptr<scalar_t>();
    scalar_t* S = spikes.data_ptr<scalar_t>();
    scalar_t* TM = times.data_ptr<scalar_t>();
    scalar_t* Iall = keep_current ? currents.data_ptr<scalar_t>() : nullptr;
    scalar_t* cur = current_f.data_ptr<scalar_t>();
    scalar_t* pot = potential_f.data_ptr<scalar_t>();
    scalar_t* kp = keep_f.data_ptr<scalar_t>();
    scalar_t* al = single ? allowed_f.data_ptr<scalar_t>() : nullptr;
    // Each thread owns a block of neurons and walks time outside, neurons inside (contiguous).
    at::parallel_for(0, M, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* xt = x + t * M;
        scalar_t* Vt = V + t * M;
        scalar_t* St = S + t * M;
        scalar_t* TMt = TM + t * M;
        const scalar_t tf = static_cast<scalar_t>(t);
        scalar_t* It = Iall ? Iall + t * M : nullptr;
        for (int64_t m = begin; m < end; ++m) {
          const scalar_t i = aI * kp[m] * cur[m] + bI * xt[m];
          const scalar_t v = aV * kp[m] * pot[m] + bV * i + bias[m];
          scalar_t s = v >= th ? scalar_t(1) : scalar_t(0);
          if (single) {
            s *= al[m];
            al[m] *= (scalar_t(1) - s);
          }
          cur[m] = i;
          pot[m] = v;
          kp[m] = scalar_t(1) - s;
          Vt[m] = v;
          St[m] = s;
          TMt[m] = s * tf;
          if (It) It[m] = i;
        }
      }
    });
  });
  return {potential, spikes, times, current_f, potential_f, keep_f, allowed_f, currents};
}

// Reverse-time adjoint of the SRM-based rules with dL/dV formed on the fly:
//   dv[t]    = dv_act[t] * allowed[t] + tim_w * S[t] * (-dL/dt[t] / V*[t])
//   lam_V[t] = dv[t] + alpha_V (1 - S[t]) lam_V[t+1]
//   lam_I[t] = lam_V[t] + alpha_I (1 - S[t]) lam_I[t+1]
// dv_act = lambda_act * sigma(V) * dL/dS is computed by the caller with torch's vectorized ops;
// allowed[t] (single-spike mode) is 1 up to the neuron's first spike. dv_act / grad_t may be
// empty (no gradient of that kind).
// Returns {G [T,M] = kernel_scale * lam_I, H [T,M] (only if want_h, else empty), sum_t lam_V [M]} with
//   H[t] = ((1 - S[t]) G[t+1] - alpha_I G[t] - kernel_scale alpha_V lam_V[t]) / 2.
std::vector<torch::Tensor> srm_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor dv_act,
                                       torch::Tensor grad_t, double alpha_I, double alpha_V, double tim_w,
                                       double vstar_min, bool single, double kernel_scale, bool want_h) {
  const int64_t T = potential.size(0), M = potential.size(1);
  const bool has_s = dv_act.numel() > 0;
  const bool has_t = grad_t.numel() > 0 && tim_w != 0.0;
  auto g_out = torch::empty_like(potential);
  auto h_out = want_h ? torch::empty_like(potential) : torch::empty({0}, potential.options());
  auto lam_v_sum = torch::empty({M}, potential.options());
  auto da = has_s ? dv_act.contiguous() : dv_act;
  auto gt = has_t ? grad_t.contiguous() : grad_t;
  AT_DISPATCH_FLOATING_TYPES(potential.scalar_type(), "srm_adjoint", [&] {
    const scalar_t aI = alpha_I, aV = alpha_V, tw = tim_w, vmin = vstar_min, c = kernel_scale;
    const scalar_t* V = potential.data_ptr<scalar_t>();
    const scalar_t* S = spikes.data_ptr<scalar_t>();
    const scalar_t* DA = has_s ? da.data_ptr<scalar_t>() : nullptr;
    const scalar_t* GT = has_t ? gt.data_ptr<scalar_t>() : nullptr;
    scalar_t* G = g_out.data_ptr<scalar_t>();
    scalar_t* H = want_h ? h_out.data_ptr<scalar_t>() : nullptr;
    scalar_t* LVS = lam_v_sum.data_ptr<scalar_t>();
    at::parallel_for(0, M, kGrain, [&](int64_t begin, int64_t end) {
      const int64_t n = end - begin;
      std::vector<int64_t> first_spike(single && has_s ? n : 0, T);
      if (single && has_s) {
        for (int64_t t = 0; t < T; ++t)
          for (int64_t m = begin; m < end; ++m)
            if (S[t * M + m] != scalar_t(0) && first_spike[m - begin] == T) first_spike[m - begin] = t;
      }
      std::vector<scalar_t> next_v(n, scalar_t(0)), next_i(n, scalar_t(0)), sum_v(n, scalar_t(0));
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t row = t * M;
        for (int64_t m = begin; m < end; ++m) {
          const int64_t idx = row + m;
          const int64_t k = m - begin;
          const scalar_t s = S[idx];
          scalar_t dv = 0;
          if (has_s && (!single || t <= first_spike[k])) dv = DA[idx];
          if (has_t && s != scalar_t(0)) {
            scalar_t before = 0;
            if (t > 0) before = V[idx - M] * (scalar_t(1) - S[idx - M]);
            scalar_t vstar = V[idx] - before;
            if (vstar < vmin) vstar = vmin;
            dv -= tw * GT[idx] / vstar;
          }
          const scalar_t keep = scalar_t(1) - s;
          const scalar_t g_later = c * next_i[k];  // G[t+1] (0 at the last step)
          const scalar_t lv = dv + aV * keep * next_v[k];
          const scalar_t li = lv + aI * keep * next_i[k];
          next_v[k] = lv;
          next_i[k] = li;
          sum_v[k] += lv;
          const scalar_t g = c * li;
          G[idx] = g;
          if (H) H[idx] = scalar_t(0.5) * (keep * g_later - aI * g - c * aV * lv);
        }
      }
      for (int64_t m = begin; m < end; ++m) LVS[m] = sum_v[m - begin];
    });
  });
  return {g_out, h_out, lam_v_sum};
}

// Plain BPTT of the RNN-like equations with reset paths (activation_rnn). Returns {lam_V, lam_I}
// with lam_I = dL/dI / beta_V, as in layer._adjoint_rnn.
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
      const int64_t n = end - begin;
      std::vector<int64_t> first_spike(single ? n : 0, T);
      if (single) {
        for (int64_t t = 0; t < T; ++t)
          for (int64_t m = begin; m < end; ++m)
            if (S[t * M + m] != scalar_t(0) && first_spike[m - begin] == T) first_spike[m - begin] = t;
      }
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

// Nonzero entries of spikes viewed time-major [T, B, N] (any strides), as CSR rows row = t*B + b.
// Returns {row_offsets [T*B+1], rows [nnz], cols [nnz], values [nnz], all_ones (bool, 0-dim)}.
// Counting comes first, so a caller may ask only for the count with `count_only`.
std::vector<torch::Tensor> csr_events(torch::Tensor spikes_tbn, double max_density) {
  TORCH_CHECK(spikes_tbn.dim() == 3, "csr_events expects [T, B, N]");
  const int64_t T = spikes_tbn.size(0), B = spikes_tbn.size(1), N = spikes_tbn.size(2);
  const int64_t R = T * B;
  const auto st = spikes_tbn.stride(0), sb = spikes_tbn.stride(1), sn = spikes_tbn.stride(2);
  auto long_opts = spikes_tbn.options().dtype(torch::kInt64);
  auto offsets = torch::empty({R + 1}, long_opts);
  int64_t* off = offsets.data_ptr<int64_t>();
  std::vector<torch::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(spikes_tbn.scalar_type(), "csr_events", [&] {
    const scalar_t* x = spikes_tbn.data_ptr<scalar_t>();
    off[0] = 0;
    at::parallel_for(0, R, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* row = x + (r / B) * st + (r % B) * sb;
        int64_t c = 0;
        for (int64_t n = 0; n < N; ++n) c += row[n * sn] != scalar_t(0);
        off[r + 1] = c;
      }
    });
    for (int64_t r = 0; r < R; ++r) off[r + 1] += off[r];
    const int64_t nnz = off[R];
    if (static_cast<double>(nnz) >= max_density * static_cast<double>(R * N)) {
      out = {offsets.slice(0, R, R + 1)};  // too dense: only the count
      return;
    }
    auto rows = torch::empty({nnz}, long_opts);
    auto cols = torch::empty({nnz}, long_opts);
    auto values = torch::empty({nnz}, spikes_tbn.options());
    int64_t* rw = rows.data_ptr<int64_t>();
    int64_t* cl = cols.data_ptr<int64_t>();
    scalar_t* vl = values.data_ptr<scalar_t>();
    std::atomic<bool> all_ones{true};
    at::parallel_for(0, R, 64, [&](int64_t begin, int64_t end) {
      bool ones = true;
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* row = x + (r / B) * st + (r % B) * sb;
        int64_t k = off[r];
        for (int64_t n = 0; n < N; ++n) {
          const scalar_t v = row[n * sn];
          if (v != scalar_t(0)) {
            rw[k] = r;
            cl[k] = n;
            vl[k] = v;
            ones = ones && (v == scalar_t(1));
            ++k;
          }
        }
      }
      if (!ones) all_ones = false;
    });
    out = {offsets, rows, cols, values, torch::scalar_tensor(all_ones.load(), torch::kBool)};
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("csr_events", &csr_events, "nonzero spikes of [T, B, N] as CSR rows (or only their count when too dense)");
  m.def("lif_forward", &lif_forward, "LIF forward recurrence over [T, M]");
  m.def("srm_adjoint", &srm_adjoint, "reverse adjoint of the SRM-based rules");
  m.def("rnn_adjoint", &rnn_adjoint, "reverse adjoint with reset paths (activation_rnn)");
}
