/*
 * `h2replay db snapshot|restore|watch|verify`: flags -> the replay stage's
 * database adapters (replay/db.h). snapshot/restore reset the database
 * behind a target between runs, watch samples it while a replay runs (JSON
 * lines), verify compares what a replay was told with what was stored.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "db.h"
#include "h2replay/error.h"
#include "h2replay/run.h"
#include "h2replay/units.h"
#include "rp_ack.h"

/* Also declared in cli.h once the command is wired in; repeated here so this file builds alone. */
int cmd_db(int argc, char **argv);

static void db_usage(FILE *f)
{
    fprintf(f,
            "usage: h2replay db snapshot|restore|watch|verify --db DSN [options]\n"
            "\n"
            "Resets, samples and checks the database behind a Headscale target.\n"
            "\n"
            "commands:\n"
            "  snapshot   copy the database to a snapshot; prints the snapshot name\n"
            "  restore    make the database equal to a snapshot again (stop the server first:\n"
            "             Headscale caches nodes and registrations in memory)\n"
            "  watch      sample row counts, WAL size and pages (SQLite) or sessions, wait\n"
            "             events, locks and transaction counters (PostgreSQL) as JSON lines\n"
            "  verify     compare acknowledged entities (from a replay) with the database\n"
            "\n"
            "database:\n"
            "      --db DSN             sqlite:/path/db.sqlite, postgresql://USER@127.0.0.1:PORT/DB\n"
            "                           or pg:KEYWORD=VALUE... (any libpq connection string)\n"
            "      --busy-timeout DUR   SQLite lock wait (default 5s)\n"
            "      --statement-timeout DUR  PostgreSQL statement_timeout (default 10s)\n"
            "snapshot, restore:\n"
            "      --snapshot NAME      snapshot file (SQLite) or database (PostgreSQL);\n"
            "                           default PATH.snap / DBNAME_snap\n"
            "      --overwrite          snapshot: replace an existing h2replay snapshot\n"
            "      --terminate          end other sessions (PostgreSQL) or ignore processes\n"
            "                           holding the file (SQLite) instead of refusing (alias --force)\n"
            "      --disposable         restore: allow a database that is not on loopback, a unix\n"
            "                           socket or a local file\n"
            "      --maintenance-db DB  PostgreSQL database used for CREATE/DROP (default postgres)\n"
            "watch:\n"
            "      --interval DUR       time between samples (default 1s)\n"
            "      --duration DUR       stop after DUR (default: at SIGINT/SIGTERM)\n"
            "      --count N            stop after N samples\n"
            "  -o, --output FILE        JSON lines file ('-' = stdout, the default)\n"
            "  -q, --quiet              no summary on stderr\n"
            "verify:\n"
            "      --acks FILE          JSON list of acknowledged entities ('-' = stdin)\n"
            "      --run RUN            or: the acknowledgements a replay recorded in its run file\n"
            "                           (rows up to the ids its verify noted at the section's\n"
            "                           start count as existed before, as in replay --db)\n"
            "      --section N|NAME     with --run: the section (target) to check; required when\n"
            "                           the run has several\n"
            "      --kinds LIST         comma list of users,nodes,pre_auth_keys,api_keys\n"
            "                           (default users,nodes,pre_auth_keys)\n"
            "      --format text|json   report format (default text)\n"
            "      --max-list N         lost/unacknowledged examples listed per kind (default 20)\n"
            "      --strict             also fail when rows were never acknowledged\n"
            "\n"
            "exit status: 0 success (verify: nothing acknowledged was lost); 1 failure (verify:\n"
            "something acknowledged is missing, or with --strict a row was never acknowledged);\n"
            "2 usage error\n");
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* JSON integer, or null for the adapters' "not measured" -1. */
static json_t *num_or_null(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

static json_t *sample_json(const struct rp_db *db, const struct rp_db_sample *s, uint64_t seq,
                           int64_t start_ns)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    char ts[48];
    time_t secs = (time_t)(s->wall_ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(s->wall_ns % 1000000000 / 1000000));
    json_object_set_new(o, "t", json_string(ts));
    json_object_set_new(o, "t_ns", json_integer(s->wall_ns));
    json_object_set_new(o, "elapsed_s", json_real((double)(s->wall_ns - start_ns) / 1e9));
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    json_object_set_new(o, "engine", json_string(rp_db_engine(db)));
    json_object_set_new(o, "took_ms", json_real((double)s->took_ns / 1e6));
    json_t *c = json_object();
    for (int k = 0; k < RP_DB_KIND_COUNT; k++)
        json_object_set_new(c, rp_db_kind_name((enum rp_db_kind)k), num_or_null(s->counts.n[k]));
    json_object_set_new(o, "counts", c);
    json_object_set_new(o, "counts_blocked", json_integer(s->counts.blocked));
    if (strcmp(rp_db_engine(db), "sqlite") == 0) {
        json_t *q = json_object();
        json_object_set_new(q, "wal_bytes", num_or_null(s->wal_bytes));
        json_object_set_new(q, "page_count", num_or_null(s->page_count));
        json_object_set_new(q, "page_size", num_or_null(s->page_size));
        json_object_set_new(q, "freelist_count", num_or_null(s->freelist_count));
        json_object_set_new(q, "db_bytes", s->page_count < 0 || s->page_size < 0
                                               ? json_null()
                                               : json_integer(s->page_count * s->page_size));
        json_object_set_new(o, "sqlite", q);
    } else {
        json_t *p = json_object();
        json_object_set_new(p, "backends", num_or_null(s->backends));
        json_object_set_new(p, "active", num_or_null(s->active));
        json_object_set_new(p, "idle_in_xact", num_or_null(s->idle_in_xact));
        json_object_set_new(p, "waiting", num_or_null(s->waiting));
        json_object_set_new(p, "locks", num_or_null(s->locks));
        json_object_set_new(p, "locks_waiting", num_or_null(s->locks_waiting));
        json_object_set_new(p, "xact_commit", num_or_null(s->xact_commit));
        json_object_set_new(p, "xact_rollback", num_or_null(s->xact_rollback));
        json_object_set_new(p, "deadlocks", num_or_null(s->deadlocks));
        json_object_set_new(p, "tup_inserted", num_or_null(s->tup_inserted));
        json_object_set_new(p, "tup_updated", num_or_null(s->tup_updated));
        json_object_set_new(p, "tup_deleted", num_or_null(s->tup_deleted));
        json_t *w = json_array();
        for (int i = 0; i < s->n_wait; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "type", json_string(s->wait[i].type));
            json_object_set_new(e, "event", json_string(s->wait[i].event));
            json_object_set_new(e, "count", json_integer(s->wait[i].count));
            json_array_append_new(w, e);
        }
        json_object_set_new(p, "wait_events", w);
        json_object_set_new(o, "pg", p);
    }
    return o;
}

