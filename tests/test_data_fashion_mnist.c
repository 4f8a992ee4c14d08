/* Fashion-MNIST from Debian's dataset-fashion-mnist: 60000/10000 images, exactly 6000/1000
 * per class; first labels 9 (ankle boot) in both splits; the usual normalisation constants
 * 0.2860 / 0.3530. Skipped (exit 77) when the package is not installed. */
#include "packaged_dataset.h"

int main(void)
{
    packaged_facts f = {"fashion-mnist", {60000, 10000}, {{0}}, {9, 9}, 0.2860, 0.3530};
    for (int c = 0; c < 10; c++) {
        f.class_counts[0][c] = 6000;
        f.class_counts[1][c] = 1000;
    }
    return check_packaged(&f);
}
