/*
 * diskbench: the guest kit's disk benchmark client, for `cargo xtask bench-disk`.
 * Every access is O_DIRECT on the block device (no guest page cache), one request at a
 * time (queue depth 1), timed with clock_gettime(CLOCK_MONOTONIC).
 *
 * Usage:
 *   diskbench write DEV MIB       write MIB MiB from offset 0 in 1 MiB blocks, then
 *                                 fdatasync (the disk's cache flush); every block holds
 *                                 a distinct non-zero pattern, so nothing can be skipped
 *                                 as zeros (the writes and the flush are timed, making
 *                                 the pattern is not)
 *   diskbench read DEV MIB        read MIB MiB from offset 0 in 1 MiB blocks and check
 *                                 the pattern `write` left
 *   diskbench randread DEV MIB SECS
 *                                 4 KiB reads at random 4 KiB-aligned offsets inside the
 *                                 first MIB MiB (a fixed xorshift sequence, the same on
 *                                 every run) for SECS seconds
 * Output: one line `diskbench: MODE bytes=N ops=N secs=S` (S with microseconds).
 * Exit status 0 = success, 1 = data mismatch, 2 = any other failure (message on stderr).
 *
 * Built by `cargo xtask kit` with `gcc -static -O2` into the initramfs as /bin/diskbench.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define SMALL 4096L

static void die(const char *what)
{
    fprintf(stderr, "diskbench: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime");
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The pattern of 1 MiB block `blk`: 64-bit words that differ per block and per word. */
static void fill(uint64_t *buf, long blk)
{
    for (long i = 0; i < MIB / 8; i++)
        buf[i] = ((uint64_t)blk << 32) ^ (uint64_t)i ^ 0x9e3779b97f4a7c15ull;
}

static void *aligned(long len)
{
    void *p = NULL;
    if (posix_memalign(&p, SMALL, len) != 0)
        die("posix_memalign");
    return p;
}

static long number(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0) {
        fprintf(stderr, "diskbench: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static void report(const char *mode, long long bytes, long long ops, double secs)
{
    printf("diskbench: %s bytes=%lld ops=%lld secs=%.6f\n", mode, bytes, ops, secs);
    fflush(stdout);
}

static int seq_write(int fd, long mib)
{
    uint64_t *buf = aligned(MIB);
    double secs = 0;
    for (long b = 0; b < mib; b++) {
        /* Making the pattern is not timed, as the check in seq_read is not: it measures
         * the guest CPU, not the disk. */
        fill(buf, b);
        double t0 = now();
        if (pwrite(fd, buf, MIB, b * MIB) != MIB)
            die("pwrite");
        secs += now() - t0;
    }
    double t0 = now();
    if (fdatasync(fd) != 0)
        die("fdatasync");
    secs += now() - t0;
    report("write", (long long)mib * MIB, mib, secs);
    return 0;
}

static int seq_read(int fd, long mib)
{
    uint64_t *buf = aligned(MIB), *want = malloc(MIB);
    if (!want)
        die("malloc");
    double secs = 0;
    for (long b = 0; b < mib; b++) {
        double t0 = now();
        if (pread(fd, buf, MIB, b * MIB) != MIB)
            die("pread");
        secs += now() - t0;
        /* The check is not timed: it measures the guest CPU, not the disk. */
        fill(want, b);
        if (memcmp(buf, want, MIB) != 0) {
            fprintf(stderr, "diskbench: block %ld does not hold what write left\n", b);
            return 1;
        }
    }
    report("read", (long long)mib * MIB, mib, secs);
    return 0;
}

static int rand_read(int fd, long mib, long secs)
{
    uint64_t *buf = aligned(SMALL);
    uint64_t x = 0x2545f4914f6cdd1dull;
    uint64_t slots = (uint64_t)mib * (MIB / SMALL);
    long long ops = 0;
    double t0 = now(), t = t0, end = t0 + (double)secs;
    while (t < end) {
        /* 64 reads between clock reads: the clock is not free under emulation. */
        for (int i = 0; i < 64; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint64_t slot = x % slots;
            off_t off = (off_t)(slot * SMALL);
            if (pread(fd, buf, SMALL, off) != SMALL)
                die("pread");
            /* Word 0 of a 4 KiB piece of block b, word w: (b << 32) ^ w ^ K. */
            uint64_t blk = (uint64_t)off / MIB, word = ((uint64_t)off % MIB) / 8;
            if (buf[0] != ((blk << 32) ^ word ^ 0x9e3779b97f4a7c15ull)) {
                fprintf(stderr, "diskbench: wrong data at offset %lld\n", (long long)off);
                return 1;
            }
            ops++;
        }
        t = now();
    }
    report("randread", ops * SMALL, ops, t - t0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: diskbench write|read DEV MIB | randread DEV MIB SECS\n");
        return 2;
    }
    const char *mode = argv[1];
    long mib = number(argv[3], "MIB");
    int writing = strcmp(mode, "write") == 0;
    int fd = open(argv[2], (writing ? O_WRONLY : O_RDONLY) | O_DIRECT);
    if (fd < 0)
        die(argv[2]);
    if (writing)
        return seq_write(fd, mib);
    if (strcmp(mode, "read") == 0)
        return seq_read(fd, mib);
    if (strcmp(mode, "randread") == 0 && argc >= 5)
        return rand_read(fd, mib, number(argv[4], "SECS"));
    fprintf(stderr, "diskbench: unknown mode %s\n", mode);
    return 2;
}
