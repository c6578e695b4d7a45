/*
 * Capture counters. Every anomaly the capture meets is counted here and ends
 * up, by name, in the trace's summary record. Each layer owns its own struct
 * and an export function; the driver concatenates the exports.
 */
#ifndef H2R_CAP_STATS_H
#define H2R_CAP_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"

/* A growable list of named counters used to build the summary record. */
struct cap_counter_list {
    struct h2r_counter *v;
    size_t n, cap;
};

/* Appends (name, value); name must be a string literal or otherwise outlive the list.
 * Zero values are skipped. Returns 0 or H2R_ERR_NOMEM. */
int cap_counter_add(struct cap_counter_list *l, const char *name, uint64_t value);
void cap_counter_list_free(struct cap_counter_list *l);

#endif
