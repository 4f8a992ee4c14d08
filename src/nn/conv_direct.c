/* Direct convolution with sixteen samples in the vector lanes (conv_direct.h).
 *
 * Coordinates: a block holds the input zero-padded, Hp x Wp per channel, one vector of
 * sixteen samples per pixel. Output position p reads the window whose top-left corner is
 * inoff[p] (stride applied) and tap t sits tapoff[t] from it (dilation applied), so
 * in[c][inoff[p] + tapoff[t]] is the input under weight w[o][c][t] for output (o, p).
 *
 * The kernels keep blocks of accumulators in registers; every block size is a
 * compile-time constant at its call (the switch statements), so the compiler unrolls the
 * loops over them. */
#include "conv_direct.h"
#include "../core/blas.h"

/* The build is ISO C, where GCC does not contract a * b + c into one FMA; these kernels are
 * nothing but such sums, so they allow it (the same results whatever the thread count). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT ON
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define L 16 /* samples per block: the vector width */
_Static_assert(CO_BATCH_BLOCK % L == 0 && ((CO_BATCH_BLOCK / L) & (CO_BATCH_BLOCK / L - 1)) == 0,
               "a batch block must be a power-of-two number of lane blocks for the trees to agree");
/* GCC/Clang vector extensions: one AVX-512 register where the target has them, split by
 * the compiler otherwise. Block buffers are 64-byte aligned. */
typedef float vec __attribute__((vector_size(L * sizeof(float))));
#define AT(buf, i) (*(vec *)((buf) + (size_t)(i) * L))
#define POS_ROUND 48 /* positions are padded to a multiple of every position block size and of L */
#define FWD_OB 8     /* output channels per forward block */
#define DW_OB 4      /* output channels per weight-gradient block */
#define DW_JB 6      /* (channel, tap) columns per weight-gradient block */
#define DX_PB 3      /* positions per input-gradient block */
#define DX_JB 8      /* (channel, tap) columns per input-gradient block */

int co_direct_init(co_direct *d, int C, int H, int W, int OC, int K, int S, int P, int D)
{
    memset(d, 0, sizeof *d);
    *d = (co_direct){.C = C, .H = H, .W = W, .OC = OC, .K = K, .S = S, .P = P, .D = D};
    d->Hp = H + 2 * P;
    d->Wp = W + 2 * P;
    int span = D * (K - 1) + 1;
    if (d->Hp < span || d->Wp < span) return -1;
    d->OH = (d->Hp - span) / S + 1;
    d->OW = (d->Wp - span) / S + 1;
    d->npos = d->OH * d->OW;
    d->npos_padded = (d->npos + POS_ROUND - 1) / POS_ROUND * POS_ROUND;
    d->inoff = calloc((size_t)d->npos_padded, sizeof(int));
    d->tapoff = calloc((size_t)K * K, sizeof(int));
    if (!d->inoff || !d->tapoff) {
        co_direct_free(d);
        return -1;
    }
    for (int oy = 0; oy < d->OH; oy++)
        for (int ox = 0; ox < d->OW; ox++) d->inoff[oy * d->OW + ox] = oy * S * d->Wp + ox * S;
    for (int ky = 0; ky < K; ky++)
        for (int kx = 0; kx < K; kx++) d->tapoff[ky * K + kx] = ky * D * d->Wp + kx * D;
    return 0;
}

void co_direct_free(co_direct *d)
{
    free(d->inoff);
    free(d->tapoff);
    d->inoff = d->tapoff = NULL;
}

static size_t plane_vecs(const co_direct *d) { return (size_t)d->C * d->Hp * d->Wp; }

/* Per thread: the input block, the output (or output-gradient) block, the input-gradient
 * block, the weight-gradient vectors. */
size_t co_direct_scratch(const co_direct *d)
{
    size_t Kc = (size_t)d->C * d->K * d->K;
    return L * (2 * plane_vecs(d) + (size_t)d->OC * d->npos_padded + (size_t)d->OC * Kc + (size_t)d->OC);
}

size_t co_direct_partials(const co_direct *d, int batch)
{
    size_t per = (size_t)d->OC * d->C * d->K * d->K + (size_t)d->OC;
    return per * (size_t)((batch + L - 1) / L);
}

/* The transpositions between NCHW and blocks go sixteen pixels at a time: sixteen rows of
 * sixteen floats (one per sample) are transposed in registers into sixteen vectors (one
 * per pixel), in four rounds of two-source shuffles. Pixel by pixel, the same copy was a
 * scalar load and store per element and a fifth of LeNet's training step.
 * Arrays in memory rather than vectors by value: a 64-byte vector in a call's ABI depends
 * on whether AVX-512 is enabled, which GCC warns about in builds without -march=native. */
