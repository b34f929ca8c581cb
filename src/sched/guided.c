/* Kandinsky 2.0's original samplers (sched/guided.h). */
#include "sched/guided.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void kd_g20_alphas_cumprod(double *ac) {
    /* get_named_beta_schedule("linear", 1000): np.linspace(1e-4, 0.02, 1000) = i·step + start, the
     * last value set to stop; then np.cumprod(1 − betas) */
    double start = 1000.0 / KD_G20_T * 0.0001, stop = 1000.0 / KD_G20_T * 0.02, step = (stop - start) / (KD_G20_T - 1);
    double prod = 1.0;
    for (int i = 0; i < KD_G20_T; i++) {
        double beta = i == KD_G20_T - 1 ? stop : (double)i * step + start;
        prod *= 1.0 - beta;
        ac[i] = prod;
    }
}

/* SpacedDiffusion(use): the kept timesteps in order (timestep_map) and GaussianDiffusion's tables
 * for the new betas (ᾱ recomputed from them, as the original does). Returns the count. */
static int spaced(const unsigned char *use, int64_t *map, double *betas, double *ac_out) {
    double ac[KD_G20_T], last = 1.0;
    kd_g20_alphas_cumprod(ac);
    int n = 0;
    for (int i = 0; i < KD_G20_T; i++)
        if (use[i]) {
            betas[n] = 1.0 - ac[i] / last;
            last = ac[i];
            map[n++] = i;
        }
    double prod = 1.0;
    for (int k = 0; k < n; k++) {
        prod *= 1.0 - betas[k];
        ac_out[k] = prod;
    }
    return n;
}

/* space_timesteps(1000, str(steps)): one section, round(k·(999 / (steps − 1))) with Python's
 * round-half-even on the accumulated float index. */
static void space_timesteps(int steps, unsigned char *use) {
    memset(use, 0, KD_G20_T);
    double stride = steps <= 1 ? 1.0 : (double)(KD_G20_T - 1) / (steps - 1), cur = 0.0;
    for (int k = 0; k < steps; k++) {
        long r = lrint(cur); /* round half to even in the default rounding mode */
        if (r >= 0 && r < KD_G20_T) use[r] = 1;
        cur += stride;
    }
}

static kd_status init_p(kd_g20 *s, int steps, int init_step, kd_err *e) {
    /* the original's posterior_log_variance_clipped reads posterior_variance[1] */
    if (steps < 2) return kd_errf(e, KD_ERR_INVALID_ARG, "steps = %d: p_sampler needs at least 2 steps", steps);
    unsigned char use[KD_G20_T];
    space_timesteps(steps, use);
    int64_t map[KD_G20_T];
    double ac[KD_G20_T];
    int n = spaced(use, map, s->betas, ac);
    s->n_resp = n;
    for (int k = 0; k < n; k++) {
        double ac_prev = k ? ac[k - 1] : 1.0, alpha = 1.0 - s->betas[k];
        s->sqrt_recip_ac[k] = sqrt(1.0 / ac[k]);
        s->sqrt_recipm1_ac[k] = sqrt(1.0 / ac[k] - 1.0);
        s->coef1[k] = s->betas[k] * sqrt(ac_prev) / (1.0 - ac[k]);
        s->coef2[k] = (1.0 - ac_prev) * sqrt(alpha) / (1.0 - ac[k]);
    }
    /* posterior_log_variance_clipped = log(append(pv[1], pv[1:])) */
    for (int k = 0; k < n; k++) {
        int j = k == 0 && n > 1 ? 1 : k;
        double ac_prev = j ? ac[j - 1] : 1.0;
        double pv = s->betas[j] * (1.0 - ac_prev) / (1.0 - ac[j]);
        s->post_log_var[k] = log(pv);
    }
    int top = init_step >= 0 ? (init_step < n ? init_step : n) : n;
    if (top < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "p_sampler: no step left (init_step %d of %d)", init_step, n);
    s->n = top;
    for (int i = 0; i < top; i++) { /* indices top−1 … 0 */
        s->index[i] = top - 1 - i;
        s->t[i] = map[top - 1 - i];
    }
    return KD_OK;
}

static kd_status init_ddim(kd_g20 *s, int steps, double eta, int init_step, kd_err *e) {
    /* old_diffusion: the 1000-step SpacedDiffusion (every timestep kept) */
    unsigned char use[KD_G20_T];
    memset(use, 1, sizeof use);
    int64_t map[KD_G20_T];
    double betas[KD_G20_T], ac[KD_G20_T];
    spaced(use, map, betas, ac);
    int c = KD_G20_T / steps, ts[KD_G20_T], n = 0;
    for (int t = 0; t < KD_G20_T; t += c) /* make_ddim_timesteps("uniform") + 1 */
        if (init_step < 0 || t + 1 <= init_step) ts[n++] = t + 1;
    if (n < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "ddim: no step left (init_step %d)", init_step);
    s->n_ddim = n;
    for (int k = 0; k < n; k++) {
        s->a[k] = ac[ts[k]];
        s->a_prev[k] = k ? ac[ts[k - 1]] : ac[0];
        s->sigma[k] = eta * sqrt((1.0 - s->a_prev[k]) / (1.0 - s->a[k]) * (1.0 - s->a[k] / s->a_prev[k]));
    }
    s->n = n;
    for (int i = 0; i < n; i++) {
        s->index[i] = n - 1 - i;
        s->t[i] = ts[n - 1 - i];
    }
    return KD_OK;
}

