/* MoVQ: diffusers VQModel with norm_type "spatial" (Kandinsky 2.1 / 2.2 autoencoder), and the same
 * encoder / decoder as ldm's AutoencoderKL (Kandinsky 2.0: vae.ckpt in the original naming; the
 * decoder's norms plain GroupNorms, the encoder giving mean and log-variance; see "KL" below).
 * Spec: shared/reference/kandinsky-2x-spec.md §2.2, §3.5, §8.1–8.2.
 *
 * Encoder: conv_in → down blocks (ResnetBlock2D ×L [+ single-head attention], stride-2 conv after
 *   right/bottom zero padding except in the last block) → mid (resnet, attention, resnet) →
 *   GroupNorm + SiLU → conv_out → quant_conv.
 * Decoder: post_quant_conv → conv_in → mid → up blocks (ResnetBlockCondNorm2D ×(L+1)
 *   [+ attention], nearest ×2 + conv except in the last block) → SpatialNorm + SiLU → conv_out.
 *   Every decoder norm is a SpatialNorm conditioned on the latent itself (zq, before
 *   post_quant_conv): GN(f)·conv_y(zq↑) + conv_b(zq↑), with 32 groups and eps 1e-6 whatever the
 *   config says (diffusers hard-codes them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "models/movq.h"
#include "nn/layers.h"

#define MOVQ_MAX_LEVELS 8
#define MOVQ_EPS 1e-6f
#define SPATIAL_GROUPS 32

/* Where the checkpoint keeps each module: diffusers' names or the original (ldm / taming) ones.
 * Formats take (level, layer); ldm numbers the decoder's levels from the lowest resolution up. */
typedef struct vae_names {
    const char *down_res, *down_attn, *down_sampler, *up_res, *up_attn, *up_sampler;
    int up_reversed;
    const char *mid_res0, *mid_res1, *mid_attn; /* after "<encoder|decoder>.<mid>" */
    const char *enc_mid, *dec_mid, *enc_norm_out, *dec_norm_out, *shortcut;
    const char *attn_norm, *q, *k, *v, *out; /* attn_norm: the GroupNorm of a non-spatial attention */
    int attn_1x1;                            /* q/k/v/out are 1×1 convolutions, not Linear */
} vae_names;

static const vae_names names_diffusers = {
    "encoder.down_blocks.%d.resnets.%d", "encoder.down_blocks.%d.attentions.%d", "encoder.down_blocks.%d.downsamplers.0.conv",
    "decoder.up_blocks.%d.resnets.%d", "decoder.up_blocks.%d.attentions.%d", "decoder.up_blocks.%d.upsamplers.0.conv", 0,
    "resnets.0", "resnets.1", "attentions.0", "encoder.mid_block", "decoder.mid_block", "encoder.conv_norm_out",
    "decoder.conv_norm_out", "conv_shortcut", "group_norm", "to_q", "to_k", "to_v", "to_out.0", 0};

static const vae_names names_ldm = {
    "encoder.down.%d.block.%d", "encoder.down.%d.attn.%d", "encoder.down.%d.downsample.conv",
    "decoder.up.%d.block.%d", "decoder.up.%d.attn.%d", "decoder.up.%d.upsample.conv", 1,
    "block_1", "block_2", "attn_1", "encoder.mid", "decoder.mid", "encoder.norm_out", "decoder.norm_out",
    "nin_shortcut", "norm", "q", "k", "v", "proj_out", 1};

/* GroupNorm (encoder) or SpatialNorm (decoder: norm_layer + conv_y / conv_b on zq). */
typedef struct movq_norm {
    int spatial;
    kd_norm_layer gn;               /* GroupNorm(C) (SpatialNorm's norm_layer) */
    kd_conv2d_layer conv_y, conv_b; /* spatial only: [C, latent_channels, 1, 1] */
} movq_norm;

/* ResnetBlock2D (encoder) / ResnetBlockCondNorm2D (decoder), no time embedding. */
typedef struct movq_resnet {
    movq_norm norm1, norm2;        /* over cin, cout */
    kd_conv2d_layer conv1, conv2;  /* [cout, cin, 3, 3], [cout, cout, 3, 3] */
    kd_conv2d_layer conv_shortcut; /* [cout, cin, 1, 1] when cin != cout */
    int has_shortcut;
    int64_t cin, cout;
} movq_resnet;

/* Single-head Attention over the H·W positions. */
typedef struct movq_attn {
    movq_norm norm;                           /* group_norm / spatial_norm */
    kd_linear_layer to_q, to_k, to_v, to_out; /* [C, C] each */
    int64_t C;
} movq_attn;

typedef struct movq_block {
    int n_layers;
    movq_resnet *resnets; /* [n_layers] */
    movq_attn *attn;      /* [n_layers] or NULL */
    int has_sampler;
    kd_conv2d_layer sampler; /* downsampler (stride 2) or upsampler conv */
    int64_t cout;
} movq_block;

typedef struct movq_mid {
    movq_resnet res[2];
    movq_attn attn;
    int has_attn;
} movq_mid;