#define SWAP_ROUND(b, ...)                                                                 \
    _Pragma("GCC unroll 16") for (int i = 0; i < L; i++)                                   \
        if (!(i & (b))) {                                                                  \
            vec lo = __builtin_shufflevector(r[i], r[i + (b)], __VA_ARGS__);               \
            r[i + (b)] = __builtin_shufflevector(r[i], r[i + (b)], HI_##b);                \
            r[i] = lo;                                                                     \
        }
#define HI_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define HI_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define HI_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define HI_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31

/* r[i][j] <-> r[j][i]: each round swaps the off-diagonal blocks of size b. */
static inline __attribute__((always_inline)) void transpose16(vec *r)
{
    SWAP_ROUND(8, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
    SWAP_ROUND(4, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)
    SWAP_ROUND(2, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29)
    SWAP_ROUND(1, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30)
}

/* Unaligned whole vectors, and the first count < L floats of one (zeros after them) with
 * AVX-512's masked loads and stores where the target has them: element copies through
 * memory would stall on store forwarding when the vector is read back. */
typedef float uvec __attribute__((vector_size(L * sizeof(float)), aligned(4), may_alias));

static inline __attribute__((always_inline)) void load_part(vec *dst, const float *src, int count)
{
    if (count == L) {
        *dst = *(const uvec *)src;
        return;
    }
#if defined(__AVX512F__)
    *dst = (vec)_mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1), src);
#else
    *dst = (vec){0};
    memcpy(dst, src, (size_t)count * sizeof(float));
#endif
}

static inline __attribute__((always_inline)) void store_part(float *dst, const vec *src, int count)
{
    if (count == L) {
        *(uvec *)dst = *src;
        return;
    }
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(dst, (__mmask16)((1u << count) - 1), (__m512)*src);
#else
    memcpy(dst, src, (size_t)count * sizeof(float));
#endif
}

/* r[lane] = count floats of sample lane at src + lane * stride (zeros beyond count, and for
 * lanes past n). */
static inline __attribute__((always_inline)) void load_rows(vec *r, const float *src, size_t stride, int n,
                                                           int count)
{
    for (int lane = 0; lane < L; lane++) {
        if (lane < n) load_part(&r[lane], src + stride * lane, count);
        else r[lane] = (vec){0};
    }
}

/* The first count floats of r[lane] to dst + lane * stride, for the first n lanes. */
static inline __attribute__((always_inline)) void store_rows(float *dst, size_t stride, const vec *r, int n,
                                                            int count)
{
    for (int lane = 0; lane < n; lane++) store_part(dst + stride * lane, &r[lane], count);
}

/* n samples of an NCHW tensor (n x C x H x W) into a block, zero-padded. */
static void to_block(const co_direct *d, float *blk, const float *x, int n)
{
    size_t in = (size_t)d->C * d->H * d->W;
    for (int c = 0; c < d->C; c++)
        for (int y = 0; y < d->Hp; y++) {
            float *row = blk + ((size_t)c * d->Hp + y) * d->Wp * L;
            int iy = y - d->P;
            if (iy < 0 || iy >= d->H) {
                memset(row, 0, (size_t)d->Wp * L * sizeof(float));
                continue;
            }
            memset(row, 0, (size_t)d->P * L * sizeof(float));
            memset(row + (size_t)(d->P + d->W) * L, 0, (size_t)d->P * L * sizeof(float));
            const float *src = x + ((size_t)c * d->H + iy) * d->W;
            for (int x0 = 0; x0 < d->W; x0 += L) {
                int count = d->W - x0 < L ? d->W - x0 : L;
                vec r[L];
                load_rows(r, src + x0, in, n, count);
                transpose16(r);
                for (int i = 0; i < count; i++) AT(row, d->P + x0 + i) = r[i];
            }
        }
}

/* An [OC][positions] block (output or output gradient) to and from n samples of NCHW. */
static void block_to_nchw(const co_direct *d, float *y, const float *blk, int n)
{
    size_t out = (size_t)d->OC * d->npos;
    for (int o = 0; o < d->OC; o++)
        for (int p0 = 0; p0 < d->npos; p0 += L) {
            int count = d->npos - p0 < L ? d->npos - p0 : L;
            vec r[L];
            for (int i = 0; i < L; i++) r[i] = AT(blk, (size_t)o * d->npos_padded + p0 + i);
            transpose16(r);
            store_rows(y + (size_t)o * d->npos + p0, out, r, n, count);
        }
}

