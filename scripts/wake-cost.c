/* The CPU a process pays to wake another one on a different CPU, and to be
 * woken itself, on this machine (scripts/wake-cost.sh runs it).
 *
 * Two processes, pinned to CPU 0 and CPU 1 (or both to CPU 0), bounce one
 * byte over a Unix socket pair N times. Each side either blocks in read() (it
 * sleeps and must be woken) or spins on a non-blocking recv() (it never
 * sleeps, so writing to it wakes nothing). The CPU 0 side reports its wall time and its own CPU
 * time (getrusage: user + system) per round trip.
 *
 * On bare metal the four cases differ by a few microseconds. In a virtual
 * machine, waking a sleeping vCPU sends an inter-processor interrupt, which
 * traps to the hypervisor: the writer pays for it. sluice's CPU per record
 * depends on how often it wakes its peers (nghttpd, nginx, XDR), and this
 * probe prices one such wake. perf/RESULTS.md has the figures.
 *
 * With both on CPU 0 and both blocking, each write wakes a process on the
 * writer's own CPU: no interrupt crosses CPUs, and the difference from the
 * two-CPU case is what the hypervisor charges for the cross-CPU wake.
 *
 * Usage: wake-cost N MY_SPIN PEER_SPIN [PEER_CPU]  (spin: 1 = never sleeps;
 * PEER_CPU 1 by default)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        perror("wake-cost: sched_setaffinity");
        exit(2);
    }
}

static double cpu_seconds(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
           r.ru_stime.tv_usec / 1e6;
}

static void take(int fd, char *b, int spin) {
    if (!spin) {
        if (read(fd, b, 1) != 1) {
            perror("wake-cost: read");
            exit(2);
        }
        return;
    }
    for (;;) {
        ssize_t n = recv(fd, b, 1, MSG_DONTWAIT);
        if (n == 1) return;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            perror("wake-cost: recv");
            exit(2);
        }
    }
}

static void give(int fd, char *b) {
    if (write(fd, b, 1) != 1) {
        perror("wake-cost: write");
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: wake-cost N MY_SPIN PEER_SPIN [PEER_CPU]\n");
        return 2;
    }
    long n = atol(argv[1]);
    int my_spin = atoi(argv[2]), peer_spin = atoi(argv[3]);
    int peer_cpu = argc == 5 ? atoi(argv[4]) : 1;
    if ((my_spin || peer_spin) && peer_cpu == 0) {
        fprintf(stderr, "wake-cost: a spinning side needs a CPU of its own\n");
        return 2;
    }
    int sp[2];
    char b = 0;
    if (n <= 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
        fprintf(stderr, "wake-cost: N must be positive and a socket pair possible\n");
        return 2;
    }
    pid_t peer = fork();
    if (peer < 0) {
        perror("wake-cost: fork");
        return 2;
    }
    if (peer == 0) {
        pin(peer_cpu);
        for (long i = 0; i < n; i++) {
            take(sp[1], &b, peer_spin);
            give(sp[1], &b);
        }
        return 0;
    }
    pin(0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double c0 = cpu_seconds();
    for (long i = 0; i < n; i++) {
        give(sp[0], &b);
        take(sp[0], &b, my_spin);
    }
    double c1 = cpu_seconds();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    waitpid(peer, NULL, 0);
    double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.2f %.2f\n", wall * 1e6 / n, (c1 - c0) * 1e6 / n);
    return 0;
}
