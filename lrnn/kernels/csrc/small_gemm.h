// Float32 products with few rows (a batch of 20 against one step's weight set) for the step-weight LSTM kernels.
//
// An untied LSTM multiplies each step's batch rows by a weight set it uses once per pass, so every product reads a
// cold [4H, in] matrix and uses each element only B times. BLAS packs that matrix into panels before it multiplies;
// the two kernels below read it in place, in order, fetched ahead (software prefetch), and keep the B rows' partial
// sums in registers (row-major, leading dimensions given):
//   nt:  C[M, N] (+)= A[M, K] @ W[N, K]^T   the forward products: gates (+)= x @ w_ih^T, h @ w_hh^T
//   tn:  C[M, N] (+)= A[K, M]^T @ X[K, N]   a weight gradient over one step's rows: dW = d_gates^T @ x, written
//                                           with streaming stores (no read of the cold lines it overwrites)
//   nn:  C[M, N] (+)= A[M, K] @ X[K, N]     the state and input gradients d_gates @ W, for weight sets over 2 MB
//                                           (H 400 and up; below that MKL's was as fast or faster)
// Each output element is one sum over K in a fixed order, so results do not depend on the thread count. AVX2 + FMA
// (8 floats a register); without them the callers use torch's products. Where the CPU has AVX-512 (checked at run
// time), nt and tn run AVX-512 versions (16 floats a register, 32 registers: larger tiles), compiled for that target
// alone; the rest stays AVX2.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LRNN_SMALL_GEMM 1
#else
#define LRNN_SMALL_GEMM 0
#endif

namespace lrnn_gemm {

// Whether the kernels serve the products: compiled in, and not switched off (benchmarks compare them with torch's).
inline bool& enabled_flag() {
  static bool on = true;
  return on;
}
inline bool available() { return LRNN_SMALL_GEMM != 0 && enabled_flag(); }

// The AVX-512 nt and tn: compiled in with GCC (its target pragma), run where the CPU has AVX-512F and not switched
// off (tests and benchmarks compare them with the AVX2 ones).
#if LRNN_SMALL_GEMM && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LRNN_AVX512 1
#else
#define LRNN_AVX512 0
#endif
inline bool& avx512_flag() {
  static bool on = true;
  return on;
}
inline bool avx512_cpu() {
#if LRNN_AVX512
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}
inline bool avx512_on() { return avx512_cpu() && avx512_flag(); }

// Whether nt beats torch's product for M rows of A with K columns (float32, torch's threads): measured on a 2-core AMD
// EPYC (Zen 4), one weight set per product, cold (bench_cpu_paths.py: small products vs torch's, AVX-512 vs AVX2
// kernels; and a scratch grid at H 155-650 from 20 to 700 rows). The AVX2 kernel re-reads A for every 4 rows of W,
// which pays up to 64 KB of A (a step's batch rows). The AVX-512 one was as fast as MKL or faster for K >= 400 at every
// row count, and up to ~20k floats of A below that (the 100 rows of a share5 block at H 200: 0.99x / 1.81x torch's on
// 1 / 2 threads); MKL won for wider A at H 155-200 on one thread (0.90-0.96x in the grid).
inline bool nt_faster(int64_t M, int64_t K) {
  return avx512_on() ? (M * K <= 20480 || K >= 400) : M * K <= 16384;
}

// Which nt serves where both could: the AVX-512 one for K >= 400 (1.16-1.23x the AVX2 one for a step's rows at H 650)
// and for the A's only it serves; the AVX2 one for a step's rows at K < 400 (at H 200 the AVX-512 one was 0.96-0.97x).
inline bool nt_wide(int64_t M, int64_t K) { return avx512_on() && (K >= 400 || M * K > 16384); }

// Whether tn writes C with streaming stores: a fresh C (not accumulated into) whose rows start 32-byte aligned.
inline bool streams(const float* C, int64_t ldc, bool acc) {
  return !acc && reinterpret_cast<uintptr_t>(C) % 32 == 0 && ldc % 8 == 0;
}

#if LRNN_SMALL_GEMM

// lanes < n of 8 set (n in 1..8)
inline __m256i tail_mask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

// Bring bytes [p, p + n) towards L2 (into L1 they would evict what the running tile reuses).
inline void prefetch_range(const void* p, int64_t n) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < n; o += 64) _mm_prefetch(c + o, _MM_HINT_T1);
}

