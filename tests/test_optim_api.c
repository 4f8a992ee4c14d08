/* The optimizer API as a library user meets it, for every optimizer in the registry (a new
 * method is covered by registering it): names and hyperparameters validated with a message,
 * per-group hyperparameters, torch's global-norm clipping, save -> load -> continue
 * bit-identical to an uninterrupted run, and damaged or foreign state files refused without
 * touching the optimizer. The model is optim_world.h's. */
#include "optim_world.h"

#include <unistd.h>
#include <zlib.h>

static unsigned char *state_bytes(const co_optim *o, size_t *len)
{
    char *buf = NULL;
    FILE *m = open_memstream(&buf, len);
    co_error err;
    co_status st = co_optim_state_write(o, m, &err);
    fclose(m);
    CHECK(st == CO_OK, "state_write: %s", err.msg);
    return (unsigned char *)buf;
}

static int same_state(const co_optim *o, const unsigned char *ref, size_t ref_len)
{
    size_t len;
    unsigned char *now = state_bytes(o, &len);
    int same = len == ref_len && memcmp(now, ref, len) == 0;
    free(now);
    return same;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (len) fwrite(data, 1, len, f);
    fclose(f);
}

static void temp_path(char *path)
{
    strcpy(path, "/tmp/curvopt_api_XXXXXX");
    close(mkstemp(path));
}

/* Hyperparameters that make more of a method's state matter within a short run. */
static void configure(co_optim *o)
{
    const co_optim_info *info = co_optim_info_of(o);
    if (co_optim_find_hparam(info, "switch_epoch", NULL)) co_optim_set(o, -1, "switch_epoch", 3, NULL);
    co_optim_set_clip(o, 2.0);
    co_optim_set_lr_scale(o, 0.75);
    co_optim_set(o, 1, "lr", 0.5 * co_optim_get(o, 1, "lr"), NULL);
}

/* ------------------------------------------------------------ save -> load -> continue */

static void test_save_load_continue(void)
{
    static const int save_at[] = {1, 6, 13, 17};
    char path[64];
    temp_path(path);
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        world wa;
        world_init(&wa, 5);
        co_optim *a = make_optim(name, &wa, 11);
        if (!a) continue;
        configure(a);
        run_steps(a, &wa, STEPS);
        size_t alen;
        unsigned char *astate = state_bytes(a, &alen);
        for (size_t k = 0; k < sizeof save_at / sizeof save_at[0]; k++) {
            world wb;
            world_init(&wb, 5);
            co_optim *b = make_optim(name, &wb, 11);
            configure(b);
            run_steps(b, &wb, save_at[k]);
            co_error err;
            CHECK(co_optim_save(b, path, &err) == CO_OK, "%s: save: %s", name, err.msg);
            co_optim_free(b);
            /* Another seed and no configuration: everything must come from the file. */
            world wf = wb;
            co_optim *c = make_optim(name, &wb, 99);
            co_optim *fresh = make_optim(name, &wf, 99);
            CHECK(co_optim_load(c, path, &err) == CO_OK, "%s: load: %s", name, err.msg);
            CHECK(co_optim_steps(c) == (uint64_t)save_at[k], "%s: %llu steps after load, saved at %d", name,
                  (unsigned long long)co_optim_steps(c), save_at[k]);
            run_steps(c, &wb, STEPS - save_at[k]);
            CHECK(memcmp(wa.theta, wb.theta, sizeof wa.theta) == 0,
                  "%s saved at step %d: continuation differs from the uninterrupted run", name, save_at[k]);
            CHECK(same_state(c, astate, alen), "%s saved at step %d: state differs from the uninterrupted run's",
                  name, save_at[k]);
            /* Control: without the file the continuation is not the same run. */
            run_steps(fresh, &wf, STEPS - save_at[k]);
            CHECK(memcmp(wa.theta, wf.theta, sizeof wa.theta) != 0, "%s: a fresh optimizer continued identically",
                  name);
            co_optim_free(c);
            co_optim_free(fresh);
        }
        free(astate);
        co_optim_free(a);
    }
    unlink(path);
}

