// CPU kernels for LinearNLL (lrnn/rnnlm.py), the summed cross-entropy of the decoder's logits [N, V]: the softmax
// and its gradient as one pass per row over the logits buffer, in place, where the torch ops take five passes over
// the whole [N, V] buffer (16 MB at PTB's 400 x 10k) going forward and two going back. Rows are split over torch's
// threads; a row's arithmetic does not depend on the split. Where the CPU has AVX-512, the logits and the decoder
// weight's gradient come from lrnn's product kernels (small_gemm.h), and the bias is added in the softmax pass. Built
// with step_weight_lstm.cpp (lrnn/kernels/_native.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "fast_exp.h"
#include "small_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>

namespace {

using at::Tensor;

constexpr int kLanes = 16;  // independent partial maxima / sums, so that the row loops vectorise

inline float exp_(float x) { return lrnn_native::exp_f(x); }
inline double exp_(double x) { return std::exp(x); }

// The row's largest logit; the logits are p + b where a bias b is given (p's products without it), else p.
template <typename T, bool kBias>
T row_max(const T* __restrict p, const T* __restrict b, int64_t V) {
  T m[kLanes];
  std::fill(m, m + kLanes, kBias ? p[0] + b[0] : p[0]);
  int64_t j = 0;
  for (; j + kLanes <= V; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const T x = kBias ? p[j + k] + b[j + k] : p[j + k];
      m[k] = x > m[k] ? x : m[k];
    }
  for (; j < V; ++j) {
    const T x = kBias ? p[j] + b[j] : p[j];
    m[0] = x > m[0] ? x : m[0];
  }
  return *std::max_element(m, m + kLanes);
}

// p <- exp(logit - top) over a row (logit = p + b with a bias); returns the row's sum.
template <typename T, bool kBias>
T exp_sum(T* __restrict p, const T* __restrict b, int64_t V, T top) {
  T s[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= V; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const T e = exp_((kBias ? p[j + k] + b[j + k] : p[j + k]) - top);
      p[j + k] = e;
      s[k] += e;
    }
  for (; j < V; ++j) {
    const T e = exp_((kBias ? p[j] + b[j] : p[j]) - top);
    p[j] = e;
    s[0] += e;
  }
  T total = 0;
  for (int k = 0; k < kLanes; ++k) total += s[k];
  return total;
}

// probs [N, V] holds the logits, or with a bias [V] the logits less the bias; in place it gets exp(logit - row max).
// Returns (nll [N]: log(sum) + max - the target's logit, 0 where the target is ignore_index; total [N]: the row sums).
template <typename T, bool kBias>
void forward_rows(T* p, const T* b, const int64_t* y, T* out, T* tot, int64_t N, int64_t V, int64_t ignore_index) {
  at::parallel_for(0, N, std::max<int64_t>(1, 16384 / V), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* row = p + r * V;
      const bool valid = y[r] != ignore_index;
      TORCH_CHECK(!valid || (y[r] >= 0 && y[r] < V), "target ", y[r], " is out of bounds for ", V, " classes");
      const T picked = valid ? (kBias ? row[y[r]] + b[y[r]] : row[y[r]]) : 0;
      const T top = row_max<T, kBias>(row, b, V);
      tot[r] = exp_sum<T, kBias>(row, b, V, top);
      out[r] = valid ? std::log(tot[r]) + top - picked : 0;
    }
  });
}

std::tuple<Tensor, Tensor> forward(Tensor probs, const Tensor& targets, int64_t ignore_index,
                                   const std::optional<Tensor>& bias) {
  TORCH_CHECK(probs.dim() == 2 && probs.is_contiguous(), "probs must be a contiguous [N, V] tensor");
  const int64_t N = probs.size(0), V = probs.size(1);
  const bool has_bias = bias.has_value() && bias->defined();
  const Tensor tgt = targets.contiguous(), b = has_bias ? bias->contiguous() : Tensor();
  TORCH_CHECK(!has_bias || (b.numel() == V && b.scalar_type() == probs.scalar_type()),
              "bias must be [V], probs' dtype");
  auto nll = at::empty({N}, probs.options()), total = at::empty({N}, probs.options());
  const int64_t* y = tgt.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "lrnn_linear_nll_forward", [&] {
    scalar_t *p = probs.data_ptr<scalar_t>(), *out = nll.data_ptr<scalar_t>(), *tot = total.data_ptr<scalar_t>();
    if (has_bias)
      forward_rows<scalar_t, true>(p, b.data_ptr<scalar_t>(), y, out, tot, N, V, ignore_index);
    else
      forward_rows<scalar_t, false>(p, nullptr, y, out, tot, N, V, ignore_index);
  });
  return {nll, total};
}

