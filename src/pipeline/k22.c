/* Kandinsky 2.2: the U-Net is conditioned on the CLIP image embedding only. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"

void kd_dec_cond_free(kd_dec_cond *c) {
    free(c->image_embeds);
    free(c->text_embeds);
    free(c->text_hidden);
    *c = (kd_dec_cond){0};
}

/* image_embeds = [negative ; positive] under CFG (diffusers' cat order), else positive. Shared
 * by every version that has a prior. */
kd_status kd_cond_image_embeds(kd_ctx *ctx, const kd_cond_args *a, int E, kd_dec_cond *out) {
    out->batch = a->cfg ? 2 * a->n : a->n;
    out->image_dim = E;
    out->image_embeds = malloc((size_t)out->batch * E * sizeof(float));
    if (!out->image_embeds) return kd_ctx_fail(ctx, KD_ERR_OOM, "decoder: out of memory");
    size_t eb = (size_t)a->n * E * sizeof(float);
    if (a->cfg) {
        memcpy(out->image_embeds, a->negative_embeds, eb);
        memcpy((char *)out->image_embeds + eb, a->image_embeds, eb);
    } else {
        memcpy(out->image_embeds, a->image_embeds, eb);
    }
    return KD_OK;
}

static kd_status condition22(kd_ctx *ctx, const kd_decoder_stage *d, const kd_cond_args *a, kd_dec_cond *out) {
    return kd_cond_image_embeds(ctx, a, kd_unet_image_embed_dim(d->unet), out);
}

/* KandinskyV22Img2ImgPipeline: noise of the ONE encoded image's shape, broadcast over the batch
 * (add_noise with a timestep per sample): every image starts from the same noise. */
static kd_status img2img22(kd_ctx *ctx, const kd_decoder_stage *d, kd_rng *rng, const kd_dec_inputs *in, int n,
                           size_t per, int start, float *x) {
    kd_rng_randn(rng, x, per);
    for (int b = n - 1; b >= 0; b--)
        KD_TRY(kd_sampler_add_noise(d->sampler, start, in->init_latents + b * per, x, per, x + b * per, &ctx->err));
    return KD_OK;
}

const kd_version_desc kd_version_22 = {
    .id = KD_MODEL_VERSION_2_2,
    .name = "2.2",
    .has_prior = 1,
    .decoder_text_encoder = 0,
    .inpaint_blend = 1,
    .img2img_exact_size = 0,
    .condition = condition22,
    .img2img_latents = img2img22,
};
