// Fused CPU kernels for ProLab's property head (the Python side is fused.py).
//
// The property loss from quarter-resolution logits, fused: for each labelled full-resolution pixel, bilinear
// interpolation of its K logits from four low-resolution neighbours (align_corners=False), p = sigmoid(z / T),
// and the loss against the class signature, accumulated without ever building a (B, K, H, W) tensor.
// The backward pass recomputes p per pixel and scatters dL/dz to the four neighbours.
//
// kinds: 0 cos_sigmoid  1 - p.y / (|p| |y|)          p = sigmoid(z / T)
//        1 bce          mean_k BCE(sigmoid(z / T), y_k)
//        2 cos          1 - z.y / (|z| |y|)
// Logits come channels-last (B, h, w, K) so the four neighbours' K-vectors are contiguous.
// One image per task (at::parallel_for over the batch): no two threads write the same gradient row.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> l1;   // weight of i1; i0 gets 1 - l1
};

// PyTorch's source index for bilinear, align_corners=False, output size given
Taps taps(int64_t n_out, int64_t n_in) {
  Taps t;
  t.i0.resize(n_out); t.i1.resize(n_out); t.l1.resize(n_out);
  const float scale = static_cast<float>(n_in) / static_cast<float>(n_out);
  for (int64_t o = 0; o < n_out; ++o) {
    float src = (o + 0.5f) * scale - 0.5f;
    if (src < 0) src = 0;
    int64_t i0 = static_cast<int64_t>(src);
    if (i0 > n_in - 1) i0 = n_in - 1;
    t.i0[o] = i0;
    t.i1[o] = i0 < n_in - 1 ? i0 + 1 : i0;
    t.l1[o] = src - static_cast<float>(i0);
  }
  return t;
}

// Portable arithmetic. The kernels are built without -ffast-math and without -march=native, with
// -ffp-contract=off (no fused multiply-add on any CPU), and they call no libm transcendental: glibc picks its
// exp/log implementation at run time by CPU (FMA or not), which can change the last bit. exp and log below are
// fixed polynomials in plain float operations (Cody-Waite range reduction; the minimax coefficients of the
// Cephes library's expf/logf, about 1 ulp), so every IEEE-754 machine computes the same bits. Loops over pixels
// still vectorise (no reductions are reordered).
inline float clamp80(float x) { return x > 80.f ? 80.f : (x < -80.f ? -80.f : x); }

// e^x for |x| <= 80 (callers clamp): x = n ln2 + r, |r| <= ln2 / 2, e^x = 2^n e^r
inline float pexp(float x) {
  const float magic = 12582912.f;                       // 1.5 * 2^23: adding it rounds to an integer
  const float fn = (x * 1.44269504088896341f + magic) - magic;
  const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = (p * r2 + r) + 1.f;
  const int32_t bits = (static_cast<int32_t>(fn) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return er * scale;
}

// log(x) for x in [1, 2] (all that softplus needs): x = 2^e m with m in [sqrt(1/2), sqrt(2))
inline float plog_1_2(float x) {
  float e = 0.f;
  if (x > 1.41421356f) { x = 0.5f * x; e = 1.f; }
  const float f = x - 1.f, z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = f * z * p;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  return (f + y) + e * 0.693359375f;
}

// log(1 + u) for u in [0, 1], accurate for small u: log(w) u / (w - 1) with w = 1 + u rounded (Goldberg)
inline float plog1p(float u) {
  const float w = 1.f + u;
  return w == 1.f ? u : plog_1_2(w) * (u / (w - 1.f));
}

inline float sigmoid(float x) { return 1.f / (1.f + pexp(-clamp80(x))); }
// softplus(x) = max(x, 0) + log(1 + e^-|x|)
inline float softplus(float x) {
  const float a = x < 0.f ? -x : x;
  return (x > 0.f ? x : 0.f) + (a > 80.f ? 0.f : plog1p(pexp(-a)));
}

// v[k] = interpolated logit of one pixel
inline void interp(const float* a, const float* b, const float* c, const float* d, float wa, float wb, float wc,
                   float wd, int64_t K, float* v) {
  for (int64_t k = 0; k < K; ++k) v[k] = wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k];
}

// Cosine kinds (0, 2): v becomes p (sigmoid(v / T) for kind 0, v itself for kind 2) in place; returns p.y, |p|
// clamped as the reference clamps it (kind 0: |p| >= 1e-8; kind 2: |p|^2 >= 1e-16), and whether it was.
struct CosTerms {
  float dot, norm;
  bool clamped;
};

