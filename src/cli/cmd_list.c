#include "args.h"
#include "commands.h"
#include "curvopt.h"

#include <stdio.h>

static void print_hparams(const co_hparam *hp, int n)
{
    for (int k = 0; k < n; k++) {
        const co_hparam *h = &hp[k];
        char range[64];
        snprintf(range, sizeof range, "%c%g, %g%c", (h->flags & CO_HP_MIN_OPEN) ? '(' : '[', h->min, h->max,
                 (h->flags & CO_HP_MAX_OPEN) ? ')' : ']');
        printf("    %-26s default %-10g %-18s %s%s%s\n", h->name, h->def, range,
               (h->flags & CO_HP_SAFEGUARD)   ? "[safeguard] "
               : (h->flags & CO_HP_DEPARTURE) ? "[departure] "
                                              : "",
               (h->flags & CO_HP_BOOL) ? "(0/1) " : (h->flags & CO_HP_INT) ? "(integer) " : "", h->doc);
    }
}

/* What the method's `faithful` switch does, under its hyperparameters. */
static void print_faithful(const co_optim_info *o)
{
    if (!co_optim_find_hparam(o, "faithful", NULL)) return;
    int guards = 0;
    for (int k = 0; k < o->nhparams; k++) guards += (o->hparams[k].flags & (CO_HP_SAFEGUARD | CO_HP_DEPARTURE)) != 0;
    if (!guards)
        printf("    faithful=1 is accepted like every curvature method's, and changes nothing: %s needed no\n"
               "    safeguard, its defaults are the paper's algorithm (docs/optimizers/%s.md)\n",
               o->name, o->name);
    else
        printf("    faithful=1 runs %s as its paper publishes it: every [safeguard] above is off (a departure\n"
               "    from the paper that keeps it from diverging on larger networks) and every [departure]\n"
               "    takes the paper's value (docs/optimizers/%s.md)\n",
               o->name, o->name);
}

int cmd_list(int argc, char **argv)
{
    int rc = args_parse("list", "", NULL, 0, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    printf("[safeguard]: a departure from the method's paper, on by default, off at 0 or with faithful=1.\n"
           "[departure]: a default value other than the paper's; faithful=1 uses the paper's value.\n\n");
    for (int i = 0; i < co_optim_count(); i++) {
        const co_optim_info *o = co_optim_info_at(i);
        printf("%s — %s\n    source: %s\n", o->name, o->summary, o->source);
        print_hparams(o->hparams, o->nhparams);
        print_faithful(o);
        putchar('\n');
    }
    int ncommon;
    const co_hparam *common = co_optim_common_hparams(&ncommon);
    printf("Common to every optimizer:\n");
    print_hparams(common, ncommon);
    return 0;
}