// The fixed-size loops over a tile's registers are unrolled before GCC decides what lives in registers; otherwise it
// keeps the accumulators in memory and stores them on every iteration.
#define LRNN_UNROLL _Pragma("GCC unroll 8")

// nt, dot-product form: MB rows of A against 4 rows of W, summed over K in 8 lanes and reduced at the end. W's 4
// rows stay in L1 while the row tiles of A pass over them.
template <int MB>
inline void nt_tile(const float* A, int64_t lda, const float* W, int64_t ldw, float* C, int64_t ldc, int64_t K,
                    bool acc, __m256i mask) {
  __m256 s[MB][4];
  LRNN_UNROLL for (int i = 0; i < MB; ++i) LRNN_UNROLL for (int j = 0; j < 4; ++j) s[i][j] = _mm256_setzero_ps();
  const int64_t K8 = K & ~int64_t(7);
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 w[4];
    LRNN_UNROLL for (int j = 0; j < 4; ++j) w[j] = _mm256_loadu_ps(W + j * ldw + k);
    LRNN_UNROLL for (int i = 0; i < MB; ++i) {
      const __m256 a = _mm256_loadu_ps(A + i * lda + k);
      LRNN_UNROLL for (int j = 0; j < 4; ++j) s[i][j] = _mm256_fmadd_ps(a, w[j], s[i][j]);
    }
  }
  if (K8 < K) {  // the last K % 8 columns, masked loads (zeros beyond)
    __m256 w[4];
    LRNN_UNROLL for (int j = 0; j < 4; ++j) w[j] = _mm256_maskload_ps(W + j * ldw + K8, mask);
    LRNN_UNROLL for (int i = 0; i < MB; ++i) {
      const __m256 a = _mm256_maskload_ps(A + i * lda + K8, mask);
      LRNN_UNROLL for (int j = 0; j < 4; ++j) s[i][j] = _mm256_fmadd_ps(a, w[j], s[i][j]);
    }
  }
  LRNN_UNROLL for (int i = 0; i < MB; ++i) {
    // [s0, s1, s2, s3] -> their four horizontal sums, in order
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(s[i][0], s[i][1]), _mm256_hadd_ps(s[i][2], s[i][3]));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    float* c = C + i * ldc;
    if (acc) r = _mm_add_ps(r, _mm_loadu_ps(c));
    _mm_storeu_ps(c, r);
  }
}

// tn, broadcast form: MB rows (C's rows i = A's columns) by NV registers of C, summed over K; the last register is
// masked when the columns end inside it (masked columns are neither read nor written).
template <int MB, int NV, bool masked>
inline void tn_tile(const float* A, int64_t sk, int64_t si, const float* X, int64_t ldx, float* C, int64_t ldc, int64_t K,
                    bool acc, bool stream, __m256i mask) {
  __m256 s[MB][NV];
  LRNN_UNROLL for (int i = 0; i < MB; ++i) LRNN_UNROLL for (int v = 0; v < NV; ++v) {
    float* c = C + i * ldc + 8 * v;
    s[i][v] = !acc ? _mm256_setzero_ps()
                   : (masked && v == NV - 1 ? _mm256_maskload_ps(c, mask) : _mm256_loadu_ps(c));
  }
  for (int64_t p = 0; p < K; ++p) {
    const float* x = X + p * ldx;
    __m256 xv[NV];
    LRNN_UNROLL for (int v = 0; v < NV; ++v) xv[v] =
        masked && v == NV - 1 ? _mm256_maskload_ps(x + 8 * v, mask) : _mm256_loadu_ps(x + 8 * v);
    LRNN_UNROLL for (int i = 0; i < MB; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + p * sk + i * si);
      LRNN_UNROLL for (int v = 0; v < NV; ++v) s[i][v] = _mm256_fmadd_ps(a, xv[v], s[i][v]);
    }
  }
  LRNN_UNROLL for (int i = 0; i < MB; ++i) LRNN_UNROLL for (int v = 0; v < NV; ++v) {
    float* c = C + i * ldc + 8 * v;
    if (masked && v == NV - 1)
      _mm256_maskstore_ps(c, mask, s[i][v]);
    else if (stream)
      _mm256_stream_ps(c, s[i][v]);
    else
      _mm256_storeu_ps(c, s[i][v]);
  }
}