struct kd_movq {
    kd_model_base base; /* its arena holds the activations of one encode/decode call */
    const vae_names *nm;
    int kl; /* AutoencoderKL: plain decoder norms; encoder conv_out / quant_conv give mean and logvar */
    /* config (KL: latent_channels = embed_dim, z_channels the encoder / decoder side) */
    int64_t in_channels, out_channels, latent_channels, vq_embed_dim, z_channels;
    int n_levels, layers_per_block, groups, mid_attention;
    int64_t block_out[MOVQ_MAX_LEVELS];
    int down_attn[MOVQ_MAX_LEVELS], up_attn[MOVQ_MAX_LEVELS];
    /* encoder */
    kd_conv2d_layer enc_conv_in;  /* encoder.conv_in: [block_out[0], in_channels, 3, 3] */
    movq_block down[MOVQ_MAX_LEVELS];
    movq_mid enc_mid;
    movq_norm enc_norm_out;       /* encoder.conv_norm_out: GroupNorm(block_out[-1]) */
    kd_conv2d_layer enc_conv_out; /* encoder.conv_out: [moments·z_channels, block_out[-1], 3, 3] */
    kd_conv2d_layer quant_conv;   /* [moments·vq_embed_dim, moments·z_channels, 1, 1] (moments: 2 for KL, else 1) */
    /* decoder */
    kd_conv2d_layer post_quant_conv; /* [z_channels, vq_embed_dim, 1, 1] */
    kd_conv2d_layer dec_conv_in;     /* decoder.conv_in: [block_out[-1], z_channels, 3, 3] */
    movq_mid dec_mid;
    movq_block up[MOVQ_MAX_LEVELS];
    movq_norm dec_norm_out;          /* decoder.conv_norm_out: SpatialNorm(block_out[0]) */
    kd_conv2d_layer dec_conv_out;    /* decoder.conv_out: [out_channels, block_out[0], 3, 3] */
};

/* ---------------------------------------------------------------------------------------------
 * forward
 * ------------------------------------------------------------------------------------------- */

/* Conditioning latent for SpatialNorm: zq at the feature map's size (nearest). */
typedef struct movq_cond {
    const float *zq; /* [B, Cz, zh, zw] */
    int64_t Cz, zh, zw;
} movq_cond;

typedef struct fmap {
    float *d;
    int64_t B, C, H, W;
} fmap;

static float *alloc_map(kd_arena *a, int64_t B, int64_t C, int64_t H, int64_t W, kd_err *e) {
    return kd_arena_floats(a, (size_t)(B * C * H * W), e);
}

/* y[B, C, H, W] = norm(x[B, C, H, W]) [then SiLU]; SpatialNorm reads zq (c); y may be x for group norms. */
static kd_status norm_forward(kd_backend *be, kd_arena *a, const movq_norm *n, float *y, fmap x, const movq_cond *c,
                              int silu, kd_err *e) {
    int64_t HW = x.H * x.W, N = x.B * x.C * HW;
    if (!n->spatial) {
        if (silu)
            KD_TRY(kd_group_norm_silu(be, y, x.d, x.B, x.C, HW, n->gn.groups, n->gn.eps, n->gn.weight, n->gn.bias, e));
        else
            KD_TRY(kd_group_norm(be, y, x.d, x.B, x.C, HW, n->gn.groups, n->gn.eps, n->gn.weight, n->gn.bias, e));
        return KD_OK;
    }
    kd_arena_mark m = kd_arena_get_mark(a);
    const float *z = c->zq;
    if (c->zh != x.H || c->zw != x.W) {
        float *zr = alloc_map(a, x.B, c->Cz, x.H, x.W, e);
        if (!zr) return KD_ERR_OOM;
        KD_TRY(kd_resize_nearest(be, zr, c->zq, x.B * c->Cz, c->zh, c->zw, x.H, x.W, e));
        z = zr;
    }
    float *gy = alloc_map(a, x.B, x.C, x.H, x.W, e);
    float *gb = gy ? alloc_map(a, x.B, x.C, x.H, x.W, e) : NULL;
    if (!gb) return KD_ERR_OOM;
    KD_TRY(kd_conv2d_layer_forward(be, &n->conv_y, gy, z, x.B, x.H, x.W, e));
    KD_TRY(kd_conv2d_layer_forward(be, &n->conv_b, gb, z, x.B, x.H, x.W, e));
    KD_TRY(kd_group_norm(be, y, x.d, x.B, x.C, HW, n->gn.groups, n->gn.eps, n->gn.weight, n->gn.bias, e));
    KD_TRY(kd_mul_add(be, y, y, gy, gb, N, silu, e));
    kd_arena_release(a, m);
    return KD_OK;
}

/* x[B, cin, H, W] → out[B, cout, H, W] = shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))) */
static kd_status resnet_forward(kd_backend *be, kd_arena *a, const movq_resnet *r, fmap x, const movq_cond *c,
                                fmap *out, kd_err *e) {
    float *o = alloc_map(a, x.B, r->cout, x.H, x.W, e);
    if (!o) return KD_ERR_OOM;
    kd_arena_mark m = kd_arena_get_mark(a);
    float *t = alloc_map(a, x.B, r->cin > r->cout ? r->cin : r->cout, x.H, x.W, e); /* norm1 out, then shortcut */
    float *h = t ? alloc_map(a, x.B, r->cout, x.H, x.W, e) : NULL;
    if (!h) return KD_ERR_OOM;
    KD_TRY(norm_forward(be, a, &r->norm1, t, x, c, 1, e));
    KD_TRY(kd_conv2d_layer_forward(be, &r->conv1, h, t, x.B, x.H, x.W, e));
    fmap hm = {h, x.B, r->cout, x.H, x.W};
    KD_TRY(norm_forward(be, a, &r->norm2, h, hm, c, 1, e)); /* in place */
    KD_TRY(kd_conv2d_layer_forward(be, &r->conv2, o, h, x.B, x.H, x.W, e));
    const float *sc = x.d;
    if (r->has_shortcut) {
        KD_TRY(kd_conv2d_layer_forward(be, &r->conv_shortcut, t, x.d, x.B, x.H, x.W, e));
        sc = t;
    }
    KD_TRY(kd_add(be, o, o, sc, x.B * r->cout * x.H * x.W, e));
    kd_arena_release(a, m);
    *out = (fmap){o, x.B, r->cout, x.H, x.W};
    return KD_OK;
}

