/* Kandinsky 2.1 decoder text conditioning: the decoder folder's XLM-R tokenizer + MultilingualCLIP
 * (KandinskyPipeline._encode_prompt): ids/mask padded to 77, text_embeds [rows, 768] and
 * last_hidden_state [rows, 77, 1024] for the U-Net's text_image conditioning. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "text/xlmr_tokenizer.h"

#define TEXT21_LEN 77

kd_status kd_pipe_load_text21(kd_ctx *ctx, kd_pipeline *p) {
    char path[4096];
    if (!p->xlmr) {
        snprintf(path, sizeof path, "%s/tokenizer", p->decoder_dir);
        KD_TRY(kd_xlmr_tokenizer_load(path, &p->xlmr, &ctx->err));
    }
    if (!p->mclip) {
        snprintf(path, sizeof path, "%s/text_encoder", p->decoder_dir);
        KD_TRY(kd_mclip_load(ctx, path, &p->mclip));
    }
    return KD_OK;
}

void kd_pipe_free_text21(kd_pipeline *p) {
    kd_xlmr_tokenizer_free(p->xlmr);
    kd_mclip_free(p->mclip);
    p->xlmr = NULL;
    p->mclip = NULL;
}

int kd_pipe_text21_len(void) { return TEXT21_LEN; }

kd_status kd_pipe_encode_text21(kd_ctx *ctx, kd_pipeline *p, const char *const *texts, int rows, float *embeds,
                                float *hidden) {
    int32_t *ids = malloc((size_t)rows * TEXT21_LEN * sizeof(int32_t));
    int32_t *mask = malloc((size_t)rows * TEXT21_LEN * sizeof(int32_t));
    kd_status s = ids && mask ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    for (int r = 0; s == KD_OK && r < rows; r++) {
        int n;
        s = kd_xlmr_tokenize(p->xlmr, texts[r], strlen(texts[r]), TEXT21_LEN, ids + (size_t)r * TEXT21_LEN,
                             mask + (size_t)r * TEXT21_LEN, &n, &ctx->err);
        if (s != KD_OK) kd_err_prefix(&ctx->err, "prompt");
    }
    if (s == KD_OK) s = kd_mclip_forward(ctx, p->mclip, ids, mask, rows, TEXT21_LEN, embeds, hidden);
    free(ids);
    free(mask);
    return s;
}
