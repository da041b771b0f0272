/*
 * openloop: an open-loop HTTP/1.1 load generator for bench/overload.py.
 *
 *   openloop HOST PORT RATE DURATION TIMEOUT MAX_CONNS REQUESTS_FILE OUT_FILE
 *
 * Request i is due at start + i/RATE whatever the server does; its latency is counted from
 * then (no coordinated omission). Connections are kept alive and reused; a new one is
 * opened when none is idle, up to MAX_CONNS; past that, due requests wait for a connection
 * (still timed from when they were due). A request not answered within TIMEOUT seconds
 * closes its connection, as a caller that gives up does. Python cannot offer several times
 * a fast server's capacity from one core; this does, with one thread and epoll.
 *
 * REQUESTS_FILE: complete requests, each preceded by its length (uint32, little endian),
 * used in turn. OUT_FILE: one 24-byte record per request: due (double, seconds from start),
 * latency (double, seconds), status (int32: HTTP status, 0 timeout, -1 connect error,
 * -2 closed by the server), retry-after present (int32). On stdout, one line of JSON with
 * the client's own health (how late it sent, connections opened).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, CONNECTING, BUSY, DEAD };

typedef struct {
    int fd;
    int state;
    long req;       /* request index in flight, -1 none */
    double due;
    char *buf;
    size_t len, cap;
    size_t sent, want; /* bytes of the request written so far */
} conn_t;

typedef struct {
    double due, latency;
    int32_t status, retry;
} record_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char **reqs;
static uint32_t *req_len;
static long nreqs;
static record_t *out;
static long done_count;
static conn_t *conns;
static int nconns, max_conns, open_conns;
static long *waiting; /* queue of request indices waiting for a connection */
static long wait_head, wait_tail;
static double *due_of;
static int epfd;
static struct sockaddr_in addr;
static double start_t, timeout_s;
static long opened;

static void record(long i, double due, double t, int status, int retry) {
    out[i].due = due - start_t;
    out[i].latency = t - due;
    out[i].status = status;
    out[i].retry = retry;
    done_count++;
}

static void conn_close(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        open_conns--;
    }
    c->fd = -1;
    c->state = DEAD;
    c->len = 0;
    c->req = -1;
}

