// The selective scan on CPU as XLA FFI handlers: forward, forward keeping checkpoints, backward.
//
// Computes exactly what `_scan_fused` in scan.py computes, per row r (all leading axes of the
// operands flattened), channel d and state n:
//
//   z = Δ_t[d] A[n,d],  E = exp(z),  f = ZOH (E − 1)/A  (Δ·P(z) for |z| < 0.1)  or Euler Δ,
//   h_t[n,d] = E h_{t−1}[n,d] + f u_t[d] B_t[n],   y_t[d] = Σ_n C_t[n] h_t[n,d].
//
// Why by hand: XLA:CPU runs each step of `lax.scan` as ~20 separate loops over the state, so the
// backward pass of the scan ran at 13 % of this machine's exp throughput (BENCHMARKS.md §2).
// Here one step is one pass over the (n, d) state with d innermost (vectorised), the state
// stays in L1/L2, and the backward pass recomputes each chunk of `chunk` steps from a
// checkpoint into a small buffer instead of materialising every state.
//
// Layouts (row-major, after the leading axes): u, Δ, y, du, dΔ: (l, d); B, C, dB, dC: (l, n);
// A (already transposed), h0, h_last, dA, dh0: (n, d); checkpoints: (ceil(l/chunk), n, d).

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr float kTaylorBelow = 0.1f;  // as _TAYLOR_BELOW in scan.py

// exp(x) for x ≤ 88, branch-free so that loops over it vectorise: 2^k · p(r), r = x − k ln 2,
// |r| ≤ ln 2 / 2, p the degree-7 Cephes polynomial (≈ 1 ulp); 0 below −87.3 (denormal range).
inline float Exp(float x) {
  const float clamped = std::min(std::max(x, -87.3f), 88.0f);
  const float shifter = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer
  const float t = clamped * 1.44269504088896341f + shifter;
  const float k = t - shifter;
  float r = clamped - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(shifter) + 127) << 23;
  const float scale = std::bit_cast<float>(bits);
  return x < -87.3f ? 0.0f : p * scale;
}

// The input factor f(z) and, for the backward pass, its derivatives.
inline float Taylor(float z) {
  return 1.0f + z * (0.5f + z * (1.0f / 6 + z * (1.0f / 24 + z * (1.0f / 120))));
}
inline float TaylorSlope(float z) {
  return 0.5f + z * (1.0f / 3 + z * (1.0f / 8 + z * (1.0f / 30)));
}

struct Dims {
  int64_t rows, length, channels, state;
};

// Runs body(row) for every row, on the caller's thread and XLA's intra-op thread pool. Rows are
// taken from a shared counter, so the call completes even if a pool task never starts, and a
// task that starts late finds no rows left and touches nothing.
template <typename Body>
void ForEachRow(ffi::ThreadPool& pool, int64_t rows, Body body) {
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto shared = std::make_shared<Shared>();
  auto work = [shared, rows, body]() {
    for (int64_t r; (r = shared->next.fetch_add(1)) < rows;) {
      body(r);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), rows) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule(std::function<void()>(work));
  work();
  while (shared->done.load(std::memory_order_acquire) < rows) std::this_thread::yield();
}

// One step of the recurrence for one row: h ← E h + f u B; y = Σ_n C h. Writes E into `e_out`
// when kStoreE (the backward pass's chunk buffer).
template <bool kZoh, bool kStoreE>
void StepImpl(int64_t state, int64_t channels, const float* __restrict a,
              const float* __restrict inv_a, const float* __restrict u,
              const float* __restrict delta, const float* __restrict b,
              const float* __restrict c, float* __restrict h, float* __restrict y,
              float* __restrict e_out) {
  for (int64_t d = 0; d < channels; ++d) y[d] = 0.0f;
  for (int64_t n = 0; n < state; ++n) {
    const float bn = b[n], cn = c[n];
    const int64_t offset = n * channels;
#pragma omp simd
    for (int64_t d = 0; d < channels; ++d) {
      const float z = delta[d] * a[offset + d];
      const float e = Exp(z);
      float f;
      if constexpr (kZoh) {
        f = std::abs(z) < kTaylorBelow ? delta[d] * Taylor(z) : (e - 1.0f) * inv_a[offset + d];
      } else {
        f = delta[d];
      }
      const float hv = e * h[offset + d] + f * (u[d] * bn);
      h[offset + d] = hv;
      y[d] += hv * cn;
      if constexpr (kStoreE) e_out[offset + d] = e;
    }
  }
}

