/* Fused CPU kernels for one decode step of the lean decoder (lada.accel.decode_kernels).
 *
 * A decode step at batch 16 runs ~45 small PyTorch ops a layer on tensors of a few KB (RMSNorm,
 * casts, rotary, cache writes, one-query attention, SwiGLU): their per-call overhead, not their
 * arithmetic, was about half of a step (docs/real-models.md). Each function here
 * does one run of them between two matmuls in a single call, with the same arithmetic as the
 * PyTorch ops it replaces:
 *   - the residual stream, norms, attention and the key cache stay fp32; the value cache is
 *     bf16, which holds the values exactly (they are a bf16 matmul's output, not rotated);
 *   - matmul inputs and outputs are bf16 (rounded to nearest even, as torch's .to(bfloat16));
 *   - element-wise products and sums are rounded as separate fp32 operations (compiled with
 *     -ffp-contract=off, so no fused multiply-adds), which makes RMSNorm's scaling, rotary and
 *     the residual adds bit-identical to PyTorch's; sums over many terms (RMSNorm's mean,
 *     attention's dot products and softmax) add in another order than PyTorch's and agree to
 *     fp32 round-off.
 * Plain C99, no PyTorch headers: compiled once per machine by the system C compiler and
 * called through ctypes with tensors' data pointers (the Python side checks shapes, dtypes,
 * contiguity). `threads`: how many of PyTorch's intra-op OpenMP threads a call may use (the
 * library is loaded after torch, whose libgomp has the same soname, so they share one pool);
 * the Python side asks for one where the work is too small to pay for a second.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "bf16.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* exp(x) in fp32 without libm, so that loops over it vectorize (Cephes' expf: x = n ln2 + r,
 * a degree-6 polynomial in r, times 2^n; within 1 ulp of the exact exp on [-87, 88], measured
 * on 474k points). exp(x) for x below -87.3
 * (where fp32 underflows to denormals) and for x = -inf is 0. */
static inline float exp_f32(float x) {
    const float clamped = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    const float n = rintf(clamped * 1.44269504088896341f);
    float r = clamped - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    const float y = p * scale;
    return x < -87.3f ? 0.0f : y;
}

/* h[rows, n] += delta (bf16, or none when delta is NULL); out[rows, n] = bf16(w * (h * r)),
 * r = 1 / sqrt(mean(h^2) + eps): the residual add, RMSNorm and the cast for the next matmul. */
void lada_add_rms_norm(float *h, const bf16 *delta, const float *w, float eps, int rows, int n,
                       int threads, bf16 *out) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int r = 0; r < rows; r++) {
        float *x = h + (size_t)r * n;
        if (delta) {
            const bf16 *dl = delta + (size_t)r * n;
            for (int i = 0; i < n; i++) x[i] = x[i] + from_bf16(dl[i]);
        }
        const float mean = dot(x, x, n) / (float)n;
        float scale = 1.0f / sqrtf(mean + eps);
        bf16 *o = out + (size_t)r * n;
        for (int i = 0; i < n; i++) o[i] = to_bf16(w[i] * (x[i] * scale));
    }
}

/* h[rows, n] += delta (bf16): the last residual add of a layer stack. */
void lada_add_bf16(float *h, const bf16 *delta, int rows, int n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int r = 0; r < rows; r++) {
        float *x = h + (size_t)r * n;
        const bf16 *dl = delta + (size_t)r * n;
        for (int i = 0; i < n; i++) x[i] = x[i] + from_bf16(dl[i]);
    }
}

/* One new position per row. qkv[rows, (nq + 2 nkv) d] (bf16, the fused projection's output);
 * cos, sin_signed [rows, d] (fp32; sin_signed has its first half negated). Rotary as
 * x cos + roll(x, d/2) sin_signed. Writes the rotated queries to q[rows, nq, d] (fp32) and the
 * rotated key of row b, key head j to keys [rows, nkv, cap, d] (fp32) at position pos, and its
 * value to values [rows, nkv, cap, d] in bf16: the value is the bf16 matmul's output, so bf16
 * holds it exactly, in half the bytes a decode step streams. */