kd_status kd_g20_init(kd_g20 *s, kd_g20_kind kind, int steps, double eta, int init_step, kd_err *e) {
    if (!s) return kd_errf(e, KD_ERR_INVALID_ARG, "sampler: NULL");
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->eta = eta;
    s->steps = steps;
    if (steps < 1 || steps > KD_G20_T)
        return kd_errf(e, KD_ERR_INVALID_ARG, "steps = %d: the 2.0 samplers take 1..%d", steps, KD_G20_T);
    if (!(eta >= 0.0 && eta <= 1.0)) return kd_errf(e, KD_ERR_INVALID_ARG, "ddim eta %g is outside [0, 1]", eta);
    if (kind == KD_G20_PLMS && eta != 0.0) return kd_errf(e, KD_ERR_INVALID_ARG, "plms_sampler needs eta 0");
    if (init_step == 0 || init_step > KD_G20_T)
        return kd_errf(e, KD_ERR_INVALID_ARG, "init_step %d leaves no step (strength too small?)", init_step);
    switch (kind) {
    case KD_G20_P: return init_p(s, steps, init_step, e);
    case KD_G20_DDIM:
    case KD_G20_PLMS: return init_ddim(s, steps, eta, init_step, e);
    }
    return kd_errf(e, KD_ERR_INVALID_ARG, "unknown 2.0 sampler %d", (int)kind);
}

int64_t kd_g20_img2img_t(const kd_g20 *s, int init_step) {
    (void)s; /* DDIM / PLMS: the 1000-step map is the identity; p_sampler maps its respaced index */
    if (s->kind == KD_G20_P) {
        unsigned char use[KD_G20_T];
        int64_t map[KD_G20_T];
        double b[KD_G20_T], ac[KD_G20_T];
        space_timesteps(s->steps, use);
        int n = spaced(use, map, b, ac);
        return init_step - 1 < n ? map[init_step - 1] : map[n - 1];
    }
    return init_step - 1;
}

/* ---- the dynamic threshold ---- */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void kd_g20_dynamic_threshold(float *x0, int64_t B, int64_t per, double p) {
    float *v = malloc((size_t)per * sizeof *v);
    double q;
    if (v) {
        for (int64_t i = 0; i < per; i++) v[i] = fabsf(x0[i]);
        qsort(v, (size_t)per, sizeof *v, cmp_float);
        /* numpy "linear": index (n − 1)·p/100, lerp with its t ≥ 0.5 form from the upper value */
        double q_ = p / 100.0, idx = (double)per * q_ + (1.0 + q_ * (1.0 - 1.0 - 1.0)) - 1.0; /* _compute_virtual_index */
        int64_t lo = (int64_t)floor(idx), hi = lo + 1 < per ? lo + 1 : lo;
        double t = idx - (double)lo, a = v[lo], b = v[hi];
        q = t >= 0.5 ? b - (b - a) * (1.0 - t) : a + (b - a) * t;
        free(v);
    } else {
        q = 1.0; /* out of memory: no rescaling (only the clip to ±1) */
    }
    float s = (float)(q > 1.0 ? q : 1.0);
    for (int64_t i = 0; i < B * per; i++) {
        float y = x0[i] < -s ? -s : x0[i] > s ? s : x0[i];
        x0[i] = y / s;
    }
}

/* ---- the loops ---- */

typedef struct loop {
    const kd_g20 *s;
    kd_g20_model_fn model;
    kd_g20_denoise_fn denoise;
    void *ctx;
    int64_t B, C, HW, n;   /* n = B·C·HW */
    kd_rng *rng;
    float *noise;          /* 2n */
    float *eps, *var, *x0, *tmp, *old[3], *e_next;
    int n_old;
} loop;

static void draw_noise(loop *l) { kd_rng_randn(l->rng, l->noise, (size_t)(2 * l->n)); }

static kd_status p_step(loop *l, float *x, int i, kd_err *e) {
    const kd_g20 *s = l->s;
    int k = s->index[i];
    KD_TRY(l->model(l->ctx, x, (float)s->t[i], l->eps, l->var, e));
    float min_log = (float)s->post_log_var[k], max_log = (float)log(s->betas[k]);
    float r1 = (float)s->sqrt_recip_ac[k], rm1 = (float)s->sqrt_recipm1_ac[k];
    float c1 = (float)s->coef1[k], c2 = (float)s->coef2[k];
    for (int64_t j = 0; j < l->n; j++) l->x0[j] = r1 * x[j] - rm1 * l->eps[j];
    if (l->denoise) l->denoise(l->ctx, l->x0, l->B, l->C, l->HW);
    kd_g20_dynamic_threshold(l->x0, l->B, l->C * l->HW, 99.5);
    draw_noise(l);
    float nonzero = k != 0 ? 1.0f : 0.0f;
    for (int64_t j = 0; j < l->n; j++) {
        float frac = (l->var[j] + 1.0f) / 2.0f;
        float logv = frac * max_log + (1.0f - frac) * min_log;
        float mean = c1 * l->x0[j] + c2 * x[j];
        x[j] = mean + nonzero * expf(0.5f * logv) * l->noise[j];
    }
    return KD_OK;
}

