/* Every experiment `curvopt reproduce` knows; a new protocol adds its line here. */
#include "experiments.h"

#include <string.h>

static const co_experiment experiments[] = {
    {"da-rmsprop", "DA-RMSprop vs RMSprop vs AdamW on make_moons (paper 000, §4)", co_reproduce_da_rmsprop},
    {"lama-adam", "LAMA-Adam vs Adam on make_moons (paper 002, §3-4)", co_reproduce_lama_adam},
    {"moons-all", "every optimizer on the DA-RMSprop protocol, same tuning budget", co_reproduce_moons_all},
    {"quasi-adam", "Quasi-Adam vs Adam: classifiers, ResNet34/SVHN if present, autoencoders (paper 003, Exp. I-V)",
     co_reproduce_quasi_adam},
    {"tso-alra", "TSO-ALRA vs SGD, Adam, AMSGrad: test loss per epoch, AlexNet/VGG (paper 004, §V)", co_reproduce_tso_alra},
    {"robustness", "every optimizer at its defaults on every preset, faithful vs safeguarded, lr sweep (issue 12)",
     co_reproduce_robustness},
};

int co_experiment_count(void) { return (int)(sizeof experiments / sizeof experiments[0]); }
const co_experiment *co_experiment_at(int i) { return i >= 0 && i < co_experiment_count() ? &experiments[i] : NULL; }

const co_experiment *co_experiment_find(const char *name)
{
    for (int i = 0; i < co_experiment_count(); i++)
        if (strcmp(experiments[i].name, name) == 0) return &experiments[i];
    return NULL;
}
