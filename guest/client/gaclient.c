/*
 * gaclient: the guest kit's Guest Additions test client. Speaks to the host through
 * /dev/vboxguest exactly as VirtualBox's guest libraries do (the mainline driver's uapi,
 * <linux/vboxguest.h>): VMMDev requests (VBG_IOCTL_VMMDEV_REQUEST) and HGCM
 * (VBG_IOCTL_HGCM_CONNECT / CALL / DISCONNECT).
 *
 * Usage (exit status 0 = success; what a test checks is documented per command):
 *   gaclient hosttime                 print the host's time (ms since 1970) from
 *                                     VMMDevReq_GetHostTime
 *   gaclient prop-get NAME            print the guest property's value; 1 if not found
 *   gaclient prop-set NAME VALUE [FLAGS]
 *                                     set a guest property; 1 if the host refused
 *   gaclient clip-read                print the host clipboard's text (UNICODETEXT);
 *                                     3 if the host refused (VERR_ACCESS_DENIED)
 *   gaclient clip-serve TEXT SECS     announce TEXT on the guest clipboard and answer the
 *                                     host's read request; 3 if the announcement was
 *                                     refused, 4 if no read came within SECS seconds
 * Other failures: status 2 with a message on stderr.
 *
 * Built by `cargo xtask kit` with `gcc -static -O2` into the initramfs as /bin/gaclient.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/vboxguest.h>

#define VERR_ACCESS_DENIED (-38)
#define VERR_NOT_FOUND (-78)
#define VERR_BUFFER_OVERFLOW (-41)
#define VINF_BUFFER_OVERFLOW 41

/* Guest property service functions. */
#define GUEST_PROP_FN_GET_PROP 1
#define GUEST_PROP_FN_SET_PROP 2
#define GUEST_PROP_FN_SET_PROP_VALUE 3

/* Shared clipboard service functions, messages and formats (legacy protocol). */
#define SHCL_FN_MSG_OLD_GET_WAIT 1
#define SHCL_FN_REPORT_FORMATS 2
#define SHCL_FN_DATA_READ 3
#define SHCL_FN_DATA_WRITE 4
#define SHCL_FN_REPORT_FEATURES 6
#define SHCL_MSG_QUIT 1
#define SHCL_MSG_READ_DATA 2
#define SHCL_MSG_FORMATS_REPORT 3
#define SHCL_FMT_UNICODETEXT 1
#define SHCL_GF_0_CONTEXT_ID 1ull

static int fd = -1;

