/* Inverted dropout on CPU with a counter-based random stream (lada.accel.lora_dropout).
 *
 * LoRA's dropout on a CPU spent most of its time drawing randoms: torch's mt19937 draws
 * (random_ / bernoulli_) are sequential, ~3-6 ns an element; on SmolLM2-135M with LoRA on
 * q/k/v/o (dropout 0.05, batch 4 x ~180 tokens) dropout cost ~20 % of a training step
 * (docs/real-models.md). Here the keep/drop decision of element i is a pure function of
 * (seed, i): 32-bit half (i & 1) of SplitMix64's output number i / 2 from state `seed`
 * (z = seed + (i / 2 + 1) * 0x9e3779b97f4a7c15, then SplitMix64's finaliser; the stream
 * Java's SplittableRandom uses; it passes BigCrush). The element is kept when that half is
 * >= `threshold` (p = threshold / 2^32). So
 *   - the stream does not depend on the number of threads (any split of i gives it),
 *   - the backward pass recomputes the mask from the seed instead of storing it:
 *     dx = dy * scale where kept, 0 elsewhere, which is this same function applied to dy.
 * Kept elements are x * scale rounded once (fp32 product; bf16 inputs: the product of the
 * widened value, rounded to nearest even, as PyTorch multiplies a bf16 tensor by a scalar),
 * dropped ones +0. Plain C99, called through ctypes (lada.accel.c_build compiles it).
 */
#include <stdint.h>
#include <string.h>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "bf16.h"

static inline uint64_t splitmix64(uint64_t seed, uint64_t k) {
    uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define BLOCK 8192 /* elements per scheduling unit (even, so a pair never splits) */
#define CHUNK 512  /* elements whose draws are made in one vectorised pass */

/* The 32-bit draws of elements [start, start + count) (start even, count even <= CHUNK) into
 * bits: element start + e reads bits[e]; half (i & 1) of draw i / 2 is its low (even i) or
 * high (odd i) 32 bits, written out in that order whatever the byte order. */
static inline void draws(uint64_t seed, int64_t start, int count, uint32_t *bits) {
    uint64_t r[CHUNK / 2];
    uint64_t first = (uint64_t)start >> 1;
#pragma omp simd
    for (int k = 0; k < count / 2; k++) r[k] = splitmix64(seed, first + (uint64_t)k);
#pragma omp simd
    for (int k = 0; k < count / 2; k++) {
        bits[2 * k] = (uint32_t)r[k];
        bits[2 * k + 1] = (uint32_t)(r[k] >> 32);
    }
}

/* y[i] = keep(i) ? x[i] * scale : 0 for i < n; x and y are fp32, or bf16 when is_bf16 (the
 * product of the widened value, rounded to nearest even). y may be x. */
void lada_dropout(const void *x, void *y, int64_t n, uint64_t seed, uint32_t threshold,
                  float scale, int is_bf16, int threads) {
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        uint32_t bits[CHUNK];
        int64_t end = (blk + 1) * BLOCK < n ? (blk + 1) * BLOCK : n;
        for (int64_t start = blk * BLOCK; start < end; start += CHUNK) {
            int count = end - start < CHUNK ? (int)(end - start) : CHUNK;
            draws(seed, start, (count + 1) & ~1, bits);
            if (is_bf16) {
                const bf16 *in = (const bf16 *)x + start;
                bf16 *out = (bf16 *)y + start;
#pragma omp simd
                for (int e = 0; e < count; e++)
                    out[e] = bits[e] >= threshold ? to_bf16(from_bf16(in[e]) * scale) : 0;
            } else {
                const float *in = (const float *)x + start;
                float *out = (float *)y + start;
#pragma omp simd
                for (int e = 0; e < count; e++) out[e] = bits[e] >= threshold ? in[e] * scale : 0.0f;
            }
        }
    }
}