static void try_write(conn_t *c) {
    while (c->sent < c->want) {
        ssize_t n = write(c->fd, reqs[c->req] + c->sent, c->want - c->sent);
        if (n < 0) {
            if (errno == EAGAIN) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                return;
            }
            record(c->req, c->due, now(), -2, 0);
            conn_close(c);
            return;
        }
        c->sent += (size_t)n;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void send_on(conn_t *c, long i) {
    c->state = BUSY;
    c->req = i;
    c->due = due_of[i];
    c->sent = 0;
    c->want = req_len[i];
    try_write(c);
}

static conn_t *new_conn(void) {
    conn_t *c = NULL;
    for (int k = 0; k < nconns; k++)
        if (conns[k].state == DEAD) { c = &conns[k]; break; }
    if (!c) {
        if (nconns >= max_conns) return NULL;
        c = &conns[nconns++];
        c->cap = 65536;
        c->buf = malloc(c->cap);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->len = 0;
    c->req = -1;
    c->state = CONNECTING;
    open_conns++;
    opened++;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        conn_close(c);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    return c;
}

static void ready(conn_t *c) {
    if (wait_head < wait_tail) {
        send_on(c, waiting[wait_head++]);
    } else {
        c->state = IDLE;
    }
}

static void submit(long i) {
    for (int k = 0; k < nconns; k++) {
        if (conns[k].state == IDLE) { send_on(&conns[k], i); return; }
    }
    waiting[wait_tail++] = i;
    int pending = 0;
    for (int k = 0; k < nconns; k++) pending += conns[k].state == CONNECTING;
    if (pending < (wait_tail - wait_head)) new_conn();
}

/* Parse as many complete responses as the buffer holds; the server answers in order. */
static void parse(conn_t *c) {
    for (;;) {
        if (c->len < 12) return;
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return;
        size_t head = (size_t)(end - c->buf);
        long length = 0;
        int retry = 0, close_after = 0;
        for (char *p = c->buf; p < end;) {
            char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
            if (!eol) break;
            if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0) length = atol(p + 15);
            if (eol - p > 12 && strncasecmp(p, "retry-after:", 12) == 0) retry = 1;
            if (eol - p >= 17 && strncasecmp(p, "connection: close", 17) == 0) close_after = 1;
            p = eol + 2;
        }
        size_t total = head + 4 + (size_t)length;
        if (c->len < total) return;
        int status = atoi(c->buf + 9);
        if (c->req >= 0) record(c->req, c->due, now(), status, retry);
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
        c->req = -1;
        if (close_after) {
            conn_close(c);
            if (wait_head < wait_tail) new_conn();
            return;
        }
        ready(c);
        if (c->state != IDLE && c->state != BUSY) return;
    }
}

static void on_read(conn_t *c) {
    for (;;) {
        if (c->cap - c->len < 16384) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EAGAIN) break;
        /* closed (or reset) by the server */
        parse(c);
        if (c->req >= 0) record(c->req, c->due, now(), -2, 0);
        conn_close(c);
        if (wait_head < wait_tail) new_conn();
        return;
    }
    parse(c);
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    struct stat st;
    fstat(fileno(f), &st);
    void *data = malloc((size_t)st.st_size);
    if (fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) { perror("read"); exit(2); }
    fclose(f);
    *size = (size_t)st.st_size;
    return data;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: openloop HOST PORT RATE DURATION TIMEOUT MAX_CONNS REQUESTS OUT\n");
        return 2;
    }
    double rate = atof(argv[3]), duration = atof(argv[4]);
    timeout_s = atof(argv[5]);
    max_conns = atoi(argv[6]);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);

    size_t size;
    char *data = read_file(argv[7], &size);
    long templates = 0;
    for (size_t off = 0; off + 4 <= size; templates++) {
        uint32_t n;
        memcpy(&n, data + off, 4);
        off += 4 + n;
    }
    long total = (long)(rate * duration);
    reqs = malloc(sizeof(char *) * (size_t)total);
    req_len = malloc(sizeof(uint32_t) * (size_t)total);
    char **tpl = malloc(sizeof(char *) * (size_t)templates);
    uint32_t *tpl_len = malloc(sizeof(uint32_t) * (size_t)templates);
    size_t off = 0;
    for (long k = 0; k < templates; k++) {
        memcpy(&tpl_len[k], data + off, 4);
        tpl[k] = data + off + 4;
        off += 4 + tpl_len[k];
    }
    for (long i = 0; i < total; i++) {
        reqs[i] = tpl[i % templates];
        req_len[i] = tpl_len[i % templates];
    }
    nreqs = total;
    out = calloc((size_t)total, sizeof(record_t));
    waiting = malloc(sizeof(long) * (size_t)total);
    due_of = malloc(sizeof(double) * (size_t)total);
    conns = calloc((size_t)max_conns, sizeof(conn_t));
    for (int k = 0; k < max_conns; k++) conns[k].fd = -1, conns[k].state = DEAD;
    nconns = 0;
    epfd = epoll_create1(0);

    start_t = now() + 0.05;
    double interval = 1.0 / rate, max_lag = 0, finish = start_t + duration + timeout_s + 1;
    long next = 0;
    struct epoll_event events[512];
    while (done_count < total) {
        double t = now();
        if (t > finish) break;
        while (next < total && start_t + next * interval <= t) {
            double due = start_t + next * interval;
            if (t - due > max_lag) max_lag = t - due;
            due_of[next] = due;
            submit(next);
            next++;
        }
        int wait_ms = 1;
        if (next >= total) wait_ms = 10;
        int n = epoll_wait(epfd, events, 512, wait_ms);
        for (int k = 0; k < n; k++) {
            conn_t *c = events[k].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    conn_close(c);
                    if (wait_head < wait_tail) {
                        long i = waiting[wait_head++];
                        record(i, due_of[i], now(), -1, 0);
                    }
                    continue;
                }
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                ready(c);
                continue;
            }
            if (events[k].events & EPOLLOUT && c->state == BUSY && c->sent < c->want) try_write(c);
            if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_read(c);
        }
        /* timeouts: the caller gives up and hangs up */
        t = now();
        for (int k = 0; k < nconns; k++) {
            conn_t *c = &conns[k];
            if (c->state == BUSY && c->req >= 0 && t - c->due > timeout_s) {
                record(c->req, c->due, t, 0, 0);
                c->req = -1;
                conn_close(c);
                if (wait_head < wait_tail) new_conn();
            }
        }
        while (wait_head < wait_tail && t - due_of[waiting[wait_head]] > timeout_s) {
            long i = waiting[wait_head++];
            record(i, due_of[i], t, 0, 0);
        }
    }
    FILE *f = fopen(argv[8], "wb");
    fwrite(out, sizeof(record_t), (size_t)total, f);
    fclose(f);
    printf("{\"sent\": %ld, \"answered\": %ld, \"max_lag_s\": %.6f, \"connections_opened\": %ld}\n",
           next, done_count, max_lag, opened);
    return 0;
}
