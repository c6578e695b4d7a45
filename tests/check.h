/*
 * A tiny in-tree check header: CHECK* macros record failures and keep going,
 * check_summary() prints one line and returns the exit status.
 */
#ifndef H2R_TESTS_CHECK_H
#define H2R_TESTS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_total_;
static int check_failed_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_total_++;                                                                            \
        if (!(cond)) {                                                                             \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        check_total_++;                                                                            \
        if (a_ != b_) {                                                                            \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s == %lld, %s == %lld\n", __FILE__,      \
                    __LINE__, #a, a_, #b, b_);                                                     \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        check_total_++;                                                                            \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_EQ_STR failed: %s == \"%s\", %s == \"%s\"\n", __FILE__,  \
                    __LINE__, #a, a_ ? a_ : "(null)", #b, b_ ? b_ : "(null)");                     \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_MEM(a, alen, b, blen)                                                             \
    do {                                                                                           \
        size_t al_ = (size_t)(alen), bl_ = (size_t)(blen);                                         \
        check_total_++;                                                                            \
        if (al_ != bl_ || (al_ && memcmp((a), (b), al_) != 0)) {                                   \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_EQ_MEM failed: %s (%zu bytes) != %s (%zu bytes)\n",     \
                    __FILE__, __LINE__, #a, al_, #b, bl_);                                         \
        }                                                                                          \
    } while (0)

/* Prints "NAME: N passed, M failed" and returns the process exit status. */
static inline int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_total_ - check_failed_, check_failed_);
    return check_failed_ ? 1 : 0;
}

#endif
