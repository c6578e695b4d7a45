/*
 * The pre-connection half of the restore guard (db.h, rp_db_restore_guard).
 *
 * The PostgreSQL adapter judges "is this server local?" from the address
 * libpq actually connected to, which is the strongest check but comes after
 * a connection attempt. A restore aimed at somebody else's server should not
 * even knock: a connect to a production address is itself an event someone
 * may page on, and this workplace forbids touching private-range hosts. So
 * before anything is opened, the DSN is read the way libpq would read it
 * (PQconninfoParse, then the PGHOST/PGHOSTADDR/PGSERVICE environment that
 * fills what the DSN leaves out) and every host it could reach must be a
 * unix socket or a loopback address. No name is resolved: a host name other
 * than "localhost" is not local, whatever DNS would say.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "h2replay/error.h"

/* 1 when every comma-separated item of list is local (libpq multi-host syntax). */
static int all_local(const char *list, char *bad, size_t badlen)
{
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[256];
        if (n >= sizeof(item))
            n = sizeof(item) - 1;
        memcpy(item, p, n);
        item[n] = '\0';
        /* an empty item means the default: a unix socket */
        if (item[0] && !rp_db_host_is_local(item)) {
            snprintf(bad, badlen, "%s", item);
            return 0;
        }
        if (!comma)
            return 1;
        p = comma + 1;
    }
}

/* The value of keyword kw in a parsed conninfo, or NULL when unset or empty. */
static const char *opt_value(const PQconninfoOption *o, const char *kw)
{
    for (; o && o->keyword; o++) {
        if (strcmp(o->keyword, kw) == 0)
            return o->val && *o->val ? o->val : NULL;
    }
    return NULL;
}

static const char *env_value(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int rp_db_restore_guard(const char *dsn, const struct rp_db_opts *opts, char *errbuf, size_t errlen)
{
    if (opts && opts->disposable)
        return 0;
    if (!dsn || !*dsn)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "empty DSN");
    if (strncmp(dsn, "sqlite:", 7) == 0)
        return 0; /* a file on this machine */
    const char *conninfo;
    if (strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0)
        conninfo = dsn;
    else if (strncmp(dsn, "pg:", 3) == 0)
        conninfo = dsn + 3;
    else
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "'%s' is not a DSN", dsn);

    char *perr = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &perr);
    if (!o) {
        int rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "postgres DSN: %s",
                            perr ? perr : "cannot parse");
        PQfreemem(perr);
        return rc;
    }
    int rc = 0;
    char bad[256] = "";
    /* what libpq would use: the DSN first, the environment for what it leaves out */
    const char *service = opt_value(o, "service");
    const char *hostaddr = opt_value(o, "hostaddr");
    const char *host = opt_value(o, "host");
    if (!service)
        service = env_value("PGSERVICE");
    /* libpq fills each keyword the DSN leaves unset from its own variable, independently */
    if (!hostaddr)
        hostaddr = env_value("PGHOSTADDR");
    if (!host)
        host = env_value("PGHOST");
    if (service) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                        "refusing to restore through service '%s': where it points is only "
                        "known after connecting; name a loopback host or a unix socket, or pass "
                        "--disposable",
                        service);
    } else if (hostaddr && !all_local(hostaddr, bad, sizeof(bad))) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                        "refusing to restore: hostaddr %s is not a loopback address (checked "
                        "before connecting); pass --disposable if this database is yours to "
                        "destroy",
                        bad);
    } else if (!hostaddr && host && !all_local(host, bad, sizeof(bad))) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                        "refusing to restore: host %s is not on loopback or a unix socket "
                        "(checked before connecting); pass --disposable if this database is "
                        "yours to destroy",
                        bad);
    }
    PQconninfoFree(o);
    return rc;
}
