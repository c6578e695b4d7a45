/*
 * The h2replay front end: one binary, one function per subcommand. Commands
 * parse flags, call their stage library and map its result to an exit code:
 *   0 success, 1 failure of the job or its input, 2 usage error.
 */
#ifndef H2R_CLI_H
#define H2R_CLI_H

#include <stdio.h>

#define EXIT_USAGE 2

int cmd_capture(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_replay(int argc, char **argv);  /* cli/cmd_replay.c, built with the replay stage */
int cmd_analyze(int argc, char **argv); /* cli/cmd_analyze.c, built with the analyze stage */
int cmd_db(int argc, char **argv);      /* cli/cmd_db.c, built with the database adapters */

/* Prints "h2replay CMD: <message>" to stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when --help or -h appears before any "--". */
int cli_wants_help(int argc, char **argv);

#endif
