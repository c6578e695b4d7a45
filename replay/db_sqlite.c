/*
 * SQLite adapter (rp_db_sqlite_ops).
 *
 * Headscale keeps one writer connection in WAL mode. We stay out of its way:
 * sampling uses a read-only connection with a busy timeout, and every read
 * runs in one short transaction so a long-lived reader never pins the WAL
 * (a reader holding a snapshot stops checkpoints from completing, and the
 * -wal file would then grow because of us, not because of the load).
 *
 * Snapshot and restore use the online backup API (sqlite3_backup_*) in a
 * single step: the copy is one consistent read transaction on the source,
 * and the result is a complete database file (its header keeps WAL mode).
 * A snapshot is written to a temporary name and renamed, so a crash never
 * leaves a half-written snapshot under the real name. Restore writes
 * through SQLite's own locking, never by copying files behind its back,
 * and then truncates the WAL so the restored content lives in the main
 * file. Restore refuses while another process has the file open for
 * writing (checked through /proc/PID/fd and fdinfo; read-only samplers are
 * fine): Headscale caches registrations and nodes in memory, so its
 * database must only be reset while it is stopped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "h2replay/error.h"

struct sqlite_impl {
    sqlite3 *ro; /* read-only sampling/backup-source connection */
    char path[PATH_MAX];
};

static struct sqlite_impl *impl_of(struct rp_db *db)
{
    return db->impl;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int sq_fail(struct rp_db *db, sqlite3 *conn, const char *what)
{
    return rp_db_fail(db, H2R_ERR_IO, "sqlite %s: %s", what,
                      conn ? sqlite3_errmsg(conn) : "cannot allocate a connection");
}

static int open_conn(struct rp_db *db, const char *path, int flags, sqlite3 **out)
{
    sqlite3 *c = NULL;
    int rc = sqlite3_open_v2(path, &c, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int err = rp_db_fail(db, H2R_ERR_IO, "sqlite open %s: %s", path,
                             c ? sqlite3_errmsg(c) : sqlite3_errstr(rc));
        sqlite3_close(c);
        return err;
    }
    sqlite3_busy_timeout(c, db->opts.busy_timeout_ms);
    sqlite3_extended_result_codes(c, 1);
    *out = c;
    return 0;
}

static int sq_open(struct rp_db *db, const char *target)
{
    struct sqlite_impl *im = calloc(1, sizeof(*im));
    if (!im)
        return rp_db_fail(db, H2R_ERR_NOMEM, "out of memory");
    db->impl = im;
    if (strlen(target) >= sizeof(im->path))
        return rp_db_fail(db, H2R_ERR_ARG, "sqlite path too long");
    snprintf(im->path, sizeof(im->path), "%s", target);
    /* Never create a database: a typo in a path must not produce an empty one. */
    struct stat st;
    if (stat(im->path, &st) != 0)
        return rp_db_fail(db, H2R_ERR_IO, "sqlite database %s: %s", im->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return rp_db_fail(db, H2R_ERR_ARG, "sqlite database %s is not a regular file", im->path);
    return open_conn(db, im->path, SQLITE_OPEN_READONLY, &im->ro);
}

static void sq_close(struct rp_db *db)
{
    struct sqlite_impl *im = impl_of(db);
    if (!im)
        return;
    sqlite3_close(im->ro);
    free(im);
    db->impl = NULL;
}

static int sq_default_snapshot(struct rp_db *db, char *out, size_t outlen)
{
    struct sqlite_impl *im = impl_of(db);
    if ((size_t)snprintf(out, outlen, "%s.snap", im->path) >= outlen)
        return rp_db_fail(db, H2R_ERR_ARG, "snapshot path too long");
    return 0;
}

/* One query returning one integer; *out untouched on error. */
static int query_int(struct rp_db *db, sqlite3 *c, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(db, c, sql);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        rc = sq_fail(db, c, sql);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : H2R_ERR_IO;
}

/* 1 when table exists, 0 when not, <0 on error. */
static int has_table(struct rp_db *db, sqlite3 *c, const char *table)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return sq_fail(db, c, "catalogue query");
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sq_fail(db, c, "catalogue query");
    sqlite3_finalize(st);
    return ret;
}

static int has_column(struct rp_db *db, sqlite3 *c, const char *table, const char *col)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &st,
                           NULL) != SQLITE_OK)
        return sq_fail(db, c, "table_info");
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sq_fail(db, c, "table_info");
    sqlite3_finalize(st);
    return ret;
}

