/* The processes of bench/ready.sh, one small static program so that the timestamps are taken by
 * the measured processes themselves, at once, with no shell starting up in between:
 *
 *   ready_stamp fd  [FILE]   task a, readiness on fd 3 (s6's notification-fd, trc's `ready: fd 3`)
 *   ready_stamp log [FILE]   task a, readiness as an output line "ready" (trc's `ready: log`)
 *   ready_stamp b   [FILE]   task b, the dependent
 *   ready_stamp reap CMD...  runs CMD as a child subreaper and exits when CMD and all it left
 *                            behind are gone (s6 orphans its s6-svwait; no zombies are left
 *                            to a PID 1 that does not reap)
 *
 * a and b run as `#!` interpreter of their task file (FILE, ignored): the kernel execs this
 * program directly, for s6 and for trc alike. a sleeps $BENCH_DELAY_US (default 20 ms), reads
 * CLOCK_MONOTONIC, writes the newline on fd 3 (or "ready\n" on stdout) and then reports
 * "a <ns>\n" to the FIFO $BENCH_FIFO; it then waits for its stop signal. b reads the clock as the
 * first thing in main() and reports "b <ns>\n". The reports are single writes below PIPE_BUF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(char tag, long long ns) {
    const char *fifo = getenv("BENCH_FIFO");
    char line[64];
    int n = snprintf(line, sizeof line, "%c %lld\n", tag, ns), fd;
    if (!fifo || (fd = open(fifo, O_WRONLY | O_CLOEXEC)) < 0 || write(fd, line, n) != n) {
        perror("ready_stamp: report");
        exit(1);
    }
    close(fd);
}

static int reap(char **argv) {
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};
    for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) perror("ready_stamp: PR_SET_CHILD_SUBREAPER");
    pid_t child = fork();
    if (child < 0) { perror("ready_stamp: fork"); return 1; }
    if (child == 0) {
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    int status = 0;
    for (;;) {
        siginfo_t si;
        if (sigwaitinfo(&set, &si) < 0) continue;
        if (si.si_signo != SIGCHLD) {
            if (child > 0) kill(child, si.si_signo);
            continue;
        }
        for (;;) {
            int st;
            pid_t pid = waitpid(-1, &st, WNOHANG);
            if (pid > 0 && pid == child) {
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                child = 0;
            } else if (pid < 0 && errno == ECHILD) {
                return status; /* CMD and everything it left behind are gone */
            } else if (pid <= 0) {
                break;
            }
        }
    }
}

int main(int argc, char **argv) {
    long long t = now_ns();
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "b")) {
        report('b', t);
        return 0;
    }
    if (!strcmp(mode, "reap") && argc > 2) return reap(argv + 2);
    int fd;
    const char *msg;
    if (!strcmp(mode, "fd")) {
        fd = 3, msg = "\n";
    } else if (!strcmp(mode, "log")) {
        fd = 1, msg = "ready\n";
    } else {
        fprintf(stderr, "usage: ready_stamp fd|log|b [FILE] | reap CMD...\n");
        return 2;
    }
    const char *delay = getenv("BENCH_DELAY_US");
    usleep(delay ? atoi(delay) : 20000);
    size_t len = strlen(msg);
    t = now_ns();
    if (write(fd, msg, len) != (ssize_t)len) {
        perror("ready_stamp: readiness write");
        return 1;
    }
    report('a', t);
    for (;;) pause();
}
