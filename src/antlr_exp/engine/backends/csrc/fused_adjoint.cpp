// The network-level adjoint of one layer, fed by the layer above (fused_adjoint).

#include "common.h"
#include "kernels.h"

namespace lif_kernels {

// Network-level backward of one layer of an SRM-based rule (activation, timing, antlr), fused
// with the products that the per-layer path runs as separate passes:
//   dL/dS[t, r, n]  = ext_gs[t, r, n] + sum_j G_up[t, r, j] W_up[k, j, n]       (r = k*B + b)
//   dL/dt[t, r, n]  = ext_gt[t, r, n] + sum_j H_up[t, r, j] W_up[k, j, n]       (at spikes only)
// are formed on the fly from the layer above (G_up, H_up [T, K*B, N_up], W_up [K, N_up, N]); the
// adjoint is srm_adjoint's; and with input events (CSR rows t*K*B + r, columns already moved to
// their trial's block k*N_in + i) the weight gradient sum_t G[t, r, n] S_in[t, r, i] is summed
// here as well, into dW_t [K*N_in, N], so that G need not be stored at all (need_g false).
// Any of ext_gs, ext_gt, G_up, H_up may be empty. Each thread walks a contiguous range of rows
// r (whole trials where there are at least as many trials as threads, so that no two threads
// write the same gradient element; else rows of one trial, each thread summing its weight
// gradient into a buffer of its own, added up at the end).
// Returns {G [T, M] or empty, H [T, M] or empty, sum_t lam_V [M], dW_t [K*N_in, N] or empty}.
std::vector<torch::Tensor> fused_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor ext_gs,
                                         torch::Tensor ext_gt, torch::Tensor g_up, torch::Tensor h_up,
                                         torch::Tensor w_up, torch::Tensor in_offsets, torch::Tensor in_cols,
                                         torch::Tensor in_values, int64_t K, int64_t B, int64_t n_in,
                                         const RuleConstants& rule, bool need_g, bool want_h) {
  const double alpha_I = rule.alpha_I, alpha_V = rule.alpha_V, theta = rule.theta;
  const double act_w = rule.act_w, tim_w = rule.tim_w, vstar_min = rule.vstar_min;
  const int64_t surrogate_kind = rule.surrogate_kind;
  const double surrogate_a = rule.surrogate_a, surrogate_b = rule.surrogate_b, kernel_scale = rule.kernel_scale;
  const bool single = rule.single;
  const int64_t T = potential.size(0), M = potential.size(1);
  const int64_t R = K * B;
  TORCH_CHECK(M % R == 0, "fused_adjoint: columns must be K*B*N");
  const int64_t N = M / R;
  const bool has_up = g_up.numel() > 0 || h_up.numel() > 0;
  const int64_t N_up = has_up ? w_up.size(-2) : 0;
  const bool has_s = act_w != 0.0 && (ext_gs.numel() > 0 || g_up.numel() > 0);
  const bool has_t = tim_w != 0.0 && (ext_gt.numel() > 0 || h_up.numel() > 0);
  const bool want_dw = in_offsets.numel() > 0;
  auto opts = potential.options();
  auto g_out = need_g ? torch::empty({T, M}, opts) : torch::empty({0}, opts);
  auto h_out = want_h ? torch::empty({T, M}, opts) : torch::empty({0}, opts);
  auto lam_v_sum = torch::empty({M}, opts);
  auto dw_t = want_dw ? torch::zeros({K * n_in, N}, opts) : torch::empty({0}, opts);
  auto egs = ext_gs.numel() > 0 ? ext_gs.contiguous() : ext_gs;
  auto egt = ext_gt.numel() > 0 ? ext_gt.contiguous() : ext_gt;
  auto gu = g_up.numel() > 0 ? g_up.contiguous() : g_up;
  auto hu = h_up.numel() > 0 ? h_up.contiguous() : h_up;
  auto wu = has_up ? w_up.contiguous() : w_up;
  const bool w_per_trial = has_up && wu.dim() == 3;
  // one part per thread: whole trials where K >= parts, else rows of a trial with private dW
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(R, at::get_num_threads()));
  const bool by_trial = K >= parts;
  std::vector<int64_t> bounds(parts + 1);
  for (int64_t p = 0; p <= parts; ++p) bounds[p] = by_trial ? (p * K / parts) * B : p * R / parts;
  std::vector<torch::Tensor> private_dw;
  if (want_dw && !by_trial)
    for (int64_t p = 1; p < parts; ++p) private_dw.push_back(torch::zeros({K * n_in, N}, opts));
  AT_DISPATCH_FLOATING_TYPES(potential.scalar_type(), "fused_adjoint", [&] {
    const scalar_t aI = alpha_I, aV = alpha_V, tw = tim_w, vmin = vstar_min, c = kernel_scale;
    const scalar_t th = theta, aw = act_w, sa = surrogate_a, sb = surrogate_b;
    const auto sigma_row = surrogate_row_for<scalar_t>(static_cast<int>(surrogate_kind));
    const scalar_t* V = potential.data_ptr<scalar_t>();
    const scalar_t* S = spikes.data_ptr<scalar_t>();
    const scalar_t* EGS = egs.numel() > 0 ? egs.data_ptr<scalar_t>() : nullptr;
    const scalar_t* EGT = egt.numel() > 0 ? egt.data_ptr<scalar_t>() : nullptr;
    const scalar_t* GU = gu.numel() > 0 ? gu.data_ptr<scalar_t>() : nullptr;
    const scalar_t* HU = hu.numel() > 0 ? hu.data_ptr<scalar_t>() : nullptr;
    const scalar_t* WU = has_up ? wu.data_ptr<scalar_t>() : nullptr;
    const int64_t* off = want_dw ? in_offsets.data_ptr<int64_t>() : nullptr;
    const int64_t* cl = want_dw ? in_cols.data_ptr<int64_t>() : nullptr;
    const scalar_t* vl = want_dw && in_values.numel() > 0 ? in_values.data_ptr<scalar_t>() : nullptr;
    scalar_t* G = need_g ? g_out.data_ptr<scalar_t>() : nullptr;
    scalar_t* H = want_h ? h_out.data_ptr<scalar_t>() : nullptr;
    scalar_t* LVS = lam_v_sum.data_ptr<scalar_t>();
    at::parallel_for(0, parts, 1, [&](int64_t part_begin, int64_t part_end) {
      FlushDenormals flush;
      for (int64_t part = part_begin; part < part_end; ++part) {
       // a part of many trials runs in tiles of trials whose weights W_up fit in about 128 KiB,
       // so that the time loop finds them in cache (it reads each trial's W_up at every step)
       // and in any case in tiles of at most about kTileColumns columns (one step's rows in cache)
       int64_t tile_rows = std::max<int64_t>(1, kTileColumns / N);
       if (by_trial && w_per_trial)
         tile_rows = std::min(tile_rows, B * std::max<int64_t>(1, (int64_t(1) << 17) /
                                                                    std::max<int64_t>(1, N_up * N * int64_t(sizeof(scalar_t)))));
       for (int64_t tile0 = bounds[part]; tile0 < bounds[part + 1]; tile0 += tile_rows) {
        const int64_t r0 = tile0, r1 = std::min(bounds[part + 1], tile0 + tile_rows);
        if (r1 <= r0) continue;
        const int64_t width = (r1 - r0) * N;
        scalar_t* DW = nullptr;
        if (want_dw) DW = (by_trial || part == 0) ? dw_t.data_ptr<scalar_t>() : private_dw[part - 1].data_ptr<scalar_t>();
        std::vector<scalar_t> next_v(width, scalar_t(0)), next_i(width, scalar_t(0)), sum_v(width, scalar_t(0));
        // dL/dS of kStepBlock steps at a time (t, t-1, ...): G_up W_up for one row and several
        // steps shares the loads of W_up (matvec_acc_rows)
        const int64_t rows = r1 - r0;
        std::vector<scalar_t> gs(has_s ? kStepBlock * width : 0), d(width), grow(G ? 0 : width);
        std::vector<char> row_silent(has_s ? kStepBlock * rows : 0, 0);
        int64_t silent_count[kStepBlock] = {};
        int64_t block_top = T, block_low = T;  // the steps that gs holds: block_top down to block_low
        std::vector<int64_t> first_spike;
        if (single && has_s) first_spike = first_spikes(S, T, M, r0 * N, r1 * N);
        for (int64_t t = T - 1; t >= 0; --t) {
          const int64_t base = t * M + r0 * N;
          const scalar_t* __restrict St = S + base;
          const scalar_t* __restrict Vt = V + base;
          scalar_t* __restrict dd = d.data();
          // 1. activation part: sigma(V) * (ext + G_up W_up), masked after the first spike; rows
          //    with no gradient from anywhere (G_up all zero, no ext_gs) are 0 without sigma
          if (has_s) {
            if (t < block_low) {  // the next block of steps: t, t-1, ..., down to 0 at most
              const int count = static_cast<int>(std::min<int64_t>(kStepBlock, t + 1));
              block_top = t;
              block_low = t - count + 1;
              for (int k = 0; k < count; ++k) {
                scalar_t* gk = gs.data() + k * width;
                const int64_t base_k = (t - k) * M + r0 * N;
                if (EGS) {
                  std::copy(EGS + base_k, EGS + base_k + width, gk);
                } else {
                  std::fill(gk, gk + width, scalar_t(0));
                }
                silent_count[k] = 0;
              }
              if (GU) {
                for (int64_t r = r0; r < r1; ++r) {
                  const scalar_t* xs[kStepBlock];
                  scalar_t* ys[kStepBlock];
                  int live = 0;
                  for (int k = 0; k < count; ++k) {
                    const scalar_t* gup = GU + ((t - k) * R + r) * N_up;
                    const bool silent = count_nonzero_row<scalar_t>(N_up, gup) == 0;
                    row_silent[k * rows + (r - r0)] = silent && !EGS;
                    silent_count[k] += silent && !EGS;
                    if (silent) continue;
                    xs[live] = gup;
                    ys[live] = gs.data() + k * width + (r - r0) * N;
                    ++live;
                  }
                  if (live == 0) continue;
                  const scalar_t* Wk = WU + (w_per_trial ? (r / B) * N_up * N : 0);
                  matvec_acc_rows_n<scalar_t>(live, N, N_up, xs, Wk, ys);
                }
              }
            }
            const int64_t slot = block_top - t;
            scalar_t* __restrict g = gs.data() + slot * width;
            const char* silent_here = row_silent.data() + slot * rows;
            if (silent_count[slot] == 0) {
              sigma_row(Vt, g, dd, width, th, sa, sb, aw);
            } else {
              for (int64_t r = r0; r < r1; ++r) {
                const int64_t o = (r - r0) * N;
                if (silent_here[r - r0]) {
                  std::fill(dd + o, dd + o + N, scalar_t(0));
                } else {
                  sigma_row(Vt + o, g + o, dd + o, N, th, sa, sb, aw);
                }
              }
            }
            if (single) mask_after_first<scalar_t>(width, t, first_spike.data(), dd);
          } else {
            std::fill(dd, dd + width, scalar_t(0));
          }
          // 2. timing part at the spikes only
          if (has_t) {
            for (int64_t q = 0; q < width; ++q) {
              if (q % 64 == 0 && count_nonzero_row<scalar_t>(std::min<int64_t>(64, width - q), St + q) == 0) {
                q += 63;  // no spike in this run of 64
                continue;
              }
              if (St[q] == scalar_t(0)) continue;
              scalar_t gt = EGT ? EGT[base + q] : scalar_t(0);
              if (HU) {
                const int64_t r = r0 + q / N, n = q % N;
                const scalar_t* hup = HU + (t * R + r) * N_up;
                const scalar_t* Wk = WU + (w_per_trial ? (r / B) * N_up * N : 0);
                scalar_t acc = 0;
                for (int64_t j = 0; j < N_up; ++j) acc += hup[j] * Wk[j * N + n];
                gt += acc;
              }
              scalar_t before = 0;
              if (t > 0) before = Vt[q - M] * (scalar_t(1) - St[q - M]);
              scalar_t vstar = Vt[q] - before;
              if (vstar < vmin) vstar = vmin;
              dd[q] -= tw * gt / vstar;
            }
          }
          // 3. the recurrence over the spike-free windows
          scalar_t* __restrict nv = next_v.data();
          scalar_t* __restrict ni = next_i.data();
          scalar_t* __restrict sv = sum_v.data();
          scalar_t* __restrict gw = G ? G + base : grow.data();
          if (H) {
            adjoint_row<scalar_t, true>(width, St, dd, nv, ni, sv, gw, H + base, aI, aV, c);
          } else {
            adjoint_row<scalar_t, false>(width, St, dd, nv, ni, sv, gw, nullptr, aI, aV, c);
          }
          // 4. the weight gradient from this step's input events
          if (DW) {
            for (int64_t r = r0; r < r1; ++r) {
              const int64_t er = t * R + r;
              const scalar_t* __restrict gr = gw + (r - r0) * N;
              for (int64_t e = off[er]; e < off[er + 1]; ++e) {
                scalar_t* __restrict dst = DW + cl[e] * N;
                if (vl) {
                  axpy_row<scalar_t>(N, vl[e], gr, dst);
                } else {
                  add_row<scalar_t>(N, gr, dst);
                }
              }
            }
          }
        }
        std::copy(sum_v.begin(), sum_v.end(), LVS + r0 * N);
       }
      }
    });
  });
  for (const auto& extra : private_dw) dw_t.add_(extra);
  return {g_out, h_out, lam_v_sum, dw_t};
}

}  // namespace lif_kernels
