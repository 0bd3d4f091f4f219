/* A tiny static demo program for the container image (no libc needed in the image).
 *
 *   demo web [PORT]      an HTTP server on PORT (default 8080): 200 on /healthz and /,
 *                        404 elsewhere; logs "listening on PORT" once it listens
 *   demo worker [SECS]   prints a line every SECS seconds (default 5)
 *
 * Without arguments the mode is the last part of its name after a '.', so a symlink
 * trc.d/async.worker -> /app/demo runs the worker.  Build: gcc -static -O2 -o demo demo.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int web(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 64) < 0) {
        fprintf(stderr, "demo: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    printf("listening on %d (uid %d, gid %d)\n", port, (int)getuid(), (int)getgid());
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            fprintf(stderr, "demo: accept: %s\n", strerror(errno));
            return 1;
        }
        struct timeval tv = {.tv_sec = 2};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        char req[1024], path[256] = "", resp[256];
        ssize_t n = recv(c, req, sizeof req - 1, 0);
        if (n > 0) {
            req[n] = 0;
            sscanf(req, "GET %255s", path);
        }
        int ok = !strcmp(path, "/healthz") || !strcmp(path, "/");
        const char *body = ok ? "ok\n" : "not found\n";
        int len = snprintf(resp, sizeof resp,
                           "HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                           "Connection: close\r\n\r\n%s",
                           ok ? "200 OK" : "404 Not Found", strlen(body), body);
        if (send(c, resp, len, MSG_NOSIGNAL) < 0) { /* the client went away: nothing to do */ }
        close(c);
    }
}

_Noreturn static void worker(int secs) {
    for (unsigned long n = 1;; n++) {
        printf("tick %lu (uid %d)\n", n, (int)getuid());
        fflush(stdout);
        sleep(secs);
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : argv[0];
    if (argc == 1) {  /* trc.d/async.worker -> "worker" */
        const char *dot = strrchr(mode, '.'), *slash = strrchr(mode, '/');
        mode = dot ? dot + 1 : slash ? slash + 1 : mode;
    }
    int arg = argc > 2 ? atoi(argv[2]) : 0;
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(mode, "web")) return web(arg > 0 && arg < 65536 ? arg : 8080);
    if (!strcmp(mode, "worker")) worker(arg > 0 ? arg : 5);
    fprintf(stderr, "usage: demo web [PORT] | demo worker [SECONDS]\n");
    return 2;
}