/* ------------------------------------------------------------ damaged and foreign files */

/* Writes header + payload + CRC-32 as co_optim_save frames it, so damage inside the
 * payload reaches the state parser instead of stopping at the checksum. */
static void write_reframed(const char *path, const unsigned char *header, size_t hlen, const unsigned char *payload,
                           size_t plen)
{
    unsigned char *b = malloc(hlen + plen + 4);
    memcpy(b, header, hlen);
    memcpy(b + hlen, payload, plen);
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), b, (uInt)(hlen + plen));
    memcpy(b + hlen + plen, &crc, 4);
    write_file(path, b, hlen + plen + 4);
    free(b);
}

static int refused(co_optim *o, const char *path, int *accepted)
{
    co_error err = {0};
    co_status st = co_optim_load(o, path, &err);
    if (st == CO_OK) {
        (*accepted)++;
        return 0;
    }
    CHECK(st == CO_EFORMAT && strstr(err.msg, path), "refused with %s: %s", co_status_name(st), err.msg);
    return 1;
}

static void test_damaged_files(void)
{
    char path[64], bad[64];
    temp_path(path);
    temp_path(bad);
    for (int i = 0; i < co_optim_count(); i++) {
        const char *name = co_optim_info_at(i)->name;
        world wx, wt;
        world_init(&wx, 6);
        world_init(&wt, 7);
        co_optim *x = make_optim(name, &wx, 3), *t = make_optim(name, &wt, 4);
        if (!x || !t) continue;
        configure(x);
        run_steps(x, &wx, 7);
        run_steps(t, &wt, 3);
        co_error err;
        CHECK(co_optim_save(x, path, &err) == CO_OK, "%s: save: %s", name, err.msg);
        size_t flen, plen, tlen;
        unsigned char *file = read_file(path, &flen);
        unsigned char *payload = state_bytes(x, &plen);
        unsigned char *before = state_bytes(t, &tlen);
        CHECK(flen > plen + 4 && memcmp(file + flen - 4 - plen, payload, plen) == 0, "%s: the file frames the state",
              name);
        size_t hlen = flen - plen - 4;
        int accepted = 0;
        /* Truncated anywhere, and bytes flipped anywhere: the checksum or the parser refuses. */
        for (size_t cut = 0; cut < flen; cut += 1 + flen / 97) {
            write_file(bad, file, cut);
            refused(t, bad, &accepted);
        }
        for (size_t at = 0; at < flen; at += 1 + flen / 97) {
            file[at] ^= 0x10;
            write_file(bad, file, flen);
            file[at] ^= 0x10;
            refused(t, bad, &accepted);
        }
        /* Damage behind a valid checksum (a bug or a crafted file): truncated payloads, a
         * trailing byte, and another optimizer's name. */
        for (size_t cut = 0; cut < plen; cut += 1 + plen / 97) {
            write_reframed(bad, file, hlen, payload, cut);
            refused(t, bad, &accepted);
        }
        unsigned char *longer = malloc(plen + 1);
        memcpy(longer, payload, plen);
        longer[plen] = 0;
        write_reframed(bad, file, hlen, longer, plen + 1);
        refused(t, bad, &accepted);
        free(longer);
        unsigned char *at = memmem(payload, plen, name, strlen(name));
        CHECK(at != NULL, "%s: the state does not name its optimizer", name);
        if (at) {
            *at ^= 0x01;
            write_reframed(bad, file, hlen, payload, plen);
            *at ^= 0x01;
            refused(t, bad, &accepted);
        }
        CHECK(accepted == 0, "%s: %d damaged files accepted", name, accepted);
        CHECK(same_state(t, before, tlen), "%s: a refused load changed the optimizer", name);
        /* The intact file loads, and brings exactly the saved state. */
        CHECK(co_optim_load(t, path, &err) == CO_OK, "%s: intact file refused: %s", name, err.msg);
        CHECK(same_state(t, payload, plen), "%s: loaded state differs from the saved one", name);

        /* A different layout of the same optimizer: fewer groups or another shape must be
         * refused; without biases only where the state depends on them (K-FAC's factors
         * carry the bias column either way). A refusal never changes the state. */
        struct { int layers, cols0, bias; const char *what; } layouts[] = {
            {1, C0, 1, "one group"}, {2, C0 + 1, 1, "a 3x5 first layer"}, {2, C0, 0, "no biases"}};
        for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
            world wl;
            world_init(&wl, 8);
            co_group g[2];
            co_optim *o = co_optim_new(name, g, world_groups(&wl, g, layouts[l].layers, layouts[l].cols0, layouts[l].bias),
                                       NULL, 1, &err);
            CHECK(o != NULL, "%s with %s: %s", name, layouts[l].what, o ? "" : err.msg);
            if (!o) continue;
            size_t olen;
            unsigned char *ostate = state_bytes(o, &olen);
            co_status st = co_optim_load(o, path, &err);
            if (layouts[l].bias)
                CHECK(st == CO_EFORMAT, "%s with %s loaded a state of another layout", name, layouts[l].what);
            if (st != CO_OK)
                CHECK(same_state(o, ostate, olen), "%s with %s: refused load changed the state", name,
                      layouts[l].what);
            free(ostate);
            co_optim_free(o);
        }

        /* Another optimizer's file. */
        const char *other = co_optim_info_at((i + 1) % co_optim_count())->name;
        world wo;
        world_init(&wo, 9);
        co_optim *o = make_optim(other, &wo, 1);
        if (o) {
            run_steps(o, &wo, 2);
            size_t olen;
            unsigned char *ostate = state_bytes(o, &olen);
            co_status st = co_optim_load(o, path, &err);
            CHECK(st == CO_EFORMAT && strstr(err.msg, name) && strstr(err.msg, other),
                  "%s loaded %s's state (%s): %s", other, name, co_status_name(st), err.msg);
            CHECK(same_state(o, ostate, olen), "%s: refused load of %s's state changed it", other, name);
            free(ostate);
            co_optim_free(o);
        }
        free(file);
        free(payload);
        free(before);
        co_optim_free(x);
        co_optim_free(t);
    }
    /* A missing file is an I/O error, not a format error. */
    unlink(bad);
    world w;
    world_init(&w, 1);
    co_optim *o = make_optim("adam", &w, 1);
    co_error err;
    CHECK(co_optim_load(o, bad, &err) == CO_EIO, "missing file: %s", err.msg);
    co_optim_free(o);
    unlink(path);
}