// Rows m0..m1 of C for one column block (NV registers); tiles of 4 rows (4 x 3 = 12 accumulators of 16 registers).
template <int NV, bool masked>
inline void tn_rows(const float* A, int64_t sk, int64_t si, const float* X, int64_t ldx, float* C, int64_t ldc, int64_t m0,
                    int64_t m1, int64_t K, bool acc, bool stream, __m256i mask) {
  int64_t i = m0;
  for (; i + 4 <= m1; i += 4)
    tn_tile<4, NV, masked>(A + i * si, sk, si, X, ldx, C + i * ldc, ldc, K, acc, stream, mask);
  switch (m1 - i) {
    case 3: tn_tile<3, NV, masked>(A + i * si, sk, si, X, ldx, C + i * ldc, ldc, K, acc, stream, mask); break;
    case 2: tn_tile<2, NV, masked>(A + i * si, sk, si, X, ldx, C + i * ldc, ldc, K, acc, stream, mask); break;
    case 1: tn_tile<1, NV, masked>(A + i * si, sk, si, X, ldx, C + i * ldc, ldc, K, acc, stream, mask); break;
    default: break;
  }
}

// Rows m0..m1 of C over one column block of n <= 24 floats (1-3 registers, the last one masked where the columns
// end inside it).
inline void tn_block(const float* A, int64_t sk, int64_t si, const float* X, int64_t ldx, float* C, int64_t ldc,
                     int64_t m0, int64_t m1, int64_t n, int64_t K, bool acc, bool stream) {
  const int64_t nv = (n + 7) / 8;
  const __m256i mask = tail_mask(n % 8 == 0 ? 8 : n % 8);
  if (n % 8 != 0) {
    if (nv == 3) tn_rows<3, true>(A, sk, si, X, ldx, C, ldc, m0, m1, K, acc, stream, mask);
    else if (nv == 2) tn_rows<2, true>(A, sk, si, X, ldx, C, ldc, m0, m1, K, acc, stream, mask);
    else tn_rows<1, true>(A, sk, si, X, ldx, C, ldc, m0, m1, K, acc, stream, mask);
  } else {
    if (nv == 3) tn_rows<3, false>(A, sk, si, X, ldx, C, ldc, m0, m1, K, acc, stream, mask);
    else if (nv == 2) tn_rows<2, false>(A, sk, si, X, ldx, C, ldc, m0, m1, K, acc, stream, mask);
    else tn_rows<1, false>(A, sk, si, X, ldx, C, ldc, m0, m1, K, acc, stream, mask);
  }
}

// The bands of nt: 4 rows of W at a time go to the threads in order, each fetched 8 bands ahead; rows(w, c)
// multiplies all of A's rows by one band (w: its 4 rows of W, c: the 4 columns of C they give).
template <typename Rows>
inline void nt_bands(const float* W, int64_t ldw, float* C, int64_t N, const Rows& rows) {
  at::parallel_for(0, N / 4, 16, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      if (j + 8 < j1) prefetch_range(W + 4 * (j + 8) * ldw, 4 * ldw * static_cast<int64_t>(sizeof(float)));
      rows(W + 4 * j * ldw, C + 4 * j);
    }
  });
}

#if LRNN_AVX512
#pragma GCC push_options
#pragma GCC target("avx512f")

