// The LIF forward recurrence over a dense drive or fed by input events (lif_forward_impl).

#include "common.h"
#include "kernels.h"

namespace lif_kernels {

// Forward recurrence. The synaptic input of step t is either the row drive[t] [T, M] (beta_I not
// applied) or, event-driven, sum over the events e of row (t, b) of values[e] * weight_t[cols[e], n]
// for neuron m = b * N + n (row_offsets [T*B+1] in CSR form, weight_t [N_in, N] contiguous; values
// empty when all are 1); then no drive tensor is ever formed.
// state: current, potential, keep [M]; allowed [M] (single-spike mode) or an empty tensor.
// Returns {potential [T,M], spikes [T,M], times [T,M] (= t * S; empty unless store_times), current_final, potential_final,
//          keep_final, allowed_final, currents [T,M] (only if keep_current, else empty),
//          and with emit_events the output spikes as CSR events over rows t*B + b:
//          row_offsets [T*B+1], rows [nnz], cols [nnz] (else three empty tensors)}.
std::vector<torch::Tensor> lif_forward_impl(torch::Tensor drive, torch::Tensor row_offsets, torch::Tensor cols,
                                            torch::Tensor values, torch::Tensor weight_t, int64_t T, int64_t B,
                                            torch::Tensor bias_term, torch::Tensor current0, torch::Tensor potential0,
                                            torch::Tensor keep0, torch::Tensor allowed0, const LifConstants& lif,
                                            bool keep_current, bool emit_events, bool store_times) {
  const double alpha_I = lif.alpha_I, alpha_V = lif.alpha_V, beta_I = lif.beta_I, beta_V = lif.beta_V;
  const double theta = lif.theta;
  const bool events = drive.numel() == 0;
  const int64_t M = current0.numel();
  const int64_t N = M / B;
  const bool single = allowed0.numel() > 0;
  auto opts = current0.options();
  auto potential = torch::empty({T, M}, opts);
  auto spikes = torch::empty({T, M}, opts);
  auto times = store_times ? torch::empty({T, M}, opts) : torch::empty({0}, opts);
  auto currents = keep_current ? torch::empty({T, M}, opts) : torch::empty({0}, opts);
  auto current_f = current0.contiguous().clone();
  auto potential_f = potential0.contiguous().clone();
  auto keep_f = keep0.contiguous().clone();
  auto allowed_f = single ? allowed0.contiguous().clone() : torch::empty({0}, opts);
  auto bias_c = bias_term.contiguous();
  auto drive_c = events ? drive : drive.contiguous();
  auto wt = events ? weight_t.contiguous() : weight_t;
  const bool has_values = values.numel() > 0;
  struct ChunkEvents {
    int64_t begin;
    std::vector<int64_t> neuron;       // spiking neurons m, in (t, m) order
    std::vector<int64_t> end_of_step;  // events recorded up to and including step t
  };
  std::mutex chunks_mutex;
  std::vector<ChunkEvents> chunks;
  AT_DISPATCH_FLOATING_TYPES(current0.scalar_type(), "lif_forward", [&] {
    const scalar_t aI = alpha_I, aV = alpha_V, bI = beta_I, bV = beta_V, th = theta;
    const scalar_t* x = events ? nullptr : drive_c.data_ptr<scalar_t>();
    const int64_t* off = events ? row_offsets.data_ptr<int64_t>() : nullptr;
    const int64_t* cl = events ? cols.data_ptr<int64_t>() : nullptr;
    const scalar_t* vl = events && has_values ? values.data_ptr<scalar_t>() : nullptr;
    const scalar_t* W = events ? wt.data_ptr<scalar_t>() : nullptr;
    const scalar_t* bias = bias_c.data_ptr<scalar_t>();
    scalar_t* V = potential.data_ptr<scalar_t>();
    scalar_t* S = spikes.data_ptr<scalar_t>();
    scalar_t* TM = store_times ? times.data_ptr<scalar_t>() : nullptr;
    scalar_t* Iall = keep_current ? currents.data_ptr<scalar_t>() : nullptr;
    scalar_t* cur = current_f.data_ptr<scalar_t>();
    scalar_t* pot = potential_f.data_ptr<scalar_t>();
    scalar_t* kp = keep_f.data_ptr<scalar_t>();
    scalar_t* al = single ? allowed_f.data_ptr<scalar_t>() : nullptr;
    // Each thread owns a block of neurons and walks time outside, neurons inside (contiguous).
    auto run = [&](auto single_tag, auto store_tag) {
      constexpr bool SINGLE = decltype(single_tag)::value;
      constexpr bool STORE_I = decltype(store_tag)::value;
      at::parallel_for(0, M, kGrain, [&](int64_t range_begin, int64_t range_end) {
       FlushDenormals flush;
       // blocks of kGrain columns, each through the whole window: one step's state rows stay in cache
       for (int64_t begin = range_begin; begin < range_end; begin += kGrain) {
        const int64_t end = std::min(range_end, begin + kGrain);
        scalar_t* __restrict c = cur + begin;
        scalar_t* __restrict p = pot + begin;
        scalar_t* __restrict kk = kp + begin;
        scalar_t* __restrict a = SINGLE ? al + begin : nullptr;
        const scalar_t* __restrict bb = bias + begin;
        const int64_t n = end - begin;
        std::vector<scalar_t> drive_row(events ? n : 0);  // zero at first
        bool drive_dirty = false;  // whether drive_row holds an earlier step's input
        ChunkEvents found{begin, {}, {}};
        if (emit_events) found.end_of_step.resize(T);
        for (int64_t t = 0; t < T; ++t) {
          const int64_t row = t * M + begin;
          const scalar_t* __restrict xt;
          if (events) {  // gather this step's input events into the block's drive row
            scalar_t* __restrict dr = drive_row.data();
            if (drive_dirty) std::fill(dr, dr + n, scalar_t(0));
            drive_dirty = false;
            for (int64_t b = begin / N; b * N < end; ++b) {
              const int64_t lo = std::max(begin, b * N), hi = std::min(end, (b + 1) * N);
              const int64_t r = t * B + b;
              if (off[r + 1] > off[r]) drive_dirty = true;
              for (int64_t e = off[r]; e < off[r + 1]; ++e) {
                const scalar_t* __restrict wcol = W + cl[e] * N + (lo - b * N);
                scalar_t* __restrict dst = dr + (lo - begin);
                if (vl) {
                  axpy_row<scalar_t>(hi - lo, vl[e], wcol, dst);
                } else {
                  add_row<scalar_t>(hi - lo, wcol, dst);
                }
              }
            }
            xt = dr;
          } else {
            xt = x + row;
          }
          scalar_t* __restrict Vt = V + row;
          scalar_t* __restrict St = S + row;
          scalar_t* __restrict TMt = TM ? TM + row : nullptr;
          const scalar_t tf = static_cast<scalar_t>(t);
          if (TM) {
            lif_row<scalar_t, SINGLE, STORE_I, true>(n, xt, bb, c, p, kk, a, Vt, St, TMt, STORE_I ? Iall + row : nullptr,
                                                     aI, aV, bI, bV, th, tf);
          } else {
            lif_row<scalar_t, SINGLE, STORE_I, false>(n, xt, bb, c, p, kk, a, Vt, St, nullptr,
                                                      STORE_I ? Iall + row : nullptr, aI, aV, bI, bV, th, tf);
          }
          if (emit_events) {  // this step's spikes of the block, skipping empty runs of 64
            for (int64_t k0 = 0; k0 < n; k0 += 64) {
              const int64_t k1 = std::min(n, k0 + 64);
              if (count_nonzero_row<scalar_t>(k1 - k0, St + k0) == 0) continue;
              for (int64_t k = k0; k < k1; ++k)
                if (St[k] != scalar_t(0)) found.neuron.push_back(begin + k);
            }
            found.end_of_step[t] = static_cast<int64_t>(found.neuron.size());
          }
        }
        if (emit_events) {
          std::lock_guard<std::mutex> lock(chunks_mutex);
          chunks.push_back(std::move(found));
        }
       }
      });
    };
    using T_ = std::true_type;
    using F_ = std::false_type;
    if (single) {
      keep_current ? run(T_{}, T_{}) : run(T_{}, F_{});
    } else {
      keep_current ? run(F_{}, T_{}) : run(F_{}, F_{});
    }
  });
  auto long_opts = opts.dtype(torch::kInt64);
  torch::Tensor out_offsets = torch::empty({0}, long_opts), out_rows = out_offsets, out_cols = out_offsets;
  if (emit_events) {
    // blocks hold ascending neuron ranges, so concatenating them step by step sorts the events by
    // (t, m) = (t, b, n), i.e. by row t*B + b
    std::sort(chunks.begin(), chunks.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
    int64_t nnz = 0;
    for (const auto& c : chunks) nnz += static_cast<int64_t>(c.neuron.size());
    out_offsets = torch::zeros({T * B + 1}, long_opts);
    out_rows = torch::empty({nnz}, long_opts);
    out_cols = torch::empty({nnz}, long_opts);
    int64_t* off = out_offsets.data_ptr<int64_t>();
    int64_t* rw = out_rows.data_ptr<int64_t>();
    int64_t* cl = out_cols.data_ptr<int64_t>();
    int64_t k = 0;
    for (int64_t t = 0; t < T; ++t) {
      for (const auto& c : chunks) {
        const int64_t first = t > 0 ? c.end_of_step[t - 1] : 0;
        for (int64_t e = first; e < c.end_of_step[t]; ++e) {
          const int64_t m = c.neuron[e];
          const int64_t r = t * B + m / N;
          rw[k] = r;
          cl[k] = m % N;
          ++off[r + 1];
          ++k;
        }
      }
    }
    for (int64_t r = 0; r < T * B; ++r) off[r + 1] += off[r];
  }
  return {potential, spikes, times, current_f, potential_f, keep_f, allowed_f, currents, out_offsets, out_rows, out_cols};
}

}  // namespace lif_kernels