/* The stream form used inside checkpoints: a state followed by other data reads back and
 * leaves the stream just after itself. */
static void test_state_stream(void)
{
    world w;
    world_init(&w, 2);
    co_optim *a = make_optim("adam", &w, 1), *b = make_optim("adam", &w, 1);
    run_steps(a, &w, 4);
    char *buf = NULL;
    size_t len;
    FILE *m = open_memstream(&buf, &len);
    co_error err;
    CHECK(co_optim_state_write(a, m, &err) == CO_OK, "state_write: %s", err.msg);
    fputs("TAIL", m);
    fclose(m);
    FILE *r = fmemopen(buf, len, "rb");
    CHECK(co_optim_state_read(b, r, &err) == CO_OK, "state_read: %s", err.msg);
    char tail[8] = {0};
    CHECK(fread(tail, 1, 4, r) == 4 && strcmp(tail, "TAIL") == 0, "stream not left after the state");
    fclose(r);
    size_t alen;
    unsigned char *astate = state_bytes(a, &alen);
    CHECK(same_state(b, astate, alen), "stream round trip differs");
    free(astate);
    free(buf);
    co_optim_free(a);
    co_optim_free(b);
}

/* ------------------------------------------------------------ names and hyperparameters */

static void expect_einval(const char *what, co_status st, const co_error *err, const char *needle)
{
    CHECK(st == CO_EINVAL && err->msg[0] && (!needle || strstr(err->msg, needle)), "%s: %s, message '%s'", what,
          co_status_name(st), err->msg);
}

