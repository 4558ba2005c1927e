// CPU kernels for StepWeightLSTMLayer (lrnn/kernels/step_weight.py): one LSTM layer over a sequence where step t uses
// weight set idx[t]. The Python Function calls these for float32/float64 on CPU; they do what its Python loops do
// (same products, same order of steps), but the per-step gate arithmetic is one fused, vectorised pass over the
// batch instead of ~8 tensor operations, and the step loops run without Python. Built on first use by
// lrnn/kernels/_native.py (torch.utils.cpp_extension); ops are registered as torch.ops.lrnn.*.
//
// Segments (the flat `segs` list, 4 ints each): steps t0..t1-1 use sets s0, s0+1, ... (diagonal = 1) or all use set
// s0 (a run, diagonal = 0); see step_segments in step_weight.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "fast_exp.h"
#include "small_gemm.h"

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using lrnn_native::exp_f;

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }

// tanh x = 1 - 2 / (1 + e^2x) loses relative precision as x -> 0 (1 - 2/(1 + e^2x) cancels), so below |x| = 1/4 the
// odd series to x^9 is used (its first omitted term is < 1e-8 relative there).
inline float tanh_(float x) {
  const float far = 1.0f - 2.0f / (1.0f + exp_f(2.0f * x));
  const float x2 = x * x;
  const float near =
      x * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f + x2 * (62.0f / 2835.0f)))));
  return std::fabs(x) < 0.25f ? near : far;
}

// float64 (tests, gradient checks): the library functions, exact to the last bit that matters.
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double tanh_(double x) { return std::tanh(x); }

// One step, in place, for batch rows b0..b1-1: g [B, 4H] holds the pre-activations (gates i, f, g, o) less the bias
// [4H] and gets the activations; c_prev [B, H]; writes c, tanh(c) and h = o tanh(c), each [B, H].
template <typename T>
void cell_forward(T* __restrict g, const T* __restrict bias, const T* __restrict c_prev, T* __restrict c,
                  T* __restrict tc, T* __restrict h, int64_t b0, int64_t b1, int64_t H) {
  const T* __restrict bi = bias;
  const T* __restrict bf = bi + H;
  const T* __restrict bg = bf + H;
  const T* __restrict bo = bg + H;
  for (int64_t b = b0; b < b1; ++b) {
    T* __restrict gi = g + b * 4 * H;
    T* __restrict gf = gi + H;
    T* __restrict gg = gf + H;
    T* __restrict go = gg + H;
    const int64_t r = b * H;
    for (int64_t j = 0; j < H; ++j) {
      const T i = sigmoid(gi[j] + bi[j]), f = sigmoid(gf[j] + bf[j]), u = tanh_(gg[j] + bg[j]),
              o = sigmoid(go[j] + bo[j]);
      const T cn = f * c_prev[r + j] + i * u;
      const T y = tanh_(cn);
      gi[j] = i;
      gf[j] = f;
      gg[j] = u;
      go[j] = o;
      c[r + j] = cn;
      tc[r + j] = y;
      h[r + j] = o * y;
    }
  }
}

// One step back. With dh_t = grad_out_t + dh (from step t+1) and y = tanh(c_t):
//   dc_t = dc + dh_t o (1 - y^2);  d[i, f, g] = dc_t [g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2)];
//   d[o] = dh_t y o (1 - o);  dc <- dc_t f (what reaches c_{t-1}).
template <typename T>
void cell_backward(const T* __restrict gout, const T* __restrict dh, T* __restrict dc, const T* __restrict g,
                   const T* __restrict c_prev, const T* __restrict tc, T* __restrict dg, int64_t b0, int64_t b1,
                   int64_t H) {
  for (int64_t b = b0; b < b1; ++b) {
    const T* __restrict gi = g + b * 4 * H;
    const T* __restrict gf = gi + H;
    const T* __restrict gg = gf + H;
    const T* __restrict go = gg + H;
    T* __restrict di = dg + b * 4 * H;
    T* __restrict df = di + H;
    T* __restrict du = df + H;
    T* __restrict dout = du + H;
    const int64_t r = b * H;
    for (int64_t j = 0; j < H; ++j) {
      const T i = gi[j], f = gf[j], u = gg[j], o = go[j], y = tc[r + j];
      const T dht = gout[r + j] + dh[r + j];
      const T dct = dc[r + j] + dht * o * (1 - y * y);
      di[j] = dct * u * i * (1 - i);
      df[j] = dct * c_prev[r + j] * f * (1 - f);
      du[j] = dct * i * (1 - u * u);
      dout[j] = dht * y * o * (1 - o);
      dc[r + j] = dct * f;
    }
  }
}

