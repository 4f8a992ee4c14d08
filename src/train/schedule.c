/* Learning-rate schedules as pure functions of (epoch, step): the optimizer's lr scale is
 * set from them before each step, so resuming needs only the position. */
#include "curvopt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static co_status parse_warmup(co_schedule *s, const char *plus, const char *text, co_error *err)
{
    if (!plus) return CO_OK;
    if (strncmp(plus, "+warmup:", 8) != 0)
        return co_error_set(err, CO_EINVAL, "schedule '%s': expected +warmup:N after the schedule", text);
    char *end;
    errno = 0;
    long n = strtol(plus + 8, &end, 10);
    if (errno || *end || end == plus + 8 || n < 0 || n > 100000000)
        return co_error_set(err, CO_EINVAL, "schedule '%s': warm-up steps must be an integer >= 0", text);
    s->warmup_steps = (int)n;
    return CO_OK;
}

co_status co_schedule_parse(co_schedule *s, const char *text, int total_epochs, co_error *err)
{
    memset(s, 0, sizeof *s);
    s->gamma = 0.1;
    s->total_epochs = total_epochs;
    if (!text || !*text) return CO_OK;
    const char *plus = strchr(text, '+');
    size_t len = plus ? (size_t)(plus - text) : strlen(text);
    char head[256];
    if (len >= sizeof head) return co_error_set(err, CO_EINVAL, "schedule '%s' is too long", text);
    memcpy(head, text, len);
    head[len] = 0;
    if (strcmp(head, "constant") == 0) {
        s->kind = CO_SCHED_CONSTANT;
    } else if (strcmp(head, "invsqrt") == 0) {
        s->kind = CO_SCHED_INVSQRT;
    } else if (strncmp(head, "cosine", 6) == 0) {
        s->kind = CO_SCHED_COSINE;
        if (head[6] == ':') {
            char *end;
            s->min_scale = strtod(head + 7, &end);
            if (*end || end == head + 7 || !(s->min_scale >= 0 && s->min_scale <= 1))
                return co_error_set(err, CO_EINVAL, "schedule '%s': cosine:MIN needs 0 <= MIN <= 1", text);
        } else if (head[6]) {
            return co_error_set(err, CO_EINVAL, "schedule '%s': expected cosine or cosine:MIN", text);
        }
    } else if (strncmp(head, "step:", 5) == 0) {
        /* step:E1,E2,...[:GAMMA] */
        s->kind = CO_SCHED_STEP;
        char *p = head + 5;
        char *colon = strchr(p, ':');
        if (colon) {
            *colon = 0;
            char *end;
            s->gamma = strtod(colon + 1, &end);
            if (*end || end == colon + 1 || !(s->gamma > 0 && s->gamma <= 1))
                return co_error_set(err, CO_EINVAL, "schedule '%s': gamma must be in (0, 1]", text);
        }
        while (*p) {
            char *end;
            errno = 0;
            long e = strtol(p, &end, 10);
            /* strtol would also take a sign or spaces; a milestone is digits only. */
            if (!isdigit((unsigned char)*p) || end == p || errno || e < 1 || e > 1000000)
                return co_error_set(err, CO_EINVAL, "schedule '%s': milestones are epochs >= 1 joined by commas",
                                    text);
            if (s->nmilestones == CO_SCHED_MAX_MILESTONES)
                return co_error_set(err, CO_EINVAL, "schedule '%s': at most %d milestones", text,
                                    CO_SCHED_MAX_MILESTONES);
            s->milestones[s->nmilestones++] = (int)e;
            p = end;
            if (*p == ',' && p[1]) p++;
            else if (*p) return co_error_set(err, CO_EINVAL, "schedule '%s': unexpected '%c'", text, *p);
        }
        if (s->nmilestones == 0) return co_error_set(err, CO_EINVAL, "schedule '%s': no milestones", text);
    } else {
        return co_error_set(err, CO_EINVAL,
                            "unknown schedule '%s' (constant, step:E1,E2[:GAMMA], cosine[:MIN], invsqrt, "
                            "each optionally +warmup:N)",
                            text);
    }
    return parse_warmup(s, plus, text, err);
}

double co_schedule_scale(const co_schedule *s, int epoch, uint64_t step)
{
    double scale = 1.0;
    switch (s->kind) {
    case CO_SCHED_CONSTANT: break;
    case CO_SCHED_STEP:
        /* torch MultiStepLR: milestone E takes effect from epoch E (0-based) on. */
        for (int i = 0; i < s->nmilestones; i++)
            if (epoch >= s->milestones[i]) scale *= s->gamma;
        break;
    case CO_SCHED_COSINE: {
        double T = s->total_epochs > 0 ? s->total_epochs : 1;
        double e = epoch < T ? epoch : T;
        scale = s->min_scale + (1 - s->min_scale) * 0.5 * (1 + cos(M_PI * e / T));
        break;
    }
    case CO_SCHED_INVSQRT: scale = 1.0 / sqrt((double)step + 1.0); break;
    }
    if (s->warmup_steps > 0 && step < (uint64_t)s->warmup_steps)
        scale *= (double)(step + 1) / (double)s->warmup_steps;
    return scale;
}
