#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "curvopt %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

void args_usage(const char *cmd, const char *usage, const arg_spec *specs, int nspecs)
{
    printf("usage: curvopt %s %s\n\noptions:\n", cmd, usage);
    for (int i = 0; i < nspecs; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", specs[i].name, specs[i].type == ARG_FLAG ? "" : " ",
                 specs[i].type == ARG_FLAG ? "" : specs[i].metavar);
        printf("  %-26s %s\n", left, specs[i].help);
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

static int set_value(const char *cmd, const arg_spec *s, const char *v)
{
    char *end;
    errno = 0;
    switch (s->type) {
    case ARG_STR: *(const char **)s->dest = v; return 0;
    case ARG_FLAG: *(int *)s->dest = 1; return 0;
    case ARG_INT: {
        long x = strtol(v, &end, 10);
        if (errno || *end || end == v || x < -2147483647L || x > 2147483647L)
            return cli_fail(cmd, "--%s: '%s' is not an integer", s->name, v);
        if (s->min <= s->max && (x < s->min || x > s->max))
            return cli_fail(cmd, "--%s: %ld is out of range [%g, %g]", s->name, x, s->min, s->max);
        *(int *)s->dest = (int)x;
        return 0;
    }
    case ARG_U64: {
        if (*v == '-') return cli_fail(cmd, "--%s: '%s' must be a non-negative integer", s->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end || end == v) return cli_fail(cmd, "--%s: '%s' is not a non-negative integer", s->name, v);
        *(uint64_t *)s->dest = x;
        return 0;
    }
    case ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || *end || end == v || !isfinite(x)) return cli_fail(cmd, "--%s: '%s' is not a number", s->name, v);
        if (s->min <= s->max && (x < s->min || x > s->max))
            return cli_fail(cmd, "--%s: %g is out of range [%g, %g]", s->name, x, s->min, s->max);
        *(double *)s->dest = x;
        return 0;
    }
    }
    return 2;
}

int args_parse(const char *cmd, const char *usage, const arg_spec *specs, int nspecs, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            args_usage(cmd, usage, specs, nspecs);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) return cli_fail(cmd, "unexpected argument '%s' (see curvopt %s --help)", a, cmd);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const arg_spec *s = NULL;
        for (int k = 0; k < nspecs; k++)
            if (strlen(specs[k].name) == nl && strncmp(specs[k].name, name, nl) == 0) s = &specs[k];
        if (!s) return cli_fail(cmd, "unknown option '%.*s' (see curvopt %s --help)", (int)(nl + 2), a, cmd);
        const char *v;
        if (s->type == ARG_FLAG) {
            if (eq) return cli_fail(cmd, "--%s takes no value", s->name);
            v = "1";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return cli_fail(cmd, "--%s needs a value (%s)", s->name, s->metavar);
            v = argv[++i];
        }
        if (s->type != ARG_FLAG && !*v) return cli_fail(cmd, "--%s needs a non-empty value (%s)", s->name, s->metavar);
        int rc = set_value(cmd, s, v);
        if (rc) return rc;
    }
    return 0;
}