/* x[B, C, H, W] → out[B, C, H, W] = x + to_out(attention(to_q/k/v(tokens(norm(x))))), one head of width C. */
static kd_status attn_forward(kd_backend *be, kd_arena *a, const movq_attn *at, fmap x, const movq_cond *c,
                              fmap *out, kd_err *e) {
    int64_t C = x.C, HW = x.H * x.W, N = x.B * C * HW, T = x.B * HW;
    float *o = alloc_map(a, x.B, C, x.H, x.W, e);
    if (!o) return KD_ERR_OOM;
    kd_arena_mark m = kd_arena_get_mark(a);
    float *nrm = alloc_map(a, x.B, C, x.H, x.W, e);
    float *tok = nrm ? kd_arena_floats(a, (size_t)N, e) : NULL;
    float *q = tok ? kd_arena_floats(a, (size_t)N, e) : NULL;
    float *k = q ? kd_arena_floats(a, (size_t)N, e) : NULL;
    float *v = k ? kd_arena_floats(a, (size_t)N, e) : NULL;
    if (!v) return KD_ERR_OOM;
    KD_TRY(norm_forward(be, a, &at->norm, nrm, x, c, 0, e));
    KD_TRY(kd_transpose_last2(be, tok, nrm, x.B, C, HW, e)); /* [B, C, HW] → [B, HW, C] */
    KD_TRY(kd_linear_layer_forward(be, &at->to_q, q, tok, T, e));
    KD_TRY(kd_linear_layer_forward(be, &at->to_k, k, tok, T, e));
    KD_TRY(kd_linear_layer_forward(be, &at->to_v, v, tok, T, e));
    kd_attn_params p = {.batch = x.B, .heads = 1, .head_dim = C, .q_len = HW, .kv_len = HW, .q = q, .q_stride = C,
                        .k = k, .v = v, .kv_stride = C, .scale = 1.0f / sqrtf((float)C)};
    KD_TRY(kd_attention(be, tok, &p, e));
    KD_TRY(kd_linear_layer_forward(be, &at->to_out, q, tok, T, e));
    KD_TRY(kd_transpose_last2(be, o, q, x.B, HW, C, e)); /* back to [B, C, HW] */
    KD_TRY(kd_add(be, o, o, x.d, N, e));
    kd_arena_release(a, m);
    *out = (fmap){o, x.B, C, x.H, x.W};
    return KD_OK;
}

/* Keeps only the newest activation of the chain: moves it down to `base` (see kd_arena_compact).
 * Peak memory is then one layer's working set instead of the sum of all activations. */
static void keep_only(kd_arena *a, kd_arena_mark base, fmap *x) {
    x->d = kd_arena_compact(a, base, x->d, (size_t)(x->B * x->C * x->H * x->W) * sizeof(float));
}

/* x[B, C, H, W] → out[B, C, H, W]: resnet, attention, resnet. */
static kd_status mid_forward(kd_backend *be, kd_arena *a, kd_arena_mark base, const movq_mid *mid, fmap x,
                             const movq_cond *c, fmap *out, kd_err *e) {
    KD_TRY(resnet_forward(be, a, &mid->res[0], x, c, &x, e));
    keep_only(a, base, &x);
    if (mid->has_attn) {
        KD_TRY(attn_forward(be, a, &mid->attn, x, c, &x, e));
        keep_only(a, base, &x);
    }
    KD_TRY(resnet_forward(be, a, &mid->res[1], x, c, out, e));
    keep_only(a, base, out);
    return KD_OK;
}

/* x[B, cin, H, W] → out[B, cout, H, W]: the block's resnets (+ attentions), sampler excluded. */
static kd_status block_layers(kd_backend *be, kd_arena *a, kd_arena_mark base, const movq_block *b, fmap x,
                              const movq_cond *c, fmap *out, kd_err *e) {
    for (int i = 0; i < b->n_layers; i++) {
        KD_TRY(resnet_forward(be, a, &b->resnets[i], x, c, &x, e));
        keep_only(a, base, &x);
        if (b->attn) {
            KD_TRY(attn_forward(be, a, &b->attn[i], x, c, &x, e));
            keep_only(a, base, &x);
        }
    }
    *out = x;
    return KD_OK;
}

/* Conv into a fresh map; output size from the layer's padding/stride. */
static kd_status conv_map(kd_backend *be, kd_arena *a, const kd_conv2d_layer *l, fmap x, fmap *out, kd_err *e) {
    int64_t Ho, Wo;
    kd_conv2d_layer_out_size(l, x.H, x.W, &Ho, &Wo);
    float *o = alloc_map(a, x.B, l->cout, Ho, Wo, e);
    if (!o) return KD_ERR_OOM;
    KD_TRY(kd_conv2d_layer_forward(be, l, o, x.d, x.B, x.H, x.W, e));
    *out = (fmap){o, x.B, l->cout, Ho, Wo};
    return KD_OK;
}

/* image x[B, in_channels, H, W] → latents[B, vq_embed_dim, h, w] (unquantized; KL: the moments,
 * [B, 2·embed_dim, h, w], mean then log-variance). */
