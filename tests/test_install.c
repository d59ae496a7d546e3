/* test_install.c - `make install` into a temporary prefix installs the
 * libraries, only the public mw_*.h headers and a msgwire.pc with which an
 * outside program builds and runs, linked dynamically and statically. */
#include "mw_test.h"

#include <dirent.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char prefix[256];

static int setup(void **state) {
    (void)state;
    snprintf(prefix, sizeof prefix, "/tmp/mw-install-XXXXXX");
    if (!mkdtemp(prefix)) return -1;
    char cmd[1024], out[8192];
    /* The outer make's jobserver variables must not leak into this one. */
    snprintf(cmd, sizeof cmd,
             "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C %s install PREFIX=%s 2>&1",
             MW_SRC_ROOT, prefix);
    int rc = mw_run(cmd, out, sizeof out);
    if (rc != 0) printf("make install failed (%d):\n%s\n", rc, out);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", prefix);
    return mw_run(cmd, NULL, 0) == 0 ? 0 : -1;
}

static void test_install_puts_only_public_headers(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/include/msgwire", prefix);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0, have_clt = 0, have_svc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        n++;
        assert_int_equal(fnmatch("mw_*.h", e->d_name, 0), 0);
        have_clt |= strcmp(e->d_name, "mw_clt.h") == 0;
        have_svc |= strcmp(e->d_name, "mw_svc.h") == 0;
    }
    closedir(d);
    assert_true(n >= 10);
    assert_true(have_clt && have_svc);
}

static void build_and_run(const char *libs_expr, const char *what) {
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd,
             "cd %s && export PKG_CONFIG_PATH=%s/lib/pkgconfig && "
             "cc -std=c11 -Wall -Werror -o app-%s %s/tests/install/app.c "
             "$(pkg-config --cflags msgwire) %s 2>&1 && LD_LIBRARY_PATH=%s/lib ./app-%s 2>&1",
             prefix, prefix, what, MW_SRC_ROOT, libs_expr, prefix, what);
    int rc = mw_run(cmd, out, sizeof out);
    if (rc != 0) printf("%s build/run failed (%d):\n%s\n", what, rc, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "ok"));
}

static void test_outside_program_builds_with_pkg_config_shared(void **state) {
    (void)state;
    build_and_run("$(pkg-config --libs msgwire)", "shared");
}

static void test_outside_program_builds_with_pkg_config_static(void **state) {
    (void)state;
    build_and_run("-Wl,-Bstatic -lmsgwire -Wl,-Bdynamic $(pkg-config --static --libs msgwire | sed 's/-lmsgwire//')",
                  "static");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_puts_only_public_headers),
        cmocka_unit_test(test_outside_program_builds_with_pkg_config_shared),
        cmocka_unit_test(test_outside_program_builds_with_pkg_config_static),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