void lada_rotary_cache(const bf16 *qkv, const float *cos, const float *sin_signed, int rows,
                       int nq, int nkv, int d, float *q, float *keys, bf16 *values, int cap,
                       int pos) {
    const int half = d / 2, width = (nq + 2 * nkv) * d;
    for (int b = 0; b < rows; b++) {
        const bf16 *src = qkv + (size_t)b * width;
        const float *c = cos + (size_t)b * d, *s = sin_signed + (size_t)b * d;
        for (int head = 0; head < nq + nkv; head++) {
            const bf16 *x = src + (size_t)head * d;
            float *dst = head < nq ? q + ((size_t)b * nq + head) * d
                                   : keys + (((size_t)b * nkv + (head - nq)) * cap + pos) * d;
            for (int e = 0; e < d; e++) {
                float rolled = from_bf16(x[e < half ? e + half : e - half]);
                dst[e] = from_bf16(x[e]) * c[e] + rolled * s[e];
            }
        }
        for (int j = 0; j < nkv; j++) {
            const bf16 *x = src + (size_t)(nq + nkv + j) * d;
            memcpy(values + (((size_t)b * nkv + j) * cap + pos) * d, x, sizeof(bf16) * (size_t)d);
        }
    }
}

/* Softmax of s[0, length) in place (exp(s - max) / sum); -inf entries become 0. */
static void softmax(float *s, int length) {
    float top = -INFINITY;
#pragma omp simd reduction(max : top)
    for (int t = 0; t < length; t++) top = s[t] > top ? s[t] : top;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int t = 0; t < length; t++) {
        s[t] = exp_f32(s[t] - top);
        sum += s[t];
    }
#pragma omp simd
    for (int t = 0; t < length; t++) s[t] = s[t] / sum;
}

#if defined(__AVX512F__)
static inline __m512 load_bf16(const bf16 *x) { /* 16 bf16 -> 16 fp32, exactly */
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)x));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

/* One key head's query group against its keys, head size ND * 16: the scores' dot products
 * and the weighted sum of values with register accumulators and fused multiply-adds. */
#define LADA_GROUP(ND)                                                                         \
    static void group_##ND(const float *qg, const float *k, const bf16 *v, const float *m,       \
                           int group, int length, float scale, float *scratch, bf16 *out) {    \
        const int d = ND * 16;                                                                 \
        for (int g = 0; g < group; g++) {                                                      \
            __m512 q[ND];                                                                      \
            for (int c = 0; c < ND; c++) q[c] = _mm512_loadu_ps(qg + (size_t)g * d + 16 * c);  \
            float *s = scratch + (size_t)g * length;                                           \
            for (int t = 0; t < length; t++) {                                                 \
                if (isinf(m[t])) { s[t] = -INFINITY; continue; }                               \
                const float *kt = k + (size_t)t * d;                                           \
                __m512 acc = _mm512_mul_ps(q[0], _mm512_loadu_ps(kt));                         \
                for (int c = 1; c < ND; c++)                                                   \
                    acc = _mm512_fmadd_ps(q[c], _mm512_loadu_ps(kt + 16 * c), acc);            \
                s[t] = _mm512_reduce_add_ps(acc) * scale + m[t];                               \
            }                                                                                  \
            softmax(s, length);                                                                \
            __m512 acc[ND];                                                                    \
            for (int c = 0; c < ND; c++) acc[c] = _mm512_setzero_ps();                         \
            for (int t = 0; t < length; t++) {                                                 \
                if (s[t] == 0.0f) continue;                                                    \
                const __m512 p = _mm512_set1_ps(s[t]);                                         \
                const bf16 *vt = v + (size_t)t * d;                                            \
                for (int c = 0; c < ND; c++)                                                   \
                    acc[c] = _mm512_fmadd_ps(p, load_bf16(vt + 16 * c), acc[c]);               \
            }                                                                                  \
            float o[ND * 16];                                                                  \
            for (int c = 0; c < ND; c++) _mm512_storeu_ps(o + 16 * c, acc[c]);                 \
            for (int e = 0; e < d; e++) out[(size_t)g * d + e] = to_bf16(o[e]);                \
        }                                                                                      \
    }
LADA_GROUP(1)
LADA_GROUP(2)
LADA_GROUP(4)
LADA_GROUP(8)
#endif

/* The same without vector intrinsics (any head size). */
static void group_any(const float *qg, const float *k, const bf16 *v, const float *m, int group,
                      int length, int d, float scale, float *scratch, bf16 *out) {
    for (int g = 0; g < group; g++) {
        float *s = scratch + (size_t)g * length;
        for (int t = 0; t < length; t++)
            s[t] = isinf(m[t]) ? -INFINITY
                               : dot(qg + (size_t)g * d, k + (size_t)t * d, d) * scale + m[t];
        softmax(s, length);
        float acc[d];
        for (int e = 0; e < d; e++) acc[e] = 0.0f;
        for (int t = 0; t < length; t++) {
            if (s[t] == 0.0f) continue; /* masked: its values are never read */
            const bf16 *vt = v + (size_t)t * d;
            for (int e = 0; e < d; e++) acc[e] = acc[e] + s[t] * from_bf16(vt[e]);
        }
        for (int e = 0; e < d; e++) out[(size_t)g * d + e] = to_bf16(acc[e]);
    }
}