// sum_k v[k]^2 in a fixed order that does not depend on the vector width: 8 running sums (lane j takes
// k = j mod 8), the tail added to lanes 0, 1, ..., then the lanes pairwise. The compiler may map the 8 lanes onto
// any vector width without reassociating anything, so the bits are the same on every machine.
inline float sum_squares(const float* v, int64_t K) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= K; k += 8)
    for (int j = 0; j < 8; ++j) acc[j] += v[k + j] * v[k + j];
  for (int j = 0; k < K; ++k, ++j) acc[j] += v[k] * v[k];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

inline CosTerms cos_terms(int64_t kind, float* v, int64_t K, const int64_t* ic, const float* wc, int64_t M,
                          float invT) {
  if (kind == 0)
    for (int64_t k = 0; k < K; ++k) v[k] = sigmoid(v[k] * invT);
  float dot = 0;
  const float ss = sum_squares(v, K);
  for (int64_t m = 0; m < M; ++m) dot += wc[m] * v[ic[m]];
  if (kind == 0) {
    const float n = std::sqrt(ss);
    return {dot, n < 1e-8f ? 1e-8f : n, n < 1e-8f};
  }
  return {dot, std::sqrt(ss < 1e-16f ? 1e-16f : ss), ss < 1e-16f};
}

// The signatures in the sparse form every kernel reads (fused.py's _kernel_signatures): per class M property
// indices and weights (active properties first, then padding of weight 0), and |y_c|.
struct Signatures {
  const int64_t* index;
  const float* weight;
  const float* norm;
  int64_t M;
  Signatures(const torch::Tensor& idx, const torch::Tensor& wts, const torch::Tensor& y_norm)
      : index(idx.data_ptr<int64_t>()), weight(wts.data_ptr<float>()), norm(y_norm.data_ptr<float>()),
        M(idx.size(1)) {}
  const int64_t* idx(int64_t c) const { return index + c * M; }
  const float* w(int64_t c) const { return weight + c * M; }
};

struct Pixel {
  const float *a, *b, *c, *d;
  float wa, wb, wc, wd;
};

template <typename F>
void for_each_pixel(const torch::Tensor& z, const torch::Tensor& labels, int64_t ignore_index, F f) {
  const int64_t B = z.size(0), h = z.size(1), w = z.size(2), K = z.size(3);
  const int64_t H = labels.size(1), W = labels.size(2);
  const Taps ty = taps(H, h), tx = taps(W, w);
  const float* zp = z.data_ptr<float>();
  const int64_t* lp = labels.data_ptr<int64_t>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> v(K), g(K);
    for (int64_t bi = b0; bi < b1; ++bi) {
      const float* img = zp + bi * h * w * K;
      for (int64_t y = 0; y < H; ++y) {
        const float ly = ty.l1[y];
        const float* r0 = img + ty.i0[y] * w * K;
        const float* r1 = img + ty.i1[y] * w * K;
        for (int64_t x = 0; x < W; ++x) {
          const int64_t lab = lp[(bi * H + y) * W + x];
          if (lab == ignore_index) continue;
          const float lx = tx.l1[x];
          Pixel px{r0 + tx.i0[x] * K, r0 + tx.i1[x] * K, r1 + tx.i0[x] * K, r1 + tx.i1[x] * K,
                   (1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx};
          f(bi, y, x, lab, px, v.data(), g.data());
        }
      }
    }
  });
}

}  // namespace

// Sum over labelled pixels of weight * loss(pixel); returns a 0-d float64 tensor per image, summed by the caller.
torch::Tensor forward(torch::Tensor z, torch::Tensor labels, torch::Tensor idx, torch::Tensor wts,
                      torch::Tensor y_norm, double temperature, int64_t kind, int64_t ignore_index) {
  const Signatures sg(idx, wts, y_norm);
  const int64_t B = z.size(0), K = z.size(3), M = sg.M;
  auto out = torch::zeros({B}, torch::kFloat64);
  double* op = out.data_ptr<double>();
  const float invT = static_cast<float>(1.0 / temperature);
  for_each_pixel(z, labels, ignore_index, [&](int64_t bi, int64_t, int64_t, int64_t c, const Pixel& p, float* v,
                                              float*) {
    interp(p.a, p.b, p.c, p.d, p.wa, p.wb, p.wc, p.wd, K, v);
    const int64_t* ic = sg.idx(c);
    const float* wc = sg.w(c);
    double loss;
    if (kind == 1) {
      float dot = 0;
      for (int64_t m = 0; m < M; ++m) dot += wc[m] * v[ic[m]] * invT;   // before v is overwritten
      for (int64_t k = 0; k < K; ++k) v[k] = softplus(v[k] * invT);      // vectorised, then summed in order
      float sp = 0;
      for (int64_t k = 0; k < K; ++k) sp += v[k];
      loss = (sp - dot) / K;
    } else {
      const CosTerms t = cos_terms(kind, v, K, ic, wc, M, invT);
      loss = 1.0 - t.dot / (t.norm * sg.norm[c]);
    }
    op[bi] += loss;   // one task per image: no race
  });
  return out;
}

