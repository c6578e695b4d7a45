/*
 * Database adapters for the replay stage: snapshot, restore, sample and
 * verify the database behind a Headscale target, whatever engine it uses.
 *
 * One interface (struct rp_db_ops) with two implementations: SQLite
 * (db_sqlite.c: online backup API, read-only sampling connection) and
 * PostgreSQL (db_pg.c: template databases, pg_stat_* sampling). A DSN picks
 * the adapter:
 *   sqlite:/path/db.sqlite  (also sqlite:///path, sqlite:relative/path)
 *   postgresql://user@127.0.0.1:5432/headscale  (also postgres://)
 *   pg:host=/run/pg dbname=headscale  (any libpq key=value string)
 *
 * Safety rules every adapter keeps:
 *   - nothing is ever created, dropped or written except the database the
 *     DSN names and the snapshot named by the caller;
 *   - restore refuses a database that is not a local file, a unix socket or
 *     on loopback unless opts.disposable is set;
 *   - restore and snapshot refuse to run under other sessions (a running
 *     Headscale keeps state in memory that a reset would contradict) unless
 *     opts.terminate is set;
 *   - an existing snapshot is replaced only with opts.overwrite (and, for
 *     PostgreSQL, only if it carries the h2replay snapshot comment).
 *
 * All functions return 0 or a negative H2R_ERR_* code; the detail is in
 * rp_db_errmsg(). Sampling connections are read-only and keep transactions
 * short so they never hold up the server's writes or checkpoints.
 */
#ifndef H2R_RP_DB_H
#define H2R_RP_DB_H

#include <stddef.h>
#include <stdint.h>

/* Entity kinds h2replay counts and verifies (Headscale table names). */
enum rp_db_kind {
    RP_DB_USERS = 0,
    RP_DB_NODES,         /* "machines" on Headscale 0.22 */
    RP_DB_PRE_AUTH_KEYS,
    RP_DB_API_KEYS,
    RP_DB_KIND_COUNT
};

/*
 * Row counts per kind (live rows: deleted_at IS NULL where that column
 * exists); -1 = no such table, or not counted because the server held a
 * lock on it (then blocked says how many kinds were skipped; PostgreSQL).
 */
struct rp_db_counts {
    int64_t n[RP_DB_KIND_COUNT];
    int blocked;
};

#define RP_DB_MAX_WAIT 16

/* Backends of the database grouped by what they wait on (PostgreSQL). */
struct rp_db_wait {
    char type[32];  /* pg_stat_activity.wait_event_type; "" = not waiting (on CPU) */
    char event[64]; /* pg_stat_activity.wait_event */
    int64_t count;
};

/*
 * One sample. Fields an adapter does not measure are -1 (and n_wait 0).
 * PostgreSQL figures cover the other sessions of the sampled database only.
 */
struct rp_db_sample {
    int64_t wall_ns; /* CLOCK_REALTIME when the sample started */
    int64_t took_ns; /* how long taking it lasted */
    struct rp_db_counts counts;
    /* SQLite */
    int64_t wal_bytes;      /* size of the -wal file (0 when absent) */
    int64_t page_count;     /* PRAGMA page_count */
    int64_t page_size;      /* PRAGMA page_size */
    int64_t freelist_count; /* PRAGMA freelist_count */
    /* PostgreSQL: pg_stat_activity */
    int64_t backends;     /* sessions on this database */
    int64_t active;       /* state = active */
    int64_t idle_in_xact; /* state = idle in transaction (aborted) */
    int64_t waiting;      /* active and wait_event set */
    /* PostgreSQL: pg_locks held or awaited by those sessions */
    int64_t locks;
    int64_t locks_waiting; /* NOT granted */
    /* PostgreSQL: pg_stat_database (cumulative; includes the sampler's one transaction per sample) */
    int64_t xact_commit;
    int64_t xact_rollback;
    int64_t deadlocks;
    int64_t tup_inserted;
    int64_t tup_updated;
    int64_t tup_deleted;
    int n_wait;
    struct rp_db_wait wait[RP_DB_MAX_WAIT];
};