inline void Step(const Dims& s, bool zoh, const float* a, const float* inv_a, const float* u,
                 const float* delta, const float* b, const float* c, float* h, float* y,
                 float* e_out) {
  const auto step = zoh ? (e_out ? StepImpl<true, true> : StepImpl<true, false>)
                        : (e_out ? StepImpl<false, true> : StepImpl<false, false>);
  step(s.state, s.channels, a, inv_a, u, delta, b, c, h, y, e_out);
}

using Buffer = std::unique_ptr<float[]>;

Buffer Reciprocals(const float* a, int64_t size) {
  Buffer inverse(new float[size]);
  for (int64_t i = 0; i < size; ++i) inverse[i] = 1.0f / a[i];
  return inverse;
}

struct Operands {
  const float *u, *delta, *a, *b, *c, *h0;
};

ffi::Error CheckShapes(const Dims& s, ffi::Span<const int64_t> u_dims, int64_t a_size,
                       int64_t b_size, int64_t c_size, int64_t h0_size, int64_t delta_size) {
  const int64_t seq = s.rows * s.length;
  if (delta_size != seq * s.channels || b_size != seq * s.state || c_size != seq * s.state ||
      a_size != s.rows * s.state * s.channels || h0_size != s.rows * s.state * s.channels) {
    return ffi::Error::InvalidArgument("selective scan: operand sizes do not match u, A and B");
  }
  if (u_dims.size() < 2) {
    return ffi::Error::InvalidArgument("selective scan: u must be (..., l, d)");
  }
  return ffi::Error::Success();
}

Dims DimsOf(ffi::Span<const int64_t> u_dims, ffi::Span<const int64_t> b_dims) {
  if (u_dims.size() < 2 || b_dims.size() < 1) return Dims{0, 0, 0, 0};  // refused by CheckShapes
  Dims s{1, u_dims[u_dims.size() - 2], u_dims.back(), b_dims.back()};
  for (size_t i = 0; i + 2 < u_dims.size(); ++i) s.rows *= u_dims[i];
  return s;
}

// The forward pass; checkpoints the state before every `chunk`-th step when `ckpt` is given.
void Forward(ffi::ThreadPool& pool, const Dims& s, bool zoh, int64_t chunk, Operands in, float* y,
             float* h_last, float* ckpt) {
  const int64_t LD = s.length * s.channels, LN = s.length * s.state, ND = s.state * s.channels;
  const int64_t chunks = (s.length + chunk - 1) / chunk;
  ForEachRow(pool, s.rows, [=](int64_t r) {
    const float* a = in.a + r * ND;
    const Buffer inv_a = Reciprocals(a, ND);
    float* h = h_last + r * ND;
    std::copy(in.h0 + r * ND, in.h0 + (r + 1) * ND, h);
    for (int64_t t = 0; t < s.length; ++t) {
      if (ckpt && t % chunk == 0) std::copy(h, h + ND, ckpt + (r * chunks + t / chunk) * ND);
      Step(s, zoh, a, inv_a.get(), in.u + r * LD + t * s.channels,
           in.delta + r * LD + t * s.channels, in.b + r * LN + t * s.state,
           in.c + r * LN + t * s.state, h, y + r * LD + t * s.channels, nullptr);
    }
  });
}

struct Grads {
  float *du, *ddelta, *da, *db, *dc, *dh0;
};