static kd_status encode_impl(kd_backend *be, kd_movq *m, fmap x, float *latents, kd_err *e) {
    kd_arena *a = &m->base.arena;
    kd_arena_mark base = kd_arena_get_mark(a); /* x itself is the caller's buffer */
    KD_TRY(conv_map(be, a, &m->enc_conv_in, x, &x, e));
    for (int i = 0; i < m->n_levels; i++) {
        const movq_block *b = &m->down[i];
        KD_TRY(block_layers(be, a, base, b, x, NULL, &x, e));
        if (b->has_sampler) { /* pads (0,1,0,1), stride 2 */
            KD_TRY(conv_map(be, a, &b->sampler, x, &x, e));
            keep_only(a, base, &x);
        }
    }
    KD_TRY(mid_forward(be, a, base, &m->enc_mid, x, NULL, &x, e));
    KD_TRY(norm_forward(be, a, &m->enc_norm_out, x.d, x, NULL, 1, e));
    KD_TRY(conv_map(be, a, &m->enc_conv_out, x, &x, e));
    return kd_conv2d_layer_forward(be, &m->quant_conv, latents, x.d, x.B, x.H, x.W, e);
}

/* latents z[B, latent_channels, h, w] → image[B, out_channels, h·f, w·f]. */
static kd_status decode_impl(kd_backend *be, kd_movq *m, fmap z, float *image, kd_err *e) {
    kd_arena *a = &m->base.arena;
    movq_cond c = {z.d, z.C, z.H, z.W};
    fmap x;
    KD_TRY(conv_map(be, a, &m->post_quant_conv, z, &x, e));
    kd_arena_mark base = kd_arena_get_mark(a);
    KD_TRY(conv_map(be, a, &m->dec_conv_in, x, &x, e));
    keep_only(a, base, &x);
    KD_TRY(mid_forward(be, a, base, &m->dec_mid, x, &c, &x, e));
    for (int i = 0; i < m->n_levels; i++) {
        const movq_block *b = &m->up[i];
        KD_TRY(block_layers(be, a, base, b, x, &c, &x, e));
        if (b->has_sampler) {
            float *u = alloc_map(a, x.B, x.C, 2 * x.H, 2 * x.W, e);
            if (!u) return KD_ERR_OOM;
            KD_TRY(kd_upsample_nearest2x(be, u, x.d, x.B * x.C, x.H, x.W, e));
            x = (fmap){u, x.B, x.C, 2 * x.H, 2 * x.W};
            keep_only(a, base, &x);
            KD_TRY(conv_map(be, a, &b->sampler, x, &x, e));
            keep_only(a, base, &x);
        }
    }
    float *t = alloc_map(a, x.B, x.C, x.H, x.W, e);
    if (!t) return KD_ERR_OOM;
    KD_TRY(norm_forward(be, a, &m->dec_norm_out, t, x, &c, 1, e));
    return kd_conv2d_layer_forward(be, &m->dec_conv_out, image, t, x.B, x.H, x.W, e);
}

/* ---------------------------------------------------------------------------------------------
 * public API
 * ------------------------------------------------------------------------------------------- */

int kd_movq_latent_channels(const kd_movq *m) { return (int)m->latent_channels; }
int kd_movq_downscale(const kd_movq *m) { return 1 << (m->n_levels - 1); }

void kd_movq_latent_size(const kd_movq *m, int height, int width, int *lat_h, int *lat_w) {
    int64_t h = height, w = width;
    for (int i = 0; i < m->n_levels - 1; i++) { /* pad (0,1) then k3 s2: out = (n + 1 - 3)/2 + 1 */
        h = kd_conv2d_out_dim(h, 3, 2, 0, 1);
        w = kd_conv2d_out_dim(w, 3, 2, 0, 1);
    }
    *lat_h = (int)h;
    *lat_w = (int)w;
}

/* Largest image side accepted: keeps every activation size far from int64 overflow and gives a
 * clear error instead of an allocation failure deep inside the network. */
#define MOVQ_MAX_SIDE 16384

static kd_status check_call(kd_ctx *ctx, kd_movq *m, const void *in, const void *out, int batch, int h, int w,
                            const char *what) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!m || !in || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s: NULL model or buffer", what);
    if (batch < 1 || h < 1 || w < 1 || h > MOVQ_MAX_SIDE || w > MOVQ_MAX_SIDE)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s: batch %d × %d × %d is out of range (1..%d per side)", what,
                           batch, h, w, MOVQ_MAX_SIDE);
    return KD_OK;
}

static kd_status check_encode(const kd_movq *m, int height, int width, kd_err *e) {
    int lh, lw;
    kd_movq_latent_size(m, height, width, &lh, &lw);
    if (lh < 1 || lw < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "movq encode: image %d×%d is too small", width, height);
    return KD_OK;
}

static kd_status check_decode(const kd_movq *m, int lat_h, int lat_w, kd_err *e) {
    if ((int64_t)lat_h * kd_movq_downscale(m) > MOVQ_MAX_SIDE || (int64_t)lat_w * kd_movq_downscale(m) > MOVQ_MAX_SIDE)
        return kd_errf(e, KD_ERR_INVALID_ARG, "movq decode: latents %d×%d decode to more than %d pixels per side", lat_w,
                       lat_h, MOVQ_MAX_SIDE);
    return KD_OK;
}

/* KL: latents = the posterior's mean, moments[:, :embed_dim] of each sample. */
static kd_status kl_mean(kd_backend *be, kd_movq *m, fmap x, float *latents, kd_err *e) {
    int lh, lw;
    kd_movq_latent_size(m, (int)x.H, (int)x.W, &lh, &lw);
    size_t plane = (size_t)m->latent_channels * lh * lw;
    float *mom = kd_arena_floats(&m->base.arena, 2 * plane * (size_t)x.B, e);
    if (!mom) return KD_ERR_OOM;
    KD_TRY(encode_impl(be, m, x, mom, e));
    for (int64_t b = 0; b < x.B; b++) KD_TRY(kd_copy(be, latents + b * plane, mom + 2 * b * plane, plane * sizeof(float), e));
    return KD_OK;
}