// Run f(b0, b1) over the B batch rows of a step, split over torch's intra-op threads when it has several (rows are
// independent: the results do not depend on the split). A chunk gets at least 1024 / H rows (B 20, H 200: two
// chunks of 10 on 2 threads); smaller ones cost more to hand out than they save.
template <typename F>
inline void for_rows(int64_t B, int64_t H, const F& f) {
  at::parallel_for(0, B, (1024 + H - 1) / H, f);
}

// Read a cold, L2-sized weight set once in order so that the product that follows finds it in cache (see
// _prefetch in step_weight.py: MKL's packing of a cold set is ~40% slower).
inline void prefetch(const Tensor& w, int64_t up_to) {
  if (w.numel() * w.element_size() <= up_to) w.sum();
}

// Whether all n values at p are zero (then products with them are skipped: an initial state of zeros, hx=None).
template <typename T>
bool all_zero(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

// The products, with the small-product kernels (small_gemm.h) where they apply and measured faster than torch's:
// float32, every operand's rows contiguous. They read a cold weight set in order themselves; torch's products get it
// read in order first. `where_faster = false` (the `product` op: tests, benchmarks) uses them wherever they apply.
bool rowmajor_f32(const Tensor& t) { return t.dim() == 2 && t.stride(1) == 1 && t.scalar_type() == at::kFloat; }

// c (+)= a @ b with torch's product, after the weight set w (b or its transpose) is read in order (prefetch).
void torch_product(const Tensor& a, const Tensor& b, Tensor c, bool acc, const Tensor& w, int64_t prefetch_up_to) {
  prefetch(w, prefetch_up_to);
  if (acc)
    c.addmm_(a, b);
  else
    at::mm_out(c, a, b);
}

// Whether the nt kernel serves c [M, N] (+)= a [M, K] @ w [N, K]^T: wherever it applies, or (where_faster) where it
// was measured faster than torch's (lrnn_gemm::nt_faster: one step's rows; with AVX-512 also a block's projection of
// several steps at once, B k rows).
bool nt_serves(const Tensor& a, const Tensor& w, const Tensor& c, bool where_faster) {
  return lrnn_gemm::available() && rowmajor_f32(a) && rowmajor_f32(w) && rowmajor_f32(c) && w.size(0) % 4 == 0 &&
         (!where_faster || lrnn_gemm::nt_faster(a.size(0), a.size(1)));
}

// c [M, N] (+)= a [M, K] @ w [N, K]^T, with the nt kernel where it serves, else torch's product.
void product_nt(const Tensor& a, const Tensor& w, Tensor c, bool acc, int64_t prefetch_up_to,
                bool where_faster = true) {
  if (nt_serves(a, w, c, where_faster)) {
    lrnn_gemm::nt(a.data_ptr<float>(), a.stride(0), w.data_ptr<float>(), w.stride(0), c.data_ptr<float>(), c.stride(0),
                  a.size(0), w.size(0), a.size(1), acc, !where_faster || lrnn_gemm::nt_wide(a.size(0), a.size(1)));
    return;
  }
  torch_product(a, w.t(), c, acc, w, prefetch_up_to);
}

// c [M, N] (+)= a [M, K] @ w [K, N]: the state and input gradients d_gates @ W, one step's rows. The kernel reads a
// cold set block by block with a software prefetch one block ahead (bench_cpu_paths.py, d_gates @ w with a cold
// [2600, 650] set, H 650: 0.85 against MKL's 1.36 ms on 1 thread, 0.57 against 1.06 ms on 2). Up to 2 MB a set
// (H 300: 1.4 MB) MKL's, after the set is read in order (prefetch), was as fast or faster.
constexpr int64_t kNnFromBytes = 2 << 20;
void product_nn(const Tensor& a, const Tensor& w, Tensor c, bool acc, int64_t prefetch_up_to,
                bool where_faster = true) {
  if (lrnn_gemm::available() && rowmajor_f32(a) && rowmajor_f32(w) && rowmajor_f32(c) &&
      (!where_faster || (a.size(0) <= 32 && w.numel() * w.element_size() > kNnFromBytes))) {
    lrnn_gemm::nn(a.data_ptr<float>(), a.stride(0), w.data_ptr<float>(), w.stride(0), c.data_ptr<float>(), c.stride(0),
                  a.size(0), w.size(1), a.size(1), acc);
    return;
  }
  torch_product(a, w, c, acc, w, prefetch_up_to);
}

// The products of whole runs (share_every >= 2: the k·B rows of a run against its weight set) where the set is over
// 2 MB and torch has several threads: each run's product is cut into two column halves, and the halves go to the
// threads as single-threaded products, instead of one multi-threaded product per run (MKL's single-threaded products
// use a core better than its 2-thread ones at these shapes: share5 at H 650 on 2 threads, forward and backward, ran a
// few percent faster in benchmarks/bench_cpu_paths.py's share5 run-product comparison). One thread runs the products
// as before. The forward's products go to the nt kernel instead where it serves (AVX-512).
struct RunProduct {
  Tensor a, w, c;  // c [M, N] = a [M, K] @ (w^T if nt else w)
};

bool& split_runs_flag() {  // on; the `split_run_products` op switches it (benchmarks and tests compare)
  static bool on = true;
  return on;
}

bool split_run_products(const Tensor& w) {
  return split_runs_flag() && at::get_num_threads() > 1 && w.numel() * w.element_size() > kNnFromBytes;
}

void run_products(const std::vector<RunProduct>& runs, bool nt) {
  if (runs.empty()) return;
  at::parallel_for(0, 2 * static_cast<int64_t>(runs.size()), 1, [&](int64_t b0, int64_t b1) {
    at::NoGradGuard no_grad;  // grad mode is thread-local: the workers' is on
    for (int64_t b = b0; b < b1; ++b) {
      const RunProduct& r = runs[b / 2];
      const int64_t N = r.c.size(1), half = std::min(N, (N / 2 + 7) / 8 * 8), c0 = b % 2 ? half : 0;
      const int64_t len = b % 2 ? N - half : half;
      if (len == 0) continue;
      Tensor c = r.c.narrow(1, c0, len);
      at::mm_out(c, r.a, nt ? r.w.narrow(0, c0, len).t() : r.w.narrow(1, c0, len));
    }
  });
}

struct Segment {
  int64_t t0, t1, s0;
  bool diag;
};

std::vector<Segment> unpack(at::IntArrayRef segs) {
  TORCH_CHECK(segs.size() % 4 == 0, "segs must hold 4 ints per segment");
  std::vector<Segment> out;
  for (size_t k = 0; k < segs.size(); k += 4) out.push_back({segs[k], segs[k + 1], segs[k + 2], segs[k + 3] != 0});
  return out;
}

// x [T, B, in] -> (gates [T, B, 4H] activated, out = h [T, B, H], c [T, B, H], tanh(c) [T, B, H]).
// bias: [S, 4H] (b_ih + b_hh per set) or None.
std::tuple<Tensor, Tensor, Tensor, Tensor> forward(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                                   at::TensorList w_ih, at::TensorList w_hh,
                                                   const std::optional<Tensor>& bias, at::IntArrayRef idx,
                                                   at::IntArrayRef segs, int64_t prefetch_up_to) {
  const int64_t T = x.size(0), B = x.size(1), H = w_hh[0].size(1), G = 4 * H;
  TORCH_CHECK(static_cast<int64_t>(idx.size()) == T, "one weight-set index per step");
  const bool has_bias = bias.has_value() && bias->defined();
  auto gates = at::empty({T, B, G}, x.options());
  std::vector<RunProduct> runs;
  for (const Segment& sg : unpack(segs)) {
    const int64_t n = sg.t1 - sg.t0;
    if (sg.diag) {
      for (int64_t j = 0; j < n; ++j) {
        product_nt(x.select(0, sg.t0 + j), w_ih[sg.s0 + j], gates.select(0, sg.t0 + j), false, prefetch_up_to);
      }
    } else {
      Tensor a = x.slice(0, sg.t0, sg.t1).reshape({n * B, -1}), c = gates.slice(0, sg.t0, sg.t1).view({n * B, G});
      if (!nt_serves(a, w_ih[sg.s0], c, true) && split_run_products(w_ih[sg.s0]))
        runs.push_back({a, w_ih[sg.s0], c});
      else
        product_nt(a, w_ih[sg.s0], c, false, prefetch_up_to);
    }
  }
  run_products(runs, true);
  // the bias is added in the gate pass (one read of [4H] per step instead of a copy into every step's gates)
  const Tensor b_all = has_bias ? bias->contiguous() : at::zeros({1, G}, x.options());
  auto out = at::empty({T, B, H}, x.options());
  auto c_all = at::empty_like(out), tanh_c = at::empty_like(out);
  const Tensor h_first = h0.contiguous(), c_first = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lrnn_step_weight_lstm_forward", [&] {
    const bool h0_zero = all_zero(h_first.data_ptr<scalar_t>(), h_first.numel());
    for (int64_t t = 0; t < T; ++t) {
      const int64_t s = idx[t];
      Tensor g = gates.select(0, t);
      if (t > 0 || !h0_zero)  // a run's set is cold only at its first step
        product_nt(t == 0 ? h_first : out.select(0, t - 1), w_hh[s], g, true,
                   t == 0 || s != idx[t - 1] ? prefetch_up_to : 0);
      const scalar_t* cp = (t == 0 ? c_first : c_all.select(0, t - 1)).data_ptr<scalar_t>();
      const scalar_t* b = b_all.select(0, has_bias ? s : 0).data_ptr<scalar_t>();
      scalar_t *gp = g.data_ptr<scalar_t>(), *cn = c_all.select(0, t).data_ptr<scalar_t>(),
               *tc = tanh_c.select(0, t).data_ptr<scalar_t>(), *h = out.select(0, t).data_ptr<scalar_t>();
      for_rows(B, H, [&](int64_t b0, int64_t b1) { cell_forward<scalar_t>(gp, b, cp, cn, tc, h, b0, b1, H); });
    }
  });
  return {gates, out, c_all, tanh_c};
}

