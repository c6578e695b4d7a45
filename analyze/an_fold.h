/*
 * Endpoint grouping: request paths with their ids folded into a template, so
 * that "/machine/1234/map" and "/machine/99/map" land in one group.
 */
#ifndef H2R_AN_FOLD_H
#define H2R_AN_FOLD_H

#include <stddef.h>

/* Longest group key kept (longer keys are cut, ending in "..."). */
#define AN_KEY_MAX 160

struct an_folder;

/*
 * Compiles the user rules ("REGEX=TEMPLATE", POSIX extended regex, split at
 * the last '='; \0..\9 in TEMPLATE insert the match and its groups). User
 * rules run first, in order, on the path without its query string; the
 * built-in rules (docs/analyze.md) then fold what is left. Returns 0,
 * H2R_ERR_ARG (errbuf names the rule and the regex error) or H2R_ERR_NOMEM.
 */
int an_folder_new(struct an_folder **out, const char *const *rules, size_t n_rules, char *errbuf,
                  size_t errlen);

/* NULL is a no-op. */
void an_folder_free(struct an_folder *f);

/*
 * Folds PATH into out (cap >= 8 bytes, always NUL-terminated): query string
 * dropped, ids replaced by {n}, {hex}, {uuid}, {tok}, PREFIX:{key}; gRPC paths
 * (grpc != 0) are kept as they are. Bytes outside printable ASCII become '?'.
 * Returns the length written.
 */
size_t an_fold_path(const struct an_folder *f, const char *path, int grpc, char *out, size_t cap);

/*
 * The id shapes folded in paths, for one token s of n bytes: all digits {n}, a
 * UUID {uuid}, a Tailscale-style key PREFIX:{key} (lower-case prefix, >= 8 hex
 * digits), a hex id {hex}, a base64-like token {tok}. Writes the template into
 * out (NUL-terminated, cut at cap) and returns its length; 0 when s is none of
 * them. The server-log classifier folds message words with the same rules.
 */
size_t an_fold_id(const char *s, size_t n, char *out, size_t cap);

/* "METHOD template" (method NULL or empty: "?"). Returns the length written. */
size_t an_fold_key(const struct an_folder *f, const char *method, const char *path, int grpc,
                   char *out, size_t cap);

#endif
