// SPDX-License-Identifier: Apache-2.0
/*
 * rr: 1-byte TCP request/response (ping-pong) over one connection (DESIGN §6, reference
 * datapath-trial.md §7.3 `tools/rr.c`). Built by bench/datapath.ts with `gcc -O2` into build/bench/rr.
 *
 *   rr server PORT [ADDR]
 *       Listens on ADDR:PORT (default 0.0.0.0), prints "listening PORT" once ready, then serves
 *       connections one after another: reads 1 byte, writes it back, until the peer closes.
 *   rr client ADDR PORT [N [WARMUP]]
 *       Connects, runs WARMUP untimed transactions (default 1000), then N timed ones (default
 *       20000) and prints one JSON line:
 *       {"n":N,"mean_us":…,"median_us":…,"p99_us":…,"min_us":…,"max_us":…}
 *
 * A transaction is write(1 byte) + read(1 byte), timed with CLOCK_MONOTONIC. TCP_NODELAY on both
 * ends. Every socket operation has a 10 s timeout so a dropped flow fails instead of hanging.
 * Exit status: 0 ok, 1 usage, 2 socket error or timeout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
	fprintf(stderr, "rr: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void set_opts(int fd) {
	int one = 1;
	struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) die("SO_RCVTIMEO");
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) die("SO_SNDTIMEO");
}

static int parse_addr(const char *host, const char *port, struct sockaddr_in *sa) {
	char *end = NULL;
	long p = strtol(port, &end, 10);
	if (!end || *end || p < 1 || p > 65535) return -1;
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)p);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int server(const char *port, const char *host) {
	struct sockaddr_in sa;
	if (parse_addr(host, port, &sa) < 0) {
		fprintf(stderr, "rr: bad address %s:%s\n", host, port);
		return 1;
	}
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0) die("socket");
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
	if (listen(ls, 16) < 0) die("listen");
	printf("listening %s\n", port);
	fflush(stdout);
	for (;;) {
		int c = accept(ls, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR) continue;
			die("accept");
		}
		int one2 = 1;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one2, sizeof one2);
		char b;
		for (;;) {
			ssize_t r = read(c, &b, 1);
			if (r <= 0) break; /* peer closed, reset or error: next connection */
			if (write(c, &b, 1) != 1) break;
		}
		close(c);
	}
}

static int cmp_double(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void transact(int fd) {
	char b = 'x';
	if (write(fd, &b, 1) != 1) die("write");
	ssize_t r = read(fd, &b, 1);
	if (r == 0) {
		errno = ECONNRESET;
		die("read (peer closed)");
	}
	if (r != 1) die(errno == EAGAIN || errno == EWOULDBLOCK ? "read (timeout)" : "read");
}

static int client(const char *host, const char *port, long n, long warmup) {
	struct sockaddr_in sa;
	if (parse_addr(host, port, &sa) < 0 || n < 1 || warmup < 0) {
		fprintf(stderr, "rr: bad arguments\n");
		return 1;
	}
	double *us = malloc(sizeof(double) * (size_t)n);
	if (!us) die("malloc");
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) die("socket");
	set_opts(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die(errno == EINPROGRESS ? "connect (timeout)" : "connect");
	for (long i = 0; i < warmup; i++) transact(fd);
	double sum = 0;
	for (long i = 0; i < n; i++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		transact(fd);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		us[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
		sum += us[i];
	}
	close(fd);
	qsort(us, (size_t)n, sizeof(double), cmp_double);
	long p99 = (long)((double)n * 0.99);
	if (p99 >= n) p99 = n - 1;
	double median = n % 2 ? us[n / 2] : (us[n / 2 - 1] + us[n / 2]) / 2;
	printf("{\"n\":%ld,\"mean_us\":%.3f,\"median_us\":%.3f,\"p99_us\":%.3f,\"min_us\":%.3f,\"max_us\":%.3f}\n", n, sum / (double)n, median,
	       us[p99], us[0], us[n - 1]);
	free(us);
	return 0;
}

int main(int argc, char **argv) {
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 3 && strcmp(argv[1], "server") == 0) return server(argv[2], argc >= 4 ? argv[3] : "0.0.0.0");
	if (argc >= 4 && strcmp(argv[1], "client") == 0)
		return client(argv[2], argv[3], argc >= 5 ? atol(argv[4]) : 20000, argc >= 6 ? atol(argv[5]) : 1000);
	fprintf(stderr, "usage: rr server PORT [ADDR] | rr client ADDR PORT [N [WARMUP]]\n");
	return 1;
}