kd_status kd_movq_encode_be(kd_movq *m, kd_backend *be, const float *image, int batch, int height, int width,
                            float *latents, kd_err *e) {
    KD_TRY(check_encode(m, height, width, e));
    fmap x = {(float *)image, batch, m->in_channels, height, width};
    kd_status s = m->kl ? kl_mean(be, m, x, latents, e) : encode_impl(be, m, x, latents, e);
    kd_arena_reset(&m->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "%s encode", m->kl ? "autoencoder_kl" : "movq");
    return s;
}

kd_status kd_vae_kl_moments_be(kd_movq *m, kd_backend *be, const float *image, int batch, int height, int width,
                               float *moments, kd_err *e) {
    if (!m->kl) return kd_errf(e, KD_ERR_INVALID_ARG, "moments: the autoencoder is a MoVQ, not an AutoencoderKL");
    KD_TRY(check_encode(m, height, width, e));
    fmap x = {(float *)image, batch, m->in_channels, height, width};
    kd_status s = encode_impl(be, m, x, moments, e);
    kd_arena_reset(&m->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "autoencoder_kl encode");
    return s;
}

void kd_vae_kl_sample(const float *moments, int batch, int channels, int64_t hw, const float *noise, float *z) {
    for (int64_t b = 0; b < batch; b++) {
        const float *mean = moments + b * 2 * channels * hw, *logvar = mean + channels * hw;
        float *o = z + b * channels * hw;
        const float *nz = noise ? noise + b * channels * hw : NULL;
        for (int64_t i = 0; i < channels * hw; i++) {
            if (!nz) {
                o[i] = mean[i];
                continue;
            }
            float lv = logvar[i] < -30.0f ? -30.0f : logvar[i] > 20.0f ? 20.0f : logvar[i];
            o[i] = mean[i] + expf(0.5f * lv) * nz[i];
        }
    }
}

int kd_movq_is_kl(const kd_movq *m) { return m->kl; }

kd_status kd_movq_decode_be(kd_movq *m, kd_backend *be, const float *latents, int batch, int lat_h, int lat_w,
                            float *image, kd_err *e) {
    KD_TRY(check_decode(m, lat_h, lat_w, e));
    fmap z = {(float *)latents, batch, m->latent_channels, lat_h, lat_w};
    kd_status s = decode_impl(be, m, z, image, e);
    kd_arena_reset(&m->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "%s decode", m->kl ? "autoencoder_kl" : "movq");
    return s;
}

/* One public call: in (host, in_bytes) → fn (encode_be or decode_be) → out (host, out_bytes),
 * through the model's staging buffers. */
typedef kd_status (*movq_be_fn)(kd_movq *m, kd_backend *be, const float *in, int batch, int h, int w, float *out,
                                kd_err *e);

static kd_status host_call(kd_ctx *ctx, kd_movq *m, movq_be_fn fn, const float *in, size_t in_bytes, int batch, int h,
                           int w, float *out, size_t out_bytes) {
    const void *x;
    void *y;
    kd_status s = kd_model_stage_in(&ctx->be, &m->base, in, in_bytes, &x, &ctx->err);
    if (s == KD_OK) s = kd_model_stage_out(&ctx->be, &m->base, out, out_bytes, &y, &ctx->err);
    if (s == KD_OK) s = fn(m, &ctx->be, x, batch, h, w, y, &ctx->err);
    if (s == KD_OK) s = kd_model_finish_out(&ctx->be, out, y, out_bytes, &ctx->err);
    kd_model_end_call(&m->base);
    return s;
}

kd_status kd_movq_encode(kd_ctx *ctx, kd_movq *m, const float *image, int batch, int height, int width,
                         float *latents) {
    KD_TRY(check_call(ctx, m, image, latents, batch, height, width, "movq encode"));
    KD_TRY(check_encode(m, height, width, &ctx->err));
    int lh, lw;
    kd_movq_latent_size(m, height, width, &lh, &lw);
    return host_call(ctx, m, kd_movq_encode_be, image, (size_t)batch * m->in_channels * height * width * sizeof(float),
                     batch, height, width, latents, (size_t)batch * m->latent_channels * lh * lw * sizeof(float));
}

kd_status kd_movq_decode(kd_ctx *ctx, kd_movq *m, const float *latents, int batch, int lat_h, int lat_w,
                         float *image) {
    KD_TRY(check_call(ctx, m, latents, image, batch, lat_h, lat_w, "movq decode"));
    KD_TRY(check_decode(m, lat_h, lat_w, &ctx->err));
    int f = kd_movq_downscale(m);
    return host_call(ctx, m, kd_movq_decode_be, latents, (size_t)batch * m->latent_channels * lat_h * lat_w * sizeof(float),
                     batch, lat_h, lat_w, image,
                     (size_t)batch * m->out_channels * (lat_h * f) * (lat_w * f) * sizeof(float));
}

/* ---------------------------------------------------------------------------------------------
 * loading
 * ------------------------------------------------------------------------------------------- */

static kd_status norm_load(kd_weights *w, const char *name, int spatial, int64_t C, int groups, int64_t Cz,
                           movq_norm *n, kd_err *e) {
    char buf[KD_NAME_MAX];
    n->spatial = spatial;
    if (!spatial) return kd_group_norm_layer_load(w, name, C, groups, MOVQ_EPS, &n->gn, e);
    /* SpatialNorm: diffusers' names only (the original MoVQ checkpoints are not read here) */
    KD_TRY(kd_group_norm_layer_load(w, kd_name(buf, name, "norm_layer"), C, SPATIAL_GROUPS, MOVQ_EPS, &n->gn, e));
    KD_TRY(kd_conv2d_layer_load(w, kd_name(buf, name, "conv_y"), Cz, C, 1, 1, 0, 1, &n->conv_y, e));
    return kd_conv2d_layer_load(w, kd_name(buf, name, "conv_b"), Cz, C, 1, 1, 0, 1, &n->conv_b, e);
}

