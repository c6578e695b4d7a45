/*
 * Named counter lists for the capture summary record. Kept tiny on purpose:
 * each capture layer exports its own fixed counter struct into one list.
 */
#include <stdlib.h>

#include "cap_stats.h"

int cap_counter_add(struct cap_counter_list *l, const char *name, uint64_t value)
{
    if (value == 0)
        return 0;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 32;
        struct h2r_counter *nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv)
            return H2R_ERR_NOMEM;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].name = name;
    l->v[l->n].value = value;
    l->n++;
    return 0;
}

void cap_counter_list_free(struct cap_counter_list *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}
