/* The few JSON writers the result files need: numbers (non-finite values become null, which
 * JSON has no other spelling for), arrays of them, and strings. */
#ifndef CO_EXPERIMENTS_JSON_H
#define CO_EXPERIMENTS_JSON_H

#include <math.h>
#include <stdio.h>

static inline void co_json_number(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

static inline void co_json_array(FILE *f, const double *x, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        co_json_number(f, x[i]);
    }
    fputc(']', f);
}

/* A quoted string; messages can carry paths with quotes, backslashes or control characters. */
static inline void co_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

#endif