// dL/dz (B, h, w, K) for dL/d(per-pixel loss) = grad_scale at every labelled pixel.
torch::Tensor backward(torch::Tensor z, torch::Tensor labels, torch::Tensor idx, torch::Tensor wts,
                       torch::Tensor y_norm, double temperature, int64_t kind, int64_t ignore_index,
                       double grad_scale) {
  const Signatures sg(idx, wts, y_norm);
  const int64_t K = z.size(3), M = sg.M;
  auto grad = torch::zeros_like(z);
  float* gp = grad.data_ptr<float>();
  const float* zp = z.data_ptr<float>();
  const float invT = static_cast<float>(1.0 / temperature);
  const float s = static_cast<float>(grad_scale);
  for_each_pixel(z, labels, ignore_index, [&](int64_t bi, int64_t, int64_t, int64_t c, const Pixel& p, float* v,
                                              float* g) {
    interp(p.a, p.b, p.c, p.d, p.wa, p.wb, p.wc, p.wd, K, v);
    const int64_t* ic = sg.idx(c);
    const float* wc = sg.w(c);
    if (kind == 1) {                         // d/dv [softplus(v/T) - y v/T] / K = (sigmoid(v/T) - y) / (T K)
      const float f = s * invT / K;
      for (int64_t k = 0; k < K; ++k) g[k] = f * sigmoid(v[k] * invT);
      for (int64_t m = 0; m < M; ++m) g[ic[m]] -= f * wc[m];
    } else {
      const CosTerms t = cos_terms(kind, v, K, ic, wc, M, invT);
      // d/dp [-p.y / (|p| |y|)] = -y / (|p| |y|) + (p.y) p / (|p|^3 |y|)   (no |p| term where it is clamped)
      const float a = t.clamped ? 0.f : s * t.dot / (t.norm * t.norm * t.norm * sg.norm[c]);
      const float b = s / (t.norm * sg.norm[c]);
      for (int64_t k = 0; k < K; ++k) g[k] = a * v[k];
      for (int64_t m = 0; m < M; ++m) g[ic[m]] -= b * wc[m];
      if (kind == 0)
        for (int64_t k = 0; k < K; ++k) g[k] *= v[k] * (1 - v[k]) * invT;
    }
    // scatter to the four neighbours (the adjoint of the interpolation)
    // same layout: a logit's gradient sits at the logit's offset
    float *ga = gp + (p.a - zp), *gb = gp + (p.b - zp), *gc = gp + (p.c - zp), *gd = gp + (p.d - zp);
    for (int64_t k = 0; k < K; ++k) {
      ga[k] += p.wa * g[k];
      gb[k] += p.wb * g[k];
      gc[k] += p.wc * g[k];
      gd[k] += p.wd * g[k];
    }
  });
  return grad;
}

// Class scores s_c = cos(sigmoid(z / T), y_c) at full resolution (B, C, H, W), interpolating the K logits of each
// pixel on the fly: the (B, K, H, W) map is never built. Signatures in the sparse form (idx, wts) as above.
torch::Tensor scores(torch::Tensor z, int64_t H, int64_t W, torch::Tensor idx, torch::Tensor wts,
                     torch::Tensor y_norm, double temperature) {
  const Signatures sg(idx, wts, y_norm);
  const int64_t B = z.size(0), K = z.size(3), C = idx.size(0), M = sg.M;
  auto out = torch::empty({B, C, H, W}, torch::kFloat32);
  float* op = out.data_ptr<float>();
  const float invT = static_cast<float>(1.0 / temperature);
  // every pixel is scored: labels of all zeros and no ignore index
  auto labels = torch::zeros({B, H, W}, torch::kInt64);
  for_each_pixel(z, labels, -1, [&](int64_t bi, int64_t y, int64_t x, int64_t, const Pixel& p, float* v, float*) {
    interp(p.a, p.b, p.c, p.d, p.wa, p.wb, p.wc, p.wd, K, v);
    float ss = 0;
    for (int64_t k = 0; k < K; ++k) { v[k] = sigmoid(v[k] * invT); ss += v[k] * v[k]; }
    const float inv = 1.f / std::max(std::sqrt(ss), 1e-12f);
    float* o = op + bi * C * H * W + y * W + x;
    for (int64_t c = 0; c < C; ++c) {
      float dot = 0;
      for (int64_t m = 0; m < M; ++m) dot += sg.w(c)[m] * v[sg.idx(c)[m]];
      o[c * H * W] = dot * inv / sg.norm[c];
    }
  });
  return out;
}

