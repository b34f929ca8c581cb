/* A random generator that reproduces PyTorch's CPU generator bit for bit:
 *
 *   g = torch.Generator("cpu").manual_seed(seed)      kd_rng_seed(&r, seed)
 *   torch.randn(shape, generator=g)  (float32)         kd_rng_randn(&r, out, numel(shape))
 *   torch.rand(shape, generator=g)   (float32)         kd_rng_rand(&r, out, numel(shape))
 *
 * including any sequence of such calls on one generator (diffusers draws the initial latents and
 * then every step's noise from the same generator). Only the element count matters, not the shape:
 * torch fills a contiguous tensor in memory order.
 *
 * What torch does (ATen CPUGeneratorImpl, MT19937RNGEngine.h, DistributionsHelper.h,
 * native/cpu/DistributionTemplates.h + avx_mathfun.h):
 *   - engine: the standard 32-bit Mersenne Twister (mt19937) initialised with init_genrand on the
 *     LOW 32 BITS of the 64-bit seed (seeds s and s + 2^32 give the same stream).
 *   - float uniform: (next32 & 0xFFFFFF) * 2^-24 (24 bits, one engine word).
 *   - double uniform: 53 low bits of (first32 << 32 | second32), * 2^-53 (two words).
 *   - randn, numel >= 16 (float32, contiguous): first ALL numel float uniforms are drawn into the
 *     output, then each block of 16 becomes 16 normals by Box-Muller on pairs 8 apart
 *     (u1 = 1 - x[j], u2 = x[j+8], r = sqrt(-2 log u1), x[j] = r cos(2pi u2), x[j+8] = r sin(..)).
 *     If numel % 16 != 0 the LAST 16 elements are redrawn (16 more uniforms) and transformed again,
 *     overwriting the tail of the last full block. On x86-64 CPUs with AVX2 (the AVX512 kernel is
 *     deliberately not registered for normal_stub, so AVX512 machines take it too) log/sin/cos are
 *     the Cephes-style float polynomials of avx_mathfun.h, compiled with FMA contraction; that is
 *     the arithmetic reproduced here. (torch on a CPU without AVX2, e.g. aarch64, uses libm
 *     logf/cosf/sinf instead and gives different low bits; we do not reproduce that.)
 *   - randn, numel < 16: one double normal per element from at::normal_distribution<double>:
 *     u1, u2 double uniforms, r = sqrt(-2 log1p(-u2)), theta = 2 pi u1, returns r cos(theta) and
 *     CACHES r sin(theta) in the generator; the next scalar-path draw (even in a later call)
 *     consumes the cache first. Seeding clears the cache; the vectorised path ignores it.
 *     Results are converted to float. (Uses libm log1p/sin/cos in double: identical to torch when
 *     both use the same glibc; elsewhere a 1-ulp double difference almost never survives the
 *     rounding to float.)
 *   - rand: one float uniform per element, in order.
 * The generator never fails; it allocates nothing. */
#ifndef KD_CORE_RNG_H
#define KD_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

#define KD_MT_N 624

typedef struct kd_rng {
    uint32_t state[KD_MT_N];
    int next;                  /* index of the next state word to temper; KD_MT_N → regenerate */
    uint64_t seed;             /* as given to kd_rng_seed (torch's initial_seed()) */
    int has_cached_normal;     /* torch's next_double_normal_sample_ */
    double cached_normal;
} kd_rng;

/* torch.Generator("cpu").manual_seed(seed). Any 64-bit value; only the low 32 bits reach the
 * engine. A negative Python seed s corresponds to (uint64_t)s here (two's complement). */
void kd_rng_seed(kd_rng *r, uint64_t seed);

/* Next raw engine outputs (torch's generator->random() / random64()). */
uint32_t kd_rng_u32(kd_rng *r);
uint64_t kd_rng_u64(kd_rng *r);

/* torch.randn(n elements, dtype=float32, generator=g). */
void kd_rng_randn(kd_rng *r, float *out, size_t n);
/* torch.rand(n elements, dtype=float32, generator=g): values k / 2^24 in [0, 1). */
void kd_rng_rand(kd_rng *r, float *out, size_t n);

#endif