// Whether lrnn's product kernels serve the decoder's products (float32 rows in order, V a multiple of 4): with AVX-512
// only. On the 2-core Zen 4, at PTB's 400 x 200 x 10k, LinearNLL's forward + backward ran 1.05x (1 thread) and 1.20x
// (2 threads) faster with them than with MKL's (bench_cpu_paths.py, AVX-512 vs AVX2 kernels); MKL's d_logits @ W was as
// fast as the nn kernel in a scratch A/B, so it stays.
bool decoder_kernels(const Tensor& h, const Tensor& weight) {
  const auto rows = [](const Tensor& t) { return t.dim() == 2 && t.stride(1) == 1 && t.scalar_type() == at::kFloat; };
  return lrnn_gemm::available() && lrnn_gemm::avx512_on() && rows(h) && rows(weight) && weight.size(0) % 4 == 0;
}

// out [N, V] = h [N, H] @ weight [V, H]^T (no bias: the forward pass adds it). Returns whether lrnn's kernel wrote
// it; if not (decoder_kernels false), out is untouched and the caller runs torch's addmm.
bool logits(const Tensor& h, const Tensor& weight, Tensor out) {
  if (!decoder_kernels(h, weight) || !out.is_contiguous()) return false;
  lrnn_gemm::nt(h.data_ptr<float>(), h.stride(0), weight.data_ptr<float>(), weight.stride(0), out.data_ptr<float>(),
                out.stride(0), h.size(0), weight.size(0), h.size(1), false);
  return true;
}

// out [V, H] = d_logits [N, V]^T @ h [N, H]: the decoder weight's gradient, with lrnn's kernel where it serves, else
// torch's product.
void weight_grad(const Tensor& d_logits, const Tensor& h, Tensor out) {
  if (decoder_kernels(h, d_logits) && d_logits.stride(1) == 1 && out.is_contiguous()) {
    lrnn_gemm::tn(d_logits.data_ptr<float>(), d_logits.stride(0), h.data_ptr<float>(), h.stride(0),
                  out.data_ptr<float>(), out.stride(0), d_logits.size(1), h.size(1), d_logits.size(0), false);
    return;
  }
  at::NoGradGuard no_grad;
  at::mm_out(out, d_logits.t(), h);
}

// In place: probs (exp(logit - max) from forward) <- grad * (softmax - one_hot(target)); rows whose target is
// ignore_index get 0. grad: the 0-dim gradient of the summed NLL (a CPU tensor: read here, no Python .item()).
void backward(Tensor probs, const Tensor& total, const Tensor& targets, const Tensor& grad, int64_t ignore_index) {
  const int64_t N = probs.size(0), V = probs.size(1);
  const Tensor tgt = targets.contiguous();
  const int64_t* y = tgt.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "lrnn_linear_nll_backward", [&] {
    scalar_t* p = probs.data_ptr<scalar_t>();
    const scalar_t* tot = total.data_ptr<scalar_t>();
    const scalar_t g = grad.to(probs.scalar_type()).item<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / V), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* __restrict row = p + r * V;
        const bool valid = y[r] != ignore_index;
        const scalar_t scale = valid ? g / tot[r] : 0;
        for (int64_t j = 0; j < V; ++j) row[j] *= scale;
        if (valid) row[y[r]] -= g;
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lrnn, m) {
  m.def("linear_nll_forward(Tensor(a!) probs, Tensor targets, int ignore_index, Tensor? bias) -> (Tensor, Tensor)");
  m.def("linear_nll_logits(Tensor h, Tensor weight, Tensor(a!) out) -> bool");
  m.def("linear_nll_weight_grad(Tensor d_logits, Tensor h, Tensor(a!) out) -> ()");
  m.def(
      "linear_nll_backward(Tensor(a!) probs, Tensor total, Tensor targets, Tensor grad, int ignore_index) -> ()");
}

TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("linear_nll_forward", forward);
  m.impl("linear_nll_backward", backward);
  m.impl("linear_nll_logits", logits);
  m.impl("linear_nll_weight_grad", weight_grad);
}