static kd_status resnet_load(kd_weights *w, const char *name, const kd_movq *m, int spatial, int64_t cin,
                             int64_t cout, movq_resnet *r, kd_err *e) {
    char buf[KD_NAME_MAX];
    r->cin = cin;
    r->cout = cout;
    r->has_shortcut = cin != cout;
    KD_TRY(norm_load(w, kd_name(buf, name, "norm1"), spatial, cin, m->groups, m->latent_channels, &r->norm1, e));
    KD_TRY(kd_conv2d_layer_load(w, kd_name(buf, name, "conv1"), cin, cout, 3, 1, 1, 1, &r->conv1, e));
    KD_TRY(norm_load(w, kd_name(buf, name, "norm2"), spatial, cout, m->groups, m->latent_channels, &r->norm2, e));
    KD_TRY(kd_conv2d_layer_load(w, kd_name(buf, name, "conv2"), cout, cout, 3, 1, 1, 1, &r->conv2, e));
    if (r->has_shortcut)
        KD_TRY(kd_conv2d_layer_load(w, kd_name(buf, name, m->nm->shortcut), cin, cout, 1, 1, 0, 1, &r->conv_shortcut, e));
    return KD_OK;
}

static kd_status attn_load(kd_weights *w, const char *name, const kd_movq *m, int spatial, int64_t C, movq_attn *at,
                           kd_err *e) {
    char buf[KD_NAME_MAX];
    const vae_names *nm = m->nm;
    at->C = C;
    KD_TRY(norm_load(w, kd_name(buf, name, spatial ? "spatial_norm" : nm->attn_norm), spatial, C, m->groups,
                     m->latent_channels, &at->norm, e));
    kd_status (*lin)(kd_weights *, const char *, int64_t, int64_t, int, kd_linear_layer *, kd_err *) =
        nm->attn_1x1 ? kd_linear_layer_load_1x1 : kd_linear_layer_load;
    KD_TRY(lin(w, kd_name(buf, name, nm->q), C, C, 1, &at->to_q, e));
    KD_TRY(lin(w, kd_name(buf, name, nm->k), C, C, 1, &at->to_k, e));
    KD_TRY(lin(w, kd_name(buf, name, nm->v), C, C, 1, &at->to_v, e));
    return lin(w, kd_name(buf, name, nm->out), C, C, 1, &at->to_out, e);
}

static kd_status mid_load(kd_weights *w, const char *name, const kd_movq *m, int spatial, movq_mid *mid, kd_err *e) {
    char buf[KD_NAME_MAX];
    int64_t C = m->block_out[m->n_levels - 1];
    mid->has_attn = m->mid_attention;
    KD_TRY(resnet_load(w, kd_name(buf, name, m->nm->mid_res0), m, spatial, C, C, &mid->res[0], e));
    KD_TRY(resnet_load(w, kd_name(buf, name, m->nm->mid_res1), m, spatial, C, C, &mid->res[1], e));
    if (mid->has_attn) KD_TRY(attn_load(w, kd_name(buf, name, m->nm->mid_attn), m, spatial, C, &mid->attn, e));
    return KD_OK;
}

/* Encoder block i (DownEncoderBlock2D / AttnDownEncoderBlock2D). */
static kd_status down_load(kd_weights *w, kd_movq *m, int i, kd_err *e) {
    char buf[KD_NAME_MAX];
    movq_block *b = &m->down[i];
    int64_t cin = i ? m->block_out[i - 1] : m->block_out[0], cout = m->block_out[i];
    b->n_layers = m->layers_per_block;
    b->cout = cout;
    b->resnets = calloc((size_t)b->n_layers, sizeof *b->resnets);
    b->attn = m->down_attn[i] ? calloc((size_t)b->n_layers, sizeof *b->attn) : NULL;
    if (!b->resnets || (m->down_attn[i] && !b->attn)) return kd_errf(e, KD_ERR_OOM, "out of memory");
    for (int l = 0; l < b->n_layers; l++) {
        KD_TRY(resnet_load(w, kd_namef(buf, m->nm->down_res, i, l), m, 0, l ? cout : cin, cout, &b->resnets[l], e));
        if (b->attn) KD_TRY(attn_load(w, kd_namef(buf, m->nm->down_attn, i, l), m, 0, cout, &b->attn[l], e));
    }
    b->has_sampler = i < m->n_levels - 1;
    if (b->has_sampler) {
        KD_TRY(kd_conv2d_layer_load(w, kd_namef(buf, m->nm->down_sampler, i), cout, cout, 3, 2, 0, 1, &b->sampler, e));
        b->sampler.p = (kd_conv2d_params){2, 0, 1, 0, 1}; /* F.pad(x, (0, 1, 0, 1)) then conv */
    }
    return KD_OK;
}