/* Finds the table of a kind: 1 and *table set, 0 when none exists, <0 on error. */
static int kind_table(struct rp_db *db, sqlite3 *c, enum rp_db_kind k, const char **table)
{
    for (const char *const *t = rp_db_kind_tables(k); *t; t++) {
        int rc = has_table(db, c, *t);
        if (rc < 0)
            return rc;
        if (rc) {
            *table = *t;
            return 1;
        }
    }
    return 0;
}

static int counts_in_txn(struct rp_db *db, sqlite3 *c, struct rp_db_counts *out)
{
    for (int k = 0; k < RP_DB_KIND_COUNT; k++) {
        const char *table;
        int rc = kind_table(db, c, (enum rp_db_kind)k, &table);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            out->n[k] = -1;
            continue;
        }
        int soft = has_column(db, c, table, "deleted_at");
        if (soft < 0)
            return soft;
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"%s", table,
                 soft ? " WHERE deleted_at IS NULL" : "");
        rc = query_int(db, c, sql, &out->n[k]);
        if (rc)
            return rc;
    }
    return 0;
}

static int exec_simple(struct rp_db *db, sqlite3 *c, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(c, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = rp_db_fail(db, H2R_ERR_IO, "sqlite %s: %s", sql, msg ? msg : sqlite3_errmsg(c));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

/* Runs fn inside one short read transaction on the read-only connection. */
static int with_read_txn(struct rp_db *db, int (*fn)(struct rp_db *, sqlite3 *, void *), void *arg)
{
    sqlite3 *c = impl_of(db)->ro;
    int rc = exec_simple(db, c, "BEGIN");
    if (rc)
        return rc;
    rc = fn(db, c, arg);
    if (rc) {
        sqlite3_exec(c, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return exec_simple(db, c, "COMMIT");
}

static int counts_cb(struct rp_db *db, sqlite3 *c, void *arg)
{
    return counts_in_txn(db, c, arg);
}

static int sq_counts(struct rp_db *db, struct rp_db_counts *out)
{
    return with_read_txn(db, counts_cb, out);
}

static int sample_cb(struct rp_db *db, sqlite3 *c, void *arg)
{
    struct rp_db_sample *s = arg;
    int rc = counts_in_txn(db, c, &s->counts);
    if (!rc)
        rc = query_int(db, c, "PRAGMA page_count", &s->page_count);
    if (!rc)
        rc = query_int(db, c, "PRAGMA page_size", &s->page_size);
    if (!rc)
        rc = query_int(db, c, "PRAGMA freelist_count", &s->freelist_count);
    return rc;
}

static int sq_sample(struct rp_db *db, struct rp_db_sample *s)
{
    struct sqlite_impl *im = impl_of(db);
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof(wal), "%s-wal", im->path);
    struct stat st;
    if (stat(wal, &st) == 0)
        s->wal_bytes = (int64_t)st.st_size;
    else if (errno == ENOENT)
        s->wal_bytes = 0;
    return with_read_txn(db, sample_cb, s);
}

struct list_arg {
    enum rp_db_kind kind;
    rp_db_row_fn fn;
    void *ud;
};

static int list_cb(struct rp_db *db, sqlite3 *c, void *arg)
{
    struct list_arg *la = arg;
    const char *table;
    int rc = kind_table(db, c, la->kind, &table);
    if (rc <= 0)
        return rc; /* no table: nothing to list */
    int soft = has_column(db, c, table, "deleted_at");
    if (soft < 0)
        return soft;
    const char *cols[RP_DB_ROW_MAX];
    int ncols = 0;
    char sql[512];
    size_t off = (size_t)snprintf(sql, sizeof(sql), "SELECT id");
    for (const char *const *col = rp_db_identity_columns(la->kind); *col && ncols < RP_DB_ROW_MAX;
         col++) {
        int has = has_column(db, c, table, *col);
        if (has < 0)
            return has;
        if (!has)
            continue;
        cols[ncols++] = *col;
        off += (size_t)snprintf(sql + off, sizeof(sql) - off, ", \"%s\"", *col);
    }
    snprintf(sql + off, sizeof(sql) - off, " FROM \"%s\"%s ORDER BY id", table,
             soft ? " WHERE deleted_at IS NULL" : "");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) != SQLITE_OK)
        return sq_fail(db, c, sql);
    rc = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct rp_db_row row;
        row.id = sqlite3_column_int64(st, 0);
        row.n = ncols;
        for (int i = 0; i < ncols; i++) {
            row.name[i] = cols[i];
            /* BLOB/number columns read as text too: identities compare as strings. */
            row.value[i] = (const char *)sqlite3_column_text(st, i + 1);
        }
        rc = la->fn(&row, la->ud);
        if (rc)
            break;
    }
    if (!rc && step != SQLITE_DONE)
        rc = sq_fail(db, c, sql);
    sqlite3_finalize(st);
    return rc;
}