// out (+)= g.T @ inp: g [K, G], inp [K, in], out [G, in]. The AVX2 kernel gains by streaming a fresh gradient into
// memory, so it takes a first write of an L2-sized out whose rows are 32-byte aligned (H 200). It was slower than
// torch's without streaming stores (rows of 155 or 650 floats), when accumulating, and for outs of several MB. There,
// torch's: a first write zero-fills L2-sized row blocks in order and accumulates into them (MKL writing a cold multi-MB
// gradient directly is slower). The AVX-512 kernel was as fast as both or faster (bench_cpu_paths.py, AVX-512 vs AVX2
// kernels: 1.00-1.33x torch's at H 200 and 650 from 20 and 100 rows; a scratch grid at H 155-650 from 20-700 rows
// agreed) except where the AVX2 one streams from under 64 rows (one step's batch at H 200: 0.92-0.93x the AVX2 kernel),
// which stays with the AVX2 kernel.
void grad_product(const Tensor& g, const Tensor& inp, Tensor out, bool accumulate, int64_t one_block_up_to,
                  int64_t block_bytes, bool where_faster = true) {
  if (lrnn_gemm::available() && rowmajor_f32(g) && rowmajor_f32(inp) && rowmajor_f32(out)) {
    const bool streamed = lrnn_gemm::streams(out.data_ptr<float>(), out.stride(0), accumulate) &&
                          out.numel() * out.element_size() <= one_block_up_to;
    const bool wide = lrnn_gemm::avx512_on() && !(where_faster && streamed && g.size(0) < 64);
    if (!where_faster || wide || streamed) {
      lrnn_gemm::tn(g.data_ptr<float>(), g.stride(0), inp.data_ptr<float>(), inp.stride(0), out.data_ptr<float>(),
                    out.stride(0), g.size(1), inp.size(1), g.size(0), accumulate, wide);
      return;
    }
  }
  const Tensor g_t = g.t();
  if (accumulate) {
    out.addmm_(g_t, inp);
    return;
  }
  const int64_t G = g.size(1), n_in = inp.size(1), size = g.element_size();
  const int64_t rows = G * n_in * size <= one_block_up_to ? G : std::max<int64_t>(1, block_bytes / (n_in * size));
  // The blocks go to the threads (each block's zero-fill and product then run on one thread): one parallel region
  // per gradient instead of two per block (short regions cost the second thread a wake-up each).
  const int64_t nblocks = (G + rows - 1) / rows;
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    at::NoGradGuard no_grad;  // grad mode is thread-local: the workers' is on
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * rows, len = std::min(rows, G - r0);
      out.narrow(0, r0, len).zero_().addmm_(g_t.narrow(0, r0, len), inp);
    }
  });
}