// [a, b, c, d] -> their four horizontal sums, in order: each register's two 256-bit halves added, then as nt_tile.
inline __m128 sum4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
  const auto half = [](__m512 x) {
    return _mm256_add_ps(_mm512_castps512_ps256(x), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
  };
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half(a), half(b)), _mm256_hadd_ps(half(c), half(d)));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// nt_tile in 16 lanes: MB rows of A against 4 rows of W (up to 20 accumulators, 4 + 1 more registers).
template <int MB>
inline void nt_tile512(const float* A, int64_t lda, const float* W, int64_t ldw, float* C, int64_t ldc, int64_t K,
                       bool acc) {
  __m512 s[MB][4];
  LRNN_UNROLL for (int i = 0; i < MB; ++i) LRNN_UNROLL for (int j = 0; j < 4; ++j) s[i][j] = _mm512_setzero_ps();
  const int64_t K16 = K & ~int64_t(15);
  for (int64_t k = 0; k < K16; k += 16) {
    __m512 w[4];
    LRNN_UNROLL for (int j = 0; j < 4; ++j) w[j] = _mm512_loadu_ps(W + j * ldw + k);
    LRNN_UNROLL for (int i = 0; i < MB; ++i) {
      const __m512 a = _mm512_loadu_ps(A + i * lda + k);
      LRNN_UNROLL for (int j = 0; j < 4; ++j) s[i][j] = _mm512_fmadd_ps(a, w[j], s[i][j]);
    }
  }
  if (K16 < K) {  // the last K % 16 columns, masked loads (zeros beyond)
    const __mmask16 m = static_cast<__mmask16>((1u << (K - K16)) - 1);
    __m512 w[4];
    LRNN_UNROLL for (int j = 0; j < 4; ++j) w[j] = _mm512_maskz_loadu_ps(m, W + j * ldw + K16);
    LRNN_UNROLL for (int i = 0; i < MB; ++i) {
      const __m512 a = _mm512_maskz_loadu_ps(m, A + i * lda + K16);
      LRNN_UNROLL for (int j = 0; j < 4; ++j) s[i][j] = _mm512_fmadd_ps(a, w[j], s[i][j]);
    }
  }
  LRNN_UNROLL for (int i = 0; i < MB; ++i) {
    __m128 r = sum4_512(s[i][0], s[i][1], s[i][2], s[i][3]);
    float* c = C + i * ldc;
    if (acc) r = _mm_add_ps(r, _mm_loadu_ps(c));
    _mm_storeu_ps(c, r);
  }
}

// nt with AVX-512: nt's bands, in tiles of 5 rows (the last one 1-4).
inline void nt512(const float* A, int64_t lda, const float* W, int64_t ldw, float* C, int64_t ldc, int64_t M,
                  int64_t N, int64_t K, bool acc) {
  nt_bands(W, ldw, C, N, [&](const float* w, float* c) {
    int64_t i = 0;
    for (; i + 5 <= M; i += 5) nt_tile512<5>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc);
    switch (M - i) {
      case 4: nt_tile512<4>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc); break;
      case 3: nt_tile512<3>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc); break;
      case 2: nt_tile512<2>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc); break;
      case 1: nt_tile512<1>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc); break;
      default: break;
    }
  });
}

// tn_tile in 16 lanes: MB rows of C by NV registers, summed over K; the last register is masked when the columns end
// inside it.
template <int MB, int NV, bool masked>
inline void tn_tile512(const float* A, int64_t lda, const float* X, int64_t ldx, float* C, int64_t ldc, int64_t K,
                       bool acc, bool stream, __mmask16 m) {
  __m512 s[MB][NV];
  LRNN_UNROLL for (int i = 0; i < MB; ++i) LRNN_UNROLL for (int v = 0; v < NV; ++v) {
    const float* c = C + i * ldc + 16 * v;
    s[i][v] = !acc ? _mm512_setzero_ps() : masked && v == NV - 1 ? _mm512_maskz_loadu_ps(m, c) : _mm512_loadu_ps(c);
  }
  for (int64_t p = 0; p < K; ++p) {
    const float* x = X + p * ldx;
    __m512 xv[NV];
    LRNN_UNROLL for (int v = 0; v < NV; ++v) xv[v] =
        masked && v == NV - 1 ? _mm512_maskz_loadu_ps(m, x + 16 * v) : _mm512_loadu_ps(x + 16 * v);
    LRNN_UNROLL for (int i = 0; i < MB; ++i) {
      const __m512 a = _mm512_set1_ps(A[p * lda + i]);
      LRNN_UNROLL for (int v = 0; v < NV; ++v) s[i][v] = _mm512_fmadd_ps(a, xv[v], s[i][v]);
    }
  }
  LRNN_UNROLL for (int i = 0; i < MB; ++i) LRNN_UNROLL for (int v = 0; v < NV; ++v) {
    float* c = C + i * ldc + 16 * v;
    const bool part = masked && v == NV - 1;
    if (stream && (!part || m == 0xFFFF || m == 0x00FF)) {  // rows start 32-byte aligned (not always 64): halves
      _mm256_stream_ps(c, _mm512_castps512_ps256(s[i][v]));  // (a line is streamed whole or not at all)
      if (!part || m == 0xFFFF)
        _mm256_stream_ps(c + 8, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s[i][v]), 1)));
    } else if (part) {
      _mm512_mask_storeu_ps(c, m, s[i][v]);
    } else {
      _mm512_storeu_ps(c, s[i][v]);
    }
  }
}