static int sq_list(struct rp_db *db, enum rp_db_kind kind, rp_db_row_fn fn, void *ud)
{
    struct list_arg la = {kind, fn, ud};
    return with_read_txn(db, list_cb, &la);
}

struct max_id_arg {
    enum rp_db_kind kind;
    int64_t max;
};

static int max_id_cb(struct rp_db *db, sqlite3 *c, void *arg)
{
    struct max_id_arg *ma = arg;
    const char *table;
    int rc = kind_table(db, c, ma->kind, &table);
    if (rc <= 0) {
        ma->max = 0; /* no table: nothing existed */
        return rc;
    }
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT COALESCE(MAX(id), 0) FROM \"%s\"", table);
    return query_int(db, c, sql, &ma->max);
}

static int sq_max_id(struct rp_db *db, enum rp_db_kind kind, int64_t *max)
{
    struct max_id_arg ma = {kind, 0};
    int rc = with_read_txn(db, max_id_cb, &ma);
    if (!rc)
        *max = ma.max;
    return rc;
}

/*
 * Copies src into dst in one backup step, retrying while either side is
 * busy/locked for at most busy_timeout_ms.
 */
static int backup_all(struct rp_db *db, sqlite3 *dst, sqlite3 *src, const char *what)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b)
        return sq_fail(db, dst, what);
    int waited = 0, rc;
    for (;;) {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_DONE)
            break;
        int base = rc & 0xff;
        if ((base == SQLITE_BUSY || base == SQLITE_LOCKED) && waited < db->opts.busy_timeout_ms) {
            sleep_ms(20);
            waited += 20;
            continue;
        }
        break;
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        return rp_db_fail(db, H2R_ERR_IO, "sqlite %s: %s%s", what, sqlite3_errstr(rc),
                          (rc & 0xff) == SQLITE_BUSY ? " (database stayed locked)" : "");
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static int sq_snapshot(struct rp_db *db, const char *snap)
{
    struct sqlite_impl *im = impl_of(db);
    if (same_file(snap, im->path))
        return rp_db_fail(db, H2R_ERR_ARG, "snapshot %s is the database itself", snap);
    if (access(snap, F_OK) == 0 && !db->opts.overwrite)
        return rp_db_fail(db, H2R_ERR_ARG, "snapshot %s exists (use --overwrite to replace it)",
                          snap);
    char tmp[PATH_MAX + 32];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", snap, (long)getpid()) >= sizeof(tmp))
        return rp_db_fail(db, H2R_ERR_ARG, "snapshot path too long");
    unlink(tmp);
    sqlite3 *dst = NULL;
    int rc = open_conn(db, tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &dst);
    if (rc)
        return rc;
    rc = backup_all(db, dst, im->ro, "backup to snapshot");
    /* Fold any WAL the copy produced into the file before it gets its real name. */
    if (!rc)
        sqlite3_wal_checkpoint_v2(dst, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (sqlite3_close(dst) != SQLITE_OK && !rc)
        rc = rp_db_fail(db, H2R_ERR_IO, "sqlite close %s failed", tmp);
    char side[PATH_MAX + 48];
    if (rc) {
        unlink(tmp);
        snprintf(side, sizeof(side), "%s-wal", tmp);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", tmp);
        unlink(side);
        return rc;
    }
    /* A stale -wal/-shm beside the snapshot name would be replayed into the new file. */
    snprintf(side, sizeof(side), "%s-wal", snap);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", snap);
    unlink(side);
    if (rename(tmp, snap) != 0) {
        int e = errno;
        unlink(tmp);
        return rp_db_fail(db, H2R_ERR_IO, "rename %s -> %s: %s", tmp, snap, strerror(e));
    }
    fsync_dir_of(snap);
    return 0;
}

/* True when /proc/PID/fdinfo/FD says the descriptor was opened for writing. */
static int fd_writable(long pid, const char *fd)
{
    char info[96], line[128];
    snprintf(info, sizeof(info), "/proc/%ld/fdinfo/%s", pid, fd);
    FILE *f = fopen(info, "r");
    if (!f)
        return 1; /* cannot tell: assume the worst */
    int writable = 1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long flags;
        if (sscanf(line, "flags: %lo", &flags) == 1) {
            writable = (flags & O_ACCMODE) != O_RDONLY;
            break;
        }
    }
    fclose(f);
    return writable;
}