// Class scores at the logits' own resolution, channels-last (B, h, w, C): s_c = cos(sigmoid(z / T), y_c) summed
// over each class's few active properties (0/1 signatures in the sparse form), not a dense K x C product.
// Logits come channels-first (B, K, h, w), as the head writes them: one low-resolution row is K contiguous
// w-vectors, so the sigmoid, the norms and every class's sum run over contiguous w-vectors (vectorised).
// One task per row: batch 1 uses every thread too.
torch::Tensor low_resolution_scores(torch::Tensor z, torch::Tensor idx, torch::Tensor wts, torch::Tensor y_norm,
                                    double temperature) {
  const Signatures sg(idx, wts, y_norm);
  const int64_t B = z.size(0), K = z.size(1), h = z.size(2), w = z.size(3), C = idx.size(0), M = sg.M;
  auto out = torch::empty({B, h, w, C}, torch::kFloat32);
  float* op = out.data_ptr<float>();
  const float* zp = z.data_ptr<float>();
  const float invT = static_cast<float>(1.0 / temperature);
  at::parallel_for(0, B * h, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> p(K * w), ss(w), acc(w);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / h, y = r % h;
      std::fill(ss.begin(), ss.end(), 0.f);
      for (int64_t k = 0; k < K; ++k) {
        const float* zk = zp + ((bi * K + k) * h + y) * w;
        float* pk = p.data() + k * w;
        for (int64_t x = 0; x < w; ++x) pk[x] = sigmoid(zk[x] * invT);
        for (int64_t x = 0; x < w; ++x) ss[x] += pk[x] * pk[x];
      }
      for (int64_t x = 0; x < w; ++x) ss[x] = 1.f / std::max(std::sqrt(ss[x]), 1e-12f);
      float* o = op + r * w * C;
      for (int64_t c = 0; c < C; ++c) {
        std::fill(acc.begin(), acc.end(), 0.f);
        // active properties first, padding (weight 0) after them
        for (int64_t m = 0; m < M && sg.w(c)[m] != 0.f; ++m) {
          const float* pk = p.data() + sg.idx(c)[m] * w;
          for (int64_t x = 0; x < w; ++x) acc[x] += pk[x];
        }
        const float s = 1.f / sg.norm[c];
        for (int64_t x = 0; x < w; ++x) o[x * C + c] = acc[x] * ss[x] * s;
      }
    }
  });
  return out;
}

// argmax over C of the scores bilinearly upsampled to (H, W) (align_corners=False), from channels-last scores
// (B, h, w, C): the (B, C, H, W) map is never built. Per output row the two source rows are blended once
// (w x C), then each pixel blends two columns while it tracks the maximum; ties go to the lower class, as
// torch.argmax does.
torch::Tensor upsample_argmax(torch::Tensor s, int64_t H, int64_t W) {
  const int64_t B = s.size(0), h = s.size(1), w = s.size(2), C = s.size(3);
  const Taps ty = taps(H, h), tx = taps(W, w);
  auto out = torch::empty({B, H, W}, torch::kInt64);
  int64_t* op = out.data_ptr<int64_t>();
  const float* sp = s.data_ptr<float>();
  at::parallel_for(0, B * H, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(w * C);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / H, y = r % H;
      const float ly = ty.l1[y];
      const float* a = sp + (bi * h + ty.i0[y]) * w * C;
      const float* b = sp + (bi * h + ty.i1[y]) * w * C;
      for (int64_t j = 0; j < w * C; ++j) row[j] = (1 - ly) * a[j] + ly * b[j];
      int64_t* o = op + r * W;
      for (int64_t x = 0; x < W; ++x) {
        const float lx = tx.l1[x];
        const float* p = row.data() + tx.i0[x] * C;
        const float* q = row.data() + tx.i1[x] * C;
        float best = (1 - lx) * p[0] + lx * q[0];
        int64_t arg = 0;
        for (int64_t c = 1; c < C; ++c) {
          const float v = (1 - lx) * p[c] + lx * q[c];
          if (v > best) { best = v; arg = c; }
        }
        o[x] = arg;
      }
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("low_resolution_scores", &low_resolution_scores, "class scores (B, h, w, C) at the logits' resolution");
  m.def("upsample_argmax", &upsample_argmax, "argmax over classes of bilinearly upsampled scores, (B, H, W)");
  m.def("scores", &scores, "class scores at full resolution from quarter-resolution property logits");
  m.def("forward", &forward, "per-image sums of the fused property loss");
  m.def("backward", &backward, "dL/dz (B, h, w, K) of the fused property loss");
}