/* Decoder block i (UpDecoderBlock2D / AttnUpDecoderBlock2D); channels run in reverse. */
static kd_status up_load(kd_weights *w, kd_movq *m, int i, kd_err *e) {
    char buf[KD_NAME_MAX];
    movq_block *b = &m->up[i];
    int L = m->n_levels, at = m->nm->up_reversed ? L - 1 - i : i; /* the checkpoint's index of this level */
    int spatial = !m->kl;
    int64_t cprev = m->block_out[L - 1 - (i ? i - 1 : 0)], cout = m->block_out[L - 1 - i];
    b->n_layers = m->layers_per_block + 1;
    b->cout = cout;
    b->resnets = calloc((size_t)b->n_layers, sizeof *b->resnets);
    b->attn = m->up_attn[i] ? calloc((size_t)b->n_layers, sizeof *b->attn) : NULL;
    if (!b->resnets || (m->up_attn[i] && !b->attn)) return kd_errf(e, KD_ERR_OOM, "out of memory");
    for (int l = 0; l < b->n_layers; l++) {
        KD_TRY(resnet_load(w, kd_namef(buf, m->nm->up_res, at, l), m, spatial, l ? cout : cprev, cout, &b->resnets[l], e));
        if (b->attn) KD_TRY(attn_load(w, kd_namef(buf, m->nm->up_attn, at, l), m, spatial, cout, &b->attn[l], e));
    }
    b->has_sampler = i < L - 1;
    if (b->has_sampler)
        KD_TRY(kd_conv2d_layer_load(w, kd_namef(buf, m->nm->up_sampler, at), cout, cout, 3, 1, 1, 1, &b->sampler, e));
    return KD_OK;
}

static kd_status block_types(const kd_config *cfg, const char *key, const char *plain, const char *with_attn,
                             int n_levels, int *attn, kd_err *e) {
    const char *types[MOVQ_MAX_LEVELS];
    int n = 0;
    KD_TRY(kd_config_str_array(cfg, key, types, MOVQ_MAX_LEVELS, &n, e));
    if (n != n_levels)
        return kd_errf(e, KD_ERR_FORMAT, "%s has %d entries but block_out_channels has %d", key, n, n_levels);
    for (int i = 0; i < n; i++) {
        if (!strcmp(types[i], plain))
            attn[i] = 0;
        else if (!strcmp(types[i], with_attn))
            attn[i] = 1;
        else
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s[%d] = '%s' is not supported (expected %s or %s)", key, i, types[i],
                           plain, with_attn);
    }
    return KD_OK;
}

static kd_status read_config(kd_movq *m, const kd_config *cfg, kd_err *e) {
    int64_t v[MOVQ_MAX_LEVELS];
    int n = 0;
    const char *s;
    KD_TRY(kd_config_int_array(cfg, "block_out_channels", v, MOVQ_MAX_LEVELS, &n, e));
    if (n < 1) return kd_errf(e, KD_ERR_FORMAT, "block_out_channels is empty");
    m->n_levels = n;
    for (int i = 0; i < n; i++) {
        if (v[i] < 1 || v[i] > 65536 || v[i] % SPATIAL_GROUPS)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "block_out_channels[%d] = %lld: MoVQ channels must be positive multiples of %d",
                           i, (long long)v[i], SPATIAL_GROUPS);
        m->block_out[i] = v[i];
    }
    int64_t lpb, groups;
    KD_TRY(kd_config_int_or(cfg, "in_channels", 3, &m->in_channels, e));
    KD_TRY(kd_config_int_or(cfg, "out_channels", 3, &m->out_channels, e));
    KD_TRY(kd_config_int_or(cfg, "latent_channels", 3, &m->latent_channels, e));
    KD_TRY(kd_config_int_or(cfg, "vq_embed_dim", m->latent_channels, &m->vq_embed_dim, e));
    KD_TRY(kd_config_int_or(cfg, "layers_per_block", 1, &lpb, e));
    KD_TRY(kd_config_int_or(cfg, "norm_num_groups", 32, &groups, e));
    KD_TRY(kd_config_bool_or(cfg, "mid_block_add_attention", 1, &m->mid_attention, e));
    if (lpb < 1 || lpb > 64 || groups < 1 || m->in_channels < 1 || m->out_channels < 1 || m->latent_channels < 1 ||
        m->in_channels > 64 || m->out_channels > 64 || m->latent_channels > 1024)
        return kd_errf(e, KD_ERR_FORMAT, "implausible sizes (layers_per_block %lld, norm_num_groups %lld, channels %lld/%lld/%lld)",
                       (long long)lpb, (long long)groups, (long long)m->in_channels, (long long)m->out_channels,
                       (long long)m->latent_channels);
    if (m->vq_embed_dim != m->latent_channels)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "vq_embed_dim %lld != latent_channels %lld is not supported",
                       (long long)m->vq_embed_dim, (long long)m->latent_channels);
    m->layers_per_block = (int)lpb;
    m->groups = (int)groups;
    m->nm = &names_diffusers;
    m->z_channels = m->latent_channels;
    KD_TRY(kd_config_str_or(cfg, "norm_type", "group", &s, e));
    if (strcmp(s, "spatial"))
        return kd_errf(e, KD_ERR_UNSUPPORTED, "norm_type '%s': only the Kandinsky MoVQ (\"spatial\") is supported", s);
    KD_TRY(kd_config_str_or(cfg, "act_fn", "silu", &s, e));
    if (strcmp(s, "silu")) return kd_errf(e, KD_ERR_UNSUPPORTED, "act_fn '%s' is not supported (silu only)", s);
    KD_TRY(block_types(cfg, "down_block_types", "DownEncoderBlock2D", "AttnDownEncoderBlock2D", n, m->down_attn, e));
    KD_TRY(block_types(cfg, "up_block_types", "UpDecoderBlock2D", "AttnUpDecoderBlock2D", n, m->up_attn, e));
    return KD_OK;
}

