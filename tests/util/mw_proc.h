/* mw_proc.h - child processes for tests that run the example programs:
 * started with fork/execv (PR_SET_PDEATHSIG: killed if the test dies), their
 * stdout and stderr captured through pipes, every wait a poll() on those
 * pipes and the child's pidfd with a deadline (nothing sleeps), always
 * reaped, and signalled only by their own PID.
 *
 * The processes live in a table here (a failed test's longjmp leaves no
 * dangling pointer): a wait on one also drains the pipes of the others (none
 * blocks on a full pipe meanwhile), and mw_proc_release_all in a teardown
 * kills and reaps whatever a failed test left running. Not thread-safe: one
 * test thread. */
#ifndef MW_PROC_H
#define MW_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct mw_proc {
    char name[32];
    pid_t pid;    /* > 0 until reaped */
    int pidfd;    /* -1 when the kernel has none */
    int fd[2];    /* stdout, stderr read ends; -1 at EOF */
    char *out[2]; /* captured text, NUL-terminated (never NULL after start) */
    size_t len[2], cap[2];
    int status;   /* wait status once reaped */
    bool reaped, used;
} mw_proc_t;

/* Starts argv[0] with argv. Fails the test if it cannot. */
mw_proc_t *mw_proc_start(const char *name, char *const argv[]);
/* Reads what every registered process has written and reaps those that
 * exited, waiting at most timeout_ms for something to happen. */
void mw_proc_pump(int timeout_ms);
/* Waits until p's stdout (k = 0) or stderr (k = 1) holds needle after byte
 * offset from, or timeout_ms passes. */
bool mw_proc_wait_text(mw_proc_t *p, int k, size_t from, const char *needle, int timeout_ms);
/* Waits until p exited (and its pipes reached EOF). */
bool mw_proc_wait_exit(mw_proc_t *p, int timeout_ms);
/* Sends sig (if still running) and waits for the exit: the exit code,
 * 128 + signal when killed by one, or -1 on timeout (then it is SIGKILLed
 * and reaped). */
int mw_proc_stop(mw_proc_t *p, int sig, int timeout_ms);
/* The exit code of a reaped process (128 + signal when killed by one). */
int mw_proc_exit_code(const mw_proc_t *p);
/* SIGKILLs a process still running, reaps it, frees its buffers and its
 * slot. NULL is a no-op. */
void mw_proc_release(mw_proc_t *p);
/* Releases every process (for teardowns). Returns 0 (cmocka's set-up type). */
int mw_proc_release_all(void **state);

#endif
