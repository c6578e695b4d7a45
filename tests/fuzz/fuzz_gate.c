/*
 * libFuzzer target for the gate expression parser (analyze/an_gate.c): any
 * byte string must parse or fail with H2R_ERR_ARG and a message naming a
 * column inside the expression, never crash or read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "an_gate.h"
#include "h2replay/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *expr = malloc(size + 1);
    if (!expr)
        return 0;
    if (size)
        memcpy(expr, data, size);
    expr[size] = '\0';
    struct an_gate g;
    char err[256];
    int rc = an_gate_parse(expr, &g, err, sizeof(err));
    if (rc == 0) {
        if (g.metric < 0 || g.metric >= AN_M_N_ || g.op < AN_OP_LT || g.op > AN_OP_NE)
            abort();
        double limit = an_gate_limit(&g, 123.0);
        (void)an_gate_holds(g.op, 100.0, limit);
        (void)an_metric_name(g.metric);
        (void)an_op_name(g.op);
    } else if (rc != H2R_ERR_ARG || strstr(err, "column") == NULL) {
        if (strstr(err, "empty expression") == NULL)
            abort();
    }
    free(expr);
    return 0;
}