static void nchw_to_block(const co_direct *d, float *blk, const float *dy, int n)
{
    size_t out = (size_t)d->OC * d->npos;
    for (int o = 0; o < d->OC; o++) {
        int p0 = 0;
        for (; p0 < d->npos; p0 += L) {
            int count = d->npos - p0 < L ? d->npos - p0 : L;
            vec r[L];
            load_rows(r, dy + (size_t)o * d->npos + p0, out, n, count);
            transpose16(r);
            for (int i = 0; i < L; i++) AT(blk, (size_t)o * d->npos_padded + p0 + i) = r[i];
        }
        for (int p = p0; p < d->npos_padded; p++) AT(blk, (size_t)o * d->npos_padded + p) = (vec){0};
    }
}

/* ---------------------------------------------------------------- forward */

static inline __attribute__((always_inline)) void fwd_block(const co_direct *d, const int OB, const int PB,
                                                            const float *xb, const float *w, const float *b, float *yb)
{
    const int KK = d->K * d->K, Kc = d->C * KK, HW = d->Hp * d->Wp;
    for (int p0 = 0; p0 < d->npos; p0 += PB) {
        vec acc[FWD_OB][8];
        for (int ob = 0; ob < OB; ob++)
            for (int pb = 0; pb < PB; pb++) acc[ob][pb] = (vec){0} + (b ? b[ob] : 0.0f);
        for (int c = 0; c < d->C; c++) {
            const float *xc = xb + (size_t)c * HW * L, *wc = w + c * KK;
            for (int t = 0; t < KK; t++) {
                const float *xt = xc + (size_t)d->tapoff[t] * L;
                vec xv[8];
                for (int pb = 0; pb < PB; pb++) xv[pb] = AT(xt, d->inoff[p0 + pb]);
                for (int ob = 0; ob < OB; ob++) {
                    float wv = wc[ob * Kc + t];
                    for (int pb = 0; pb < PB; pb++) acc[ob][pb] += wv * xv[pb];
                }
            }
        }
        for (int ob = 0; ob < OB; ob++)
            for (int pb = 0; pb < PB; pb++) AT(yb, (size_t)ob * d->npos_padded + p0 + pb) = acc[ob][pb];
    }
}

void co_direct_forward(const co_direct *d, const float *x, const float *w, const float *b, float *y, int batch,
                       float *scratch)
{
    const int Kc = d->C * d->K * d->K, nblocks = (batch + L - 1) / L;
    const size_t per = co_direct_scratch(d), in = (size_t)d->C * d->H * d->W, out = (size_t)d->OC * d->npos;
#pragma omp parallel for schedule(static) if (nblocks > 1 && (size_t)batch * out * Kc > 200000)
    for (int blk = 0; blk < nblocks; blk++) {
        float *xb = scratch + per * (size_t)omp_get_thread_num(), *yb = xb + plane_vecs(d) * L;
        int s0 = blk * L, n = batch - s0 < L ? batch - s0 : L;
        to_block(d, xb, x + in * s0, n);
        for (int o0 = 0; o0 < d->OC; o0 += FWD_OB) {
            const float *wo = w + (size_t)o0 * Kc, *bo = b ? b + o0 : NULL;
            float *yo = yb + (size_t)o0 * d->npos_padded * L;
            switch (d->OC - o0 < FWD_OB ? d->OC - o0 : FWD_OB) {
            case 1: fwd_block(d, 1, 8, xb, wo, bo, yo); break;
            case 2: fwd_block(d, 2, 8, xb, wo, bo, yo); break;
            case 3: fwd_block(d, 3, 8, xb, wo, bo, yo); break;
            case 4: fwd_block(d, 4, 6, xb, wo, bo, yo); break;
            case 5: fwd_block(d, 5, 4, xb, wo, bo, yo); break;
            case 6: fwd_block(d, 6, 4, xb, wo, bo, yo); break;
            case 7: fwd_block(d, 7, 3, xb, wo, bo, yo); break;
            default: fwd_block(d, 8, 3, xb, wo, bo, yo); break;
            }
        }
        block_to_nchw(d, y + out * s0, yb, n);
    }
}

/* ---------------------------------------------------------------- backward */

/* dwv[o][j] += sum over positions of g[o][p] * in[c(j)][inoff p + tapoff t(j)], for OB
 * output channels and JB columns from j0. */