/* Attention of one query per row over the cached positions [0, length): q[rows, nq, d]
 * (fp32), keys [rows, nkv, cap, d] (fp32), values (the same, bf16), mask[rows, cap]
 * (additive: 0 or -inf); query head i reads key head i / (nq / nkv). out[rows, nq * d] = bf16(softmax(q K^T scale
 * + mask) V). Masked positions get weight exactly 0 (their dot products are skipped).
 * Parallel over (row, key head) on `threads` OpenMP threads (PyTorch's own runtime: the library
 * is loaded after torch, whose libgomp has the same soname). scratch: at least threads *
 * (nq / nkv) * length floats. */
void lada_attend_one(const float *q, const float *keys, const bf16 *values, const float *mask,
                     int rows, int nq, int nkv, int d, int cap, int length, float scale,
                     int threads, float *scratch, bf16 *out) {
    const int group = nq / nkv, heads = rows * nkv;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int bj = 0; bj < heads; bj++) {
        const int b = bj / nkv, j = bj % nkv;
#if defined(_OPENMP)
        float *s = scratch + (size_t)omp_get_thread_num() * group * length;
#else
        float *s = scratch;
#endif
        const float *m = mask + (size_t)b * cap;
        const size_t head = (size_t)bj * cap * d;
        const float *qg = q + ((size_t)b * nq + (size_t)j * group) * d;
        bf16 *o = out + ((size_t)b * nq + (size_t)j * group) * d;
#if defined(__AVX512F__)
        switch (d) {
        case 16: group_1(qg, keys + head, values + head, m, group, length, scale, s, o); continue;
        case 32: group_2(qg, keys + head, values + head, m, group, length, scale, s, o); continue;
        case 64: group_4(qg, keys + head, values + head, m, group, length, scale, s, o); continue;
        case 128: group_8(qg, keys + head, values + head, m, group, length, scale, s, o); continue;
        default: break;
        }
#endif
        group_any(qg, keys + head, values + head, m, group, length, d, scale, s, o);
    }
}

/* gate_up[rows, 2 i] (bf16: gate then up) -> out[rows, i] = bf16(silu(gate) * up), silu(x) =
 * x / (1 + exp(-x)) in fp32. */
void lada_silu_mul(const bf16 *gate_up, int rows, int i, int threads, bf16 *out) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int r = 0; r < rows; r++) {
        const bf16 *g = gate_up + (size_t)r * 2 * i, *u = g + i;
        bf16 *o = out + (size_t)r * i;
#pragma omp simd
        for (int e = 0; e < i; e++) {
            float x = from_bf16(g[e]);
            o[e] = to_bf16((x / (1.0f + exp_f32(-x))) * from_bf16(u[e]));
        }
    }
}

/* The backward pass of lada_silu_mul, for training's SwiGLU (lada.accel.cast_swiglu): given
 * gate_up[rows, 2 i] and grad[rows, i] (bf16, the gradient of out), writes grad_gate_up[rows,
 * 2 i] = bf16(d gate | d up) with PyTorch's fp32 formulas for silu(x) * up:
 *   d up = grad * silu(x);   d gate = (grad * up) * sigmoid(x) * (1 + x * (1 - sigmoid(x)))
 * (aten's silu_backward, same order of products), sigmoid(x) = 1 / (1 + exp(-x)). */
void lada_silu_mul_backward(const bf16 *gate_up, const bf16 *grad, int rows, int i, int threads,
                            bf16 *grad_gate_up) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int r = 0; r < rows; r++) {
        const bf16 *g = gate_up + (size_t)r * 2 * i, *u = g + i, *dy = grad + (size_t)r * i;
        bf16 *dg = grad_gate_up + (size_t)r * 2 * i, *du = dg + i;
#pragma omp simd
        for (int e = 0; e < i; e++) {
            float x = from_bf16(g[e]), d = from_bf16(dy[e]);
            float denominator = 1.0f + exp_f32(-x);
            float sigmoid = 1.0f / denominator;
            du[e] = to_bf16(d * (x / denominator));
            dg[e] = to_bf16((d * from_bf16(u[e])) * sigmoid * (1.0f + x * (1.0f - sigmoid)));
        }
    }
}