static kd_status load_all(kd_movq *m, kd_err *e) {
    kd_weights *w = m->base.w;
    const vae_names *nm = m->nm;
    int L = m->n_levels, spatial = !m->kl;
    int64_t top = m->block_out[L - 1], mo = m->kl ? 2 : 1, Z = m->z_channels;
    KD_TRY(kd_conv2d_layer_load(w, "encoder.conv_in", m->in_channels, m->block_out[0], 3, 1, 1, 1, &m->enc_conv_in, e));
    for (int i = 0; i < L; i++) KD_TRY(down_load(w, m, i, e));
    KD_TRY(mid_load(w, nm->enc_mid, m, 0, &m->enc_mid, e));
    KD_TRY(norm_load(w, nm->enc_norm_out, 0, top, m->groups, 0, &m->enc_norm_out, e));
    KD_TRY(kd_conv2d_layer_load(w, "encoder.conv_out", top, mo * Z, 3, 1, 1, 1, &m->enc_conv_out, e));
    KD_TRY(kd_conv2d_layer_load(w, "quant_conv", mo * Z, mo * m->vq_embed_dim, 1, 1, 0, 1, &m->quant_conv, e));
    KD_TRY(kd_conv2d_layer_load(w, "post_quant_conv", m->vq_embed_dim, Z, 1, 1, 0, 1, &m->post_quant_conv, e));
    KD_TRY(kd_conv2d_layer_load(w, "decoder.conv_in", Z, top, 3, 1, 1, 1, &m->dec_conv_in, e));
    KD_TRY(mid_load(w, nm->dec_mid, m, spatial, &m->dec_mid, e));
    for (int i = 0; i < L; i++) KD_TRY(up_load(w, m, i, e));
    KD_TRY(norm_load(w, nm->dec_norm_out, spatial, m->block_out[0], m->groups, m->latent_channels, &m->dec_norm_out, e));
    return kd_conv2d_layer_load(w, "decoder.conv_out", m->block_out[0], m->out_channels, 3, 1, 1, 1, &m->dec_conv_out, e);
}

static void block_free(movq_block *b) {
    free(b->resnets);
    free(b->attn);
}

static void free_layers(void *model) {
    kd_movq *m = model;
    for (int i = 0; i < MOVQ_MAX_LEVELS; i++) {
        block_free(&m->down[i]);
        block_free(&m->up[i]);
    }
}

static kd_status read_config_any(void *model, const kd_config *cfg, kd_err *e) { return read_config(model, cfg, e); }
static kd_status load_all_any(void *model, kd_err *e) { return load_all(model, e); }

static const kd_model_kind movq_kind = {"movq", sizeof(kd_movq), read_config_any, load_all_any, free_layers};

void kd_movq_free(kd_movq *m) { kd_model_free(m, &movq_kind); }

kd_status kd_movq_load(kd_ctx *ctx, const char *path, kd_movq **out) {
    return kd_model_load(ctx, path, &movq_kind, (void **)out);
}

/* ---------------------------------------------------------------------------------------------
 * KL: ldm's AutoencoderKL from its original checkpoint and the original code's ddconfig
 * ------------------------------------------------------------------------------------------- */

static kd_status kl_init(void *model, const void *arg, kd_err *e) {
    kd_movq *m = model;
    const kd_ldm_kl_config *c = arg;
    if (c->n_levels < 1 || c->n_levels > MOVQ_MAX_LEVELS || c->ch < 1 || c->ch > 65536 || c->num_res_blocks < 1 ||
        c->num_res_blocks > 64 || c->z_channels < 1 || c->z_channels > 1024 || c->embed_dim < 1 ||
        c->embed_dim > 1024 || c->in_channels < 1 || c->in_channels > 64 || c->out_ch < 1 || c->out_ch > 64 ||
        c->n_attn < 0 || c->n_attn > MOVQ_MAX_LEVELS || c->resolution < 1)
        return kd_errf(e, KD_ERR_INVALID_ARG, "autoencoder_kl: implausible ddconfig");
    if (c->ch_mult[0] != 1)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "autoencoder_kl: ch_mult[0] = %d (only 1 is supported)", c->ch_mult[0]);
    m->nm = &names_ldm;
    m->kl = 1;
    m->n_levels = c->n_levels;
    for (int i = 0; i < c->n_levels; i++) {
        m->block_out[i] = (int64_t)c->ch * c->ch_mult[i];
        if (c->ch_mult[i] < 1 || m->block_out[i] > 65536 || m->block_out[i] % SPATIAL_GROUPS)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "autoencoder_kl: ch·ch_mult[%d] = %lld is not a positive multiple of %d",
                           i, (long long)m->block_out[i], SPATIAL_GROUPS);
        /* attention at the levels whose resolution is listed (ldm counts from `resolution` down) */
        int res_down = c->resolution >> i, res_up = c->resolution >> (c->n_levels - 1 - i);
        for (int k = 0; k < c->n_attn; k++) {
            if (c->attn_resolutions[k] == res_down) m->down_attn[i] = 1;
            if (c->attn_resolutions[k] == res_up) m->up_attn[i] = 1;
        }
    }
    m->layers_per_block = c->num_res_blocks;
    m->groups = SPATIAL_GROUPS; /* ldm's Normalize: GroupNorm(32, eps 1e-6) */
    m->mid_attention = 1;
    m->in_channels = c->in_channels;
    m->out_channels = c->out_ch;
    m->z_channels = c->z_channels;
    m->latent_channels = m->vq_embed_dim = c->embed_dim;
    return KD_OK;
}

kd_status kd_vae_kl_load_ldm(kd_ctx *ctx, const char *ckpt, const kd_ldm_kl_config *cfg, kd_movq **out) {
    return kd_model_load_init(ctx, ckpt, &movq_kind, kl_init, cfg, (void **)out);
}

const kd_ldm_kl_config kd_ldm_kl_config_2_0 = {
    .ch = 128, .n_levels = 4, .ch_mult = {1, 2, 4, 4}, .num_res_blocks = 2, .resolution = 256, .n_attn = 0,
    .in_channels = 3, .out_ch = 3, .z_channels = 4, .embed_dim = 4};