static inline __attribute__((always_inline)) void dw_block(const co_direct *d, const int OB, const int JB,
                                                           const float *xb, const float *gb, int o0, int j0, float *dwv)
{
    const int KK = d->K * d->K, Kc = d->C * KK, HW = d->Hp * d->Wp;
    int xoff[DW_JB];
    for (int jb = 0; jb < JB; jb++) xoff[jb] = (j0 + jb) / KK * HW + d->tapoff[(j0 + jb) % KK];
    vec acc[DW_OB][DW_JB];
    for (int ob = 0; ob < OB; ob++)
        for (int jb = 0; jb < JB; jb++) acc[ob][jb] = AT(dwv, (size_t)(o0 + ob) * Kc + j0 + jb);
    for (int p = 0; p < d->npos; p++) {
        vec g[DW_OB];
        for (int ob = 0; ob < OB; ob++) g[ob] = AT(gb, (size_t)(o0 + ob) * d->npos_padded + p);
        const float *xp = xb + (size_t)d->inoff[p] * L;
        for (int jb = 0; jb < JB; jb++) {
            vec xv = AT(xp, xoff[jb]);
            for (int ob = 0; ob < OB; ob++) acc[ob][jb] += g[ob] * xv;
        }
    }
    for (int ob = 0; ob < OB; ob++)
        for (int jb = 0; jb < JB; jb++) AT(dwv, (size_t)(o0 + ob) * Kc + j0 + jb) = acc[ob][jb];
}

#define DW_JB_CASES(OB)                                                   \
    switch (jb) {                                                         \
    case 1: dw_block(d, OB, 1, xb, gb, o0, j0, dwv); break;               \
    case 2: dw_block(d, OB, 2, xb, gb, o0, j0, dwv); break;               \
    case 3: dw_block(d, OB, 3, xb, gb, o0, j0, dwv); break;               \
    case 4: dw_block(d, OB, 4, xb, gb, o0, j0, dwv); break;               \
    case 5: dw_block(d, OB, 5, xb, gb, o0, j0, dwv); break;               \
    default: dw_block(d, OB, DW_JB, xb, gb, o0, j0, dwv); break;          \
    }

static void dw_all(const co_direct *d, const float *xb, const float *gb, float *dwv)
{
    const int Kc = d->C * d->K * d->K;
    for (int o0 = 0; o0 < d->OC; o0 += DW_OB)
        for (int j0 = 0; j0 < Kc; j0 += DW_JB) {
            int jb = Kc - j0 < DW_JB ? Kc - j0 : DW_JB;
            switch (d->OC - o0 < DW_OB ? d->OC - o0 : DW_OB) {
            case 1: DW_JB_CASES(1) break;
            case 2: DW_JB_CASES(2) break;
            case 3: DW_JB_CASES(3) break;
            default: DW_JB_CASES(DW_OB) break;
            }
        }
}

/* in-gradient[c(j)][inoff p + tapoff t(j)] += sum over o of w[o][j] g[o][p], DX_PB positions
 * by JB columns at a time; the additions are done one at a time, in order, because two
 * (position, tap) pairs may land on the same pixel. */
static inline __attribute__((always_inline)) void dx_block(const co_direct *d, const int JB, const float *gb,
                                                           const float *w, int j0, float *dxb)
{
    const int KK = d->K * d->K, Kc = d->C * KK, HW = d->Hp * d->Wp;
    int xoff[DX_JB];
    for (int jb = 0; jb < JB; jb++) xoff[jb] = (j0 + jb) / KK * HW + d->tapoff[(j0 + jb) % KK];
    for (int p0 = 0; p0 < d->npos; p0 += DX_PB) {
        vec acc[DX_PB][DX_JB];
        for (int pb = 0; pb < DX_PB; pb++)
            for (int jb = 0; jb < JB; jb++) acc[pb][jb] = (vec){0};
        for (int o = 0; o < d->OC; o++) {
            vec g[DX_PB];
            for (int pb = 0; pb < DX_PB; pb++) g[pb] = AT(gb, (size_t)o * d->npos_padded + p0 + pb);
            const float *wo = w + (size_t)o * Kc + j0;
            for (int jb = 0; jb < JB; jb++) {
                float wv = wo[jb];
                for (int pb = 0; pb < DX_PB; pb++) acc[pb][jb] += wv * g[pb];
            }
        }
        for (int pb = 0; pb < DX_PB; pb++) {
            float *base = dxb + (size_t)d->inoff[p0 + pb] * L;
            for (int jb = 0; jb < JB; jb++) AT(base, xoff[jb]) += acc[pb][jb];
        }
    }
}