// Weight gradients of all sets into dw [S, G, in]: dw[s] = sum over steps t using s of d_gates[t].T @ inp[t],
// inp [T, B, in]. first_is_zero: inp[0] is zero, so step 0 adds nothing (a set no other step uses gets zeros).
void weight_grads(const Tensor& d_gates, const Tensor& inp, const std::vector<Segment>& sg_list, Tensor dw,
                  bool first_is_zero, int64_t one_block_up_to, int64_t block_bytes) {
  const int64_t B = d_gates.size(1);
  std::vector<bool> written(dw.size(0), false);
  auto zeros = [&](int64_t s) {
    if (!written[s]) dw.select(0, s).zero_();
    written[s] = true;
  };
  for (const Segment& sg : sg_list) {
    const int64_t skip = first_is_zero && sg.t0 == 0 ? 1 : 0;
    const int64_t n = sg.t1 - sg.t0;
    if (sg.diag) {
      for (int64_t j = 0; j < n; ++j) {
        const int64_t s = sg.s0 + j;
        if (j < skip) {
          zeros(s);
          continue;
        }
        grad_product(d_gates.select(0, sg.t0 + j), inp.select(0, sg.t0 + j), dw.select(0, s), written[s],
                     one_block_up_to, block_bytes);
        written[s] = true;
      }
    } else {
      const int64_t s = sg.s0, t0 = sg.t0 + skip;
      if (t0 == sg.t1) {
        zeros(s);
        continue;
      }
      grad_product(d_gates.slice(0, t0, sg.t1).reshape({(sg.t1 - t0) * B, -1}),
                   inp.slice(0, t0, sg.t1).reshape({(sg.t1 - t0) * B, -1}), dw.select(0, s), written[s],
                   one_block_up_to, block_bytes);
      written[s] = true;
    }
  }
}

