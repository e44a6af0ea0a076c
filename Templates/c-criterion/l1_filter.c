/* A PruneKit criterion in C: the lp norm of each filter (output channel).
 *
 *   score[j] = (sum_i |W[j, i]|^p)^(1/p)      p = 1 (default): the L1 norm of Li et al.,
 *                                             "Pruning Filters for Efficient ConvNets" (2017)
 *
 * PruneKit calls it through libffi as criterion.json describes: the weights as a
 * row-major [outputs x fan_in] matrix, the two counts, the option p, and the buffer of
 * `outputs` scores to fill. It returns 0, or a non-zero code that fails the criterion.
 *
 * Build: cc -O2 -shared -fPIC -o libl1_filter.so l1_filter.c -lm
 */
#include <math.h>
#include <stdint.h>

int32_t l1_filter(const float *weights, int64_t outputs, int64_t fan_in, double p, float *scores) {
    if (!(p > 0)) return 1; /* the norm needs p > 0 */
    for (int64_t j = 0; j < outputs; j++) {
        const float *w = weights + j * fan_in;
        double sum = 0;
        if (p == 1) {
            for (int64_t i = 0; i < fan_in; i++) sum += fabs(w[i]);
        } else {
            for (int64_t i = 0; i < fan_in; i++) sum += pow(fabs(w[i]), p);
            sum = pow(sum, 1 / p);
        }
        scores[j] = (float)sum;
    }
    return 0;
}
