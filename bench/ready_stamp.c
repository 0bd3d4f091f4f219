/* The processes of bench/ready.sh, one small static program so that the timestamps are taken by
 * the measured processes themselves, at once, with no shell starting up in between:
 *
 *   ready_stamp fd  [FILE]   task a, readiness on fd 3 (s6's notification-fd, trc's `ready: fd 3`)
 *   ready_stamp log [FILE]   task a, readiness as an output line "ready" (trc's `ready: log`)
 *   ready_stamp notify [FILE] task a, readiness as one sd_notify datagram "READY=1" on
 *                            $NOTIFY_SOCKET (trc's `ready: notify`; a path, or @ abstract)
 *   ready_stamp b   [FILE]   task b, the dependent
 *   ready_stamp pair A B     the floor: no supervisor, only what any one must do: runs A with
 *                            a pipe on fd 3, reads its newline, then forks and execs B; exits
 *                            when B has, after stopping A with SIGTERM
 *   ready_stamp reap CMD...  runs CMD as a child subreaper and exits when CMD and all it left
 *                            behind are gone (s6 orphans its s6-svwait; no zombies are left
 *                            to a PID 1 that does not reap)
 *
 * a and b run as `#!` interpreter of their task file (FILE, ignored): the kernel execs this
 * program directly, for s6 and for trc alike. a sleeps $BENCH_DELAY_US (default 20 ms), reads
 * CLOCK_MONOTONIC, writes the newline on fd 3 (or "ready\n" on stdout, or sends READY=1) and then reports
 * "a <ns>\n" to the FIFO $BENCH_FIFO (opened before, its stop signals blocked until then: the
 * group may be stopped at once); it then waits for its stop signal. b reads the clock as the
 * first thing in main() and reports "b <ns>\n". The reports are single writes below PIPE_BUF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int report_fd = -1;

static void report_open(void) {
    const char *fifo = getenv("BENCH_FIFO");
    if (!fifo || (report_fd = open(fifo, O_WRONLY | O_CLOEXEC)) < 0) {
        perror("ready_stamp: BENCH_FIFO");
        exit(1);
    }
}

static void report(char tag, long long ns) {
    char line[64];
    int n = snprintf(line, sizeof line, "%c %lld\n", tag, ns);
    if (report_fd < 0) report_open();
    if (write(report_fd, line, n) != n) {
        perror("ready_stamp: report");
        exit(1);
    }
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

static int pair(char *a, char *b) {
    int p[2];
    if (pipe(p) < 0) { perror("ready_stamp: pipe"); return 1; }
    pid_t pa = fork();
    if (pa == 0) {
        close(p[0]);
        if (p[1] != 3) { dup2(p[1], 3); close(p[1]); }
        execl(a, a, (char *)NULL);
        perror(a);
        _exit(127);
    }
    close(p[1]);
    char c;
    ssize_t n;
    while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR) {}
    int status = 1;
    if (n == 1) {
        pid_t pb = fork();
        if (pb == 0) {
            execl(b, b, (char *)NULL);
            perror(b);
            _exit(127);
        }
        int st;
        if (pb > 0 && waitpid(pb, &st, 0) == pb && WIFEXITED(st)) status = WEXITSTATUS(st);
    } else {
        fprintf(stderr, "ready_stamp: %s did not become ready\n", a);
    }
    if (pa > 0) {
        kill(pa, SIGTERM);
        waitpid(pa, NULL, 0);
    }
    return status;
}

/* A datagram socket connected to $NOTIFY_SOCKET (made before the delay: only the send is
 * timed, as a service that has its socket ready sends READY=1). */
static int notify_socket(void) {
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!path || !*path || strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "ready_stamp: no usable NOTIFY_SOCKET\n");
        exit(1);
    }
    strcpy(addr.sun_path, path);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, len) < 0) {
        perror("ready_stamp: NOTIFY_SOCKET");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv) {
    long long t = now_ns();
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "b")) {
        report('b', t);
        return 0;
    }
    if (!strcmp(mode, "reap") && argc > 2) return reap(argv + 2);
    if (!strcmp(mode, "pair") && argc == 4) return pair(argv[2], argv[3]);
    int fd;
    const char *msg;
    if (!strcmp(mode, "fd")) {
        fd = 3, msg = "\n";
    } else if (!strcmp(mode, "log")) {
        fd = 1, msg = "ready\n";
    } else if (!strcmp(mode, "notify")) {
        fd = notify_socket(), msg = "READY=1";
    } else {
        fprintf(stderr, "usage: ready_stamp fd|log|notify|b [FILE] | pair A B | reap CMD...\n");
        return 2;
    }
    report_open();
    const char *delay = getenv("BENCH_DELAY_US");
    usleep(delay ? atoi(delay) : 20000);
    /* The stop signal that the ready write may bring at once (b starts, exits, the group ends)
     * waits until a has reported. */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop, &old);
    size_t len = strlen(msg);
    t = now_ns();
    if (write(fd, msg, len) != (ssize_t)len) {
        perror("ready_stamp: readiness write");
        return 1;
    }
    report('a', t);
    sigprocmask(SIG_SETMASK, &old, NULL);
    for (;;) pause();
}