// Returns (dx [T, B, in] or empty, dh0 [B, H] or empty, dc0 [B, H], dw_ih [S, 4H, in] or empty, dw_hh [S, 4H, H]
// or empty, db [S, 4H] or empty). dw_ih_out / dw_hh_out: where to write the weight gradients (reused buffers), or
// None. The products with h0 are skipped where h0 is zero (dw_hh) or its gradient is not needed (dh0).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> backward(
    const Tensor& grad_out, const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& x, const Tensor& h0,
    const Tensor& c0, const Tensor& out, const Tensor& gates, const Tensor& c_all, const Tensor& tanh_c,
    at::TensorList w_ih, at::TensorList w_hh, at::IntArrayRef idx, at::IntArrayRef segs, int64_t num_sets,
    bool need_dx, bool need_dh0, bool need_dw_ih, bool need_dw_hh, bool need_db, const std::optional<Tensor>& dw_ih_out,
    const std::optional<Tensor>& dw_hh_out, int64_t prefetch_up_to, int64_t block_bytes) {
  const int64_t T = gates.size(0), B = gates.size(1), H = out.size(2), G = 4 * H;
  const std::vector<Segment> sg_list = unpack(segs);
  auto d_gates = at::empty_like(gates);
  const Tensor go = grad_out.contiguous(), c_first = c0.contiguous();
  Tensor dh = grad_hn.contiguous().clone(), dc = grad_cn.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lrnn_step_weight_lstm_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t s = idx[t];
      Tensor dg = d_gates.select(0, t);
      const scalar_t* cp = (t == 0 ? c_first : c_all.select(0, t - 1)).data_ptr<scalar_t>();
      const scalar_t *gout = go.select(0, t).data_ptr<scalar_t>(), *dhp = dh.data_ptr<scalar_t>(),
                     *gp = gates.select(0, t).data_ptr<scalar_t>(), *tc = tanh_c.select(0, t).data_ptr<scalar_t>();
      scalar_t *dcp = dc.data_ptr<scalar_t>(), *dgp = dg.data_ptr<scalar_t>();
      for_rows(B, H, [&](int64_t b0, int64_t b1) {
        cell_backward<scalar_t>(gout, dhp, dcp, gp, cp, tc, dgp, b0, b1, H);
      });
      if (t == 0 && !need_dh0) {
        dh = at::empty({0}, gates.options());
        break;
      }
      dh = at::empty({B, H}, gates.options());
      product_nn(dg, w_hh[s], dh, false, t == T - 1 || s != idx[t + 1] ? prefetch_up_to : 0);
    }
  });
  const auto empty = at::empty({0}, gates.options());
  Tensor dx = empty, dw_ih = empty, dw_hh = empty, db = empty;
  if (need_dx) {
    dx = at::empty({T, B, w_ih[0].size(1)}, gates.options());
    std::vector<RunProduct> runs;
    for (const Segment& sg : sg_list) {
      const int64_t n = sg.t1 - sg.t0;
      if (sg.diag) {
        for (int64_t j = 0; j < n; ++j) {
          product_nn(d_gates.select(0, sg.t0 + j), w_ih[sg.s0 + j], dx.select(0, sg.t0 + j), false, prefetch_up_to);
        }
      } else {
        Tensor o = dx.slice(0, sg.t0, sg.t1).view({n * B, -1});
        Tensor a = d_gates.slice(0, sg.t0, sg.t1).view({n * B, G});
        if (split_run_products(w_ih[sg.s0]))
          runs.push_back({a, w_ih[sg.s0], o});
        else
          at::mm_out(o, a, w_ih[sg.s0]);
      }
    }
    run_products(runs, false);
  }
  if (need_dw_ih) {
    dw_ih = dw_ih_out.has_value() && dw_ih_out->defined() ? *dw_ih_out
                                                          : at::empty({num_sets, G, w_ih[0].size(1)}, gates.options());
    weight_grads(d_gates, x, sg_list, dw_ih, false, prefetch_up_to, block_bytes);
  }
  if (need_dw_hh) {
    dw_hh = dw_hh_out.has_value() && dw_hh_out->defined() ? *dw_hh_out : at::empty({num_sets, G, H}, gates.options());
    const Tensor h_prev = at::cat({h0.unsqueeze(0), out.slice(0, 0, T - 1)});  // h_{t-1} of every step
    const bool h0_zero = AT_DISPATCH_FLOATING_TYPES(h0.scalar_type(), "lrnn_all_zero", [&] {
      const Tensor h = h0.contiguous();
      return all_zero(h.data_ptr<scalar_t>(), h.numel());
    });
    weight_grads(d_gates, h_prev, sg_list, dw_hh, h0_zero, prefetch_up_to, block_bytes);
  }
  if (need_db) {
    const Tensor steps = at::tensor(std::vector<int64_t>(idx.begin(), idx.end()), at::kLong);
    db = at::zeros({num_sets, G}, gates.options()).index_add_(0, steps, d_gates.sum(1));
  }
  return {dx, dh, dc, dw_ih, dw_hh, db};
}

