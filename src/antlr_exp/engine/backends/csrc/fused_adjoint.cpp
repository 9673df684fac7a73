// The network-level adjoint of one layer, fed by the layer above (fused_adjoint).

#include "common.h"
#include "kernels.h"

namespace lif_kernels {

namespace {

// The layer as the stages below read it: sizes, scalars and data pointers (empty inputs null).
template <typename scalar_t>
struct FusedLayer {
  int64_t T, M, R, B, N, N_up;  // steps, columns, rows K*B, samples per trial, neurons, neurons above
  bool w_per_trial, single, has_s, has_t;
  scalar_t aI, aV, tw, vmin, c, th, aw, sa, sb;
  SurrogateRow<scalar_t> sigma_row;
  const scalar_t *V, *S, *EGS, *EGT, *GU, *HU, *WU, *vl;
  const int64_t *off, *cl;
  scalar_t *G, *H, *LVS;

  // the weights W_up [N_up, N] of row r's trial
  const scalar_t* w_up(int64_t r) const { return WU + (w_per_trial ? (r / B) * N_up * N : 0); }
};

// One tile of rows [r0, r1) and its buffers through the reverse time loop.
template <typename scalar_t>
struct FusedTile {
  int64_t r0, r1, rows, width;
  std::vector<scalar_t> next_v, next_i, sum_v;
  // dL/dS of kStepBlock steps at a time (t, t-1, ...): G_up W_up for one row and several steps
  // shares the loads of W_up (matvec_acc_rows)
  std::vector<scalar_t> gs, d, grow;
  std::vector<char> row_silent;
  int64_t silent_count[kStepBlock] = {};
  int64_t block_top, block_low;  // the steps that gs holds: block_top down to block_low
  std::vector<int64_t> first_spike;

