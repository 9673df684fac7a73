// Input spikes as events (csr_events) and the contiguous transpose of weights and weight
// gradients (transpose_contiguous).

#include "common.h"
#include "kernels.h"

namespace lif_kernels {

namespace {

// The input as csr_events reads it: [T, B, N] with any strides.
template <typename scalar_t>
struct CsrInput {
  const scalar_t* x;
  int64_t T, B, N, st, sb, sn;
  const scalar_t* row(int64_t t, int64_t b) const { return x + t * st + b * sb; }
};

// A part of the rows [begin, end) and, while complete, every nonzero of it.
template <typename scalar_t>
struct CsrPart {
  int64_t begin = 0, end = 0;
  bool complete = true;  // every nonzero of the part recorded
  std::vector<int64_t> cols;
  std::vector<scalar_t> values;
};

// The nonzeros of one row, appended to cols and values.
template <typename scalar_t>
inline void gather_row(const CsrInput<scalar_t>& in, const scalar_t* row, std::vector<int64_t>& cols,
                       std::vector<scalar_t>& values) {
  constexpr int64_t kBlock = 64;
  const int64_t N = in.N, sn = in.sn;
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
}

// How many of a row's entries are nonzero; adds to bad how many are NaN or +-inf.
template <typename scalar_t>
inline int64_t count_row(const CsrInput<scalar_t>& in, const scalar_t* row, int32_t& bad) {
  const int64_t N = in.N, sn = in.sn;
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
  return c;
}

// One part of the single pass: counts its rows' nonzeros into off[r + 1] (and checks them
// finite, adding the bad ones to bad) and, while its own nonzeros stay below max_density of its
// entries, records them as it goes (a row just counted is still in cache). A part that turns out
// denser stops recording.
template <typename scalar_t>
inline CsrPart<scalar_t> scan_part(const CsrInput<scalar_t>& in, int64_t begin, int64_t end, double max_density,
                                   int64_t* off, int32_t& bad) {
  const int64_t B = in.B;
  CsrPart<scalar_t> part;
  part.begin = begin;
  part.end = end;
  const double budget = max_density * static_cast<double>((end - begin) * in.N);
  int64_t found = 0;
  int64_t t = begin / B, b = begin % B;  // row r = t * B + b, stepped without divisions
  for (int64_t r = begin; r < end; ++r, ++b) {
    if (b == B) {
      b = 0;
      ++t;
    }
    const scalar_t* row = in.row(t, b);
    const int64_t c = count_row(in, row, bad);
    off[r + 1] = c;
    found += c;
    if (part.complete && static_cast<double>(found) >= budget) {  // too dense to record
      part.complete = false;
      part.cols = std::vector<int64_t>();
      part.values = std::vector<scalar_t>();
    }
    if (part.complete && c > 0) gather_row(in, row, part.cols, part.values);
  }
  return part;
}

// The events of every part (those of an incomplete part gathered now, in a pass of their own)
// at their rows' offsets off [R+1]: {row_offsets, rows, cols, values, all_ones}.
template <typename scalar_t>
std::vector<torch::Tensor> assemble_events(const CsrInput<scalar_t>& in, std::vector<CsrPart<scalar_t>>& parts,
                                           torch::Tensor offsets, const torch::TensorOptions& value_opts) {
  const int64_t* off = offsets.data_ptr<int64_t>();
  const int64_t nnz = off[in.T * in.B], B = in.B;
  auto long_opts = offsets.options();
  auto rows = torch::empty({nnz}, long_opts);
  auto cols = torch::empty({nnz}, long_opts);
  auto values = torch::empty({nnz}, value_opts);
  int64_t* rw = rows.data_ptr<int64_t>();
  int64_t* cl = cols.data_ptr<int64_t>();
  scalar_t* vl = values.data_ptr<scalar_t>();
  bool ones = true;
  for (auto& part : parts) {
    if (!part.complete) {  // the part's events, in a pass of their own
      for (int64_t r = part.begin; r < part.end; ++r) {
        if (off[r + 1] > off[r]) gather_row(in, in.row(r / B, r % B), part.cols, part.values);
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
  return {offsets, rows, cols, values, torch::scalar_tensor(ones, torch::kBool)};
}

}  // namespace

// Nonzero entries of spikes viewed time-major [T, B, N] (any strides), as CSR rows row = t*B + b.
// Returns {row_offsets [T*B+1], rows [nnz], cols [nnz], values [nnz], all_ones (bool, 0-dim),
// finite (bool, 0-dim)}, or, when the nonzeros are at least max_density of the entries, only
// {nnz (1 element), finite}. `finite`: no entry is NaN or +-inf (checked in the counting pass).
std::vector<torch::Tensor> csr_events(torch::Tensor spikes_tbn, double max_density) {
  TORCH_CHECK(spikes_tbn.dim() == 3, "csr_events expects [T, B, N]");
  const int64_t T = spikes_tbn.size(0), B = spikes_tbn.size(1), N = spikes_tbn.size(2);
  const int64_t R = T * B;
  auto long_opts = spikes_tbn.options().dtype(torch::kInt64);
  auto offsets = torch::empty({R + 1}, long_opts);
  int64_t* off = offsets.data_ptr<int64_t>();
  std::vector<torch::Tensor> out;
  std::atomic<int64_t> nonfinite{0};
  AT_DISPATCH_FLOATING_TYPES(spikes_tbn.scalar_type(), "csr_events", [&] {
    const CsrInput<scalar_t> in{spikes_tbn.data_ptr<scalar_t>(), T, B, N, spikes_tbn.stride(0),
                                spikes_tbn.stride(1), spikes_tbn.stride(2)};
    // One pass: each part of the rows counts its rows' nonzeros and records them while sparse
    // (scan_part); a part's events that it did not record are gathered in a second pass only if
    // the whole input is sparse after all.
    std::mutex parts_mutex;
    std::vector<CsrPart<scalar_t>> parts;
    off[0] = 0;
    at::parallel_for(0, R, 64, [&](int64_t begin, int64_t end) {
      int32_t bad = 0;
      CsrPart<scalar_t> part = scan_part(in, begin, end, max_density, off, bad);
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
    out = assemble_events(in, parts, offsets, spikes_tbn.options());
    out.push_back(finite);
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

}  // namespace lif_kernels