// One product (tests and benchmarks): "nt" c (+)= a @ w^T, "tn" c (+)= a^T @ w, "nn" c (+)= a @ w; with the small
// kernels wherever they apply when they are switched on, else as the LSTM kernels do it with torch's products.
void product(const Tensor& a, const Tensor& w, Tensor c, c10::string_view form, bool acc, int64_t prefetch_up_to,
             int64_t block_bytes) {
  TORCH_CHECK(form == "nt" || form == "tn" || form == "nn", "form is nt, tn or nn");
  if (form == "nt")
    product_nt(a, w, c, acc, prefetch_up_to, false);
  else if (form == "nn")
    product_nn(a, w, c, acc, prefetch_up_to, false);
  else
    grad_product(a, w, c, acc, prefetch_up_to, block_bytes, false);
}

// Switch the split of run products (see run_products) on or off; returns whether it was on.
bool split_run_products_op(bool on) {
  const bool was = split_runs_flag();
  split_runs_flag() = on;
  return was;
}

// Switch the AVX-512 nt and tn kernels on or off (where the CPU has AVX-512; tests and benchmarks compare them with
// the AVX2 ones); returns whether they were on.
bool use_avx512_op(bool on) {
  const bool was = lrnn_gemm::avx512_flag();
  lrnn_gemm::avx512_flag() = on;
  return was;
}

