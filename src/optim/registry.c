/* Every optimizer curvopt knows, in the order `curvopt list` shows them. A new method adds
 * its co_optim_info here and nowhere else. */
#include "optim_impl.h"

#include <string.h>

extern const co_optim_info co_info_sgd, co_info_adagrad, co_info_rmsprop, co_info_adam, co_info_adamw,
    co_info_amsgrad;
extern const co_optim_info co_info_ogr1d, co_info_ogr1ds, co_info_ogr1dc, co_info_ogr_asgd, co_info_ogr_asgdc;
extern const co_optim_info co_info_lama_adam, co_info_quasi_adam;
extern const co_optim_info co_info_da_rmsprop, co_info_tso_alra;

static const co_optim_info *const registry[] = {
    &co_info_sgd, &co_info_adagrad, &co_info_rmsprop, &co_info_adam, &co_info_adamw, &co_info_amsgrad,
    &co_info_ogr1d, &co_info_ogr1ds, &co_info_ogr1dc, &co_info_ogr_asgd, &co_info_ogr_asgdc,
    &co_info_lama_adam, &co_info_quasi_adam, &co_info_da_rmsprop, &co_info_tso_alra,
};

int co_optim_count(void) { return (int)(sizeof registry / sizeof registry[0]); }

const co_optim_info *co_optim_info_at(int i)
{
    return (i >= 0 && i < co_optim_count()) ? registry[i] : NULL;
}

const co_optim_info *co_optim_find(const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < co_optim_count(); i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}