// The backward pass of one step t for one row: `h_prev`, `h_now` are h_{t−1}, h_t, `e` the
// factors E of step t; `g` is ∂L/∂h_t from step t + 1 on entry and ∂L/∂h_{t−1} on exit; dA
// accumulates, the other gradients of step t are written.
template <bool kZoh>
void BackwardStep(int64_t state, int64_t channels, const float* __restrict a,
                  const float* __restrict inv_a, const float* __restrict u,
                  const float* __restrict delta, const float* __restrict b,
                  const float* __restrict c, const float* __restrict dy,
                  const float* __restrict h_prev, const float* __restrict h_now,
                  const float* __restrict e, float* __restrict g, float* __restrict du,
                  float* __restrict ddelta, float* __restrict da, float* __restrict db,
                  float* __restrict dc) {
  for (int64_t d = 0; d < channels; ++d) du[d] = ddelta[d] = 0.0f;
  for (int64_t n = 0; n < state; ++n) {
    const float bn = b[n], cn = c[n];
    const int64_t o = n * channels;
    float sum_c = 0.0f, sum_b = 0.0f;
#pragma omp simd reduction(+ : sum_c, sum_b)
    for (int64_t d = 0; d < channels; ++d) {
      const float gh = g[o + d] + dy[d] * cn;  // ∂L/∂h_t: from step t + 1 and from y_t
      sum_c += h_now[o + d] * dy[d];
      const float ed = e[o + d];
      const float gf = gh * (u[d] * bn);  // ∂L/∂f
      const float g_from_e = gh * h_prev[o + d] * ed;
      float f, gz, gdelta_direct, ga_direct;
      if constexpr (kZoh) {
        const float z = delta[d] * a[o + d];
        const bool small = std::abs(z) < kTaylorBelow;
        const float ia = inv_a[o + d];
        f = small ? delta[d] * Taylor(z) : (ed - 1.0f) * ia;
        gz = g_from_e + (small ? gf * delta[d] * TaylorSlope(z) : gf * ed * ia);
        gdelta_direct = small ? gf * Taylor(z) : 0.0f;
        ga_direct = small ? 0.0f : -gf * (ed - 1.0f) * ia * ia;
      } else {
        f = delta[d];
        gz = g_from_e;
        gdelta_direct = gf;
        ga_direct = 0.0f;
      }
      const float ghf = gh * f;
      du[d] += ghf * bn;
      sum_b += ghf * u[d];
      ddelta[d] += gz * a[o + d] + gdelta_direct;
      da[o + d] += gz * delta[d] + ga_direct;
      g[o + d] = gh * ed;  // ∂L/∂h_{t−1} through the recurrence
    }
    dc[n] = sum_c;
    db[n] = sum_b;
  }
}

void Backward(ffi::ThreadPool& pool, const Dims& s, bool zoh, int64_t chunk, Operands in,
              const float* ckpt, const float* dy, const float* dh_last, Grads out) {
  const int64_t LD = s.length * s.channels, LN = s.length * s.state, ND = s.state * s.channels;
  const int64_t chunks = (s.length + chunk - 1) / chunk;
  ForEachRow(pool, s.rows, [=](int64_t r) {
    const float* a = in.a + r * ND;
    const Buffer inv_a = Reciprocals(a, ND);
    // Uninitialised scratch: every element is written before it is read.
    const Buffer hs(new float[(chunk + 1) * ND]), es(new float[chunk * ND]);
    const Buffer y_unused(new float[s.channels]);
    const float *u = in.u + r * LD, *delta = in.delta + r * LD;
    const float *b = in.b + r * LN, *c = in.c + r * LN;
    float* g = out.dh0 + r * ND;  // carries ∂L/∂h, ends as ∂L/∂h0
    std::copy(dh_last + r * ND, dh_last + (r + 1) * ND, g);
    float* da = out.da + r * ND;
    std::fill(da, da + ND, 0.0f);
    for (int64_t k = chunks - 1; k >= 0; --k) {
      const int64_t t0 = k * chunk, t1 = std::min(t0 + chunk, s.length);
      std::copy(ckpt + (r * chunks + k) * ND, ckpt + (r * chunks + k + 1) * ND, hs.get());
      for (int64_t t = t0; t < t1; ++t) {
        float* h = hs.get() + (t - t0 + 1) * ND;
        std::copy(h - ND, h, h);
        Step(s, zoh, a, inv_a.get(), u + t * s.channels, delta + t * s.channels,
             b + t * s.state, c + t * s.state, h, y_unused.get(), es.get() + (t - t0) * ND);
      }
      const auto step = zoh ? BackwardStep<true> : BackwardStep<false>;
      for (int64_t t = t1 - 1; t >= t0; --t) {
        const float* h_prev = hs.get() + (t - t0) * ND;
        step(s.state, s.channels, a, inv_a.get(), u + t * s.channels, delta + t * s.channels,
             b + t * s.state, c + t * s.state, dy + r * LD + t * s.channels, h_prev,
             h_prev + ND, es.get() + (t - t0) * ND, g, out.du + r * LD + t * s.channels,
             out.ddelta + r * LD + t * s.channels, da, out.db + r * LN + t * s.state,
             out.dc + r * LN + t * s.state);
      }
    }
  });
}