// Switch the small-product kernels on or off (benchmarks compare them with torch's products); returns whether they
// served the products before.
bool use_small_products(bool on) {
  const bool was = lrnn_gemm::enabled_flag();
  lrnn_gemm::enabled_flag() = on;
  return was;
}

}  // namespace

TORCH_LIBRARY(lrnn, m) {
  m.def("use_small_products(bool on) -> bool", use_small_products);
  m.def("small_products_compiled() -> bool", [] { return LRNN_SMALL_GEMM != 0; });
  m.def("split_run_products(bool on) -> bool", split_run_products_op);
  m.def("use_avx512(bool on) -> bool", use_avx512_op);
  m.def("avx512_available() -> bool", [] { return lrnn_gemm::avx512_cpu(); });
  m.def("product(Tensor a, Tensor w, Tensor(a!) c, str form, bool acc, int prefetch_up_to, int block_bytes) -> ()",
        product);
  m.def(
      "step_weight_lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor[] w_ih, Tensor[] w_hh, Tensor? bias, "
      "int[] idx, int[] segs, int prefetch_up_to) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "step_weight_lstm_backward(Tensor grad_out, Tensor grad_hn, Tensor grad_cn, Tensor x, Tensor h0, Tensor c0, "
      "Tensor out, Tensor gates, Tensor c_all, Tensor tanh_c, Tensor[] w_ih, Tensor[] w_hh, int[] idx, int[] segs, "
      "int num_sets, bool need_dx, bool need_dh0, bool need_dw_ih, bool need_dw_hh, bool need_db, "
      "Tensor(a!)? dw_ih_out, Tensor(b!)? dw_hh_out, int prefetch_up_to, int block_bytes) -> (Tensor, Tensor, Tensor, "
      "Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("step_weight_lstm_forward", forward);
  m.impl("step_weight_lstm_backward", backward);
}
