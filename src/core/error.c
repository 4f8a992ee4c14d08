/* Error records: a status code plus one line saying what, where, expected vs found. */
#include "curvopt.h"

#include <stdarg.h>
#include <stdio.h>

co_status co_error_set(co_error *e, co_status code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

const char *co_status_name(co_status s)
{
    switch (s) {
    case CO_OK: return "ok";
    case CO_EINVAL: return "invalid argument";
    case CO_EIO: return "i/o error";
    case CO_EFORMAT: return "bad format";
    case CO_ENOMEM: return "out of memory";
    case CO_ENUMERIC: return "numerical failure";
    case CO_ENOTFOUND: return "not found";
    }
    return "unknown status";
}
