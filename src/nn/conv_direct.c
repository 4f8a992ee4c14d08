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

/* The build is ISO C, where GCC does not contract a * b + c into one FMA; these kernels are
 * nothing but such sums, so they allow it (the same results whatever the thread count). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT ON
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define L 16 /* samples per block: the vector width */
/* GCC/Clang vector extensions: one AVX-512 register where the target has them, split by
 * the compiler otherwise. Block buffers are 64-byte aligned. */
typedef float vec __attribute__((vector_size(L * sizeof(float))));
#define AT(buf, i) (*(vec *)((buf) + (size_t)(i) * L))
#define POS_ROUND 24 /* positions are padded to a multiple of every position block size */
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

/* The transpositions between NCHW and blocks go pixel by pixel: sixteen sequential streams
 * on the NCHW side, one vector on the block side. Lanes past the batch are zero. */
/* Through memory rather than by value: a 64-byte vector in a call's ABI depends on
 * whether AVX-512 is enabled, which GCC warns about in builds without -march=native. */
static inline void gather_lanes(float *lanes, const float *src, size_t stride, int n)
{
    int lane = 0;
    for (; lane < n; lane++) lanes[lane] = src[stride * lane];
    for (; lane < L; lane++) lanes[lane] = 0.0f;
}

static inline void scatter_lanes(float *dst, size_t stride, const float *lanes, int n)
{
    for (int lane = 0; lane < n; lane++) dst[stride * lane] = lanes[lane];
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
            if (n == L)
                for (int xx = 0; xx < d->W; xx++) gather_lanes(row + (size_t)(d->P + xx) * L, src + xx, in, L);
            else
                for (int xx = 0; xx < d->W; xx++) gather_lanes(row + (size_t)(d->P + xx) * L, src + xx, in, n);
        }
}

/* An [OC][positions] block (output or output gradient) to and from n samples of NCHW. */
static void block_to_nchw(const co_direct *d, float *y, const float *blk, int n)
{
    size_t out = (size_t)d->OC * d->npos;
    for (int o = 0; o < d->OC; o++)
        for (int p = 0; p < d->npos; p++) {
            const float *v = blk + ((size_t)o * d->npos_padded + p) * L;
            if (n == L) scatter_lanes(y + (size_t)o * d->npos + p, out, v, L);
            else scatter_lanes(y + (size_t)o * d->npos + p, out, v, n);
        }
}

static void nchw_to_block(const co_direct *d, float *blk, const float *dy, int n)
{
    size_t out = (size_t)d->OC * d->npos;
    for (int o = 0; o < d->OC; o++) {
        for (int p = 0; p < d->npos; p++) {
            float *lanes = blk + ((size_t)o * d->npos_padded + p) * L;
            if (n == L) gather_lanes(lanes, dy + (size_t)o * d->npos + p, out, L);
            else gather_lanes(lanes, dy + (size_t)o * d->npos + p, out, n);
        }
        for (int p = d->npos; p < d->npos_padded; p++) AT(blk, (size_t)o * d->npos_padded + p) = (vec){0};
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
        /* Lanes summed in a fixed order: the block's partial sums. */
        for (size_t j = 0; j < nw; j++) {
            vec v = AT(dwv, j);
            float s = 0;
            for (int i = 0; i < L; i++) s += v[i];
            part[j] = s;
        }
        for (int o = 0; o < d->OC; o++) {
            vec v = (vec){0};
            for (int p = 0; p < d->npos; p++) v += AT(gb, (size_t)o * d->npos_padded + p);
            float s = 0;
            for (int i = 0; i < L; i++) s += v[i];
            part[nw + o] = s;
        }
        if (!dx) continue;
        dx_all(d, gb, w, dxb);
        for (int c = 0; c < d->C; c++)
            for (int yy = 0; yy < d->H; yy++) {
                float *dst = dx + in * s0 + ((size_t)c * d->H + yy) * d->W;
                const float *row = dxb + (((size_t)c * d->Hp + yy + d->P) * d->Wp + d->P) * L;
                for (int xx = 0; xx < d->W; xx++) scatter_lanes(dst + xx, in, row + (size_t)xx * L, n);
            }
    }
    /* Blocks in order: the same sums whatever the number of threads. */
#pragma omp parallel for schedule(static) if (stride * nblocks > 65536)
    for (size_t j = 0; j < stride; j++) {
        float s = 0;
        for (int t = 0; t < nblocks; t++) s += partials[stride * t + j];
        if (j < nw) dw[j] = s;
        else if (db) db[j - nw] = s;
    }
}