/*
 * Lists processes other than us that have the database file open for
 * writing, into pids (up to max). Read-only openers (h2replay db watch,
 * sqlite3 -readonly) are harmless: SQLite's locking makes them see the
 * restored content. Only the main file tells them apart: every connection,
 * read-only or not, opens the -wal read-write. Returns the number found, or
 * -1 when /proc is unreadable.
 */
static int other_writers(const char *path, long *pids, int max)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return -1;
    DIR *proc = opendir("/proc");
    if (!proc)
        return -1;
    int found = 0;
    long self = (long)getpid();
    struct dirent *pe;
    while ((pe = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(pe->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        char fddir[64];
        snprintf(fddir, sizeof(fddir), "/proc/%ld/fd", pid);
        DIR *fds = opendir(fddir);
        if (!fds)
            continue;
        struct dirent *fe;
        int hit = 0;
        while (!hit && (fe = readdir(fds)) != NULL) {
            if (fe->d_name[0] == '.')
                continue;
            char link[128], target[PATH_MAX];
            snprintf(link, sizeof(link), "%s/%s", fddir, fe->d_name);
            ssize_t n = readlink(link, target, sizeof(target) - 1);
            if (n <= 0)
                continue;
            target[n] = '\0';
            if (strcmp(target, real) == 0 && fd_writable(pid, fe->d_name))
                hit = 1;
        }
        closedir(fds);
        if (hit) {
            if (found < max)
                pids[found] = pid;
            found++;
        }
    }
    closedir(proc);
    return found;
}

static int sq_restore(struct rp_db *db, const char *snap)
{
    struct sqlite_impl *im = impl_of(db);
    /* A local file is always "disposable" by the DSN rule; the open-file check is the guard. */
    if (access(snap, R_OK) != 0)
        return rp_db_fail(db, H2R_ERR_IO, "snapshot %s: %s", snap, strerror(errno));
    if (same_file(snap, im->path))
        return rp_db_fail(db, H2R_ERR_ARG, "snapshot %s is the database itself", snap);
    if (!db->opts.terminate) {
        long pids[8];
        int n = other_writers(im->path, pids, 8);
        if (n > 0) {
            char list[128] = "";
            size_t off = 0;
            for (int i = 0; i < n && i < 8 && off < sizeof(list); i++)
                off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%ld", i ? "," : "",
                                        pids[i]);
            return rp_db_fail(db, H2R_ERR_ARG,
                              "%s is open for writing in %d other process(es) (pid %s): stop "
                              "the server before a restore, or pass --force",
                              im->path, n, list);
        }
    }
    sqlite3 *src = NULL, *dst = NULL;
    int rc = open_conn(db, snap, SQLITE_OPEN_READONLY, &src);
    if (!rc)
        rc = open_conn(db, im->path, SQLITE_OPEN_READWRITE, &dst);
    if (!rc)
        rc = backup_all(db, dst, src, "restore from snapshot");
    if (!rc) {
        int log = 0, ckpt = 0;
        int crc = sqlite3_wal_checkpoint_v2(dst, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &ckpt);
        if (crc != SQLITE_OK && crc != SQLITE_BUSY)
            rc = sq_fail(db, dst, "checkpoint after restore");
    }
    sqlite3_close(src);
    sqlite3_close(dst);
    return rc;
}

const struct rp_db_ops rp_db_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .snapshot = sq_snapshot,
    .restore = sq_restore,
    .sample = sq_sample,
    .counts = sq_counts,
    .list = sq_list,
    .max_id = sq_max_id,
    .close = sq_close,
    .default_snapshot = sq_default_snapshot,
};