static void test_bad_names_and_values(void)
{
    world w;
    world_init(&w, 3);
    co_group g[2];
    world_groups(&w, g, 2, C0, 1);
    co_error err;
    CHECK(co_optim_new("no-such-method", g, 2, NULL, 0, &err) == NULL, "unknown optimizer accepted");
    expect_einval("unknown optimizer", err.code, &err, "no-such-method");
    CHECK(co_optim_new(NULL, g, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "NULL name accepted");
    CHECK(co_optim_find("ADAM") == NULL, "names are case-sensitive");

    /* Group descriptions. */
    co_group bad[2];
    memcpy(bad, g, sizeof bad);
    CHECK(co_optim_new("adam", g, 0, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "no groups");
    bad[1].ntensors = 0;
    CHECK(co_optim_new("adam", bad, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "group without tensors");
    bad[1].ntensors = CO_GROUP_MAX_TENSORS + 1;
    CHECK(co_optim_new("adam", bad, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "too many tensors");
    memcpy(bad, g, sizeof bad);
    bad[0].grad[1] = NULL;
    CHECK(co_optim_new("adam", bad, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "missing grad buffer");
    memcpy(bad, g, sizeof bad);
    bad[0].size[0] = 0;
    CHECK(co_optim_new("adam", bad, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "zero-sized tensor");
    memcpy(bad, g, sizeof bad);
    bad[0].cols = C0 + 1;
    CHECK(co_optim_new("adam", bad, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "rows x cols != size");
    memcpy(bad, g, sizeof bad);
    bad[1].size[1] = R1 + 1;
    CHECK(co_optim_new("adam", bad, 2, NULL, 0, &err) == NULL && err.code == CO_EINVAL, "bias of the wrong size");

    /* Malformed lists. */
    static const char *const malformed[] = {"lr", "lr=", "=0.1", "lr=0.1x", "lr=x", "lr==1", "lr=0.1;beta1=0.5",
                                            "nosuch=1", "lr=1e-3,nosuch=2", "a_name_far_longer_than_any_hyperparameter_name_could_ever_be_x=1",
                                            "lr=nan", "lr=inf", "lr=-inf"};
    for (size_t k = 0; k < sizeof malformed / sizeof malformed[0]; k++) {
        co_optim *o = co_optim_new("adam", g, 2, malformed[k], 0, &err);
        CHECK(o == NULL, "'%s' accepted", malformed[k]);
        co_optim_free(o);
        expect_einval(malformed[k], err.code, &err, NULL);
    }
    co_optim *o = co_optim_new("adam", g, 2, " lr=0.25,, beta1=0.5,", 0, &err);
    CHECK(o && co_optim_get(o, 0, "lr") == 0.25 && co_optim_get(o, 1, "beta1") == 0.5,
          "spaces and empty items between entries: %s", o ? "" : err.msg);
    co_optim_free(o);

    /* Every hyperparameter of every optimizer: just outside its range, a non-integer for an
     * integer, 0.5 for a boolean, non-finite values. co_optim_new refuses each with the
     * name in the message; co_optim_set refuses it and keeps the old value; the range
     * ends themselves are accepted where closed. */
    char list[160], what[224];
    for (int i = 0; i < co_optim_count(); i++) {
        const co_optim_info *info = co_optim_info_at(i);
        co_optim *opt = co_optim_new(info->name, g, 2, NULL, 0, &err);
        CHECK(opt != NULL, "%s: %s", info->name, opt ? "" : err.msg);
        if (!opt) continue;
        for (int h = 0; h < info->nhparams; h++) {
            const co_hparam *hp = &info->hparams[h];
            double bads[6];
            int nb = 0;
            bads[nb++] = (hp->flags & CO_HP_MIN_OPEN) ? hp->min : hp->min - fmax(1.0, fabs(hp->min));
            bads[nb++] = (hp->flags & CO_HP_MAX_OPEN) ? hp->max : hp->max + fmax(1.0, fabs(hp->max));
            bads[nb++] = NAN;
            bads[nb++] = INFINITY;
            if (hp->flags & CO_HP_BOOL) bads[nb++] = 0.5;
            if ((hp->flags & CO_HP_INT) && hp->max - hp->min >= 2) bads[nb++] = floor(hp->min) + 1.5;
            for (int b = 0; b < nb; b++) {
                snprintf(list, sizeof list, "%s=%.17g", hp->name, bads[b]);
                snprintf(what, sizeof what, "%s %s", info->name, list);
                co_optim *x = co_optim_new(info->name, g, 2, list, 0, &err);
                CHECK(x == NULL, "%s accepted", what);
                co_optim_free(x);
                expect_einval(what, err.code, &err, hp->name);
                double old = co_optim_get(opt, 1, hp->name);
                co_status st = co_optim_set(opt, 1, hp->name, bads[b], &err);
                expect_einval(what, st, &err, hp->name);
                CHECK(co_optim_get(opt, 1, hp->name) == old, "%s: a refused set changed the value", what);
            }
            if (hp->flags & CO_HP_FIXED) {
                /* Decides the state's storage: only at creation, then never changed. */
                double ends[2] = {hp->min, hp->max};
                for (int e = 0; e < 2; e++) {
                    if (e == 0 ? (hp->flags & CO_HP_MIN_OPEN) : (hp->flags & CO_HP_MAX_OPEN)) continue;
                    snprintf(list, sizeof list, "%s=%.17g", hp->name, ends[e]);
                    co_optim *x = co_optim_new(info->name, g, 2, list, 0, &err);
                    CHECK(x != NULL, "%s %s refused: %s", info->name, list, err.msg);
                    co_optim_free(x);
                }
                double old = co_optim_get(opt, 1, hp->name), other = old == hp->max ? hp->min : hp->max;
                snprintf(what, sizeof what, "%s.%s changed after creation", info->name, hp->name);
                expect_einval(what, co_optim_set(opt, 1, hp->name, other, &err), &err, "fixed");
                CHECK(co_optim_get(opt, 1, hp->name) == old && co_optim_set(opt, 1, hp->name, old, &err) == CO_OK,
                      "%s", what);
                continue;
            }
            if (!(hp->flags & CO_HP_MIN_OPEN))
                CHECK(co_optim_set(opt, 1, hp->name, hp->min, &err) == CO_OK, "%s.%s: minimum %g refused: %s",
                      info->name, hp->name, hp->min, err.msg);
            if (!(hp->flags & CO_HP_MAX_OPEN))
                CHECK(co_optim_set(opt, 1, hp->name, hp->max, &err) == CO_OK, "%s.%s: maximum %g refused: %s",
                      info->name, hp->name, hp->max, err.msg);
        }
        expect_einval("unknown hyperparameter", co_optim_set(opt, 0, "no_such_hp", 1, &err), &err,
                      "no_such_hp");
        expect_einval("group out of range", co_optim_set(opt, 2, "lr", 0.1, &err), &err, NULL);
        CHECK(isnan(co_optim_get(opt, 0, "no_such_hp")) && isnan(co_optim_get(opt, 5, "lr")),
              "%s: get of unknown names or groups is NaN", info->name);
        if (co_optim_needs(opt) & CO_NEEDS_CLOSURE) {
            world_next_batch(&w);
            expect_einval("step without the closure it needs", co_optim_step(opt, NULL, &err), &err,
                          info->name);
            CHECK(co_optim_steps(opt) == 0, "%s: a refused step counted", info->name);
        }
        co_optim_free(opt);
    }
}

/* ------------------------------------------------------------ per-group hyperparameters */

/* A value inside the range and different from the default. */
static double other_value(const co_hparam *hp)
{
    if (hp->flags & CO_HP_BOOL) return hp->def != 0 ? 0 : 1;
    double v = hp->def > 0 ? 0.5 * hp->def : hp->min + 0.01 * (hp->max - hp->min);
    if (hp->flags & CO_HP_INT) v = hp->def > hp->min ? hp->def - 1 : hp->def + 1;
    return v;
}

/* Methods whose update couples layers by design: a group's value still applies to that
 * group alone, but a statistic over all layers carries its effect to the others. */
static const char *const coupled[] = {
    "da-rmsprop", /* eq. 6: one alignment cos(g, m) over the whole model (align_per_layer=0) */
    "quasi-adam", /* eq. 8-9: one curvature pair (s, y) over all parameters */
};

/* Methods coupled only through a safeguard over all layers: checked with it off. */
static const char *decoupling(const char *name)
{
    return strcmp(name, "tso-alra") == 0 ? "kl_clip=0" : NULL; /* one trust region for the whole step */
}

static co_optim *make_decoupled(const char *name, world *w, uint64_t seed)
{
    co_group g[2];
    co_error err;
    co_optim *o = co_optim_new(name, g, world_groups(w, g, 2, C0, 1), decoupling(name), seed, &err);
    CHECK(o != NULL, "%s: %s", name, o ? "" : err.msg);
    return o;
}

static void test_per_group(void)
{
    for (int i = 0; i < co_optim_count(); i++) {
        const co_optim_info *info = co_optim_info_at(i);
        for (int h = 0; h < info->nhparams; h++) {
            const co_hparam *hp = &info->hparams[h];
            double v = other_value(hp);
            world wr, ws;
            world_init(&wr, 12);
            world_init(&ws, 12);
            co_optim *ref = make_decoupled(info->name, &wr, 2), *set = make_decoupled(info->name, &ws, 2);
            if (!ref || !set) continue;
            co_error err;
            if (hp->flags & CO_HP_FIXED) {
                /* Given at creation instead (co_optim_set refuses it afterwards). */
                co_optim_free(set);
                char one[96];
                snprintf(one, sizeof one, "%s=%.17g", hp->name, v);
                const char *per_group[2] = {NULL, one};
                co_group g[2];
                set = co_optim_new_per_group(info->name, g, world_groups(&ws, g, 2, C0, 1), decoupling(info->name),
                                             per_group, 2, &err);
                CHECK(set != NULL, "%s.%s=%g at creation: %s", info->name, hp->name, v, err.msg);
                if (!set) {
                    co_optim_free(ref);
                    continue;
                }
            } else {
                CHECK(co_optim_set(set, 1, hp->name, v, &err) == CO_OK, "%s.%s=%g: %s", info->name, hp->name, v,
                      err.msg);
            }
            int global = (hp->flags & CO_HP_GLOBAL) != 0;
            CHECK(co_optim_get(set, 1, hp->name) == v &&
                      co_optim_get(set, 0, hp->name) == (global ? v : hp->def),
                  "%s.%s: group values %g, %g after setting group 1 to %g (%s)", info->name, hp->name,
                  co_optim_get(set, 0, hp->name), co_optim_get(set, 1, hp->name), v,
                  global ? "global" : "per group");
            /* Group 0's trajectory cannot see group 1's value: the loss is separable. */
            int independent = 1;
            for (size_t k = 0; k < sizeof coupled / sizeof coupled[0]; k++)
                independent &= strcmp(info->name, coupled[k]) != 0;
            if (independent && !global) {
                run_steps(ref, &wr, 12);
                run_steps(set, &ws, 12);
                size_t n0 = R0 * C0 + R0;
                CHECK(memcmp(wr.theta, ws.theta, n0 * sizeof(float)) == 0,
                      "%s: %s on group 1 changed group 0's trajectory", info->name, hp->name);
                if (h == 0)
                    CHECK(memcmp(wr.theta + n0, ws.theta + n0, (NP - n0) * sizeof(float)) != 0,
                          "%s: lr on group 1 did not change group 1", info->name);
            }
            co_optim_free(ref);
            co_optim_free(set);
        }
    }
}

/* ------------------------------------------------------------ clipping */

/* torch.nn.utils.clip_grad_norm_: one norm over every gradient of every group,
 * coef = max_norm / (norm + 1e-6), gradients scaled by coef only when coef < 1, before the
 * optimizer (and its weight decay) sees them. */
static void test_clipping(void)
{
    float w0[2] = {1, -2}, w1[1] = {0.5f}, d0[2], d1[1];
    co_group g[2] = {{.name = "a", .ntensors = 1, .param = {w0}, .grad = {d0}, .size = {2}},
                     {.name = "b", .ntensors = 1, .param = {w1}, .grad = {d1}, .size = {1}}};
    co_error err;
    co_optim *o = co_optim_new("sgd", g, 2, "lr=1,weight_decay=0.25", 0, &err);
    CHECK(o != NULL, "sgd: %s", o ? "" : err.msg);
    if (!o) return;
    struct { double scale, max_norm; } cases[] = {
        {1, 6.5},       /* norm 13 -> half */
        {1, 13},        /* norm == max: still scaled by 13 / (13 + 1e-6) */
        {1e-6, 1.3e-5}, /* norm 1.3e-5 == max: the 1e-6 is visible, coef 0.9286 */
        {1, 20},        /* below: untouched */
        {1, 0},         /* off */
        {1, -3},        /* off */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float p0[3] = {w0[0], w0[1], w1[0]};
        float gr[3] = {(float)(3 * cases[c].scale), (float)(-4 * cases[c].scale), (float)(12 * cases[c].scale)};
        d0[0] = gr[0];
        d0[1] = gr[1];
        d1[0] = gr[2];
        double norm = sqrt((double)gr[0] * gr[0] + (double)gr[1] * gr[1] + (double)gr[2] * gr[2]);
        CHECK_CLOSE(co_groups_grad_norm(g, 2), norm, 1e-12, "global gradient norm");
        co_optim_set_clip(o, cases[c].max_norm);
        double coef = cases[c].max_norm > 0 ? fmin(1.0, cases[c].max_norm / (norm + 1e-6)) : 1.0;
        co_optim_step(o, NULL, NULL);
        float *now_g[3] = {&d0[0], &d0[1], &d1[0]};
        float *now_p[3] = {&w0[0], &w0[1], &w1[0]};
        for (int k = 0; k < 3; k++) {
            double clipped = gr[k] * coef;
            CHECK(fabs(*now_g[k] - clipped) <= 2e-7 * fabs(clipped), "case %zu: gradient %d is %.9g, expected %.9g", c,
                  k, *now_g[k], clipped);
            if (coef == 1.0) CHECK(*now_g[k] == gr[k], "case %zu: an unclipped gradient changed", c);
            /* Weight decay sees the parameter, not the clipped gradient. */
            double expect = p0[k] - (clipped + 0.25 * p0[k]);
            CHECK(fabs(*now_p[k] - expect) <= 1e-6 * fmax(1, fabs(expect)), "case %zu: parameter %d is %.9g, expected %.9g",
                  c, k, *now_p[k], expect);
        }
    }
    co_optim_free(o);
}

int main(void)
{
    test_bad_names_and_values();
    test_per_group();
    test_clipping();
    test_save_load_continue();
    test_damaged_files();
    test_state_stream();
    return co_test_finish();
}