// MB rows of C (from row 0 of A's columns and C), all N columns: blocks of 3 registers (48 floats), then the last
// 1-47 columns in 1-3 registers, the last one masked.
template <int MB>
inline void tn_rows512(const float* A, int64_t lda, const float* X, int64_t ldx, float* C, int64_t ldc, int64_t N,
                       int64_t K, bool acc, bool stream) {
  int64_t n0 = 0;
  for (; n0 + 48 <= N; n0 += 48) tn_tile512<MB, 3, false>(A, lda, X + n0, ldx, C + n0, ldc, K, acc, stream, 0xFFFF);
  const int64_t n = N - n0;
  if (n == 0) return;
  const __mmask16 m = static_cast<__mmask16>(n % 16 == 0 ? 0xFFFF : (1u << (n % 16)) - 1);
  if (n > 32)
    tn_tile512<MB, 3, true>(A, lda, X + n0, ldx, C + n0, ldc, K, acc, stream, m);
  else if (n > 16)
    tn_tile512<MB, 2, true>(A, lda, X + n0, ldx, C + n0, ldc, K, acc, stream, m);
  else
    tn_tile512<MB, 1, true>(A, lda, X + n0, ldx, C + n0, ldc, K, acc, stream, m);
}

// tn with AVX-512: bands of 8 rows of C (8 x 3 = 24 accumulators) go to the threads; each writes its rows in order,
// streamed where tn streams.
inline void tn512(const float* A, int64_t lda, const float* X, int64_t ldx, float* C, int64_t ldc, int64_t M,
                  int64_t N, int64_t K, bool acc) {
  const bool stream = streams(C, ldc, acc);
  at::parallel_for(0, (M + 7) / 8, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t m0 = 8 * r;
      const float* a = A + m0;
      float* c = C + m0 * ldc;
      switch (std::min<int64_t>(8, M - m0)) {
        case 8: tn_rows512<8>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
        case 7: tn_rows512<7>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
        case 6: tn_rows512<6>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
        case 5: tn_rows512<5>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
        case 4: tn_rows512<4>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
        case 3: tn_rows512<3>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
        case 2: tn_rows512<2>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
        default: tn_rows512<1>(a, lda, X, ldx, c, ldc, N, K, acc, stream); break;
      }
    }
    if (stream) _mm_sfence();
  });
}

#pragma GCC pop_options
#endif  // LRNN_AVX512

// C[M, N] (+)= A[M, K] @ W[N, K]^T. Bands of 4 rows of W go to the threads in order; each band is fetched 8 bands
// ahead. With AVX-512 (and `wide`), nt512.
inline void nt(const float* A, int64_t lda, const float* W, int64_t ldw, float* C, int64_t ldc, int64_t M, int64_t N,
               int64_t K, bool acc, bool wide = true) {
  TORCH_CHECK(N % 4 == 0, "nt: N must be a multiple of 4");
#if LRNN_AVX512
  if (wide && avx512_on()) return nt512(A, lda, W, ldw, C, ldc, M, N, K, acc);
#endif
  const __m256i mask = tail_mask(K % 8 == 0 ? 8 : K % 8);
  nt_bands(W, ldw, C, N, [&](const float* w, float* c) {
    int64_t i = 0;
    for (; i + 3 <= M; i += 3) nt_tile<3>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc, mask);
    if (M - i == 2) nt_tile<2>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc, mask);
    if (M - i == 1) nt_tile<1>(A + i * lda, lda, w, ldw, c + i * ldc, ldc, K, acc, mask);
  });
}

