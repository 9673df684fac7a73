// Fused CPU kernels for the LIF time recurrences of antlr_exp.layer.
//
// Layout: every [T, M] tensor is time-major and contiguous, M = batch * neurons.
// Built with -fopenmp: at::parallel_for is a header-inline `#pragma omp parallel` under torch's
// OpenMP backend, and the libgomp.so.1 torch has already loaded serves this module too.
// The math is exactly that of the PyTorch path in layer.py (simulate_lif, dv_from_rule,
// _adjoint_srm, _adjoint_rnn); the tests compare both paths.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <type_traits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace {

// Subnormal numbers flushed to zero (FTZ) and read as zero (DAZ) while a kernel's thread runs,
// the thread's previous mode restored after. The exponential surrogate of a potential far below
// threshold, times a small gradient, lands below the smallest normal float (1.2e-38); x86 handles
// such numbers in microcode, and late in training they made the adjoint about 2x slower (Fig. 6's
// stacked step: 25 ms against 13 ms with the flush, same weights). Values that small change no
// gradient that matters; the PyTorch path keeps them.
struct FlushDenormals {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

constexpr int64_t kGrain = 2048;
constexpr int64_t kTileColumns = 4096;

// exp(x) by Cody-Waite range reduction and a polynomial (float) or rational (double)
// approximation of the classic Cephes form: within a few ulp of std::exp, and branch-free so
// that loops calling it vectorize. NONPOSITIVE: for x <= 0 (or NaN) only, with the same values
// there: the clamp at the top and the sign test of the rounding fall away (the exponential
// surrogate's exp(-b |u|), b > 0 as NeuronParams checks, only ever needs this).
template <bool NONPOSITIVE = false>
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (!NONPOSITIVE && x > 88.0f ? 88.0f : x);
  const float t = x * 1.44269504088896341f;
  const float half = NONPOSITIVE ? -0.5f : (t >= 0.0f ? 0.5f : -0.5f);
  const float n = static_cast<float>(static_cast<int32_t>(t + half));
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

template <bool NONPOSITIVE = false>
inline double fast_exp(double x) {
  x = x < -708.0 ? -708.0 : (!NONPOSITIVE && x > 709.0 ? 709.0 : x);
  const double t = x * 1.4426950408889634073599;
  const double half = NONPOSITIVE ? -0.5 : (t >= 0.0 ? 0.5 : -0.5);
  const int32_t ni = static_cast<int32_t>(t + half);  // |n| <= 1022
  const double n = static_cast<double>(ni);
  const double r = (x - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6;
  const double rr = r * r;
  const double px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1);
  const double qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr +
                    2.00000000000000000009e0;
  const double e = 1.0 + 2.0 * px / (qx - px);
  const int64_t bits = static_cast<int64_t>(ni + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

// surrogate derivative sigma(u), u = V - theta; KIND numbered as in antlr_exp.kernels
template <typename scalar_t, int KIND>
inline scalar_t surrogate(scalar_t u, scalar_t a, scalar_t b) {
  const scalar_t au = std::fabs(u);
  if constexpr (KIND == 0) {  // exponential (b > 0, so the argument is <= 0)
    return a * fast_exp<true>(-b * au);
  } else if constexpr (KIND == 1) {  // fast_sigmoid
    const scalar_t d = scalar_t(1) + b * au;
    return a / (d * d);
  } else if constexpr (KIND == 2) {  // triangle
    const scalar_t v = scalar_t(1) - b * au;
    return v > scalar_t(0) ? a * v : scalar_t(0);
  } else {  // sigmoid
    const scalar_t sg = scalar_t(1) / (scalar_t(1) + fast_exp(-b * u));
    return scalar_t(4) * a * sg * (scalar_t(1) - sg);
  }
}

// out[k] = w * sigma(V[k] - theta) * G[k] over one row: a tight loop that the compiler vectorizes.
// Multiply-adds may fuse here (fp-contract=fast): the exponential's polynomial then takes half
// the instructions, and each fused term rounds once instead of twice (the surrogate is an
// approximation of the PyTorch path's exp to a few ulp either way; the tests allow for it).
template <typename scalar_t, int KIND>
__attribute__((optimize("fp-contract=fast"))) void surrogate_row(const scalar_t* __restrict V,
                                                                 const scalar_t* __restrict G,
                                                                 scalar_t* __restrict out, int64_t n, scalar_t theta,
                                                                 scalar_t a, scalar_t b, scalar_t w) {
  for (int64_t k = 0; k < n; ++k) out[k] = w * surrogate<scalar_t, KIND>(V[k] - theta, a, b) * G[k];
}

template <typename scalar_t>
using SurrogateRow = void (*)(const scalar_t*, const scalar_t*, scalar_t*, int64_t, scalar_t, scalar_t, scalar_t,
                              scalar_t);

template <typename scalar_t>
SurrogateRow<scalar_t> surrogate_row_for(int kind) {
  switch (kind) {
    case 0: return surrogate_row<scalar_t, 0>;
    case 1: return surrogate_row<scalar_t, 1>;
    case 2: return surrogate_row<scalar_t, 2>;
    default: return surrogate_row<scalar_t, 3>;
  }
}

// First spike step of each neuron m in [begin, end) of spikes [T, M] (T where it never fires).
template <typename scalar_t>
std::vector<int64_t> first_spikes(const scalar_t* S, int64_t T, int64_t M, int64_t begin, int64_t end) {
  std::vector<int64_t> first(end - begin, T);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t m = begin; m < end; ++m)
      if (S[t * M + m] != scalar_t(0) && first[m - begin] == T) first[m - begin] = t;
  return first;
}

// The row loops of the kernels below live in functions of their own: GCC honours __restrict on
// function parameters (and keeps it when inlining) but not on local pointers, and without it the
// many arrays of a loop need more run-time alias checks than it will emit, so the loops stayed
// scalar. The arithmetic is unchanged.

// One LIF step over n columns: I, V, the spike and its time, the carried state.
template <typename scalar_t, bool SINGLE, bool STORE_I, bool STORE_T>
__attribute__((noinline)) void lif_row(int64_t n, const scalar_t* __restrict xt, const scalar_t* __restrict bb,
                                       scalar_t* __restrict c, scalar_t* __restrict p, scalar_t* __restrict kk,
                                       scalar_t* __restrict a, scalar_t* __restrict Vt, scalar_t* __restrict St,
                                       scalar_t* __restrict TMt, scalar_t* __restrict It, scalar_t aI, scalar_t aV,
                                       scalar_t bI, scalar_t bV, scalar_t th, scalar_t tf) {
  for (int64_t k = 0; k < n; ++k) {
    const scalar_t i = aI * kk[k] * c[k] + bI * xt[k];
    const scalar_t v = aV * kk[k] * p[k] + bV * i + bb[k];
    scalar_t s = v >= th ? scalar_t(1) : scalar_t(0);
    if constexpr (SINGLE) {
      s *= a[k];
      a[k] *= (scalar_t(1) - s);
    }
    c[k] = i;
    p[k] = v;
    kk[k] = scalar_t(1) - s;
    Vt[k] = v;
    St[k] = s;
    if constexpr (STORE_T) TMt[k] = s * tf;
    if constexpr (STORE_I) It[k] = i;
  }
}

// how many of x[0..n) are nonzero (an integer sum, which vectorizes)
template <typename scalar_t>
__attribute__((noinline)) int32_t count_nonzero_row(int64_t n, const scalar_t* __restrict x) {
  int32_t count = 0;
  for (int64_t k = 0; k < n; ++k) count += x[k] != scalar_t(0) ? 1 : 0;
  return count;
}

// 32-byte vectors (GCC vector extensions) for the register-blocked products below, whose plain
// loop forms did not vectorize. There multiply-adds may fuse (as in the BLAS product of the
// per-layer path): each term then rounds once instead of twice.
typedef float float_x8 __attribute__((vector_size(32)));
typedef double double_x4 __attribute__((vector_size(32)));
template <typename scalar_t>
struct Vec32;  // (an attribute on a dependent alias would be dropped, hence the two typedefs)
template <>
struct Vec32<float> {
  using type = float_x8;
};
template <>
struct Vec32<double> {
  using type = double_x4;
};

// S rows at once: y[s][q] += sum_j x[s][j] W[j * n + q] for s < S (the rows of S time steps of one
// trial, which share W). Each vector of W loaded serves S multiply-adds (one per step, against
// one load per multiply-add step by step); S * NV accumulators in registers hide the
// multiply-add latency. Blocks of NV vectors along q; a row that is not a multiple of
// the block ends with one more block flush with its end, started from the values saved before (the
// overlap is computed twice, in the same order, to the same values).
template <typename scalar_t, int S, int NV>
__attribute__((always_inline, optimize("fp-contract=fast"))) inline void matvec_rows_block(
    int64_t n, int64_t m, const scalar_t* const* x, const scalar_t* __restrict Wq, const scalar_t* const* start,
    scalar_t* const* out, int64_t q0) {
  using vec = typename Vec32<scalar_t>::type;
  constexpr int64_t L = sizeof(vec) / sizeof(scalar_t);
  vec a[S][NV];
  for (int s = 0; s < S; ++s)
    for (int v = 0; v < NV; ++v) std::memcpy(&a[s][v], start[s] + v * L, sizeof(vec));
  for (int64_t j = 0; j < m; ++j) {
    vec w[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&w[v], Wq + j * n + v * L, sizeof(vec));
    for (int s = 0; s < S; ++s) {
      const scalar_t xs = x[s][j];
      for (int v = 0; v < NV; ++v) a[s][v] += xs * w[v];
    }
  }
  for (int s = 0; s < S; ++s)
    for (int v = 0; v < NV; ++v) std::memcpy(out[s] + q0 + v * L, &a[s][v], sizeof(vec));
}

// matvec_acc_rows over the whole row in blocks of NV vectors (n >= NV vectors)
template <typename scalar_t, int S, int NV>
__attribute__((always_inline, optimize("fp-contract=fast"))) inline void matvec_rows_blocks(
    int64_t n, int64_t m, const scalar_t* const* x, const scalar_t* __restrict W, scalar_t* const* y) {
  constexpr int64_t span = NV * int64_t(sizeof(typename Vec32<scalar_t>::type) / sizeof(scalar_t));
  scalar_t saved[S][span];
  const scalar_t* from_saved[S];
  for (int s = 0; s < S; ++s) {
    std::memcpy(saved[s], y[s] + n - span, sizeof(saved[s]));
    from_saved[s] = saved[s];
  }
  int64_t q0 = 0;
  for (; q0 + span <= n; q0 += span) {
    const scalar_t* st[S];
    for (int s = 0; s < S; ++s) st[s] = y[s] + q0;
    matvec_rows_block<scalar_t, S, NV>(n, m, x, W + q0, st, y, q0);
  }
  if (q0 < n) matvec_rows_block<scalar_t, S, NV>(n, m, x, W + n - span, from_saved, y, n - span);
}

template <typename scalar_t, int S>
__attribute__((noinline, optimize("fp-contract=fast"))) void matvec_acc_rows(int64_t n, int64_t m,
                                                                            const scalar_t* const* x,
                                                                            const scalar_t* __restrict W,
                                                                            scalar_t* const* y) {
  constexpr int64_t L = sizeof(typename Vec32<scalar_t>::type) / sizeof(scalar_t);
  constexpr int NV = S <= 2 ? 3 : 2;  // S * NV accumulators: 6 or 8 (of 16 registers)
  if (n >= NV * L) {
    matvec_rows_blocks<scalar_t, S, NV>(n, m, x, W, y);
  } else if (n >= L) {
    matvec_rows_blocks<scalar_t, S, 1>(n, m, x, W, y);
  } else {
    for (int s = 0; s < S; ++s)
      for (int64_t q = 0; q < n; ++q) {
        scalar_t acc = y[s][q];
        for (int64_t j = 0; j < m; ++j) acc += x[s][j] * W[j * n + q];
        y[s][q] = acc;
      }
  }
}

// matvec_acc_rows for 1 <= count <= kStepBlock rows
constexpr int kStepBlock = 4;
template <typename scalar_t>
void matvec_acc_rows_n(int count, int64_t n, int64_t m, const scalar_t* const* x, const scalar_t* W,
                       scalar_t* const* y) {
  switch (count) {
    case 1: matvec_acc_rows<scalar_t, 1>(n, m, x, W, y); break;
    case 2: matvec_acc_rows<scalar_t, 2>(n, m, x, W, y); break;
    case 3: matvec_acc_rows<scalar_t, 3>(n, m, x, W, y); break;
    default: matvec_acc_rows<scalar_t, 4>(n, m, x, W, y); break;
  }
}

// how many of x[0..n) are nonzero; adds to *nonfinite how many are NaN or +-inf (v - v is NaN
// exactly for those, and the compiler may not fold it without -ffinite-math-only)
template <typename scalar_t>
__attribute__((noinline)) int32_t count_nonzero_checked_row(int64_t n, const scalar_t* __restrict x,
                                                            int32_t* __restrict nonfinite) {
  int32_t count = 0, bad = 0;
  for (int64_t k = 0; k < n; ++k) {
    const scalar_t v = x[k];
    count += v != scalar_t(0) ? 1 : 0;
    bad += (v - v) != scalar_t(0) ? 1 : 0;
  }
  *nonfinite += bad;
  return count;
}

// y[k] += alpha * x[k]
template <typename scalar_t>
__attribute__((noinline)) void axpy_row(int64_t n, scalar_t alpha, const scalar_t* __restrict x, scalar_t* __restrict y) {
  for (int64_t k = 0; k < n; ++k) y[k] += alpha * x[k];
}

// y[k] += x[k]
template <typename scalar_t>
__attribute__((noinline)) void add_row(int64_t n, const scalar_t* __restrict x, scalar_t* __restrict y) {
  for (int64_t k = 0; k < n; ++k) y[k] += x[k];
}

// d[k] = 0 after the first spike (single-spike mode)
template <typename scalar_t>
__attribute__((noinline)) void mask_after_first(int64_t n, int64_t t, const int64_t* __restrict fs, scalar_t* __restrict d) {
  for (int64_t k = 0; k < n; ++k) d[k] = t <= fs[k] ? d[k] : scalar_t(0);
}

// One reverse step of the spike-free-window recurrence over n columns; H too when Ht is given.
template <typename scalar_t, bool WANT_H>
__attribute__((noinline)) void adjoint_row(int64_t n, const scalar_t* __restrict St, const scalar_t* __restrict d,
                                           scalar_t* __restrict nv, scalar_t* __restrict ni, scalar_t* __restrict sv,
                                           scalar_t* __restrict Gt, scalar_t* __restrict Ht, scalar_t aI, scalar_t aV,
                                           scalar_t c) {
  for (int64_t k = 0; k < n; ++k) {
    const scalar_t keep = scalar_t(1) - St[k];
    const scalar_t g_later = c * ni[k];  // G[t+1] (0 at the last step)
    const scalar_t lv = d[k] + aV * keep * nv[k];
    const scalar_t li = lv + aI * keep * ni[k];
    nv[k] = lv;
    ni[k] = li;
    sv[k] += lv;
    const scalar_t g = c * li;
    Gt[k] = g;
    if constexpr (WANT_H) Ht[k] = scalar_t(0.5) * (keep * g_later - aI * g - c * aV * lv);
  }
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
                                            torch::Tensor keep0, torch::Tensor allowed0, double alpha_I,
                                            double alpha_V, double beta_I, double beta_V, double theta,
                                            bool keep_current, bool emit_events, bool store_times = true) {
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

std::vector<torch::Tensor> lif_forward(torch::Tensor drive, torch::Tensor bias_term, torch::Tensor current0,
                                       torch::Tensor potential0, torch::Tensor keep0, torch::Tensor allowed0,
                                       double alpha_I, double alpha_V, double beta_I, double beta_V, double theta,
                                       bool keep_current, int64_t B, bool emit_events) {
  TORCH_CHECK(drive.dim() == 2, "drive must be [T, M]");
  auto none = torch::empty({0}, drive.options().dtype(torch::kInt64));
  return lif_forward_impl(drive, none, none, torch::empty({0}, drive.options()), torch::empty({0}, drive.options()),
                          drive.size(0), B, bias_term, current0, potential0, keep0, allowed0, alpha_I, alpha_V,
                          beta_I, beta_V, theta, keep_current, emit_events);
}

std::vector<torch::Tensor> lif_forward_events(torch::Tensor row_offsets, torch::Tensor cols, torch::Tensor values,
                                              torch::Tensor weight_t, int64_t T, int64_t B, torch::Tensor bias_term,
                                              torch::Tensor current0, torch::Tensor potential0, torch::Tensor keep0,
                                              torch::Tensor allowed0, double alpha_I, double alpha_V, double beta_I,
                                              double beta_V, double theta, bool keep_current, bool emit_events,
                                              bool store_times) {
  TORCH_CHECK(row_offsets.numel() == T * B + 1, "row_offsets must have T*B+1 entries");
  TORCH_CHECK(weight_t.dim() == 2 && weight_t.size(1) * B == current0.numel(), "weight_t must be [N_in, N]");
  return lif_forward_impl(torch::empty({0}, current0.options()), row_offsets, cols, values, weight_t, T, B, bias_term,
                          current0, potential0, keep0, allowed0, alpha_I, alpha_V, beta_I, beta_V, theta,
                          keep_current, emit_events, store_times);
}

// Reverse-time adjoint of the SRM-based rules with dL/dV formed on the fly:
//   dv[t]    = act_w * sigma(V[t]) * dL/dS[t] * allowed[t] + tim_w * S[t] * (-dL/dt[t] / V*[t])
//   lam_V[t] = dv[t] + alpha_V (1 - S[t]) lam_V[t+1]
//   lam_I[t] = lam_V[t] + alpha_I (1 - S[t]) lam_I[t+1]
// allowed[t] (single-spike mode) is 1 up to the neuron's first spike. grad_s / grad_t may be
// empty (no gradient of that kind).
// Returns {G [T,M] = kernel_scale * lam_I, H [T,M] (only if want_h, else empty), sum_t lam_V [M]} with
//   H[t] = ((1 - S[t]) G[t+1] - alpha_I G[t] - kernel_scale alpha_V lam_V[t]) / 2.
std::vector<torch::Tensor> srm_adjoint(torch::Tensor potential, torch::Tensor spikes, torch::Tensor grad_s,
                                       torch::Tensor grad_t, double alpha_I, double alpha_V, double theta,
                                       double act_w, double tim_w, double vstar_min, int64_t surrogate_kind,
                                       double surrogate_a, double surrogate_b, bool single, double kernel_scale,
                                       bool want_h) {
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
        if (has_t) {
          const scalar_t* Vt = V + row;
          const scalar_t* GTt = GT + row;
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
                                         torch::Tensor in_values, int64_t K, int64_t B, int64_t n_in, double alpha_I,
                                         double alpha_V, double theta, double act_w, double tim_w, double vstar_min,
                                         int64_t surrogate_kind, double surrogate_a, double surrogate_b, bool single,
                                         double kernel_scale, bool need_g, bool want_h) {
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

// Nonzero entries of spikes viewed time-major [T, B, N] (any strides), as CSR rows row = t*B + b.
// Returns {row_offsets [T*B+1], rows [nnz], cols [nnz], values [nnz], all_ones (bool, 0-dim),
// finite (bool, 0-dim)}, or, when the nonzeros are at least max_density of the entries, only
// {nnz (1 element), finite}. `finite`: no entry is NaN or +-inf (checked in the counting pass).
std::vector<torch::Tensor> csr_events(torch::Tensor spikes_tbn, double max_density) {
  TORCH_CHECK(spikes_tbn.dim() == 3, "csr_events expects [T, B, N]");
  const int64_t T = spikes_tbn.size(0), B = spikes_tbn.size(1), N = spikes_tbn.size(2);
  const int64_t R = T * B;
  const auto st = spikes_tbn.stride(0), sb = spikes_tbn.stride(1), sn = spikes_tbn.stride(2);
  auto long_opts = spikes_tbn.options().dtype(torch::kInt64);
  auto offsets = torch::empty({R + 1}, long_opts);
  int64_t* off = offsets.data_ptr<int64_t>();
  std::vector<torch::Tensor> out;
  std::atomic<int64_t> nonfinite{0};
  AT_DISPATCH_FLOATING_TYPES(spikes_tbn.scalar_type(), "csr_events", [&] {
    const scalar_t* x = spikes_tbn.data_ptr<scalar_t>();
    // One pass: each part of the rows counts its rows' nonzeros (and checks them finite) and,
    // while its own nonzeros stay below max_density of its entries, records them as it goes
    // (a row just counted is still in cache). A part that turns out denser stops recording; its
    // events are gathered in a second pass only if the whole input is sparse after all.
    struct Part {
      int64_t begin = 0, end = 0;
      bool complete = true;  // every nonzero of the part recorded
      std::vector<int64_t> cols;
      std::vector<scalar_t> values;
    };
    std::mutex parts_mutex;
    std::vector<Part> parts;
    auto gather_row = [&](const scalar_t* row, std::vector<int64_t>& cols, std::vector<scalar_t>& values) {
      constexpr int64_t kBlock = 64;
      for (int64_t n0 = 0; n0 < N; n0 += kBlock) {
        const int64_t n1 = std::min(N, n0 + kBlock);
        // an all-zero block (a row that fits one block is only gathered when it has a nonzero)
        if (sn == 1 && N > kBlock && count_nonzero_row<scalar_t>(n1 - n0, row + n0) == 0) continue;
        for (int64_t n = n0; n < n1; ++n) {
          const scalar_t v = row[n * sn];
          if (v != scalar_t(0)) {
            cols.push_back(n);
            values.push_back(v);
          }
        }
      }
    };
    off[0] = 0;
    at::parallel_for(0, R, 64, [&](int64_t begin, int64_t end) {
      int32_t bad = 0;
      Part part;
      part.begin = begin;
      part.end = end;
      const double budget = max_density * static_cast<double>((end - begin) * N);
      int64_t found = 0;
      int64_t t = begin / B, b = begin % B;  // row r = t * B + b, stepped without divisions
      for (int64_t r = begin; r < end; ++r, ++b) {
        if (b == B) {
          b = 0;
          ++t;
        }
        const scalar_t* row = x + t * st + b * sb;
        int64_t c = 0;
        if (sn == 1 && N >= 16) {
          c = count_nonzero_checked_row<scalar_t>(N, row, &bad);
        } else {  // short rows (a call would cost more than the row) or strided ones
          for (int64_t n = 0; n < N; ++n) {
            const scalar_t v = row[n * sn];
            c += v != scalar_t(0);
            bad += (v - v) != scalar_t(0);
          }
        }
        off[r + 1] = c;
        found += c;
        if (part.complete && static_cast<double>(found) >= budget) {  // too dense to record
          part.complete = false;
          part.cols = std::vector<int64_t>();
          part.values = std::vector<scalar_t>();
        }
        if (part.complete && c > 0) gather_row(row, part.cols, part.values);
      }
      nonfinite += bad;
      std::lock_guard<std::mutex> lock(parts_mutex);
      parts.push_back(std::move(part));
    });
    const auto finite = torch::scalar_tensor(nonfinite.load() == 0, torch::kBool);
    for (int64_t r = 0; r < R; ++r) off[r + 1] += off[r];
    const int64_t nnz = off[R];
    if (static_cast<double>(nnz) >= max_density * static_cast<double>(R * N)) {
      out = {offsets.slice(0, R, R + 1), finite};  // too dense: only the count
      return;
    }
    auto rows = torch::empty({nnz}, long_opts);
    auto cols = torch::empty({nnz}, long_opts);
    auto values = torch::empty({nnz}, spikes_tbn.options());
    int64_t* rw = rows.data_ptr<int64_t>();
    int64_t* cl = cols.data_ptr<int64_t>();
    scalar_t* vl = values.data_ptr<scalar_t>();
    bool ones = true;
    for (auto& part : parts) {
      if (!part.complete) {  // the part's events, in a pass of their own
        for (int64_t r = part.begin; r < part.end; ++r) {
          if (off[r + 1] > off[r]) gather_row(x + (r / B) * st + (r % B) * sb, part.cols, part.values);
        }
      }
      const int64_t k0 = off[part.begin];
      const int64_t count = static_cast<int64_t>(part.cols.size());
      TORCH_CHECK(k0 + count == off[part.end], "csr_events: a part's events do not match its count");
      std::copy(part.cols.begin(), part.cols.end(), cl + k0);
      std::copy(part.values.begin(), part.values.end(), vl + k0);
      for (int64_t e = 0; e < count; ++e) ones = ones && (part.values[e] == scalar_t(1));
      for (int64_t r = part.begin; r < part.end; ++r)
        for (int64_t e = off[r]; e < off[r + 1]; ++e) rw[e] = r;
    }
    out = {offsets, rows, cols, values, torch::scalar_tensor(ones, torch::kBool), finite};
  });
  return out;
}

#if defined(__AVX__)
// dst[c * ds + r] = src[r * ss + c] for an 8 x 8 block of floats (unpack, shuffle, lane swap)
inline void transpose8x8(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss),
         r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss),
         r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
               u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
               u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
               u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
               u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

// A contiguous copy of the transpose of the last two dimensions of a 2-D [R, C] or 3-D [K, R, C]
// tensor, in 32 x 32 tiles (cache-friendly); contiguous float rows go 8 x 8 at a time in AVX
// registers where the CPU has them.
torch::Tensor transpose_contiguous(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 2 || x.dim() == 3, "transpose_contiguous expects a 2-D or 3-D tensor");
  const bool batched = x.dim() == 3;
  const int64_t K = batched ? x.size(0) : 1;
  const int64_t R = x.size(-2), C = x.size(-1);
  const int64_t ks = batched ? x.stride(0) : 0, rs = x.stride(-2), cs = x.stride(-1);
  auto out = batched ? torch::empty({K, C, R}, x.options()) : torch::empty({C, R}, x.options());
  constexpr int64_t kTile = 32;
  const int64_t tiles = (R + kTile - 1) / kTile;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "transpose_contiguous", [&] {
    const scalar_t* base = x.data_ptr<scalar_t>();
    scalar_t* out_base = out.data_ptr<scalar_t>();
    at::parallel_for(0, K * tiles, 4, [&](int64_t begin, int64_t end) {
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t k = unit / tiles, tr = unit % tiles;
        const scalar_t* src = base + k * ks;
        scalar_t* dst = out_base + k * C * R;
        const int64_t r0 = tr * kTile, r1 = std::min(R, r0 + kTile);
        for (int64_t c0 = 0; c0 < C; c0 += kTile) {
          const int64_t c1 = std::min(C, c0 + kTile);
          int64_t r8 = r0, c8 = c0;  // the tile's 8 x 8 blocks end at r8, c8; the rest goes one by one
#if defined(__AVX__)
          if constexpr (std::is_same_v<scalar_t, float>) {
            if (cs == 1) {
              r8 = r0 + (r1 - r0) / 8 * 8;
              c8 = c0 + (c1 - c0) / 8 * 8;
              for (int64_t r = r0; r < r8; r += 8)
                for (int64_t c = c0; c < c8; c += 8)  // (the casts only compile the double instance)
                  transpose8x8(reinterpret_cast<const float*>(src + r * rs + c), rs,
                               reinterpret_cast<float*>(dst + c * R + r), R);
            }
          }
#endif
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = r < r8 ? c8 : c0; c < c1; ++c) dst[c * R + r] = src[r * rs + c * cs];
        }
      }
    });
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("transpose_contiguous", &transpose_contiguous, "contiguous transpose of the last two dims (2-D or 3-D), tiled");
  m.def("csr_events", &csr_events, "nonzero spikes of [T, B, N] as CSR rows (or only their count when too dense)");
  m.def("lif_forward", &lif_forward, "LIF forward recurrence over [T, M]");
  m.def("lif_forward_events", &lif_forward_events, "LIF forward recurrence fed by CSR input events");
  m.def("srm_adjoint", &srm_adjoint, "reverse adjoint of the SRM-based rules");
  m.def("fused_adjoint", &fused_adjoint, "network-level adjoint of one layer, fed by the layer above");
  m.def("rnn_adjoint", &rnn_adjoint, "reverse adjoint with reset paths (activation_rnn)");
}