static int write_line(FILE *out, json_t *o)
{
    int rc = json_dumpf(o, out, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (rc == 0 && fputc('\n', out) == EOF)
        rc = -1;
    if (rc == 0 && fflush(out) != 0)
        rc = -1;
    return rc;
}

struct db_flags {
    const char *dsn;
    const char *snapshot;
    const char *output;
    const char *acks;
    const char *run;     /* verify --run: acknowledgements from a run file */
    const char *section; /* verify --section N|NAME */
    const char *format;
    int64_t interval_ns;
    int64_t duration_ns;
    uint64_t count;
    unsigned kinds;
    long max_list;
    int quiet;
    int strict;
    struct rp_db_opts opts;
};

static int run_watch(struct rp_db *db, const struct db_flags *f)
{
    FILE *out = stdout;
    if (f->output && strcmp(f->output, "-") != 0) {
        out = fopen(f->output, "w");
        if (!out) {
            cli_err("db", "-o %s: %s", f->output, strerror(errno));
            return 1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: the sleep must wake up */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int64_t start_mono = h2r_now_mono_ns(), start_wall = h2r_now_wall_ns();
    uint64_t seq = 0, ok = 0, failed = 0;
    int rc = 0;
    while (!stop_requested) {
        struct rp_db_sample s;
        int src = rp_db_sample(db, &s);
        json_t *o;
        if (src == 0) {
            o = sample_json(db, &s, seq, start_wall);
            ok++;
        } else {
            /* A failed sample is data (server restarting, lock storm): record it and go on. */
            o = json_object();
            if (o) {
                json_object_set_new(o, "t_ns", json_integer(s.wall_ns));
                json_object_set_new(o, "elapsed_s",
                                    json_real((double)(s.wall_ns - start_wall) / 1e9));
                json_object_set_new(o, "seq", json_integer((json_int_t)seq));
                json_object_set_new(o, "engine", json_string(rp_db_engine(db)));
                json_object_set_new(o, "error", json_string(rp_db_errmsg(db)));
            }
            failed++;
        }
        if (!o || write_line(out, o) != 0) {
            json_decref(o);
            cli_err("db", "watch: cannot write %s", f->output ? f->output : "stdout");
            rc = 1;
            break;
        }
        json_decref(o);
        seq++;
        if (f->count && seq >= f->count)
            break;
        int64_t next = start_mono + (int64_t)seq * f->interval_ns;
        if (f->duration_ns && next - start_mono > f->duration_ns)
            break;
        struct timespec ts = {(time_t)(next / 1000000000), (long)(next % 1000000000)};
        while (!stop_requested && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }
    if (out != stdout && fclose(out) != 0) {
        cli_err("db", "-o %s: %s", f->output, strerror(errno));
        rc = 1;
    }
    if (!f->quiet)
        fprintf(stderr, "db watch: %llu samples (%llu failed) of %s -> %s\n",
                (unsigned long long)seq, (unsigned long long)failed, db->dsn,
                f->output ? f->output : "stdout");
    if (seq > 0 && ok == 0) {
        cli_err("db", "watch: every sample failed; last error: %s", rp_db_errmsg(db));
        rc = 1;
    }
    return rc;
}

static void print_verify_text(const char *dsn, const char *acks, json_t *rep)
{
    printf("verify %s against %s\n", dsn, acks);
    printf("%-15s %13s %8s %6s %15s %15s\n", "kind", "acknowledged", "present", "lost",
           "unacknowledged", "existed before");
    json_t *kinds = json_object_get(rep, "kinds");
    const char *name;
    json_t *k;
    json_object_foreach(kinds, name, k) {
        printf("%-15s %13lld %8lld %6lld %15lld %15lld\n", name,
               (long long)json_integer_value(json_object_get(k, "acknowledged")),
               (long long)json_integer_value(json_object_get(k, "present")),
               (long long)json_integer_value(json_object_get(k, "lost")),
               (long long)json_integer_value(json_object_get(k, "unacknowledged")),
               (long long)json_integer_value(json_object_get(k, "existing_before")));
    }
    json_object_foreach(kinds, name, k) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(k, "lost_entities"), i, e) {
            char *txt = json_dumps(e, JSON_COMPACT);
            printf("  lost %s: %s\n", name, txt ? txt : "?");
            free(txt);
        }
        json_array_foreach(json_object_get(k, "unacknowledged_rows"), i, e) {
            char *txt = json_dumps(e, JSON_COMPACT);
            printf("  never acknowledged %s: %s\n", name, txt ? txt : "?");
            free(txt);
        }
    }
    printf("acknowledged but lost: %lld\n",
           (long long)json_integer_value(json_object_get(rep, "acknowledged_but_lost")));
    printf("present but never acknowledged: %lld\n",
           (long long)json_integer_value(json_object_get(rep, "present_but_never_acknowledged")));
    long long ign = (long long)json_integer_value(json_object_get(rep, "ignored_entities"));
    if (ign)
        printf("ignored acknowledgements (no known kind or identity field): %lld\n", ign);
}

/*
 * The ack records of one section of a run file in db_verify.c's form: {"acknowledged":
 * [...]}, plus "existing_before" ({"users": max id, ...}) when the section's verify record
 * kept the baseline replay --db took at its start, so this check counts the same rows as
 * that one. section: a number or a target name; NULL when the run has one section. label
 * gets "RUN section NAME". Returns the object or NULL (message printed).
 */
static json_t *acks_from_run(const char *path, const char *section, char *label, size_t len)
{
    char err[512];
    struct h2r_run_reader *rd = NULL;
    if (h2r_run_reader_open(&rd, path, err, sizeof(err)) != 0) {
        cli_err("db", "--run %s: %s", path, err);
        return NULL;
    }
    json_t *list = json_array(), *before = json_object(), *out = NULL;
    uint32_t ids[256]; /* the first 256 sections, for messages */
    char names[256][64];
    size_t n_sec = 0;
    int64_t want = -1;
    char *end;
    long num = section ? strtol(section, &end, 10) : -1;
    int by_number = section && *section && !*end && num >= 0;
    struct h2r_run_record rec;
    int rc;
    /* sections come before their acks: pick the section as it appears */
    if (!before) {
        json_decref(list);
        list = NULL;
    }
    while (list && (rc = h2r_run_reader_next(rd, &rec)) == 1) {
        if (rec.kind == H2R_RUN_REC_SECTION) {
            const struct h2r_run_section *s = &rec.u.section;
            if (n_sec < sizeof(ids) / sizeof(ids[0])) {
                ids[n_sec] = s->id;
                snprintf(names[n_sec], sizeof(names[n_sec]), "%s", s->name);
                n_sec++;
            }
            if (section && want < 0 &&
                ((by_number && s->id == (uint32_t)num) || strcmp(s->name, section) == 0))
                want = s->id;
        } else if (rec.kind == H2R_RUN_REC_ACK) {
            if (!section || (want >= 0 && rec.u.ack.section == (uint32_t)want))
                if (rp_ack_json_append(list, &rec.u.ack) != 0)
                    goto out;
        } else if (rec.kind == H2R_RUN_REC_VERIFY) {
            const struct h2r_run_verify *v = &rec.u.verify;
            if (section && (want < 0 || v->section != (uint32_t)want))
                continue;
            for (size_t i = 0; i < v->n_kinds; i++)
                if (v->kinds[i].before_max_id >= 0 &&
                    json_object_set_new(before, v->kinds[i].kind,
                                        json_integer(v->kinds[i].before_max_id)) != 0)
                    goto out;
        }
    }
    if (list && rc < 0) {
        cli_err("db", "--run %s: %s", path, h2r_run_reader_errmsg(rd));
        goto out;
    }
    if (!list) {
        cli_err("db", "out of memory");
        goto out;
    }
    if (section && want < 0) {
        cli_err("db", "--section %s: no such section in %s", section, path);
        goto out;
    }
    if (!section && n_sec > 1) {
        cli_err("db", "--run %s has %zu sections (%s, %s%s): choose one with --section N|NAME",
                path, n_sec, names[0], names[1], n_sec > 2 ? ", ..." : "");
        goto out;
    }
    snprintf(label, len, "%s section %s", path,
             section ? section : (n_sec ? names[0] : "(none)"));
    out = json_pack("{sOsO}", "acknowledged", list, "existing_before", before);
    if (!out)
        cli_err("db", "out of memory");
out:
    json_decref(list);
    json_decref(before);
    h2r_run_reader_free(rd);
    return out;
}

static int run_verify(struct rp_db *db, const struct db_flags *f)
{
    json_error_t jerr;
    char label[1200];
    json_t *acks;
    if (f->run) {
        acks = acks_from_run(f->run, f->section, label, sizeof(label));
        if (!acks)
            return 1;
    } else {
        snprintf(label, sizeof(label), "%s", f->acks);
        acks = strcmp(f->acks, "-") == 0 ? json_loadf(stdin, 0, &jerr)
                                         : json_load_file(f->acks, 0, &jerr);
        if (!acks) {
            cli_err("db", "--acks %s: %s (line %d)", f->acks, jerr.text, jerr.line);
            return 1;
        }
    }
    json_t *rep = NULL;
    int rc = rp_db_verify(db, acks, f->kinds, (size_t)f->max_list, &rep);
    json_decref(acks);
    if (rc) {
        cli_err("db", "verify: %s", rp_db_errmsg(db));
        return 1;
    }
    json_object_set_new(rep, "db", json_string(db->dsn));
    if (strcmp(f->format, "json") == 0) {
        if (json_dumpf(rep, stdout, JSON_INDENT(2)) != 0 || fputc('\n', stdout) == EOF) {
            json_decref(rep);
            return 1;
        }
    } else {
        print_verify_text(db->dsn, label, rep);
    }
    long long lost = (long long)json_integer_value(json_object_get(rep, "acknowledged_but_lost"));
    long long unacked =
        (long long)json_integer_value(json_object_get(rep, "present_but_never_acknowledged"));
    json_decref(rep);
    return lost > 0 || (f->strict && unacked > 0) ? 1 : 0;
}

static int parse_kinds(const char *list, unsigned *out)
{
    char buf[256];
    if (strlen(list) >= sizeof(buf))
        return -1;
    snprintf(buf, sizeof(buf), "%s", list);
    unsigned mask = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        enum rp_db_kind k;
        if (rp_db_kind_parse(tok, &k))
            return -1;
        mask |= 1u << k;
    }
    if (!mask)
        return -1;
    *out = mask;
    return 0;
}

/* DUR flag -> milliseconds in 1..max_ms */
static int parse_ms(const char *flag, const char *arg, int max_ms, int *out)
{
    int64_t ns;
    if (h2r_parse_duration(arg, &ns) || ns < 1000000 || ns / 1000000 > max_ms) {
        cli_err("db", "%s: '%s' is not a duration between 1ms and %ds", flag, arg, max_ms / 1000);
        return -1;
    }
    *out = (int)(ns / 1000000);
    return 0;
}

int cmd_db(int argc, char **argv)
{
    enum {
        OPT_DB = 256,
        OPT_SNAPSHOT,
        OPT_OVERWRITE,
        OPT_TERMINATE,
        OPT_DISPOSABLE,
        OPT_MAINT,
        OPT_BUSY,
        OPT_STMT,
        OPT_INTERVAL,
        OPT_DURATION,
        OPT_COUNT,
        OPT_ACKS,
        OPT_KINDS,
        OPT_FORMAT,
        OPT_MAX_LIST,
        OPT_STRICT,
        OPT_RUN,
        OPT_SECTION
    };
    static const struct option longopts[] = {
        {"db", required_argument, NULL, OPT_DB},
        {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
        {"overwrite", no_argument, NULL, OPT_OVERWRITE},
        {"terminate", no_argument, NULL, OPT_TERMINATE},
        {"force", no_argument, NULL, OPT_TERMINATE},
        {"disposable", no_argument, NULL, OPT_DISPOSABLE},
        {"maintenance-db", required_argument, NULL, OPT_MAINT},
        {"busy-timeout", required_argument, NULL, OPT_BUSY},
        {"statement-timeout", required_argument, NULL, OPT_STMT},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"count", required_argument, NULL, OPT_COUNT},
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},
        {"acks", required_argument, NULL, OPT_ACKS},
        {"kinds", required_argument, NULL, OPT_KINDS},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"max-list", required_argument, NULL, OPT_MAX_LIST},
        {"strict", no_argument, NULL, OPT_STRICT},
        {"run", required_argument, NULL, OPT_RUN},
        {"section", required_argument, NULL, OPT_SECTION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};

    if (argc < 2 || cli_wants_help(argc, argv)) {
        db_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "snapshot") != 0 && strcmp(sub, "restore") != 0 && strcmp(sub, "watch") != 0 &&
        strcmp(sub, "verify") != 0) {
        cli_err("db", "unknown command '%s' (snapshot, restore, watch, verify)", sub);
        return EXIT_USAGE;
    }

    struct db_flags f;
    memset(&f, 0, sizeof(f));
    rp_db_opts_init(&f.opts);
    f.interval_ns = 1000000000;
    f.kinds = (1u << RP_DB_USERS) | (1u << RP_DB_NODES) | (1u << RP_DB_PRE_AUTH_KEYS);
    f.format = "text";
    f.max_list = 20;
    int c;
    optind = 1;
    /* argv[1] is the subcommand: parse from there, getopt skips it as a non-option. */
    while ((c = getopt_long(argc - 1, argv + 1, "o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_DB:
            f.dsn = optarg;
            break;
        case OPT_SNAPSHOT:
            f.snapshot = optarg;
            break;
        case OPT_OVERWRITE:
            f.opts.overwrite = 1;
            break;
        case OPT_TERMINATE:
            f.opts.terminate = 1;
            break;
        case OPT_DISPOSABLE:
            f.opts.disposable = 1;
            break;
        case OPT_MAINT:
            f.opts.maintenance_db = optarg;
            break;
        case OPT_BUSY:
            if (parse_ms("--busy-timeout", optarg, 600000, &f.opts.busy_timeout_ms))
                return EXIT_USAGE;
            break;
        case OPT_STMT:
            if (parse_ms("--statement-timeout", optarg, 3600000, &f.opts.statement_timeout_ms))
                return EXIT_USAGE;
            break;
        case OPT_INTERVAL:
            if (h2r_parse_duration(optarg, &f.interval_ns) || f.interval_ns < 10000000) {
                cli_err("db", "--interval: '%s' is not a duration of at least 10ms", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_DURATION:
            if (h2r_parse_duration(optarg, &f.duration_ns) || f.duration_ns <= 0) {
                cli_err("db", "--duration: '%s' is not a duration (e.g. 30s, 5m)", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_COUNT: {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (*end || end == optarg || errno || n == 0 || optarg[0] == '-') {
                cli_err("db", "--count: '%s' is not a positive sample count", optarg);
                return EXIT_USAGE;
            }
            f.count = n;
            break;
        }
        case 'o':
            f.output = optarg;
            break;
        case 'q':
            f.quiet = 1;
            break;
        case OPT_ACKS:
            f.acks = optarg;
            break;
        case OPT_KINDS:
            if (parse_kinds(optarg, &f.kinds)) {
                cli_err("db", "--kinds: '%s' is not a comma list of users, nodes, "
                        "pre_auth_keys, api_keys", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                cli_err("db", "--format: '%s' is not text or json", optarg);
                return EXIT_USAGE;
            }
            f.format = optarg;
            break;
        case OPT_MAX_LIST: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || end == optarg || n < 0 || n > 1000000) {
                cli_err("db", "--max-list: '%s' is not a count in 0..1000000", optarg);
                return EXIT_USAGE;
            }
            f.max_list = n;
            break;
        }
        case OPT_STRICT:
            f.strict = 1;
            break;
        case OPT_RUN:
            f.run = optarg;
            break;
        case OPT_SECTION:
            f.section = optarg;
            break;
        case 'h':
            db_usage(stdout);
            return 0;
        default:
            db_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc - 1) {
        cli_err("db", "unexpected argument '%s'", argv[optind + 1]);
        return EXIT_USAGE;
    }
    if (!f.dsn) {
        cli_err("db", "--db DSN is required (see --help)");
        return EXIT_USAGE;
    }
    int is_watch = strcmp(sub, "watch") == 0, is_verify = strcmp(sub, "verify") == 0;
    int is_reset = !is_watch && !is_verify;
    if (is_verify && !f.acks == !f.run) {
        cli_err("db", "verify: give --acks FILE or --run RUN (one of them)");
        return EXIT_USAGE;
    }
    if (f.section && !f.run) {
        cli_err("db", "verify: --section only applies with --run");
        return EXIT_USAGE;
    }
    if (!is_verify && (f.acks || f.strict || f.run)) {
        cli_err("db", "%s: --acks/--run/--strict only apply to verify", sub);
        return EXIT_USAGE;
    }
    if (!is_watch && (f.output || f.count || f.duration_ns)) {
        cli_err("db", "%s: -o/--count/--duration only apply to watch", sub);
        return EXIT_USAGE;
    }
    if (!is_reset && (f.snapshot || f.opts.overwrite || f.opts.terminate || f.opts.disposable)) {
        cli_err("db", "%s: --snapshot/--overwrite/--terminate/--disposable only apply to "
                "snapshot and restore", sub);
        return EXIT_USAGE;
    }
    if (strcmp(sub, "restore") == 0 && f.opts.overwrite) {
        cli_err("db", "restore: --overwrite only applies to snapshot");
        return EXIT_USAGE;
    }

    struct rp_db *db = NULL;
    char err[512] = "";
    /* a restore aimed at a remote server is refused before anything connects */
    if (strcmp(sub, "restore") == 0 && rp_db_restore_guard(f.dsn, &f.opts, err, sizeof(err))) {
        cli_err("db", "restore: %s", err);
        return 1;
    }
    int rc = rp_db_open(f.dsn, &f.opts, &db, err, sizeof(err));
    if (rc) {
        cli_err("db", "--db: %s", err);
        return rc == H2R_ERR_ARG ? EXIT_USAGE : 1;
    }
    int ret = 0;
    if (is_reset) {
        char name[1024];
        if (f.snapshot)
            snprintf(name, sizeof(name), "%s", f.snapshot);
        else if (rp_db_default_snapshot(db, name, sizeof(name)) != 0)
            name[0] = '\0';
        int64_t t0 = h2r_now_mono_ns();
        rc = strcmp(sub, "snapshot") == 0 ? rp_db_snapshot(db, name) : rp_db_restore(db, name);
        if (rc) {
            cli_err("db", "%s: %s", sub, rp_db_errmsg(db));
            ret = 1;
        } else {
            char dur[32];
            fprintf(stderr, "db %s: %s %s %s in %s\n", sub, db->dsn,
                    strcmp(sub, "snapshot") == 0 ? "->" : "<-", name,
                    h2r_format_duration(h2r_now_mono_ns() - t0, dur, sizeof(dur)));
            if (strcmp(sub, "snapshot") == 0)
                printf("%s\n", name);
        }
    } else if (is_watch) {
        ret = run_watch(db, &f);
    } else {
        ret = run_verify(db, &f);
    }
    rp_db_close(db);
    return ret;
}
