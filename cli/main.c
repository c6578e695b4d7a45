/*
 * h2replay: capture HTTP/2 registration traffic, replay it at scaled speed
 * against servers backed by different databases, and compare the results.
 * This file only dispatches to the subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"capture", cmd_capture, "record HTTP/2 exchanges from a pcap or a live interface into a trace"},
#ifdef H2R_HAVE_REPLAY
    {"replay", cmd_replay, "re-issue a trace at scaled speed against one or more servers"},
#endif
    {"show", cmd_show, "print a trace or run file as a table or JSON lines"},
#ifdef H2R_HAVE_ANALYZE
    {"analyze", cmd_analyze, "compare runs, find failure points, gate CI"},
#endif
#ifdef H2R_HAVE_DB
    {"db", cmd_db, "snapshot, restore, watch and verify the database behind a target"},
#endif
};

static void usage(FILE *f)
{
    fprintf(f, "usage: h2replay COMMAND [ARGS]   (h2replay COMMAND --help for details)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --version  print the version\n"
               "\nexit status: 0 success, 1 the job or its input failed, 2 usage error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        if (argc > 2 && strcmp(name, "help") == 0) {
            for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (strcmp(argv[2], commands[i].name) == 0) {
                    char *hargv[] = {argv[2], "--help", NULL};
                    return commands[i].fn(2, hargv);
                }
            }
        }
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("h2replay %s\n", H2R_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "h2replay: unknown command '%s'\n\n", name);
    usage(stderr);
    return EXIT_USAGE;
}
