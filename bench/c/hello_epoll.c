/* The C reference for the hello and echo benchmarks: one thread, edge-triggered epoll, non-blocking sockets.
 *   hello_epoll hello PORT   HTTP/1.1 keep-alive, a fixed "Hello, World!" response per request head
 *   hello_epoll echo PORT    echoes what it reads
 * Runs until killed (the benchmark script stops it). */
#include "common.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char response[] =
    "HTTP/1.1 200 OK\r\nServer: c\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

struct conn { int fd; size_t have; char buf[16384]; };

static void serve(struct conn *c, int echo) {
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) { close(c->fd); free(c); return; }
        if (n < 0) return;
        if (echo) {
            ssize_t off = 0;
            while (off < n) { ssize_t w = write(c->fd, c->buf + off, (size_t)(n - off)); if (w <= 0) break; off += w; }
            continue;
        }
        c->have += (size_t)n;
        /* Answer every complete head (pipelining); keep the partial rest. */
        char *start = c->buf, *end;
        while ((end = memmem(start, c->have - (size_t)(start - c->buf), "\r\n\r\n", 4)) != NULL) {
            if (write(c->fd, response, sizeof response - 1) < 0) break;
            start = end + 4;
        }
        c->have -= (size_t)(start - c->buf);
        memmove(c->buf, start, c->have);
        if (c->have == sizeof c->buf) c->have = 0;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s hello|echo PORT\n", argv[0]); return 2; }
    int echo = strcmp(argv[1], "echo") == 0;
    raise_fd_limit();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) { perror("listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = { .events = EPOLLIN | EPOLLET, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
            } else {
                serve(events[i].data.ptr, echo);
            }
        }
    }
}