struct rp_db_opts {
    int busy_timeout_ms;      /* SQLite busy timeout and lock retry budget (default 5000) */
    int statement_timeout_ms; /* PostgreSQL statement_timeout (default 10000) */
    int connect_timeout_s;    /* PostgreSQL connect_timeout (default 10) */
    int disposable;           /* restore may touch a non-local database */
    int terminate;            /* snapshot/restore end other sessions instead of refusing */
    int overwrite;            /* snapshot may replace an existing snapshot */
    const char *maintenance_db; /* PostgreSQL database used for CREATE/DROP (default "postgres") */
};

/* Sets the defaults above. */
void rp_db_opts_init(struct rp_db_opts *o);

/* Most identity columns a row listing reports (see rp_db_identity_columns). */
#define RP_DB_ROW_MAX 6

/* One row of a listing; names and values are borrowed until the callback returns. */
struct rp_db_row {
    int64_t id;
    int n;
    const char *name[RP_DB_ROW_MAX];
    const char *value[RP_DB_ROW_MAX]; /* NULL for SQL NULL */
};

/* Row callback: return 0 to go on, anything else stops the listing and is returned. */
typedef int (*rp_db_row_fn)(const struct rp_db_row *row, void *ud);

struct rp_db;

/*
 * The adapter vtable. Every function gets the owning struct rp_db (its
 * impl pointer, options and error buffer) and returns 0 or H2R_ERR_*.
 *   open     connect/open target (DSN without the "sqlite:" prefix for SQLite,
 *            the libpq string for PostgreSQL); must not create anything
 *   snapshot copy the database to snap (file path / database name)
 *   restore  make the database equal to snap again
 *   sample   fill a struct rp_db_sample
 *   counts   fill row counts only
 *   list     call fn for every live row of a kind with its identity columns
 *   max_id   the highest id of a kind's table, soft-deleted rows included (0 when
 *            empty or when no table of the kind exists)
 *   close    release everything (impl may be NULL)
 */
struct rp_db_ops {
    const char *name; /* "sqlite" or "postgres" */
    int (*open)(struct rp_db *db, const char *target);
    int (*snapshot)(struct rp_db *db, const char *snap);
    int (*restore)(struct rp_db *db, const char *snap);
    int (*sample)(struct rp_db *db, struct rp_db_sample *s);
    int (*counts)(struct rp_db *db, struct rp_db_counts *c);
    int (*list)(struct rp_db *db, enum rp_db_kind kind, rp_db_row_fn fn, void *ud);
    int (*max_id)(struct rp_db *db, enum rp_db_kind kind, int64_t *max);
    void (*close)(struct rp_db *db);
    /* default snapshot name for a target: "<path>.snap" / "<dbname>_snap" */
    int (*default_snapshot)(struct rp_db *db, char *out, size_t outlen);
};

extern const struct rp_db_ops rp_db_sqlite_ops;
extern const struct rp_db_ops rp_db_pg_ops;

/* An open database; adapters own impl. */
struct rp_db {
    const struct rp_db_ops *ops;
    void *impl;
    struct rp_db_opts opts;
    char dsn[1024]; /* as given, for messages (PostgreSQL passwords masked) */
    char err[512];
};

/*
 * Opens the database a DSN names (see the top of this file). opts may be
 * NULL for defaults. On failure *out is NULL and errbuf says why.
 * Returns 0, H2R_ERR_ARG (unknown or malformed DSN) or H2R_ERR_IO.
 */
int rp_db_open(const char *dsn, const struct rp_db_opts *opts, struct rp_db **out, char *errbuf,
               size_t errlen);

/* Closes and frees; NULL is a no-op. */
void rp_db_close(struct rp_db *db);

/* Snapshot/restore to/from snap; snap NULL = the adapter's default name. */
int rp_db_snapshot(struct rp_db *db, const char *snap);
int rp_db_restore(struct rp_db *db, const char *snap);

/* Takes one sample (sets the -1 defaults, the timestamps, then asks the adapter). */
int rp_db_sample(struct rp_db *db, struct rp_db_sample *s);

/* Row counts only. */
int rp_db_counts(struct rp_db *db, struct rp_db_counts *c);

/* Lists live rows of a kind (see struct rp_db_row). */
int rp_db_list(struct rp_db *db, enum rp_db_kind kind, rp_db_row_fn fn, void *ud);

