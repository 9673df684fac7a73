// The LIF forward recurrence over a dense drive or fed by input events (lif_forward_impl).

#include "common.h"
#include "kernels.h"

namespace lif_kernels {

namespace {

// One block's output spikes in (t, m) order: the spiking neurons m and, per step t, how many
// events were recorded up to and including t.
struct ChunkEvents {
  int64_t begin;
  std::vector<int64_t> neuron;       // spiking neurons m, in (t, m) order
  std::vector<int64_t> end_of_step;  // events recorded up to and including step t
};

// The forward as its time loop reads it: sizes, scalars and data pointers (null where unused:
// x with input events; off, cl, W without; vl where all values are 1; TM, Iall, al where not
// stored or not in single-spike mode).
template <typename scalar_t>
struct ForwardViews {
  int64_t T, B, M, N;
  bool events, emit_events;
  scalar_t aI, aV, bI, bV, th;
  const scalar_t* x;
  const int64_t *off, *cl;
  const scalar_t *vl, *W, *bias;
  scalar_t *V, *S, *TM, *Iall, *cur, *pot, *kp, *al;
};

// Gather step t's input events into the drive row dr of the block [begin, end) (n columns, zero
// unless dirty, the flag set where this step leaves it nonzero).
template <typename scalar_t>
inline void gather_input_events(const ForwardViews<scalar_t>& F, int64_t t, int64_t begin, int64_t end,
                                scalar_t* __restrict dr, bool& drive_dirty) {
  const int64_t n = end - begin, N = F.N;
  const int64_t* off = F.off;
  if (drive_dirty) std::fill(dr, dr + n, scalar_t(0));
  drive_dirty = false;
  for (int64_t b = begin / N; b * N < end; ++b) {
    const int64_t lo = std::max(begin, b * N), hi = std::min(end, (b + 1) * N);
    const int64_t r = t * F.B + b;
    if (off[r + 1] > off[r]) drive_dirty = true;
    for (int64_t e = off[r]; e < off[r + 1]; ++e) {
      const scalar_t* __restrict wcol = F.W + F.cl[e] * N + (lo - b * N);
      scalar_t* __restrict dst = dr + (lo - begin);
      if (F.vl) {
        axpy_row<scalar_t>(hi - lo, F.vl[e], wcol, dst);
      } else {
        add_row<scalar_t>(hi - lo, wcol, dst);
      }
    }
  }
}

// Step t's spikes St of the block starting at column begin (n columns) into found, skipping
// empty runs of 64.
template <typename scalar_t>
inline void record_step_spikes(const scalar_t* St, int64_t n, int64_t begin, int64_t t, ChunkEvents& found) {
  for (int64_t k0 = 0; k0 < n; k0 += 64) {
    const int64_t k1 = std::min(n, k0 + 64);
    if (count_nonzero_row<scalar_t>(k1 - k0, St + k0) == 0) continue;
    for (int64_t k = k0; k < k1; ++k)
      if (St[k] != scalar_t(0)) found.neuron.push_back(begin + k);
  }
  found.end_of_step[t] = static_cast<int64_t>(found.neuron.size());
}

// The block of columns [begin, end) through the whole window: one step's state rows stay in
// cache. Returns the block's output spikes (empty unless emit_events).
template <typename scalar_t, bool SINGLE, bool STORE_I>
inline ChunkEvents run_block(const ForwardViews<scalar_t>& F, int64_t begin, int64_t end) {
  const scalar_t aI = F.aI, aV = F.aV, bI = F.bI, bV = F.bV, th = F.th;
  const int64_t M = F.M;
  scalar_t* __restrict c = F.cur + begin;
  scalar_t* __restrict p = F.pot + begin;
  scalar_t* __restrict kk = F.kp + begin;
  scalar_t* __restrict a = SINGLE ? F.al + begin : nullptr;
  const scalar_t* __restrict bb = F.bias + begin;
  const int64_t n = end - begin;
  std::vector<scalar_t> drive_row(F.events ? n : 0);  // zero at first
  bool drive_dirty = false;  // whether drive_row holds an earlier step's input
  ChunkEvents found{begin, {}, {}};
  if (F.emit_events) found.end_of_step.resize(F.T);
  for (int64_t t = 0; t < F.T; ++t) {
    const int64_t row = t * M + begin;
    const scalar_t* __restrict xt;
    if (F.events) {
      gather_input_events(F, t, begin, end, drive_row.data(), drive_dirty);
      xt = drive_row.data();
    } else {
      xt = F.x + row;
    }
    scalar_t* __restrict Vt = F.V + row;
    scalar_t* __restrict St = F.S + row;
    scalar_t* __restrict TMt = F.TM ? F.TM + row : nullptr;
    scalar_t* __restrict It = STORE_I ? F.Iall + row : nullptr;
    const scalar_t tf = static_cast<scalar_t>(t);
    if (F.TM) {
      lif_row<scalar_t, SINGLE, STORE_I, true>(n, xt, bb, c, p, kk, a, Vt, St, TMt, It, aI, aV, bI, bV, th, tf);
    } else {
      lif_row<scalar_t, SINGLE, STORE_I, false>(n, xt, bb, c, p, kk, a, Vt, St, nullptr, It, aI, aV, bI, bV, th, tf);
    }
    if (F.emit_events) record_step_spikes(St, n, begin, t, found);
  }
  return found;
}

// Every column through the window: each thread owns a range of neurons and walks it in blocks of
// kGrain columns, time outside, neurons inside (contiguous); with emit_events the blocks' output
// spikes are collected in chunks.
template <typename scalar_t, bool SINGLE, bool STORE_I>
void run_columns(const ForwardViews<scalar_t>& F, std::vector<ChunkEvents>& chunks) {
  std::mutex chunks_mutex;
  at::parallel_for(0, F.M, kGrain, [&](int64_t range_begin, int64_t range_end) {
    FlushDenormals flush;
    for (int64_t begin = range_begin; begin < range_end; begin += kGrain) {
      ChunkEvents found = run_block<scalar_t, SINGLE, STORE_I>(F, begin, std::min(range_end, begin + kGrain));
      if (F.emit_events) {
        std::lock_guard<std::mutex> lock(chunks_mutex);
        chunks.push_back(std::move(found));
      }
    }
  });
}

// The blocks' output spikes as CSR events over rows t*B + b: {row_offsets [T*B+1], rows [nnz],
// cols [nnz]}. Blocks hold ascending neuron ranges, so concatenating them step by step sorts the
// events by (t, m) = (t, b, n), i.e. by row t*B + b.
std::vector<torch::Tensor> events_as_csr(std::vector<ChunkEvents>& chunks, int64_t T, int64_t B, int64_t N,
                                         const torch::TensorOptions& long_opts) {
  std::sort(chunks.begin(), chunks.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  int64_t nnz = 0;
  for (const auto& c : chunks) nnz += static_cast<int64_t>(c.neuron.size());
  auto out_offsets = torch::zeros({T * B + 1}, long_opts);
  auto out_rows = torch::empty({nnz}, long_opts);
  auto out_cols = torch::empty({nnz}, long_opts);
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
  return {out_offsets, out_rows, out_cols};
}

}  // namespace

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
  std::vector<ChunkEvents> chunks;
  AT_DISPATCH_FLOATING_TYPES(current0.scalar_type(), "lif_forward", [&] {
    ForwardViews<scalar_t> F;
    F.T = T, F.B = B, F.M = M, F.N = N, F.events = events, F.emit_events = emit_events;
    F.aI = lif.alpha_I, F.aV = lif.alpha_V, F.bI = lif.beta_I, F.bV = lif.beta_V, F.th = lif.theta;
    F.x = events ? nullptr : drive_c.data_ptr<scalar_t>();
    F.off = events ? row_offsets.data_ptr<int64_t>() : nullptr;
    F.cl = events ? cols.data_ptr<int64_t>() : nullptr;
    F.vl = events && has_values ? values.data_ptr<scalar_t>() : nullptr;
    F.W = events ? wt.data_ptr<scalar_t>() : nullptr;
    F.bias = bias_c.data_ptr<scalar_t>();
    F.V = potential.data_ptr<scalar_t>(), F.S = spikes.data_ptr<scalar_t>();
    F.TM = store_times ? times.data_ptr<scalar_t>() : nullptr;
    F.Iall = keep_current ? currents.data_ptr<scalar_t>() : nullptr;
    F.cur = current_f.data_ptr<scalar_t>(), F.pot = potential_f.data_ptr<scalar_t>();
    F.kp = keep_f.data_ptr<scalar_t>();
    F.al = single ? allowed_f.data_ptr<scalar_t>() : nullptr;
    if (single) {
      keep_current ? run_columns<scalar_t, true, true>(F, chunks) : run_columns<scalar_t, true, false>(F, chunks);
    } else {
      keep_current ? run_columns<scalar_t, false, true>(F, chunks) : run_columns<scalar_t, false, false>(F, chunks);
    }
  });
  auto long_opts = opts.dtype(torch::kInt64);
  auto none = torch::empty({0}, long_opts);
  const auto out = emit_events ? events_as_csr(chunks, T, B, N, long_opts) : std::vector<torch::Tensor>{none, none, none};
  return {potential, spikes, times, current_f, potential_f, keep_f, allowed_f, currents, out[0], out[1], out[2]};
}

}  // namespace lif_kernels
