/* test_install.c - `make install` into a temporary prefix installs the
 * libraries, only the public mw_*.h headers and a msgwire.pc with which an
 * outside program builds and runs, linked dynamically and statically, using
 * the README's own command lines (pkg-config, and the rpath or
 * LD_LIBRARY_PATH a custom prefix needs); `ldconfig` runs only for a live
 * install as root; `make uninstall` leaves no file behind.
 *
 * Layout: /tmp/mw-install-XXXXXX/{prefix,work,stage}; programs are built in
 * work/, never inside the prefix, so uninstall can be checked exactly. */
#include "mw_test.h"

#include <dirent.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char root[64], prefix[128], work[128];

/* `make <args>` in the source tree; the outer make's jobserver variables
 * must not leak into this one. Output into out. */
static int run_make(const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C %s %s 2>&1", MW_SRC_ROOT, args);
    return mw_run(cmd, out, cap);
}

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/mw-install-XXXXXX");
    if (!mkdtemp(root)) return -1;
    snprintf(prefix, sizeof prefix, "%s/prefix", root);
    snprintf(work, sizeof work, "%s/work", root);
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/tests/install/app.c %s/", work, MW_SRC_ROOT, work);
    if (mw_run(cmd, NULL, 0) != 0) return -1;
    /* LDCONFIG leaves a mark instead of touching the system's cache. */
    snprintf(cmd, sizeof cmd, "install PREFIX=%s LDCONFIG='touch %s/ldconfig-ran'", prefix, root);
    int rc = run_make(cmd, out, sizeof out);
    if (rc != 0) printf("make install failed (%d):\n%s\n", rc, out);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return mw_tmpdir_remove(root);
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

/* The nth (0-based) line of README.md that starts with `start`, verbatim. */
static void readme_line(const char *start, int nth, char *out, size_t cap) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/README.md", MW_SRC_ROOT);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        if (strncmp(line, start, strlen(start)) == 0 && nth-- == 0) found = true;
    fclose(f);
    if (!found) fail_msg("README.md has no line %d starting with \"%s\"", nth, start);
    line[strcspn(line, "\n")] = '\0';
    snprintf(out, cap, "%s", line);
}

/* Runs sh -c script in work/ with PKG_CONFIG_PATH pointing at the prefix and
 * no LD_LIBRARY_PATH unless the script sets one. Exit status; output in out. */
static int in_work(const char *script, char *out, size_t cap) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && unset LD_LIBRARY_PATH && export PKG_CONFIG_PATH=%s/lib/pkgconfig && { %s ; } 2>&1",
             work, prefix, script);
    return mw_run(cmd, out, cap);
}

/* A libmsgwire.so.0 the loader would find without help (a live install on
 * this machine) makes "does not start without an rpath" untestable. */
static bool system_has_msgwire(void) {
    return mw_run("ldconfig -p 2>/dev/null | grep -q 'libmsgwire\\.so\\.0'", NULL, 0) == 0;
}

/* The README's link line with the rpath gives a program that starts as is. */
static void test_readme_line_with_rpath_builds_a_program_that_starts(void **state) {
    (void)state;
    char line[1024], script[2048], out[8192];
    readme_line("cc app.c $(pkg-config --cflags --libs msgwire) -Wl,-rpath", 0, line, sizeof line);
    snprintf(script, sizeof script, "rm -f a.out && %s && ./a.out", line);
    int rc = in_work(script, out, sizeof out);
    if (rc != 0 || !strstr(out, "ok")) fail_msg("`%s` then ./a.out: status %d:\n%s", line, rc, out);
}

/* The README's plain link line: the program needs LD_LIBRARY_PATH (as the
 * README says) and starts with it. */
static void test_readme_line_without_rpath_starts_with_ld_library_path(void **state) {
    (void)state;
    char line[1024], script[2048], out[8192];
    readme_line("cc app.c $(pkg-config --cflags --libs msgwire)", 0, line, sizeof line);
    assert_null(strstr(line, "rpath"));
    snprintf(script, sizeof script, "rm -f a.out && %s", line);
    int rc = in_work(script, out, sizeof out);
    if (rc != 0) fail_msg("`%s`: status %d:\n%s", line, rc, out);
    if (!system_has_msgwire()) {
        rc = in_work("./a.out", out, sizeof out);
        if (rc == 0 || !strstr(out, "libmsgwire.so.0"))
            fail_msg("without an rpath or LD_LIBRARY_PATH: status %d, want a loader error:\n%s", rc, out);
    }
    snprintf(script, sizeof script, "LD_LIBRARY_PATH=%s/lib ./a.out", prefix);
    rc = in_work(script, out, sizeof out);
    if (rc != 0 || !strstr(out, "ok")) fail_msg("with LD_LIBRARY_PATH: status %d:\n%s", rc, out);
}

