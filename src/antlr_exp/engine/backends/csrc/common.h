// Helpers of the CPU kernels: the vectorizable row loops, the exponential, the surrogates and
// the register-blocked products. Everything here is inline or a template with internal linkage,
// so each kernel source compiles its own copy, as when they were one file.
//
// Layout: every [T, M] tensor is time-major and contiguous, M = batch * neurons.
// Built with -fopenmp: at::parallel_for is a header-inline `#pragma omp parallel` under torch's
// OpenMP backend, and the libgomp.so.1 torch has already loaded serves this module too.
// The math is exactly that of the plain PyTorch functions of antlr_exp/engine/lif.py
// (simulate_lif, dv_from_rule, _adjoint_srm, _adjoint_rnn); the tests compare both.
#pragma once

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

#include "constants.h"

namespace lif_kernels {
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

// surrogate derivative sigma(u), u = V - theta; KIND a SurrogateKind (constants.h)
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
}  // namespace lif_kernels