/* get_x_prev_and_pred_x0 of ldm's samplers: out = √ᾱprev·x0 + √(1 − ᾱprev − σ²)·ε + σ·noise */
static void ddim_update(loop *l, const float *x, const float *eps, int k, float *out) {
    const kd_g20 *s = l->s;
    float a_t = (float)s->a[k], a_prev = (float)s->a_prev[k], sigma = (float)s->sigma[k];
    float s1m = (float)sqrt(1.0 - s->a[k]);
    float sa = sqrtf(a_t), sp = sqrtf(a_prev), dir = sqrtf(1.0f - a_prev - sigma * sigma);
    draw_noise(l);
    for (int64_t j = 0; j < l->n; j++) {
        float x0 = (x[j] - s1m * eps[j]) / sa;
        out[j] = sp * x0 + dir * eps[j] + sigma * l->noise[j] * 1.0f;
    }
}

static kd_status ddim_step(loop *l, float *x, int i, kd_err *e) {
    KD_TRY(l->model(l->ctx, x, (float)l->s->t[i], l->eps, NULL, e));
    ddim_update(l, x, l->eps, l->s->index[i], x);
    return KD_OK;
}

static kd_status plms_step(loop *l, float *x, int i, kd_err *e) {
    const kd_g20 *s = l->s;
    int k = s->index[i];
    float *et = l->eps, *ep = l->tmp;
    KD_TRY(l->model(l->ctx, x, (float)s->t[i], et, NULL, e));
    if (l->n_old == 0) {
        int64_t t_next = s->t[i + 1 < s->n ? i + 1 : s->n - 1];
        ddim_update(l, x, et, k, l->x0); /* x_prev of the first guess */
        KD_TRY(l->model(l->ctx, l->x0, (float)t_next, l->e_next, NULL, e));
        for (int64_t j = 0; j < l->n; j++) ep[j] = (et[j] + l->e_next[j]) / 2.0f;
    } else if (l->n_old == 1) {
        const float *o1 = l->old[l->n_old - 1];
        for (int64_t j = 0; j < l->n; j++) ep[j] = (3.0f * et[j] - o1[j]) / 2.0f;
    } else if (l->n_old == 2) {
        const float *o1 = l->old[1], *o2 = l->old[0];
        for (int64_t j = 0; j < l->n; j++) ep[j] = (23.0f * et[j] - 16.0f * o1[j] + 5.0f * o2[j]) / 12.0f;
    } else {
        const float *o1 = l->old[2], *o2 = l->old[1], *o3 = l->old[0];
        for (int64_t j = 0; j < l->n; j++)
            ep[j] = (55.0f * et[j] - 59.0f * o1[j] + 37.0f * o2[j] - 9.0f * o3[j]) / 24.0f;
    }
    ddim_update(l, x, ep, k, x);
    /* old_eps.append(e_t); keep the last three */
    if (l->n_old == 3) {
        float *drop = l->old[0];
        l->old[0] = l->old[1];
        l->old[1] = l->old[2];
        l->old[2] = drop;
        l->n_old = 2;
    }
    memcpy(l->old[l->n_old++], et, (size_t)l->n * sizeof(float));
    return KD_OK;
}

kd_status kd_g20_run(const kd_g20 *s, kd_g20_model_fn model, kd_g20_denoise_fn denoise, void *ctx, float *x, int64_t B,
                     int64_t C, int64_t HW, kd_rng *rng, kd_err *e) {
    if (!s || !model || !x || !rng || B < 1 || C < 1 || HW < 1)
        return kd_errf(e, KD_ERR_INVALID_ARG, "sampler: bad arguments");
    loop l = {.s = s, .model = model, .denoise = denoise, .ctx = ctx, .B = B, .C = C, .HW = HW, .n = B * C * HW,
              .rng = rng};
    size_t n = (size_t)l.n;
    float *buf = malloc(n * 11 * sizeof(float));
    if (!buf) return kd_errf(e, KD_ERR_OOM, "sampler: out of memory for %zu values", n * 11);
    l.noise = buf;          /* 2n */
    l.eps = buf + 2 * n;
    l.var = buf + 3 * n;
    l.x0 = buf + 4 * n;
    l.tmp = buf + 5 * n;
    l.e_next = buf + 6 * n;
    for (int k = 0; k < 3; k++) l.old[k] = buf + (7 + (size_t)k) * n;
    kd_status st = KD_OK;
    for (int i = 0; i < s->n && st == KD_OK; i++)
        st = s->kind == KD_G20_P ? p_step(&l, x, i, e) : s->kind == KD_G20_DDIM ? ddim_step(&l, x, i, e) : plms_step(&l, x, i, e);
    free(buf);
    return st;
}