static void dx_all(const co_direct *d, const float *gb, const float *w, float *dxb)
{
    const int Kc = d->C * d->K * d->K;
    memset(dxb, 0, plane_vecs(d) * L * sizeof(float));
    for (int j0 = 0; j0 < Kc; j0 += DX_JB) switch (Kc - j0 < DX_JB ? Kc - j0 : DX_JB) {
        case 1: dx_block(d, 1, gb, w, j0, dxb); break;
        case 2: dx_block(d, 2, gb, w, j0, dxb); break;
        case 3: dx_block(d, 3, gb, w, j0, dxb); break;
        case 4: dx_block(d, 4, gb, w, j0, dxb); break;
        case 5: dx_block(d, 5, gb, w, j0, dxb); break;
        case 6: dx_block(d, 6, gb, w, j0, dxb); break;
        case 7: dx_block(d, 7, gb, w, j0, dxb); break;
        default: dx_block(d, DX_JB, gb, w, j0, dxb); break;
        }
}

void co_direct_backward(const co_direct *d, const float *x, const float *w, const float *dy, float *dx, float *dw,
                        float *db, int batch, float *scratch, float *partials)
{
    const int Kc = d->C * d->K * d->K, nblocks = (batch + L - 1) / L;
    const size_t per = co_direct_scratch(d), in = (size_t)d->C * d->H * d->W, out = (size_t)d->OC * d->npos;
    const size_t nw = (size_t)d->OC * Kc, stride = nw + (size_t)d->OC;
#pragma omp parallel for schedule(static) if (nblocks > 1 && (size_t)batch * out * Kc > 200000)
    for (int blk = 0; blk < nblocks; blk++) {
        float *xb = scratch + per * (size_t)omp_get_thread_num(), *gb = xb + plane_vecs(d) * L,
              *dxb = gb + (size_t)d->OC * d->npos_padded * L, *dwv = dxb + plane_vecs(d) * L, *part = partials + stride * blk;
        int s0 = blk * L, n = batch - s0 < L ? batch - s0 : L;
        to_block(d, xb, x + in * s0, n);
        nchw_to_block(d, gb, dy + out * s0, n);
        memset(dwv, 0, nw * L * sizeof(float));
        dw_all(d, xb, gb, dwv);
        /* Lanes summed in a fixed order: the block's partial sums. Sixteen columns at a
         * time, transposed so that one vector addition per lane does what sixteen serial
         * scalar chains did, in the same order. */
        size_t j = 0;
        for (; j + L <= nw; j += L) {
            vec t[L], sum = (vec){0};
            for (int i = 0; i < L; i++) t[i] = AT(dwv, j + i);
            transpose16(t);
            for (int i = 0; i < L; i++) sum += t[i];
            *(uvec *)(part + j) = sum;
        }
        for (; j < nw; j++) {
            vec v = AT(dwv, j);
            float s = 0;
            for (int i = 0; i < L; i++) s += v[i];
            part[j] = s;
        }
        /* Bias: four output channels' sums side by side, each over positions in order. */
        for (int o0 = 0; o0 < d->OC; o0 += 4) {
            int nb = d->OC - o0 < 4 ? d->OC - o0 : 4;
            vec v[4] = {{0}, {0}, {0}, {0}};
            for (int p = 0; p < d->npos; p++)
                for (int b = 0; b < nb; b++) v[b] += AT(gb, (size_t)(o0 + b) * d->npos_padded + p);
            for (int b = 0; b < nb; b++) {
                float s = 0;
                for (int i = 0; i < L; i++) s += v[b][i];
                part[nw + o0 + b] = s;
            }
        }
        if (!dx) continue;
        dx_all(d, gb, w, dxb);
        for (int c = 0; c < d->C; c++)
            for (int yy = 0; yy < d->H; yy++) {
                float *dst = dx + in * s0 + ((size_t)c * d->H + yy) * d->W;
                const float *row = dxb + (((size_t)c * d->Hp + yy + d->P) * d->Wp + d->P) * L;
                for (int x0 = 0; x0 < d->W; x0 += L) {
                    int count = d->W - x0 < L ? d->W - x0 : L;
                    vec r[L];
                    for (int i = 0; i < L; i++) r[i] = i < count ? AT(row, x0 + i) : (vec){0};
                    transpose16(r);
                    store_rows(dst + x0, in, r, n, count);
                }
            }
    }
    /* Blocks by the canonical tree (core/blas.h): two sixteen-sample blocks make one batch
     * block, so the sums are those of any split of the batch into whole batch blocks. */
    co_tree_sum(partials, partials + stride, stride, nblocks, stride);
    memcpy(dw, partials, nw * sizeof(float));
    if (db) memcpy(db, partials + nw, (size_t)d->OC * sizeof(float));
}
