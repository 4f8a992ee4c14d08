/* Minimal test harness: CHECK records a failure with its location and goes on; each
 * binary ends with "N passed, N failed" and a non-zero exit code on any failure. */
#ifndef CO_TEST_UTIL_H
#define CO_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int co_test_passed, co_test_failed;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            co_test_passed++;                                              \
        } else {                                                           \
            co_test_failed++;                                              \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define CHECK_CLOSE(a, b, tol, what)                                                              \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol) * fmax(1.0, fabs((double)(b))), "%s: %.9g vs %.9g", \
          what, (double)(a), (double)(b))

static inline int co_test_finish(void)
{
    printf("%d passed, %d failed\n", co_test_passed, co_test_failed);
    return co_test_failed ? 1 : 0;
}

/* Path of a golden file: $CURVOPT_TEST_DATA/name. */
static inline const char *co_test_data(const char *name)
{
    static char path[4096];
    const char *dir = getenv("CURVOPT_TEST_DATA");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/golden", name);
    return path;
}

#endif
