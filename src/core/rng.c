/* xoshiro256** with splitmix64 seeding. Streams are separated by hashing the stream id
 * into the seed, so each consumer of randomness has its own sequence. */
#include "curvopt.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void co_rng_seed(co_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t mix = stream * 0xd1342543de82ef95ULL + 0x632be59bd9b4e019ULL;
    uint64_t x = seed ^ splitmix64(&mix);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t co_rng_u64(co_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double co_rng_uniform(co_rng *r) { return (double)(co_rng_u64(r) >> 11) * 0x1.0p-53; }

double co_rng_normal(co_rng *r)
{
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = 1.0 - co_rng_uniform(r);
    double u2 = co_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t co_rng_below(co_rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    /* Rejection keeps every residue equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = co_rng_u64(r);
    } while (x >= limit);
    return x % n;
}

void co_rng_shuffle(co_rng *r, int *idx, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)co_rng_below(r, (uint64_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