// C[M, N] (+)= A[K, M]^T @ X[K, N] with K small (one step's batch rows). Bands of 4 rows of C go to the threads and
// each writes its rows in order, in column blocks of 3 registers (24 floats); X stays in L1. A fresh C (a gradient
// nobody reads until the optimizer step) is written with streaming stores where its rows are 32-byte aligned: no
// read of the cold lines before they are overwritten. With AVX-512 (and `wide`), tn512.
inline void tn(const float* A, int64_t lda, const float* X, int64_t ldx, float* C, int64_t ldc, int64_t M, int64_t N,
               int64_t K, bool acc, bool wide = true) {
#if LRNN_AVX512
  if (wide && avx512_on()) return tn512(A, lda, X, ldx, C, ldc, M, N, K, acc);
#endif
  constexpr int64_t BW = 24;
  const bool stream = streams(C, ldc, acc);
  at::parallel_for(0, (M + 3) / 4, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t m0 = 4 * r, m1 = std::min(M, m0 + 4);
      for (int64_t n0 = 0; n0 < N; n0 += BW)
        tn_block(A, lda, 1, X + n0, ldx, C + n0, ldc, m0, m1, std::min(BW, N - n0), K, acc, stream);
    }
    if (stream) _mm_sfence();  // this thread's streamed lines are visible before anyone reads C
  });
}

// C[M, N] (+)= A[M, K] @ X[K, N] with M small (a step's batch rows) and X a cold weight set: the state and input
// gradients d_gates @ W. The broadcast form of tn, A read along its rows. X is read in blocks of whole rows, in
// order, each block once from memory, fetched one block ahead; the threads split C's columns, so each reads its part
// of every row. Every output is one sum over K in order (a block's sums go on from the previous block's stores), the
// same on any thread count.
inline void nn(const float* A, int64_t lda, const float* X, int64_t ldx, float* C, int64_t ldc, int64_t M, int64_t N,
               int64_t K, bool acc) {
  constexpr int64_t BW = 24;
  const int64_t kb = std::max<int64_t>(16, (128 * 1024) / (N * static_cast<int64_t>(sizeof(float))));
  at::parallel_for(0, (N + BW - 1) / BW, 4, [&](int64_t b0, int64_t b1) {
    const int64_t bytes = 4 * (std::min(N, b1 * BW) - b0 * BW);
    for (int64_t r = 0; r < std::min(kb, K); ++r) prefetch_range(X + r * ldx + b0 * BW, bytes);  // the first block
    for (int64_t p0 = 0; p0 < K; p0 += kb) {
      const int64_t k = std::min(kb, K - p0), k_next = std::min(kb, K - p0 - k);
      const bool a = acc || p0 > 0;
      const float* ap = A + p0;
      const float* xp = X + p0 * ldx;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = b * BW, n = std::min(BW, N - n0);
        for (int64_t r = 0; r < k_next; ++r) {  // this column block of the next block of rows, towards L2
          const char* q = reinterpret_cast<const char*>(xp + (k + r) * ldx + n0);
          _mm_prefetch(q, _MM_HINT_T1);
          _mm_prefetch(q + 64, _MM_HINT_T1);
          _mm_prefetch(q + 4 * n - 1, _MM_HINT_T1);
        }
        tn_block(ap, 1, lda, xp + n0, ldx, C + n0, ldc, 0, M, n, k, a, false);
      }
    }
  });
}

#undef LRNN_UNROLL

#else  // no AVX2/FMA (another architecture, or an x86 build without them): available() is false, never called

inline void nt(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, int64_t, int64_t, bool,
               bool = true) {
  TORCH_CHECK(false, "lrnn: the small-product kernels are not compiled in");
}
inline void tn(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, int64_t, int64_t, bool,
               bool = true) {
  TORCH_CHECK(false, "lrnn: the small-product kernels are not compiled in");
}
inline void nn(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, int64_t, int64_t, bool) {
  TORCH_CHECK(false, "lrnn: the small-product kernels are not compiled in");
}

#endif  // LRNN_SMALL_GEMM

}  // namespace lrnn_gemm