static void die(const char *what)
{
    fprintf(stderr, "gaclient: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void open_dev(void)
{
    fd = open("/dev/vboxguest", O_RDWR);
    if (fd < 0)
        die("open /dev/vboxguest");
}

static uint32_t hgcm_connect(const char *service)
{
    struct vbg_ioctl_hgcm_connect c;
    memset(&c, 0, sizeof(c));
    c.hdr.size_in = sizeof(c.hdr) + sizeof(c.u.in);
    c.hdr.size_out = sizeof(c.hdr) + sizeof(c.u.out);
    c.hdr.version = VBG_IOCTL_HDR_VERSION;
    c.hdr.type = VBG_IOCTL_HDR_TYPE_DEFAULT;
    c.u.in.loc.type = VMMDEV_HGCM_LOC_LOCALHOST_EXISTING;
    strncpy(c.u.in.loc.u.localhost.service_name, service,
            sizeof(c.u.in.loc.u.localhost.service_name) - 1);
    if (ioctl(fd, VBG_IOCTL_HGCM_CONNECT, &c) < 0)
        die("HGCM connect");
    if (c.hdr.rc < 0) {
        fprintf(stderr, "gaclient: connect %s: rc=%d\n", service, c.hdr.rc);
        exit(2);
    }
    return c.u.out.client_id;
}

static void hgcm_disconnect(uint32_t client)
{
    struct vbg_ioctl_hgcm_disconnect d;
    memset(&d, 0, sizeof(d));
    d.hdr.size_in = sizeof(d.hdr) + sizeof(d.u.in);
    d.hdr.size_out = sizeof(d.hdr);
    d.hdr.version = VBG_IOCTL_HDR_VERSION;
    d.u.in.client_id = client;
    if (ioctl(fd, VBG_IOCTL_HGCM_DISCONNECT, &d) < 0)
        die("HGCM disconnect");
}

/* One call with up to 8 parameters. */
struct call {
    struct vbg_ioctl_hgcm_call hdr;
    struct vmmdev_hgcm_function_parameter64 p[8];
};

static void call_init(struct call *c, uint32_t client, uint32_t fn, int n, uint32_t timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->hdr.hdr.size_in = sizeof(c->hdr) + n * sizeof(c->p[0]);
    c->hdr.hdr.size_out = c->hdr.hdr.size_in;
    c->hdr.hdr.version = VBG_IOCTL_HDR_VERSION;
    c->hdr.client_id = client;
    c->hdr.function = fn;
    c->hdr.timeout_ms = timeout_ms;
    c->hdr.parm_count = n;
}

static void p32(struct call *c, int i, uint32_t v)
{
    c->p[i].type = VMMDEV_HGCM_PARM_TYPE_32BIT;
    c->p[i].u.value32 = v;
}

static void p64(struct call *c, int i, uint64_t v)
{
    c->p[i].type = VMMDEV_HGCM_PARM_TYPE_64BIT;
    c->p[i].u.value64 = v;
}

static void pbuf(struct call *c, int i, int type, void *buf, uint32_t size)
{
    c->p[i].type = type;
    c->p[i].u.pointer.size = size;
    c->p[i].u.pointer.u.linear_addr = (uintptr_t)buf;
}

/* Perform the call; returns the service's status, or exits on a driver error. A
 * timeout is reported as -ETIMEDOUT - 100000 so callers can tell it apart. */
#define CALL_TIMED_OUT (-100000 - ETIMEDOUT)
static int call_do(struct call *c)
{
    if (ioctl(fd, VBG_IOCTL_HGCM_CALL(c->hdr.hdr.size_in), c) < 0) {
        if (errno == ETIMEDOUT || errno == EINTR)
            return CALL_TIMED_OUT;
        die("HGCM call");
    }
    return c->hdr.hdr.rc;
}

static int cmd_hosttime(void)
{
    /* The VMMDev request header (not in the uapi headers; layout from the driver's
     * vbox_vmmdev.h): size, version, type, rc, two reserved words. */
    struct {
        struct {
            uint32_t size, version, request_type;
            int32_t rc;
            uint32_t reserved1, requestor;
        } h;
        uint64_t time;
    } __attribute__((packed)) req;
    memset(&req, 0, sizeof(req));
    req.h.size = sizeof(req);
    req.h.version = 0x10001; /* VMMDEV_REQUEST_HEADER_VERSION */
    req.h.request_type = VMMDEVREQ_GET_HOST_TIME;
    req.h.rc = -1;
    /* The ioctl header overlays the request header: its size_out is reserved1. */
    req.h.reserved1 = sizeof(req);
    if (ioctl(fd, VBG_IOCTL_VMMDEV_REQUEST(sizeof(req)), &req) < 0)
        die("VMMDevReq_GetHostTime");
    if (req.h.rc < 0) {
        fprintf(stderr, "gaclient: GetHostTime rc=%d\n", req.h.rc);
        return 2;
    }
    printf("%llu\n", (unsigned long long)req.time);
    return 0;
}

static int cmd_prop_get(const char *name)
{
    static char value[8192];
    struct call c;
    uint32_t client = hgcm_connect("VBoxGuestPropSvc");
    call_init(&c, client, GUEST_PROP_FN_GET_PROP, 4, 30000);
    pbuf(&c, 0, VMMDEV_HGCM_PARM_TYPE_LINADDR_IN, (void *)name, strlen(name) + 1);
    pbuf(&c, 1, VMMDEV_HGCM_PARM_TYPE_LINADDR_OUT, value, sizeof(value));
    p64(&c, 2, 0);
    p32(&c, 3, 0);
    int rc = call_do(&c);
    hgcm_disconnect(client);
    if (rc == VERR_NOT_FOUND)
        return 1;
    if (rc < 0) {
        fprintf(stderr, "gaclient: GET_PROP %s: rc=%d\n", name, rc);
        return 2;
    }
    value[sizeof(value) - 1] = 0;
    printf("%s\n", value);
    return 0;
}

static int cmd_prop_set(const char *name, const char *value, const char *flags)
{
    struct call c;
    uint32_t client = hgcm_connect("VBoxGuestPropSvc");
    if (flags) {
        call_init(&c, client, GUEST_PROP_FN_SET_PROP, 3, 30000);
        pbuf(&c, 2, VMMDEV_HGCM_PARM_TYPE_LINADDR_IN, (void *)flags, strlen(flags) + 1);
    } else {
        call_init(&c, client, GUEST_PROP_FN_SET_PROP_VALUE, 2, 30000);
    }
    pbuf(&c, 0, VMMDEV_HGCM_PARM_TYPE_LINADDR_IN, (void *)name, strlen(name) + 1);
    pbuf(&c, 1, VMMDEV_HGCM_PARM_TYPE_LINADDR_IN, (void *)value, strlen(value) + 1);
    int rc = call_do(&c);
    hgcm_disconnect(client);
    if (rc < 0) {
        fprintf(stderr, "gaclient: SET_PROP %s: rc=%d\n", name, rc);
        return 1;
    }
    return 0;
}

/* Connect to the clipboard service the way a 7.x VBoxClient does: report features, and
 * expect the host to clear bit 63 of the second word (else the guest must give up). */
static uint32_t clip_connect(void)
{
    struct call c;
    uint32_t client = hgcm_connect("VBoxSharedClipboard");
    call_init(&c, client, SHCL_FN_REPORT_FEATURES, 2, 30000);
    p64(&c, 0, SHCL_GF_0_CONTEXT_ID);
    p64(&c, 1, 1ull << 63);
    int rc = call_do(&c);
    if (rc < 0 || (c.p[1].u.value64 & (1ull << 63))) {
        fprintf(stderr, "gaclient: clipboard REPORT_FEATURES: rc=%d word1=%llx\n", rc,
                (unsigned long long)c.p[1].u.value64);
        exit(2);
    }
    if (c.p[0].u.value64 & SHCL_GF_0_CONTEXT_ID) {
        fprintf(stderr, "gaclient: host wants the context-id protocol; only legacy here\n");
        exit(2);
    }
    return client;
}

static int cmd_clip_read(void)
{
    static uint16_t buf[32768];
    struct call c;
    uint32_t client = clip_connect();
    call_init(&c, client, SHCL_FN_DATA_READ, 3, 30000);
    p32(&c, 0, SHCL_FMT_UNICODETEXT);
    pbuf(&c, 1, VMMDEV_HGCM_PARM_TYPE_LINADDR_OUT, buf, sizeof(buf));
    p32(&c, 2, 0);
    int rc = call_do(&c);
    hgcm_disconnect(client);
    if (rc == VERR_ACCESS_DENIED)
        return 3;
    if (rc < 0 || rc == VINF_BUFFER_OVERFLOW) {
        fprintf(stderr, "gaclient: DATA_READ rc=%d\n", rc);
        return 2;
    }
    uint32_t n = c.p[2].u.value32 / 2;
    if (n > sizeof(buf) / 2)
        n = sizeof(buf) / 2;
    /* UTF-16LE to UTF-8 (BMP; surrogates become U+FFFD); stop at the NUL. */
    for (uint32_t i = 0; i < n && buf[i]; i++) {
        uint16_t u = buf[i];
        if (u >= 0xd800 && u < 0xe000)
            u = 0xfffd;
        if (u < 0x80) {
            putchar(u);
        } else if (u < 0x800) {
            putchar(0xc0 | (u >> 6));
            putchar(0x80 | (u & 0x3f));
        } else {
            putchar(0xe0 | (u >> 12));
            putchar(0x80 | ((u >> 6) & 0x3f));
            putchar(0x80 | (u & 0x3f));
        }
    }
    putchar('\n');
    return 0;
}

static int cmd_clip_serve(const char *text, int secs)
{
    static uint16_t data[32768];
    size_t n = 0;
    /* ASCII test texts: one UTF-16 unit per byte, NUL included as VBoxClient does. */
    for (const unsigned char *s = (const unsigned char *)text; *s && n < 32767; s++)
        data[n++] = *s;
    data[n++] = 0;

    struct call c;
    uint32_t client = clip_connect();
    call_init(&c, client, SHCL_FN_REPORT_FORMATS, 1, 30000);
    p32(&c, 0, SHCL_FMT_UNICODETEXT);
    int rc = call_do(&c);
    if (rc == VERR_ACCESS_DENIED) {
        hgcm_disconnect(client);
        return 3;
    }
    if (rc < 0) {
        fprintf(stderr, "gaclient: REPORT_FORMATS rc=%d\n", rc);
        return 2;
    }
    for (;;) {
        call_init(&c, client, SHCL_FN_MSG_OLD_GET_WAIT, 2, (uint32_t)secs * 1000);
        p32(&c, 0, 0);
        p32(&c, 1, 0);
        rc = call_do(&c);
        if (rc == CALL_TIMED_OUT) {
            hgcm_disconnect(client);
            return 4;
        }
        if (rc < 0) {
            fprintf(stderr, "gaclient: MSG_OLD_GET_WAIT rc=%d\n", rc);
            return 2;
        }
        uint32_t msg = c.p[0].u.value32, fmt = c.p[1].u.value32;
        if (msg == SHCL_MSG_QUIT)
            return 2;
        if (msg != SHCL_MSG_READ_DATA)
            continue;
        call_init(&c, client, SHCL_FN_DATA_WRITE, 2, 30000);
        p32(&c, 0, fmt);
        if (fmt == SHCL_FMT_UNICODETEXT)
            pbuf(&c, 1, VMMDEV_HGCM_PARM_TYPE_LINADDR_IN, data, n * 2);
        else
            pbuf(&c, 1, VMMDEV_HGCM_PARM_TYPE_LINADDR_IN, data, 0);
        rc = call_do(&c);
        if (rc < 0) {
            fprintf(stderr, "gaclient: DATA_WRITE rc=%d\n", rc);
            return 2;
        }
        if (fmt == SHCL_FMT_UNICODETEXT) {
            hgcm_disconnect(client);
            return 0;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: gaclient hosttime | prop-get NAME | prop-set NAME VALUE [FLAGS]"
                        " | clip-read | clip-serve TEXT SECS\n");
        return 2;
    }
    open_dev();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "hosttime"))
        return cmd_hosttime();
    if (!strcmp(cmd, "prop-get") && argc == 3)
        return cmd_prop_get(argv[2]);
    if (!strcmp(cmd, "prop-set") && (argc == 4 || argc == 5))
        return cmd_prop_set(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
    if (!strcmp(cmd, "clip-read"))
        return cmd_clip_read();
    if (!strcmp(cmd, "clip-serve") && argc == 4)
        return cmd_clip_serve(argv[2], atoi(argv[3]));
    fprintf(stderr, "gaclient: bad command\n");
    return 2;
}