using F32 = ffi::Buffer<ffi::F32>;
using F32Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error ForwardHandler(ffi::ThreadPool pool, F32 u, F32 delta, F32 a, F32 b, F32 c, F32 h0,
                          F32Out y, F32Out h_last, int64_t zoh) {
  const Dims s = DimsOf(u.dimensions(), b.dimensions());
  ffi::Error error = CheckShapes(s, u.dimensions(), a.element_count(), b.element_count(),
                                 c.element_count(), h0.element_count(), delta.element_count());
  if (error.failure()) return error;
  Forward(pool, s, zoh != 0, s.length, {u.typed_data(), delta.typed_data(), a.typed_data(),
                                        b.typed_data(), c.typed_data(), h0.typed_data()},
          y->typed_data(), h_last->typed_data(), nullptr);
  return ffi::Error::Success();
}

ffi::Error ForwardTrainHandler(ffi::ThreadPool pool, F32 u, F32 delta, F32 a, F32 b, F32 c,
                               F32 h0, F32Out y, F32Out h_last, F32Out ckpt, int64_t zoh,
                               int64_t chunk) {
  const Dims s = DimsOf(u.dimensions(), b.dimensions());
  ffi::Error error = CheckShapes(s, u.dimensions(), a.element_count(), b.element_count(),
                                 c.element_count(), h0.element_count(), delta.element_count());
  if (error.failure()) return error;
  if (chunk < 1) return ffi::Error::InvalidArgument("selective scan: chunk must be positive");
  const int64_t chunks = (s.length + chunk - 1) / chunk;
  const int64_t checkpoint_size = s.rows * chunks * s.state * s.channels;
  if (static_cast<int64_t>(ckpt->element_count()) != checkpoint_size) {
    return ffi::Error::InvalidArgument("selective scan: checkpoint buffer of the wrong size");
  }
  Forward(pool, s, zoh != 0, chunk, {u.typed_data(), delta.typed_data(), a.typed_data(),
                                     b.typed_data(), c.typed_data(), h0.typed_data()},
          y->typed_data(), h_last->typed_data(), ckpt->typed_data());
  return ffi::Error::Success();
}

ffi::Error BackwardHandler(ffi::ThreadPool pool, F32 u, F32 delta, F32 a, F32 b, F32 c, F32 h0,
                           F32 ckpt, F32 dy, F32 dh_last, F32Out du, F32Out ddelta, F32Out da,
                           F32Out db, F32Out dc, F32Out dh0, int64_t zoh, int64_t chunk) {
  const Dims s = DimsOf(u.dimensions(), b.dimensions());
  ffi::Error error = CheckShapes(s, u.dimensions(), a.element_count(), b.element_count(),
                                 c.element_count(), h0.element_count(), delta.element_count());
  if (error.failure()) return error;
  if (chunk < 1) return ffi::Error::InvalidArgument("selective scan: chunk must be positive");
  const int64_t chunks = (s.length + chunk - 1) / chunk;
  const int64_t checkpoint_size = s.rows * chunks * s.state * s.channels;
  if (static_cast<int64_t>(ckpt.element_count()) != checkpoint_size ||
      dy.element_count() != u.element_count() || dh_last.element_count() != h0.element_count()) {
    return ffi::Error::InvalidArgument("selective scan: cotangent or checkpoint size mismatch");
  }
  Backward(pool, s, zoh != 0, chunk,
           {u.typed_data(), delta.typed_data(), a.typed_data(), b.typed_data(), c.typed_data(),
            h0.typed_data()},
           ckpt.typed_data(), dy.typed_data(), dh_last.typed_data(),
           {du->typed_data(), ddelta->typed_data(), da->typed_data(), db->typed_data(),
            dc->typed_data(), dh0->typed_data()});
  return ffi::Error::Success();
}

}  // namespace

// The operands every handler takes first: XLA's thread pool, then u, Δ, A, B, C, h0.
static auto BindScanOperands() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<F32>()
      .Arg<F32>()
      .Arg<F32>()
      .Arg<F32>()
      .Arg<F32>()
      .Arg<F32>();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(CaltransferScanForward, ForwardHandler,
                              BindScanOperands().Ret<F32>().Ret<F32>().Attr<int64_t>("zoh"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CaltransferScanForwardTrain, ForwardTrainHandler,
                              BindScanOperands()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Attr<int64_t>("zoh")
                                  .Attr<int64_t>("chunk"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CaltransferScanBackward, BackwardHandler,
                              BindScanOperands()
                                  .Arg<F32>()  // checkpoints
                                  .Arg<F32>()  // dy
                                  .Arg<F32>()  // dh_last
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Attr<int64_t>("zoh")
                                  .Attr<int64_t>("chunk"));