  FusedTile(const FusedLayer<scalar_t>& L, int64_t first_row, int64_t end_row)
      : r0(first_row), r1(end_row), rows(end_row - first_row), width((end_row - first_row) * L.N),
        next_v(width, scalar_t(0)), next_i(width, scalar_t(0)), sum_v(width, scalar_t(0)),
        gs(L.has_s ? kStepBlock * width : 0), d(width), grow(L.G ? 0 : width),
        row_silent(L.has_s ? kStepBlock * rows : 0, 0), block_top(L.T), block_low(L.T) {
    if (L.single && L.has_s) first_spike = first_spikes(L.S, L.T, L.M, r0 * L.N, r1 * L.N);
  }
};

// dL/dS of the next block of steps, t, t-1, ..., down to 0 at most: ext_gs plus G_up W_up; rows
// that receive nothing from anywhere (G_up all zero, no ext_gs) are marked silent.
template <typename scalar_t>
void fill_step_block(const FusedLayer<scalar_t>& L, FusedTile<scalar_t>& tile, int64_t t) {
  const int count = static_cast<int>(std::min<int64_t>(kStepBlock, t + 1));
  const int64_t width = tile.width, N = L.N, N_up = L.N_up;
  tile.block_top = t;
  tile.block_low = t - count + 1;
  for (int k = 0; k < count; ++k) {
    scalar_t* gk = tile.gs.data() + k * width;
    const int64_t base_k = (t - k) * L.M + tile.r0 * N;
    if (L.EGS) {
      std::copy(L.EGS + base_k, L.EGS + base_k + width, gk);
    } else {
      std::fill(gk, gk + width, scalar_t(0));
    }
    tile.silent_count[k] = 0;
  }
  if (!L.GU) return;
  for (int64_t r = tile.r0; r < tile.r1; ++r) {
    const scalar_t* xs[kStepBlock];
    scalar_t* ys[kStepBlock];
    int live = 0;
    for (int k = 0; k < count; ++k) {
      const scalar_t* gup = L.GU + ((t - k) * L.R + r) * N_up;
      const bool silent = count_nonzero_row<scalar_t>(N_up, gup) == 0;
      tile.row_silent[k * tile.rows + (r - tile.r0)] = silent && !L.EGS;
      tile.silent_count[k] += silent && !L.EGS;
      if (silent) continue;
      xs[live] = gup;
      ys[live] = tile.gs.data() + k * width + (r - tile.r0) * N;
      ++live;
    }
    if (live == 0) continue;
    matvec_acc_rows_n<scalar_t>(live, N, N_up, xs, L.w_up(r), ys);
  }
}

// 1. activation part of dL/dV at step t, into dd: sigma(V) * (ext + G_up W_up), masked after the
//    first spike; silent rows are 0 without sigma
template <typename scalar_t>
void activation_part(const FusedLayer<scalar_t>& L, FusedTile<scalar_t>& tile, int64_t t, const scalar_t* Vt,
                     scalar_t* dd) {
  const int64_t width = tile.width, N = L.N;
  if (!L.has_s) {
    std::fill(dd, dd + width, scalar_t(0));
    return;
  }
  if (t < tile.block_low) fill_step_block(L, tile, t);
  const scalar_t th = L.th, sa = L.sa, sb = L.sb, aw = L.aw;
  const int64_t slot = tile.block_top - t;
  scalar_t* g = tile.gs.data() + slot * width;
  const char* silent_here = tile.row_silent.data() + slot * tile.rows;
  if (tile.silent_count[slot] == 0) {
    L.sigma_row(Vt, g, dd, width, th, sa, sb, aw);
  } else {
    for (int64_t k = 0; k < tile.rows; ++k) {
      const int64_t o = k * N;
      if (silent_here[k]) {
        std::fill(dd + o, dd + o + N, scalar_t(0));
      } else {
        L.sigma_row(Vt + o, g + o, dd + o, N, th, sa, sb, aw);
      }
    }
  }
  if (L.single) mask_after_first<scalar_t>(width, t, tile.first_spike.data(), dd);
}

// 2. timing part of dL/dV at step t, at the spikes only: -tim_w (ext_gt + H_up W_up) / V*
template <typename scalar_t>
void timing_part(const FusedLayer<scalar_t>& L, const FusedTile<scalar_t>& tile, int64_t t, int64_t base,
                 const scalar_t* St, const scalar_t* Vt, scalar_t* dd) {
  const int64_t width = tile.width, N = L.N, N_up = L.N_up, M = L.M;
  const scalar_t tw = L.tw, vmin = L.vmin;
  for (int64_t q = 0; q < width; ++q) {
    if (q % 64 == 0 && count_nonzero_row<scalar_t>(std::min<int64_t>(64, width - q), St + q) == 0) {
      q += 63;  // no spike in this run of 64
      continue;
    }
    if (St[q] == scalar_t(0)) continue;
    scalar_t gt = L.EGT ? L.EGT[base + q] : scalar_t(0);
    if (L.HU) {
      const int64_t r = tile.r0 + q / N, n = q % N;
      const scalar_t* hup = L.HU + (t * L.R + r) * N_up;
      const scalar_t* Wk = L.w_up(r);
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

// 4. the weight gradient from step t's input events: dW_t[i] += value * G[t, r] for each event
template <typename scalar_t>
void event_weight_gradient(const FusedLayer<scalar_t>& L, const FusedTile<scalar_t>& tile, int64_t t,
                           const scalar_t* gw, scalar_t* DW) {
  const int64_t N = L.N;
  for (int64_t r = tile.r0; r < tile.r1; ++r) {
    const int64_t er = t * L.R + r;
    const scalar_t* __restrict gr = gw + (r - tile.r0) * N;
    for (int64_t e = L.off[er]; e < L.off[er + 1]; ++e) {
      scalar_t* __restrict dst = DW + L.cl[e] * N;
      if (L.vl) {
        axpy_row<scalar_t>(N, L.vl[e], gr, dst);
      } else {
        add_row<scalar_t>(N, gr, dst);
      }
    }
  }
}

// The reverse time loop over the rows [r0, r1): dL/dV by the rule (1, 2), the recurrence over the
// spike-free windows (3) and the weight gradient from the input events (4, where DW is given).
template <typename scalar_t>
void run_tile(const FusedLayer<scalar_t>& L, int64_t r0, int64_t r1, scalar_t* DW) {
  FusedTile<scalar_t> tile(L, r0, r1);
  const int64_t width = tile.width;
  for (int64_t t = L.T - 1; t >= 0; --t) {
    const int64_t base = t * L.M + r0 * L.N;
    const scalar_t* St = L.S + base;
    const scalar_t* Vt = L.V + base;
    scalar_t* dd = tile.d.data();
    activation_part(L, tile, t, Vt, dd);
    if (L.has_t) timing_part(L, tile, t, base, St, Vt, dd);
    scalar_t* nv = tile.next_v.data();
    scalar_t* ni = tile.next_i.data();
    scalar_t* sv = tile.sum_v.data();
    scalar_t* gw = L.G ? L.G + base : tile.grow.data();
    if (L.H) {
      adjoint_row<scalar_t, true>(width, St, dd, nv, ni, sv, gw, L.H + base, L.aI, L.aV, L.c);
    } else {
      adjoint_row<scalar_t, false>(width, St, dd, nv, ni, sv, gw, nullptr, L.aI, L.aV, L.c);
    }
    if (DW) event_weight_gradient(L, tile, t, gw, DW);
  }
  std::copy(tile.sum_v.begin(), tile.sum_v.end(), L.LVS + r0 * L.N);
}

// Rows per tile: at most about kTileColumns columns (one step's rows in cache) and, for a part of
// many trials, trials whose weights W_up fit in about 128 KiB, so that the time loop finds them in
// cache (it reads each trial's W_up at every step).
template <typename scalar_t>
int64_t tile_rows_for(const FusedLayer<scalar_t>& L, bool by_trial) {
  int64_t tile_rows = std::max<int64_t>(1, kTileColumns / L.N);
  if (by_trial && L.w_per_trial)
    tile_rows = std::min(tile_rows, L.B * std::max<int64_t>(1, (int64_t(1) << 17) /
                                                                  std::max<int64_t>(1, L.N_up * L.N * int64_t(sizeof(scalar_t)))));
  return tile_rows;
}

}  // namespace

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
  const int64_t T = potential.size(0), M = potential.size(1);
  const int64_t R = K * B;
  TORCH_CHECK(M % R == 0, "fused_adjoint: columns must be K*B*N");
  const int64_t N = M / R;
  const bool has_up = g_up.numel() > 0 || h_up.numel() > 0;
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
  // one part per thread: whole trials where K >= parts, else rows of a trial with private dW
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(R, at::get_num_threads()));
  const bool by_trial = K >= parts;
  std::vector<int64_t> bounds(parts + 1);
  for (int64_t p = 0; p <= parts; ++p) bounds[p] = by_trial ? (p * K / parts) * B : p * R / parts;
  std::vector<torch::Tensor> private_dw;
  if (want_dw && !by_trial)
    for (int64_t p = 1; p < parts; ++p) private_dw.push_back(torch::zeros({K * n_in, N}, opts));
  AT_DISPATCH_FLOATING_TYPES(potential.scalar_type(), "fused_adjoint", [&] {
    auto data = [](const torch::Tensor& x) { return x.numel() > 0 ? x.data_ptr<scalar_t>() : nullptr; };
    FusedLayer<scalar_t> L;
    L.T = T, L.M = M, L.R = R, L.B = B, L.N = N, L.N_up = has_up ? w_up.size(-2) : 0;
    L.w_per_trial = has_up && wu.dim() == 3, L.single = rule.single;
    L.has_s = rule.act_w != 0.0 && (ext_gs.numel() > 0 || g_up.numel() > 0);
    L.has_t = rule.tim_w != 0.0 && (ext_gt.numel() > 0 || h_up.numel() > 0);
    L.aI = rule.alpha_I, L.aV = rule.alpha_V, L.tw = rule.tim_w, L.vmin = rule.vstar_min, L.c = rule.kernel_scale;
    L.th = rule.theta, L.aw = rule.act_w, L.sa = rule.surrogate_a, L.sb = rule.surrogate_b;
    L.sigma_row = surrogate_row_for<scalar_t>(static_cast<int>(rule.surrogate_kind));
    L.V = potential.data_ptr<scalar_t>(), L.S = spikes.data_ptr<scalar_t>();
    L.EGS = data(egs), L.EGT = data(egt), L.GU = data(gu), L.HU = data(hu), L.WU = has_up ? data(wu) : nullptr;
    L.off = want_dw ? in_offsets.data_ptr<int64_t>() : nullptr;
    L.cl = want_dw ? in_cols.data_ptr<int64_t>() : nullptr;
    L.vl = want_dw ? data(in_values) : nullptr;
    L.G = need_g ? g_out.data_ptr<scalar_t>() : nullptr;
    L.H = want_h ? h_out.data_ptr<scalar_t>() : nullptr;
    L.LVS = lam_v_sum.data_ptr<scalar_t>();
    at::parallel_for(0, parts, 1, [&](int64_t part_begin, int64_t part_end) {
      FlushDenormals flush;
      for (int64_t part = part_begin; part < part_end; ++part) {
        const int64_t tile_rows = tile_rows_for(L, by_trial);
        scalar_t* DW = nullptr;
        if (want_dw) DW = (by_trial || part == 0) ? dw_t.data_ptr<scalar_t>() : private_dw[part - 1].data_ptr<scalar_t>();
        for (int64_t r0 = bounds[part]; r0 < bounds[part + 1]; r0 += tile_rows) {
          const int64_t r1 = std::min(bounds[part + 1], r0 + tile_rows);
          if (r1 > r0) run_tile(L, r0, r1, DW);
        }
      }
    });
  });
  for (const auto& extra : private_dw) dw_t.add_(extra);
  return {g_out, h_out, lam_v_sum, dw_t};
}

}  // namespace lif_kernels
