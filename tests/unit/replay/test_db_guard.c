/*
 * The restore guard before any connection (replay/db_guard.c): which DSNs a
 * restore may reach, judged from the DSN and the libpq environment alone.
 * Nothing here connects: the non-local addresses below are never dialled.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "db.h"
#include "h2replay/error.h"

static int guard(const char *dsn)
{
    char err[512] = "";
    int rc = rp_db_restore_guard(dsn, NULL, err, sizeof(err));
    if (rc)
        CHECK(strstr(err, "refusing") != NULL || strstr(err, "DSN") != NULL);
    return rc;
}

int main(void)
{
    unsetenv("PGHOST");
    unsetenv("PGHOSTADDR");
    unsetenv("PGSERVICE");
    /* local: loopback, unix sockets, the libpq default (a socket), SQLite files */
    CHECK_EQ_INT(guard("sqlite:/tmp/x.sqlite"), 0);
    CHECK_EQ_INT(guard("postgresql://postgres@127.0.0.1:5432/headscale"), 0);
    CHECK_EQ_INT(guard("postgres://postgres@localhost/headscale"), 0);
    CHECK_EQ_INT(guard("postgresql://postgres@[::1]:5432/hs"), 0);
    CHECK_EQ_INT(guard("postgresql:///headscale?host=/run/postgresql"), 0);
    CHECK_EQ_INT(guard("pg:host=/tmp/pg dbname=headscale"), 0);
    CHECK_EQ_INT(guard("pg:dbname=headscale"), 0);
    CHECK_EQ_INT(guard("pg:host=127.0.0.1,/tmp dbname=hs"), 0);
    /* not local: refused before anything connects */
    CHECK_EQ_INT(guard("postgresql://user@10.1.2.3/db"), H2R_ERR_ARG);
    CHECK_EQ_INT(guard("postgresql://user@db.example.com:5432/db"), H2R_ERR_ARG);
    CHECK_EQ_INT(guard("pg:host=127.0.0.1,10.0.0.7 dbname=hs"), H2R_ERR_ARG);
    CHECK_EQ_INT(guard("pg:host=localhost hostaddr=192.168.1.9 dbname=hs"), H2R_ERR_ARG);
    CHECK_EQ_INT(guard("pg:service=prod"), H2R_ERR_ARG);
    CHECK_EQ_INT(guard("pg:host=10.1.2.3 hostaddr=127.0.0.1 dbname=hs"), 0); /* dials hostaddr */
    CHECK_EQ_INT(guard("pg:this is not a conninfo"), H2R_ERR_ARG);
    CHECK_EQ_INT(guard("mysql://x"), H2R_ERR_ARG);
    /* --disposable lets anything through */
    struct rp_db_opts o;
    rp_db_opts_init(&o);
    o.disposable = 1;
    char err[256];
    CHECK_EQ_INT(rp_db_restore_guard("postgresql://user@10.1.2.3/db", &o, err, sizeof(err)), 0);
    /* what the DSN leaves out comes from the environment, as libpq would take it */
    setenv("PGHOST", "10.9.9.9", 1);
    CHECK_EQ_INT(guard("pg:dbname=headscale"), H2R_ERR_ARG);
    CHECK_EQ_INT(guard("pg:host=/tmp dbname=headscale"), 0);
    unsetenv("PGHOST");
    setenv("PGHOSTADDR", "10.9.9.9", 1);
    CHECK_EQ_INT(guard("pg:host=/tmp dbname=headscale"), H2R_ERR_ARG);
    unsetenv("PGHOSTADDR");
    setenv("PGSERVICE", "prod", 1);
    CHECK_EQ_INT(guard("postgresql://postgres@127.0.0.1/hs"), H2R_ERR_ARG);
    unsetenv("PGSERVICE");
    return check_summary("test_db_guard");
}