/*
 * The highest id of a kind's table (one "SELECT COALESCE(MAX(id), 0)", whatever
 * the table's size): soft-deleted rows count, since their ids were taken too.
 * *max gets 0 when the table is empty or no table of the kind exists. This is
 * the baseline replay --db takes when a section starts (see rp_db_verify's
 * "existing_before"). Returns 0, H2R_ERR_ARG (unknown kind) or the adapter's
 * error (*max untouched then).
 */
int rp_db_max_id(struct rp_db *db, enum rp_db_kind kind, int64_t *max);

/* Writes the default snapshot name into out. */
int rp_db_default_snapshot(struct rp_db *db, char *out, size_t outlen);

/* The adapter's name ("sqlite", "postgres"). */
const char *rp_db_engine(const struct rp_db *db);

/* The last error message (never NULL). */
const char *rp_db_errmsg(const struct rp_db *db);

/* "users", "nodes", "pre_auth_keys", "api_keys". */
const char *rp_db_kind_name(enum rp_db_kind k);

/* Accepts plural/singular table-ish names (user(s), node(s), machine(s), pre_auth_key(s),
 * preauthkey(s), api_key(s), apikey(s)). Returns 0 or H2R_ERR_ARG. */
int rp_db_kind_parse(const char *s, enum rp_db_kind *k);

/*
 * Table name candidates and identity columns of a kind, for adapters:
 * tables is NULL-terminated, first existing one wins; columns is
 * NULL-terminated and lists the columns a listing reports when they exist.
 */
const char *const *rp_db_kind_tables(enum rp_db_kind k);
const char *const *rp_db_identity_columns(enum rp_db_kind k);

/*
 * True when host (a libpq host or hostaddr value) is a unix socket folder
 * (starts with '/' or '@'), "localhost", an IPv4 address in 127.0.0.0/8 or
 * ::1. NULL or "" is false (callers resolve defaults first).
 */
int rp_db_host_is_local(const char *host);

/*
 * The restore guard before any connection (db_guard.c): refuses a
 * PostgreSQL DSN that could reach a host that is not a unix socket or a
 * loopback address, reading the DSN and the PGHOST/PGHOSTADDR/PGSERVICE
 * environment as libpq would, without resolving or connecting (a service
 * name is refused: where it points is only known after connecting). SQLite
 * DSNs and opts->disposable pass. Returns 0 or H2R_ERR_ARG with errbuf
 * saying why. rp_db_restore checks again after connecting.
 */
int rp_db_restore_guard(const char *dsn, const struct rp_db_opts *opts, char *errbuf,
                        size_t errlen);

struct json_t;

/*
 * Compares what clients were told was created with what the database holds.
 *
 * acks is a JSON array of entities, or an object whose "acknowledged" (or
 * "entities") member is one. Each entity is an object with "kind" (user,
 * node, pre_auth_key, api_key; plural and "preauthkey"/"apikey" also work)
 * and one or more identity fields: "id", and per kind
 *   users: name;  nodes: node_key, machine_key, hostname, given_name;
 *   pre_auth_keys: key, prefix;  api_keys: prefix, key.
 * A full "hskey-auth-..."/"hskey-api-..." key also matches its 12-character
 * prefix (Headscale 0.28+ stores only prefix and hash). An entity is matched
 * when any of its fields equals the same column of a live row.
 *
 * When acks is an object, its optional "existing_before" member ({"users": N,
 * "nodes": N, ...}) names the highest id of each kind before the load: those
 * rows still satisfy acknowledgements but are neither "present" nor
 * "unacknowledged" (they are counted as "existing_before").
 *
 * kinds is a bit mask (1u << enum rp_db_kind) of kinds to check; max_list
 * caps the lost entities and unacknowledged rows listed in the report.
 * *report (caller json_decref) gets:
 *   {"engine", "kinds": {"users": {"acknowledged", "present", "existing_before", "lost",
 *    "unacknowledged", "lost_entities": [...], "unacknowledged_rows": [...]}, ...},
 *    "acknowledged_but_lost", "present_but_never_acknowledged", "ignored_entities",
 *    "ignored_examples": [...]}
 * Returns 0, H2R_ERR_FORMAT (acks is not an array/object), H2R_ERR_NOMEM or
 * the adapter's error.
 */
int rp_db_verify(struct rp_db *db, const struct json_t *acks, unsigned kinds, size_t max_list,
                 struct json_t **report);

/* Sets db->err and returns err (printf-style). */
int rp_db_fail(struct rp_db *db, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
