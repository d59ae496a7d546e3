/* replay_main.c - runs a libFuzzer target without libFuzzer: every file in
 * the corpus directories (or single files) named on the command line is
 * passed once to LLVMFuzzerTestOneInput, in name order. With no arguments
 * the target's committed corpus is replayed: MW_SRC_ROOT/tests/fuzz/corpus/
 * <name>, where the binary is called fuzz_<name>.
 *
 * `make test` runs these binaries (built with the normal CC under ASan and
 * UBSan) as regression checks. Output follows cmocka's summary lines so
 * tests/run.sh counts each target as one test; an empty or missing corpus
 * fails (a replay of nothing proves nothing). A crash names the input. */
#include "fuzz.h"

#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define HAVE_DEATH_CALLBACK 1
#endif
#endif

#ifndef MW_SRC_ROOT
#define MW_SRC_ROOT "."
#endif

static const char *current; /* the input being run, for crash reports */

static void say_current(void) {
    if (!current) return;
    static const char pre[] = "\n!! crashing input: ";
    ssize_t w = write(2, pre, sizeof pre - 1);
    w = write(2, current, strlen(current));
    w = write(2, "\n", 1);
    (void)w;
}

static void on_signal(int sig) {
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* An exact-size heap copy, as libFuzzer gives, so an over-read is caught. */
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    current = path;
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    current = NULL;
    free(buf);
    return 0;
}

static int only_files(const struct dirent *d) { return d->d_name[0] != '.'; }

/* Runs every regular file in dir; returns how many, or -1. */
static long run_dir(const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, only_files, alphasort);
    if (n < 0) {
        fprintf(stderr, "cannot read directory %s\n", dir);
        return -1;
    }
    long count = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) < 0) count = -1;
            else if (count >= 0) count++;
        }
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv) {
    const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    const char *name = strncmp(base, "fuzz_", 5) == 0 ? base + 5 : base;
    char def[4096];
    snprintf(def, sizeof def, "%s/tests/fuzz/corpus/%s", MW_SRC_ROOT, name);
    char *def_argv[] = {argv[0], def, NULL};
    if (argc < 2) {
        argc = 2;
        argv = def_argv;
    }
#ifdef HAVE_DEATH_CALLBACK
    __sanitizer_set_death_callback(say_current);
#endif
    signal(SIGABRT, on_signal);
    signal(SIGSEGV, on_signal);
    printf("[==========] Running 1 test(s).\n[ RUN      ] fuzz_%s_corpus\n", name);
    fflush(stdout);
    long total = 0;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        long n = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode) ? run_dir(argv[i])
                                                                : (run_file(argv[i]) == 0 ? 1 : -1);
        if (n < 0) bad = 1;
        else total += n;
        printf("replayed %ld input(s) from %s\n", n < 0 ? 0 : n, argv[i]);
    }
    if (total == 0) bad = 1;
    printf("[ %s ] fuzz_%s_corpus\n[==========] 1 test(s) run.\n", bad ? " FAILED " : "      OK", name);
    printf(bad ? "[  FAILED  ] 1 test(s).\n" : "[  PASSED  ] 1 test(s).\n");
    return bad;
}