static void test_outside_program_builds_with_pkg_config_static(void **state) {
    (void)state;
    char out[8192];
    int rc = in_work("rm -f app-static && cc -std=c11 -Wall -Werror -o app-static app.c "
                     "$(pkg-config --cflags msgwire) -Wl,-Bstatic -lmsgwire -Wl,-Bdynamic "
                     "$(pkg-config --static --libs msgwire | sed 's/-lmsgwire//') && ./app-static",
                     out, sizeof out);
    if (rc != 0 || !strstr(out, "ok")) fail_msg("static build/run: status %d:\n%s", rc, out);
}

static bool exists(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* ldconfig runs after a live install (no DESTDIR) as root, and never for a
 * staged install (DESTDIR), which lands entirely under DESTDIR. */
static void test_install_runs_ldconfig_only_live_as_root(void **state) {
    (void)state;
    assert_int_equal(exists(root, "ldconfig-ran"), getuid() == 0);
    char args[1024], out[8192];
    snprintf(args, sizeof args, "install PREFIX=/usr/local DESTDIR=%s/stage LDCONFIG='touch %s/staged-ran'", root, root);
    int rc = run_make(args, out, sizeof out);
    if (rc != 0) fail_msg("make install DESTDIR=: status %d:\n%s", rc, out);
    assert_false(exists(root, "staged-ran"));
    char stage[256];
    snprintf(stage, sizeof stage, "%s/stage/usr/local", root);
    assert_true(exists(stage, "lib/libmsgwire.so.0"));
    assert_true(exists(stage, "lib/pkgconfig/msgwire.pc"));
    assert_true(exists(stage, "include/msgwire/mw_clt.h"));
    /* and the staged uninstall empties the stage */
    snprintf(args, sizeof args, "uninstall PREFIX=/usr/local DESTDIR=%s/stage LDCONFIG='touch %s/staged-ran'", root,
             root);
    rc = run_make(args, out, sizeof out);
    if (rc != 0) fail_msg("make uninstall DESTDIR=: status %d:\n%s", rc, out);
    assert_false(exists(root, "staged-ran"));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "find %s/stage ! -type d", root);
    rc = mw_run(cmd, out, sizeof out);
    assert_int_equal(rc, 0);
    if (out[0]) fail_msg("left behind by make uninstall DESTDIR=:\n%s", out);
}

/* Last (it empties the prefix): uninstall removes every file and link that
 * install put, and msgwire's own include directory. */
static void test_uninstall_removes_everything_install_put(void **state) {
    (void)state;
    char cmd[512], out[8192];
    snprintf(cmd, sizeof cmd, "find %s ! -type d | wc -l", prefix);
    assert_int_equal(mw_run(cmd, out, sizeof out), 0);
    assert_true(atoi(out) >= 14); /* 3 library files, the .pc, the headers */
    snprintf(cmd, sizeof cmd, "uninstall PREFIX=%s LDCONFIG=", prefix);
    int rc = run_make(cmd, out, sizeof out);
    if (rc != 0) fail_msg("make uninstall: status %d:\n%s", rc, out);
    snprintf(cmd, sizeof cmd, "find %s ! -type d", prefix);
    assert_int_equal(mw_run(cmd, out, sizeof out), 0);
    if (out[0]) fail_msg("left behind by make uninstall:\n%s", out);
    assert_false(exists(prefix, "include/msgwire"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_puts_only_public_headers),
        cmocka_unit_test(test_readme_line_with_rpath_builds_a_program_that_starts),
        cmocka_unit_test(test_readme_line_without_rpath_starts_with_ld_library_path),
        cmocka_unit_test(test_outside_program_builds_with_pkg_config_static),
        cmocka_unit_test(test_install_runs_ldconfig_only_live_as_root),
        cmocka_unit_test(test_uninstall_removes_everything_install_put),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
