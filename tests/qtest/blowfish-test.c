/*
 * QTest for memory-backend-blowfish: guest RAM written and read back through QEMU with the
 * backend as machine RAM, NUMA node memory and pc-dimm; its properties and their errors;
 * query-blowfish, blowfish-set-target and "info blowfish"; every refusal this machine can
 * provoke (prealloc, share, mem-lock, vhost-user, postcopy, background-snapshot, CPR, no
 * userfaultfd permission); and, with a real blowfish-memnode, eviction and restoration
 * checked byte for byte, zero and clean pages that cost no transfer, blowfish-restore, and a
 * pool that stops answering and comes back.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "qapi/error.h"
#include "memnode-process.h"

#define MiB (1024 * 1024)
#define PAGE 4096
/*
 * The backend serves first touches in aligned blocks of 16 pages, growing up to 2 MiB for
 * touches in order: at least a fault per 2 MiB touched.
 */
#define FIRST_TOUCH_BLOCK_MAX (2 * MiB)

/* A byte that depends on where it lives and on a seed, so that misplaced pages show. */
static uint8_t pattern_byte(uint64_t addr, uint8_t seed)
{
    return (uint8_t)((addr >> 12) * 131 + (addr & 0xfff) * 7 + seed);
}

/* qtest handles a huge buffer in quadratic time: move guest RAM a chunk at a time. */
#define CHUNK (1 * MiB)

static void write_pattern(QTestState *qts, uint64_t base, size_t len, uint8_t seed)
{
    g_autofree uint8_t *buf = g_malloc(CHUNK);

    for (size_t done = 0; done < len; done += CHUNK) {
        size_t n = MIN(CHUNK, len - done);

        for (size_t i = 0; i < n; i++) {
            buf[i] = pattern_byte(base + done + i, seed);
        }
        qtest_bufwrite(qts, base + done, buf, n);
    }
}

/* Reads [base, base + len) back and compares every byte. */
static void check_pattern(QTestState *qts, uint64_t base, size_t len, uint8_t seed)
{
    g_autofree uint8_t *buf = g_malloc(CHUNK);

    for (size_t done = 0; done < len; done += CHUNK) {
        size_t n = MIN(CHUNK, len - done);

        qtest_bufread(qts, base + done, buf, n);
        for (size_t i = 0; i < n; i++) {
            uint64_t addr = base + done + i;

            if (buf[i] != pattern_byte(addr, seed)) {
                g_test_message("guest RAM at 0x%" PRIx64 " reads 0x%02x, wrote 0x%02x",
                               addr, buf[i], pattern_byte(addr, seed));
                g_assert_not_reached();
            }
        }
    }
}

/* Sends a QMP command that must succeed; returns the whole response (with "return"). */
static QDict * G_GNUC_PRINTF(2, 3) qmp_ok(QTestState *qts, const char *fmt, ...)
{
    va_list ap;
    QDict *rsp;

    va_start(ap, fmt);
    rsp = qtest_vqmp(qts, fmt, ap);
    va_end(ap);
    if (!qdict_haskey(rsp, "return")) {
        g_test_message("QMP error: %s", qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"));
        g_assert_not_reached();
    }
    return rsp;
}

/* The query-blowfish entry of backend @id (a new reference), or NULL. */
static QDict *query_backend(QTestState *qts, const char *id)
{
    QDict *rsp = qmp_ok(qts, "{'execute': 'query-blowfish'}");
    QDict *found = NULL;

    for (const QListEntry *e = qlist_first(qdict_get_qlist(rsp, "return")); e;
         e = qlist_next(e)) {
        QDict *info = qobject_to(QDict, qlist_entry_obj(e));

        if (!strcmp(qdict_get_str(info, "id"), id)) {
            found = info;
            qobject_ref(found);
        }
    }
    qobject_unref(rsp);
    return found;
}

static size_t count_backends(QTestState *qts)
{
    QDict *rsp = qmp_ok(qts, "{'execute': 'query-blowfish'}");
    size_t n = qlist_size(qdict_get_qlist(rsp, "return"));

    qobject_unref(rsp);
    return n;
}

static uint64_t fault_count(QDict *info, const char *kind)
{
    return qdict_get_int(qdict_get_qdict(info, "faults"), kind);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) {
        g_test_message("expected '%s' in: %s", needle, haystack);
        g_assert_not_reached();
    }
}

/* Sends a QMP command that must fail with an error containing @needle. */
static void G_GNUC_PRINTF(3, 4)
assert_qmp_error(QTestState *qts, const char *needle, const char *fmt, ...)
{
    va_list ap;
    QDict *error;

    va_start(ap, fmt);
    error = qtest_vqmp_assert_failure_ref(qts, fmt, ap);
    va_end(ap);
    assert_contains(qdict_get_str(error, "desc"), needle);
    qobject_unref(error);
}

/* Does QEMU process @pid have a thread named @name? */
static bool has_thread(pid_t pid, const char *name)
{
    g_autofree char *dir_path = g_strdup_printf("/proc/%d/task", pid);
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    const char *tid;

    g_assert_nonnull(dir);
    while ((tid = g_dir_read_name(dir))) {
        g_autofree char *comm_path = g_strdup_printf("%s/%s/comm", dir_path, tid);
        g_autofree char *comm = NULL;

        if (g_file_get_contents(comm_path, &comm, NULL, NULL) &&
            !strcmp(g_strchomp(comm), name)) {
            return true;
        }
    }
    return false;
}

/* A new thread names itself once it runs: give it a few seconds. */
static bool thread_appears(pid_t pid, const char *name)
{
    for (int i = 0; i < 500; i++) {
        if (has_thread(pid, name)) {
            return true;
        }
        g_usleep(10 * 1000);
    }
    return false;
}

/*
 * Runs QEMU to completion (for startup errors and help), optionally through @wrapper
 * (a NULL-terminated command prefix). Returns the wait status; stdout and stderr in *out, *err.
 */
static int run_qemu(const char *const *wrapper, const char *args, char **out, char **err)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) split = NULL;
    g_autoptr(GError) gerr = NULL;
    int status;

    for (; wrapper && *wrapper; wrapper++) {
        g_ptr_array_add(argv, g_strdup(*wrapper));
    }
    g_ptr_array_add(argv, g_strdup(g_getenv("QTEST_QEMU_BINARY")));
    g_assert_true(g_shell_parse_argv(args, NULL, &split, NULL));
    for (char **a = split; *a; a++) {
        g_ptr_array_add(argv, g_strdup(*a));
    }
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                      out, err, &status, &gerr)) {
        g_test_message("cannot run QEMU: %s", gerr->message);
        g_assert_not_reached();
    }
    return status;
}

static bool exited_ok(int wait_status)
{
    return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
}

/* QEMU started with @args must exit with an error containing @needle. */
static void assert_startup_error(const char *args, const char *needle)
{
    g_autofree char *out = NULL, *err = NULL;
    int status = run_qemu(NULL, args, &out, &err);

    g_assert_false(exited_ok(status));
    assert_contains(err, needle);
}

/* The backend as the machine's RAM: every byte written reads back, and faults are counted. */
static void test_machine_ram(void)
{
    QTestState *qts = qtest_init("-machine pc,memory-backend=mem0 -m 128M "
                                 "-object memory-backend-blowfish,id=mem0,size=128M");
    const uint64_t base = 16 * MiB, len = 8 * MiB;
    QDict *info;

    write_pattern(qts, base, len, 1);
    check_pattern(qts, base, len, 1);
    /* Page-crossing small writes as well. */
    qtest_writeq(qts, base + PAGE - 4, 0x0123456789abcdefULL);
    g_assert_cmphex(qtest_readq(qts, base + PAGE - 4), ==, 0x0123456789abcdefULL);

    info = query_backend(qts, "mem0");
    g_assert_nonnull(info);
    g_assert_cmpuint(qdict_get_int(info, "size"), ==, 128 * MiB);
    g_assert_cmpuint(qdict_get_int(info, "local-limit"), ==, 128 * MiB);
    g_assert_cmpuint(qdict_get_int(info, "resident"), >=, len);
    g_assert_cmpuint(qdict_get_int(info, "resident"), <=, 128 * MiB);
    g_assert_cmpuint(qdict_get_int(info, "remote"), ==, 0);
    g_assert_cmpuint(qdict_get_int(info, "free"), ==, 0);
    g_assert_cmpuint(fault_count(info, "missing"), >=,
                     DIV_ROUND_UP(len, FIRST_TOUCH_BLOCK_MAX));
    g_assert_false(qdict_haskey(info, "pool"));
    g_assert_cmpstr(qdict_get_str(info, "pool-state"), ==, "none");
    qobject_unref(info);

    g_assert_true(thread_appears(qtest_pid(qts), "bf-fault-mem0"));
    qtest_quit(qts);
}

/* Two backends as the memory of two NUMA nodes. */
static void test_numa_memdev(void)
{
    QTestState *qts = qtest_init("-machine pc -m 128M "
                                 "-object memory-backend-blowfish,id=node0,size=64M "
                                 "-object memory-backend-blowfish,id=node1,size=64M "
                                 "-numa node,nodeid=0,memdev=node0 "
                                 "-numa node,nodeid=1,memdev=node1");
    QDict *n0, *n1;

    write_pattern(qts, 8 * MiB, 2 * MiB, 2);       /* node 0 */
    write_pattern(qts, 96 * MiB, 4 * MiB, 3);      /* node 1 */
    check_pattern(qts, 8 * MiB, 2 * MiB, 2);
    check_pattern(qts, 96 * MiB, 4 * MiB, 3);

    g_assert_cmpuint(count_backends(qts), ==, 2);
    n0 = query_backend(qts, "node0");
    n1 = query_backend(qts, "node1");
    g_assert_cmpuint(fault_count(n0, "missing"), >=,
                     DIV_ROUND_UP(2 * MiB, FIRST_TOUCH_BLOCK_MAX));
    g_assert_cmpuint(fault_count(n1, "missing"), >=,
                     DIV_ROUND_UP(4 * MiB, FIRST_TOUCH_BLOCK_MAX));
    g_assert_cmpuint(qdict_get_int(n0, "resident"), >=, 2 * MiB);
    g_assert_cmpuint(qdict_get_int(n1, "resident"), >=, 4 * MiB);
    g_assert_cmpuint(qdict_get_int(n1, "resident"), <, 64 * MiB);
    qobject_unref(n0);
    qobject_unref(n1);
    qtest_quit(qts);
}

/* A backend behind a pc-dimm, at the address QEMU gives it. */
static void test_pc_dimm(void)
{
    QTestState *qts = qtest_init("-machine pc -m 128M,slots=2,maxmem=1G "
                                 "-object memory-backend-blowfish,id=dimm-mem,size=128M "
                                 "-device pc-dimm,id=dimm0,memdev=dimm-mem");
    QDict *rsp = qmp_ok(qts, "{'execute': 'query-memory-devices'}");
    QList *devices = qdict_get_qlist(rsp, "return");
    QDict *dimm, *info;
    uint64_t addr;

    g_assert_cmpuint(qlist_size(devices), ==, 1);
    dimm = qdict_get_qdict(qobject_to(QDict, qlist_peek(devices)), "data");
    g_assert_cmpstr(qdict_get_str(dimm, "memdev"), ==, "/objects/dimm-mem");
    addr = qdict_get_int(dimm, "addr");
    qobject_unref(rsp);

    write_pattern(qts, addr + 100 * MiB, 3 * MiB, 4);
    check_pattern(qts, addr + 100 * MiB, 3 * MiB, 4);
    info = query_backend(qts, "dimm-mem");
    g_assert_cmpuint(fault_count(info, "missing"), >=,
                     DIV_ROUND_UP(3 * MiB, FIRST_TOUCH_BLOCK_MAX));
    g_assert_cmpuint(qdict_get_int(info, "resident"), >=, 3 * MiB);
    qobject_unref(info);

    /* A backend in use cannot be deleted. */
    assert_qmp_error(qts, "is in use, can not be deleted",
                     "{'execute': 'object-del', 'arguments': {'id': 'dimm-mem'}}");
    qtest_quit(qts);
}

/* object-add starts a backend and its fault thread; object-del stops both. */
static void test_hotplug_object(void)
{
    QTestState *qts = qtest_init("-machine pc -m 128M");
    pid_t pid = qtest_pid(qts);
    QDict *info;

    g_assert_cmpuint(count_backends(qts), ==, 0);
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': "
                             "{'qom-type': 'memory-backend-blowfish', 'id': 'hot',"
                             " 'size': %d, 'pool': 'tcp:127.0.0.1:7780',"
                             " 'local-limit': %d}}", 64 * MiB, 16 * MiB);
    info = query_backend(qts, "hot");
    g_assert_nonnull(info);
    g_assert_cmpuint(qdict_get_int(info, "size"), ==, 64 * MiB);
    g_assert_cmpuint(qdict_get_int(info, "local-limit"), ==, 16 * MiB);
    g_assert_cmpstr(qdict_get_str(info, "pool"), ==, "tcp:127.0.0.1:7780");
    g_assert_cmpstr(qdict_get_str(info, "pool-state"), !=, "none");
    qobject_unref(info);
    g_assert_true(thread_appears(pid, "bf-fault-hot"));

    qtest_qmp_assert_success(qts, "{'execute': 'object-del', 'arguments': {'id': 'hot'}}");
    g_assert_cmpuint(count_backends(qts), ==, 0);
    g_assert_false(has_thread(pid, "bf-fault-hot"));
    qtest_quit(qts);
}

/* qom-get/qom-set and blowfish-set-target agree with query-blowfish. */
static void test_set_target(void)
{
    QTestState *qts = qtest_init("-machine pc,memory-backend=mem0 -m 128M "
                                 "-object memory-backend-blowfish,id=mem0,size=128M,"
                                 "pool=tcp:[::1]:7780,local-limit=96M "
                                 "-object memory-backend-ram,id=plain,size=4M");
    QDict *info, *rsp;

    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-set-target', 'arguments':"
                             " {'id': 'mem0', 'local-limit': %d}}", 32 * MiB);
    info = query_backend(qts, "mem0");
    g_assert_cmpuint(qdict_get_int(info, "local-limit"), ==, 32 * MiB);
    g_assert_cmpstr(qdict_get_str(info, "pool"), ==, "tcp:[::1]:7780");
    qobject_unref(info);

    rsp = qmp_ok(qts, "{'execute': 'qom-get', 'arguments':"
                 " {'path': '/objects/mem0', 'property': 'local-limit'}}");
    g_assert_cmpuint(qdict_get_int(rsp, "return"), ==, 32 * MiB);
    qobject_unref(rsp);
    qtest_qmp_assert_success(qts, "{'execute': 'qom-set', 'arguments': {'path': "
                             "'/objects/mem0', 'property': 'local-limit', 'value': %d}}",
                             128 * MiB);
    info = query_backend(qts, "mem0");
    g_assert_cmpuint(qdict_get_int(info, "local-limit"), ==, 128 * MiB);
    qobject_unref(info);

    assert_qmp_error(qts, "no object with id 'nosuch'", "{'execute': 'blowfish-set-target',"
                     " 'arguments': {'id': 'nosuch', 'local-limit': %d}}", 32 * MiB);
    assert_qmp_error(qts, "not a memory-backend-blowfish", "{'execute': "
                     "'blowfish-set-target', 'arguments': {'id': 'plain', 'local-limit': %d}}",
                     32 * MiB);
    assert_qmp_error(qts, "larger than size", "{'execute': 'blowfish-set-target',"
                     " 'arguments': {'id': 'mem0', 'local-limit': %d}}", 256 * MiB);
    assert_qmp_error(qts, "not a multiple of 4 KiB", "{'execute': 'blowfish-set-target',"
                     " 'arguments': {'id': 'mem0', 'local-limit': %d}}", 32 * MiB + 1);
    assert_qmp_error(qts, "below the minimum", "{'execute': 'blowfish-set-target',"
                     " 'arguments': {'id': 'mem0', 'local-limit': %d}}", 4096);
    assert_qmp_error(qts, "below the minimum", "{'execute': 'blowfish-set-target',"
                     " 'arguments': {'id': 'mem0', 'local-limit': 0}}");
    info = query_backend(qts, "mem0");
    g_assert_cmpuint(qdict_get_int(info, "local-limit"), ==, 128 * MiB);
    qobject_unref(info);
    qtest_quit(qts);
}

/*
 * blowfish-reclaim-free needs a guest that can hint (qtest has none): every way it cannot
 * run is a clear error, and leaves no round behind.
 */
static void test_reclaim_free_errors(void)
{
    QTestState *qts = qtest_init("-machine pc,memory-backend=mem0 -m 128M "
                                 "-object memory-backend-blowfish,id=mem0,size=128M");

    assert_qmp_error(qts, "needs a virtio-balloon device with free-page-hint=on",
                     "{'execute': 'blowfish-reclaim-free'}");
    qtest_quit(qts);

    qts = qtest_init("-machine pc,memory-backend=mem0 -m 128M "
                     "-object memory-backend-blowfish,id=mem0,size=128M "
                     "-object iothread,id=io0 "
                     "-device virtio-balloon-pci,free-page-hint=on,iothread=io0");
    for (int i = 0; i < 2; i++) {
        assert_qmp_error(qts, "free page hinting is off: it needs a virtio-balloon device "
                         "with free-page-hint=on and a guest driver that enables it",
                         "{'execute': 'blowfish-reclaim-free'}");
    }
    qtest_quit(qts);

    qts = qtest_init("-machine pc -m 128M -device virtio-balloon-pci");
    assert_qmp_error(qts, "there is no memory-backend-blowfish object",
                     "{'execute': 'blowfish-reclaim-free'}");
    qtest_quit(qts);
}

static void test_hmp_info(void)
{
    QTestState *qts = qtest_init("-machine pc -m 128M");
    g_autofree char *none = qtest_hmp(qts, "info blowfish");
    g_autofree char *one = NULL;

    assert_contains(none, "No memory-backend-blowfish objects");
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': "
                             "{'qom-type': 'memory-backend-blowfish', 'id': 'm1',"
                             " 'size': %d}}", 8 * MiB);
    one = qtest_hmp(qts, "info blowfish");
    assert_contains(one, "memory-backend-blowfish m1");
    assert_contains(one, "size:        8388608 (8 MiB)");
    assert_contains(one, "resident:");
    assert_contains(one, "pool:        none (none)");
    qtest_quit(qts);
}

/* Each bad property value is refused with an error that names it. */
static void test_property_errors(void)
{
    static const struct {
        const char *props;
        const char *error;
    } cases[] = {
        { "'size': 1000001", "not a positive multiple of 4 KiB" },
        { "'size': 67108864, 'pool': 'udp:1.2.3.4:5'", "unknown transport" },
        { "'size': 67108864, 'pool': 'tcp:host'", "no port" },
        { "'size': 67108864, 'pool': 'tcp:host:0'", "port must be a number" },
        { "'size': 67108864, 'pool': 'tcp:host:70000'", "port must be a number" },
        { "'size': 67108864, 'pool': 'tcp::::1:80'", "IPv6 addresses must be in brackets" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'local-limit': 134217728",
          "larger than size" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'local-limit': 16777217",
          "not a multiple of 4 KiB" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'local-limit': 1048576",
          "below the minimum" },
        { "'size': 67108864, 'local-limit': 16777216", "needs a memory pool" },
        { "'size': 67108864, 'local-limit': 0", "must not be 0" },
        { "'size': 67108864, 'idle-age': 3", "idle-age needs a memory pool" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'idle-age': 251",
          "idle-age must be 0 (off) to 250 periods" },
        { "'size': 67108864, 'prealloc': true", "prealloc=on is not supported" },
        { "'size': 67108864, 'share': true", "share=on is not supported" },
        { "'size': 67108864, 'hugetlb': true", "hugetlb" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'secret': 'nosuch'",
          "No secret with id 'nosuch'" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'key-name': 'vm1'", "key-name needs secret" },
        { "'size': 67108864, 'secret': 'short'", "secret needs a pool" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'secret': 'short'", "has 5 bytes" },
        { "'size': 67108864, 'pool': 'tcp:h:1', 'secret': 'short', 'key-name': 'a b'",
          "invalid key name" },
    };
    QTestState *qts = qtest_init("-machine pc -m 128M "
                                 "-object secret,id=short,data=short");

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *json = g_strdup_printf("{%s}", cases[i].props);
        QDict *args = qobject_to(QDict, qobject_from_json(json, &error_abort));

        qdict_put_str(args, "qom-type", "memory-backend-blowfish");
        qdict_put_str(args, "id", "bad");
        assert_qmp_error(qts, cases[i].error,
                         "{'execute': 'object-add', 'arguments': %p}", args);
    }
    /* Nothing half-made stays behind. */
    g_assert_cmpuint(count_backends(qts), ==, 0);
    qtest_quit(qts);
}

static void test_help(void)
{
    g_autofree char *out = NULL, *err = NULL;
    int status = run_qemu(NULL, "-object memory-backend-blowfish,help", &out, &err);

    g_assert_true(exited_ok(status));
    assert_contains(out, "memory-backend-blowfish options:");
    assert_contains(out, "pool=<string>");
    assert_contains(out, "Address of the memory pool");
    assert_contains(out, "local-limit=<size>");
    assert_contains(out, "Most guest RAM kept in host memory");
    assert_contains(out, "size=<int>");
}

static void test_refuse_at_startup(void)
{
    assert_startup_error("-M none -object memory-backend-blowfish,id=m,size=64M,prealloc=on",
                         "prealloc=on is not supported");
    assert_startup_error("-M none -overcommit mem-lock=on "
                         "-object memory-backend-blowfish,id=m,size=64M",
                         "-overcommit mem-lock=on");
    assert_startup_error("-M none -object memory-backend-blowfish,id=m,size=64M,"
                         "local-limit=8M", "needs a memory pool");
}

/* Without userfaultfd permission, the error says what to grant. */
static void test_refuse_no_userfaultfd(void)
{
    static const char *const as_nobody[] = {
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", NULL
    };
    g_autofree char *sysctl = NULL, *out = NULL, *err = NULL;
    int status;

    if (geteuid() != 0) {
        g_test_skip("needs root to run QEMU as an unprivileged user");
        return;
    }
    if (g_file_get_contents("/proc/sys/vm/unprivileged_userfaultfd", &sysctl, NULL, NULL) &&
        sysctl[0] == '1') {
        g_test_skip("vm.unprivileged_userfaultfd=1: every user may use userfaultfd");
        return;
    }
    if (!access("/dev/userfaultfd", F_OK) && !system("setpriv --reuid=65534 -- "
                                                     "test -w /dev/userfaultfd")) {
        g_test_skip("/dev/userfaultfd is writable by nobody");
        return;
    }
    status = run_qemu(as_nobody, "-M none -object memory-backend-blowfish,id=m,size=64M",
                      &out, &err);
    g_assert_false(exited_ok(status));
    assert_contains(err, "memory-backend-blowfish 'm': userfaultfd is not permitted");
    assert_contains(err, "/dev/userfaultfd");
    assert_contains(err, "vm.unprivileged_userfaultfd=1");
}

/* A vhost-user device cannot reach Blowfish's RAM: its realize fails, naming the backend. */
static void test_refuse_vhost_user(void)
{
    const char *server = g_getenv("BLOWFISH_VHOST_USER_BLK");
    g_autofree char *dir = g_dir_make_tmp("blowfish-vhost-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "vhost-user-blk.sock", NULL);
    g_autofree char *disk = g_build_filename(dir, "disk.img", NULL);
    g_autofree char *args = NULL;
    g_autoptr(GError) gerr = NULL;
    const char *server_argv[] = { server, "-s", sock, "-b", disk, NULL };
    GPid server_pid;

    if (!server || access(server, X_OK)) {
        g_test_skip("no vhost-user-blk server (BLOWFISH_VHOST_USER_BLK)");
        return;
    }
    g_assert_true(g_file_set_contents(disk, "", 0, NULL));
    g_assert_cmpint(truncate(disk, MiB), ==, 0);
    g_assert_true(g_spawn_async(NULL, (char **)server_argv, NULL, G_SPAWN_DEFAULT, NULL,
                                NULL, &server_pid, &gerr));
    for (int i = 0; i < 500 && access(sock, F_OK); i++) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpint(access(sock, F_OK), ==, 0);

    args = g_strdup_printf("-machine pc,memory-backend=mem0,accel=qtest -m 128M "
                           "-object memory-backend-blowfish,id=mem0,size=128M "
                           "-chardev socket,id=vub,path=%s "
                           "-device vhost-user-blk-pci,chardev=vub", sock);
    assert_startup_error(args, "vhost backend cannot map guest RAM of memory backend "
                         "'mem0'");
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
    g_spawn_close_pid(server_pid);
    unlink(sock);
    unlink(disk);
    rmdir(dir);
}

static void test_refuse_mem_lock(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64M -overcommit mem-lock=on");

    assert_qmp_error(qts, "cannot be used with -overcommit mem-lock=on",
                     "{'execute': 'object-add', 'arguments': {'qom-type': "
                     "'memory-backend-blowfish', 'id': 'm', 'size': %d}}", 8 * MiB);
    qtest_quit(qts);
}

/* The destination of a postcopy migration vetoes postcopy when it probes. */
static void test_refuse_postcopy(void)
{
    QTestState *qts = qtest_init("-machine pc,memory-backend=mem0 -m 128M -incoming defer "
                                 "-object memory-backend-blowfish,id=mem0,size=128M");

    assert_qmp_error(qts, "memory-backend-blowfish 'mem0' does not support postcopy",
                     "{'execute': 'migrate-set-capabilities', 'arguments': "
                     "{'capabilities': [{'capability': 'postcopy-ram', 'state': true}]}}");
    qtest_quit(qts);
}

/* Polls query-migrate until it ends; returns its "return" (a new reference). */
static QDict *wait_migration_end(QTestState *qts)
{
    for (;;) {
        QDict *ret = qtest_qmp_assert_success_ref(qts, "{'execute': 'query-migrate'}");
        const char *status = qdict_get_try_str(ret, "status");

        if (status && (!strcmp(status, "failed") || !strcmp(status, "completed"))) {
            return ret;
        }
        qobject_unref(ret);
        g_usleep(10 * 1000);
    }
}

/* Precopy migration carries every byte of a Blowfish-backed guest to the destination. */
static void test_migrate_precopy(void)
{
    g_autofree char *path = g_strdup_printf("%s/blowfish-migrate-%d", g_get_tmp_dir(),
                                            getpid());
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    const char *args = "-machine pc,memory-backend=mem0 -m 128M "
                       "-object memory-backend-blowfish,id=mem0,size=128M";
    g_autofree char *dst_args = g_strdup_printf("%s -incoming defer", args);
    QTestState *src = qtest_init(args), *dst;
    QDict *ret;

    write_pattern(src, 32 * MiB, 8 * MiB, 9);
    qtest_qmp_assert_success(src, "{'execute': 'migrate', 'arguments': {'uri': %s}}",
                             uri);
    ret = wait_migration_end(src);
    g_assert_cmpstr(qdict_get_str(ret, "status"), ==, "completed");
    qobject_unref(ret);
    qtest_quit(src);

    dst = qtest_init(dst_args);
    qtest_qmp_assert_success(dst, "{'execute': 'migrate-incoming', 'arguments': "
                             "{'uri': %s}}", uri);
    ret = wait_migration_end(dst);
    g_assert_cmpstr(qdict_get_str(ret, "status"), ==, "completed");
    qobject_unref(ret);
    check_pattern(dst, 32 * MiB, 8 * MiB, 9);
    qtest_quit(dst);
    unlink(path);
}

static void test_refuse_background_snapshot(void)
{
    g_autofree char *path = g_strdup_printf("%s/blowfish-snapshot-%d", g_get_tmp_dir(),
                                            getpid());
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    QTestState *qts = qtest_init("-machine pc,memory-backend=mem0 -m 64M "
                                 "-object memory-backend-blowfish,id=mem0,size=64M");
    QDict *ret;

    /* With the backend as guest RAM, QEMU's own check refuses the capability... */
    assert_qmp_error(qts, "Background-snapshot is not compatible",
                     "{'execute': 'migrate-set-capabilities', 'arguments': {'capabilities':"
                     " [{'capability': 'background-snapshot', 'state': true}]}}");
    qtest_quit(qts);

    /* ...and a backend added after the capability stops the snapshot when it starts. */
    qts = qtest_init("-machine pc -m 64M");
    qtest_qmp_assert_success(qts, "{'execute': 'migrate-set-capabilities', 'arguments': "
                             "{'capabilities': [{'capability': 'background-snapshot',"
                             " 'state': true}]}}");
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': {'qom-type': "
                             "'memory-backend-blowfish', 'id': 'm', 'size': %d}}", 8 * MiB);
    qtest_qmp_assert_success(qts, "{'execute': 'migrate', 'arguments': {'uri': %s}}", uri);
    ret = wait_migration_end(qts);
    g_assert_cmpstr(qdict_get_str(ret, "status"), ==, "failed");
    assert_contains(qdict_get_str(ret, "error-desc"), "does not support background-snapshot");
    qobject_unref(ret);
    qtest_quit(qts);
    unlink(path);
}

static void test_refuse_cpr(void)
{
    g_autofree char *path = g_strdup_printf("%s/blowfish-cpr-%d", g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    QTestState *qts = qtest_init("-machine pc,memory-backend=mem0 -m 128M "
                                 "-object memory-backend-blowfish,id=mem0,size=128M");

    qtest_qmp_assert_success(qts, "{'execute': 'migrate-set-parameters', 'arguments': "
                             "{'mode': 'cpr-reboot'}}");
    assert_qmp_error(qts, "memory-backend-blowfish 'mem0' does not support CPR",
                     "{'execute': 'migrate', 'arguments': {'uri': %s}}", uri);
    qtest_quit(qts);
    unlink(path);
}

/* Waits for BLOWFISH_POOL_STATE_CHANGED with @state (earlier ones are skipped). */
static void wait_pool_state(QTestState *qts, const char *state)
{
    for (;;) {
        QDict *event = qtest_qmp_eventwait_ref(qts, "BLOWFISH_POOL_STATE_CHANGED");
        bool found = !strcmp(qdict_get_str(qdict_get_qdict(event, "data"), "state"), state);

        qobject_unref(event);
        if (found) {
            return;
        }
    }
}

/* Polls query-blowfish for @id until @cond holds on its entry (a QDict *info), or 60 s. */
#define WAIT_FOR_INFO(qts, id, cond) do {                                   \
        int tries_ = 0;                                                     \
        for (;;) {                                                          \
            QDict *info = query_backend((qts), (id));                       \
            bool done_ = (cond);                                            \
                                                                            \
            qobject_unref(info);                                            \
            if (done_) {                                                    \
                break;                                                      \
            }                                                               \
            g_assert_cmpint(++tries_, <, 3000);                             \
            g_usleep(20 * 1000);                                            \
        }                                                                   \
    } while (0)

/*
 * A pool that cannot be reached says why in query-blowfish (and HMP): here, an rdma: pool
 * on a host with no RDMA device.
 */
static void test_pool_rdma_no_device(void)
{
    g_autoptr(GDir) dir = g_dir_open("/sys/class/infiniband", 0, NULL);
    QTestState *qts;
    QDict *now;
    g_autofree char *hmp = NULL;

    if (dir && g_dir_read_name(dir)) {
        g_test_skip("this host has an RDMA device");
        return;
    }
    qts = qtest_init("-machine pc -m 64M -object memory-backend-blowfish,id=mem0,size=64M,"
                     "pool=rdma:127.0.0.1:7781,local-limit=16M "
                     "-machine memory-backend=mem0");
    WAIT_FOR_INFO(qts, "mem0", qdict_haskey(info, "pool-error"));
    now = query_backend(qts, "mem0");
    g_assert_cmpstr(qdict_get_str(now, "pool-state"), !=, "connected");
    g_assert_nonnull(strstr(qdict_get_str(now, "pool-error"), "no RDMA device"));
    qobject_unref(now);
    hmp = qtest_hmp(qts, "info blowfish");
    g_assert_nonnull(strstr(hmp, "pool error:"));
    qtest_quit(qts);
}

static uint64_t info_u64(QDict *info, const char *member)
{
    return qdict_get_int(info, member);
}

/* The faults @info's fault-latency-histogram counts, checking its buckets: ascending, none
 * empty. */
static uint64_t histogram_total(QDict *info)
{
    QList *buckets = qdict_get_qlist(info, "fault-latency-histogram");
    uint64_t total = 0, last = 0;

    for (const QListEntry *e = qlist_first(buckets); e; e = qlist_next(e)) {
        QDict *bucket = qobject_to(QDict, qlist_entry_obj(e));

        g_assert_cmpuint(info_u64(bucket, "le-ns"), >, last);
        g_assert_cmpuint(info_u64(bucket, "count"), >, 0);
        last = info_u64(bucket, "le-ns");
        total += info_u64(bucket, "count");
    }
    return total;
}

/* A memory node, or NULL after marking the test skipped. */
static MemnodeProcess *memnode_or_skip(void)
{
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start("1G", &why);

    if (!node) {
        g_test_skip(why);
    }
    return node;
}

static QTestState *start_with_pool(MemnodeProcess *node, const char *extra)
{
    return qtest_initf("-machine pc,memory-backend=mem0 -m 64M "
                       "-object memory-backend-blowfish,id=mem0,size=64M,pool=%s,"
                       "scan-period=50%s", node->address, extra);
}

/* The same, once the backend has connected to @node (asked: QMP may miss the event). */
static QTestState *start_connected(MemnodeProcess *node, const char *extra)
{
    QTestState *qts = start_with_pool(node, extra);

    WAIT_FOR_INFO(qts, "mem0", !strcmp(qdict_get_str(info, "pool-state"), "connected"));
    return qts;
}

#define POOL_KEY "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="
#define OTHER_KEY "ESIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA="

static char *write_temp_file(const char *text)
{
    char *path = NULL;
    int fd = g_file_open_tmp("blowfish-key-XXXXXX", &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

/*
 * QEMU with @objects and a backend with @options (",secret=vm1", ...) evicts 12 MiB of guest
 * RAM written with @seed to @node (a 4 MiB limit) and reads every byte back.
 */
static void assert_evicts_through(MemnodeProcess *node, const char *objects,
                                  const char *options, uint8_t seed)
{
    QTestState *qts = qtest_initf("-machine pc,memory-backend=mem0 -m 64M %s "
                                  "-object memory-backend-blowfish,id=mem0,size=64M,pool=%s,"
                                  "local-limit=4M,scan-period=50%s", objects, node->address,
                                  options);
    QDict *now;

    WAIT_FOR_INFO(qts, "mem0", !strcmp(qdict_get_str(info, "pool-state"), "connected"));
    write_pattern(qts, 16 * MiB, 12 * MiB, seed);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "resident") <= 4 * MiB);
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "remote"), >=, 7 * MiB);
    qobject_unref(now);
    check_pattern(qts, 16 * MiB, 12 * MiB, seed);
    qtest_quit(qts);
}

/* QEMU with @objects and a backend with @options (",secret=vm1", ...) gets no pool. */
static void assert_pool_refuses(MemnodeProcess *node, const char *objects, const char *options,
                                const char *needle)
{
    QTestState *qts = qtest_initf("-machine pc,memory-backend=mem0 -m 64M %s "
                                  "-object memory-backend-blowfish,id=mem0,size=64M,pool=%s,"
                                  "local-limit=16M%s", objects, node->address, options);
    QDict *now;

    WAIT_FOR_INFO(qts, "mem0", qdict_haskey(info, "pool-error"));
    now = query_backend(qts, "mem0");
    g_assert_cmpstr(qdict_get_str(now, "pool-state"), !=, "connected");
    assert_contains(qdict_get_str(now, "pool-error"), needle);
    qobject_unref(now);
    qtest_quit(qts);
}

/*
 * A memory node with keys: a backend with the key (a secret object, as operators pass it)
 * evicts and reads back byte for byte; one with another key, or none, is refused with an
 * error that says why, and moves no page.
 */
static void test_pool_keys(void)
{
    g_autofree char *keys = write_temp_file("vm1 " POOL_KEY "\n");
    g_autofree char *secret = write_temp_file(POOL_KEY);
    g_autofree char *other = write_temp_file(OTHER_KEY);
    g_autofree char *why = NULL;
    g_autofree char *secret_object = NULL, *other_object = NULL;
    MemnodeProcess *node = memnode_start_with_keys(keys, "1G", &why);

    if (!node) {
        g_test_skip(why);
        goto out;
    }
    secret_object = g_strdup_printf("-object secret,id=vm1,file=%s,format=base64", secret);
    assert_evicts_through(node, secret_object, ",secret=vm1", 71);

    other_object = g_strdup_printf("-object secret,id=vm1,file=%s,format=base64", other);
    assert_pool_refuses(node, other_object, ",secret=vm1", "did not prove it holds key 'vm1'");
    assert_pool_refuses(node, "", "", "takes only clients with a key");
    g_assert_true(memnode_log_contains(node, "refused: HELLO without a key"));
    memnode_stop(node);
out:
    unlink(keys);
    unlink(secret);
    unlink(other);
}

/*
 * One short cycle through the pool: 12 MiB out under a 4 MiB limit, read back byte for byte,
 * then everything restored. Cheap enough to run where QEMU itself is slow: tests/rdma runs it
 * over Soft-RoCE (BLOWFISH_MEMNODE_LISTEN), in a TCG guest.
 */
static void test_pool_short_cycle(void)
{
    MemnodeProcess *node = memnode_or_skip();
    QTestState *qts;
    QDict *now, *event;

    if (!node) {
        return;
    }
    g_test_message("memory node at %s", node->address);
    qts = start_connected(node, ",local-limit=4M");
    write_pattern(qts, 16 * MiB, 12 * MiB, 61);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "resident") <= 4 * MiB);
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "remote"), >=, 7 * MiB);
    g_assert_cmpuint(info_u64(now, "pool-bytes-sent"), >=, info_u64(now, "remote"));
    qobject_unref(now);
    check_pattern(qts, 16 * MiB, 12 * MiB, 61);

    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-restore', 'arguments':"
                             " {'id': 'mem0'}}");
    event = qtest_qmp_eventwait_ref(qts, "BLOWFISH_RESTORE_COMPLETED");
    qobject_unref(event);
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "remote"), ==, 0);
    qobject_unref(now);
    check_pattern(qts, 16 * MiB, 12 * MiB, 61);
    qtest_quit(qts);
    memnode_stop(node);
}

/*
 * With idle-age and no limit, guest data left alone moves to the pool and reads back byte for
 * byte; blowfish-restore brings it back and keeps it until the limit is set again.
 */
static void test_pool_idle(void)
{
    MemnodeProcess *node = memnode_or_skip();
    QTestState *qts;
    QDict *now;

    if (!node) {
        return;
    }
    qts = start_connected(node, ",idle-age=2,scan-period=50");
    write_pattern(qts, 8 * MiB, 32 * MiB, 71);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "remote") >= 32 * MiB);
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "local-limit"), ==, 64 * MiB);
    g_assert_cmpuint(info_u64(now, "resident"), <, 4 * MiB);
    qobject_unref(now);
    check_pattern(qts, 8 * MiB, 32 * MiB, 71);

    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-restore', 'arguments':"
                             " {'id': 'mem0'}}");
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BLOWFISH_RESTORE_COMPLETED"));
    g_usleep(500 * 1000);                       /* 10 periods */
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "remote"), ==, 0);
    qobject_unref(now);

    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-set-target', 'arguments':"
                             " {'id': 'mem0', 'local-limit': %d}}", 64 * MiB);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "remote") >= 32 * MiB);
    check_pattern(qts, 8 * MiB, 32 * MiB, 71);
    qtest_quit(qts);
    memnode_stop(node);
}

/*
 * Lower the limit under guest data: it moves to the pool and reads back byte for byte, in
 * several rounds of writes; pages read back and not written go out again for free.
 */
static void test_pool_evict_restore(void)
{
    MemnodeProcess *node = memnode_or_skip();
    QTestState *qts;
    QDict *now, *faults;
    uint64_t sent, clean, resident;

    if (!node) {
        return;
    }
    qts = start_connected(node, "");
    write_pattern(qts, 8 * MiB, 48 * MiB, 51);

    for (int round = 0; round < 3; round++) {
        qtest_qmp_assert_success(qts, "{'execute': 'blowfish-set-target', 'arguments':"
                                 " {'id': 'mem0', 'local-limit': %d}}", 16 * MiB);
        WAIT_FOR_INFO(qts, "mem0", info_u64(info, "resident") <= 16 * MiB);
        now = query_backend(qts, "mem0");
        g_assert_cmpuint(info_u64(now, "remote"), >=, 30 * MiB);
        g_assert_cmpuint(info_u64(now, "pool-bytes-sent"), >=, info_u64(now, "remote"));
        qobject_unref(now);

        /* Every byte comes back (the limit holds meanwhile), then a new pattern goes out. */
        check_pattern(qts, 8 * MiB, 48 * MiB, 51 + round);
        now = query_backend(qts, "mem0");
        g_assert_cmpuint(info_u64(now, "resident"), <=, 16 * MiB + 256 * PAGE);
        g_assert_cmpuint(info_u64(now, "pages-restored"), >=, 20 * MiB / PAGE);
        qobject_unref(now);
        write_pattern(qts, 8 * MiB, 48 * MiB, 52 + round);
    }

    /*
     * Read-only passes: restored pages are clean and go back to the pool with no transfer;
     * only pages still resident (dirty) from the last writes may be sent.
     */
    check_pattern(qts, 8 * MiB, 48 * MiB, 54);
    now = query_backend(qts, "mem0");
    sent = info_u64(now, "pool-bytes-sent");
    clean = info_u64(now, "clean-evictions");
    resident = info_u64(now, "resident");
    qobject_unref(now);
    check_pattern(qts, 8 * MiB, 48 * MiB, 54);
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "clean-evictions") - clean, >=, 16 * MiB / PAGE);
    g_assert_cmpuint(info_u64(now, "pool-bytes-sent") - sent, <=, resident);
    g_assert_cmpuint(info_u64(qdict_get_qdict(now, "fault-latency"), "p50-ns"), >, 0);
    /* Faults are timed once served, those that waited for a page on its way in or out not. */
    faults = qdict_get_qdict(now, "faults");
    g_assert_cmpuint(histogram_total(now), >=, 20 * MiB / PAGE);
    g_assert_cmpuint(histogram_total(now), <=,
                     info_u64(faults, "missing") + info_u64(faults, "minor") +
                     info_u64(faults, "write-protect"));
    qobject_unref(now);
    qtest_quit(qts);
    memnode_stop(node);
}

/*
 * A memory node too small for what must go out (8 MiB for 48 MiB of data, a 16 MiB limit):
 * BLOWFISH_POOL_FULL says so, query-blowfish and HMP show it, the guest's writes go past
 * the limit rather than wait, and every byte reads back.
 */
static void test_pool_full(void)
{
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start("8M", &why);
    QTestState *qts;
    QDict *event, *now;
    g_autofree char *hmp = NULL;

    if (!node) {
        g_test_skip(why);
        return;
    }
    qts = start_connected(node, ",local-limit=16M");
    write_pattern(qts, 8 * MiB, 48 * MiB, 61);
    event = qtest_qmp_eventwait_ref(qts, "BLOWFISH_POOL_FULL");
    g_assert_true(qdict_get_bool(qdict_get_qdict(event, "data"), "full"));
    assert_contains(qdict_get_str(qdict_get_qdict(event, "data"), "detail"),
                    "the memory node is full");
    qobject_unref(event);
    WAIT_FOR_INFO(qts, "mem0", qdict_get_bool(info, "pool-full"));
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "resident"), >=, 40 * MiB);
    g_assert_cmpuint(info_u64(now, "pool-stored"), <=, 8 * MiB);
    qobject_unref(now);
    hmp = qtest_hmp(qts, "info blowfish");
    assert_contains(hmp, "full: eviction paused");
    check_pattern(qts, 8 * MiB, 48 * MiB, 61);
    qtest_quit(qts);
    memnode_stop(node);
}

/*
 * TLS to the pool with QEMU's own tls-creds-x509 object: pages go out and come back byte for
 * byte through a node with --tls-dir; a backend without TLS, or one whose CA the node's
 * certificate does not match, gets no pool and says why; tls-creds must name a client
 * tls-creds-x509 object.
 */
static void test_pool_tls(void)
{
    const char *make_certs = g_getenv("BLOWFISH_MAKE_CERTS");
    g_autofree char *openssl = g_find_program_in_path("openssl");
    g_autofree char *certs = NULL, *cmd = NULL, *node_dir = NULL, *why = NULL;
    g_autofree char *client = NULL, *wrong_ca = NULL, *server_creds = NULL;
    MemnodeProcess *node;

    if (!make_certs || !openssl) {
        g_test_skip("BLOWFISH_MAKE_CERTS is not set, or no openssl to make certificates");
        return;
    }
    certs = g_dir_make_tmp("blowfish-certs-XXXXXX", NULL);
    cmd = g_strdup_printf("sh '%s' '%s'", make_certs, certs);
    g_assert_cmpint(system(cmd), ==, 0);
    node_dir = g_build_filename(certs, "node", NULL);
    node = memnode_start_with_args(NULL, "1G", (const char *const[]) {
                                       "--tls-dir", node_dir, NULL }, &why);
    if (!node) {
        g_test_skip(why);
        goto out;
    }
    client = g_strdup_printf("-object tls-creds-x509,id=tls0,endpoint=client,dir=%s/client",
                             certs);
    assert_evicts_through(node, client, ",tls-creds=tls0", 81);

    assert_pool_refuses(node, "", "", "this memory node speaks TLS");
    wrong_ca = g_strdup_printf("-object tls-creds-x509,id=tls0,endpoint=client,"
                               "dir=%s/wrong-ca", certs);
    assert_pool_refuses(node, wrong_ca, ",tls-creds=tls0", "certificate is refused");

    server_creds = g_strdup_printf("-M none -object tls-creds-x509,id=tls0,endpoint=server,"
                                   "dir=%s -object memory-backend-blowfish,id=m,size=64M,"
                                   "pool=%s,tls-creds=tls0", node_dir, node->address);
    assert_startup_error(server_creds, "tls-creds 'tls0'");
    assert_startup_error("-M none -object secret,id=tls0,data=x -object "
                         "memory-backend-blowfish,id=m,size=64M,pool=tcp:127.0.0.1:1,"
                         "tls-creds=tls0", "tls-creds 'tls0' is not a tls-creds-x509 object");
    assert_startup_error("-M none -object memory-backend-blowfish,id=m,size=64M,"
                         "tls-creds=tls0", "tls-creds needs a pool");
    memnode_stop(node);
out:
    g_free(cmd);
    cmd = g_strdup_printf("rm -rf '%s'", certs);
    g_assert_cmpint(system(cmd), ==, 0);
}

/* Pages that are all zero are reclaimed without a transfer, and read back as zero. */
static void test_pool_zero_pages(void)
{
    MemnodeProcess *node = memnode_or_skip();
    g_autofree uint8_t *zeroes = g_malloc0(CHUNK);
    g_autofree uint8_t *buf = g_malloc(CHUNK);
    QTestState *qts;
    QDict *now;

    if (!node) {
        return;
    }
    qts = start_connected(node, "");
    for (uint64_t off = 0; off < 32 * MiB; off += CHUNK) {
        qtest_bufwrite(qts, 16 * MiB + off, zeroes, CHUNK);   /* written, but zero */
    }
    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-set-target', 'arguments':"
                             " {'id': 'mem0', 'local-limit': %d}}", 8 * MiB);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "resident") <= 8 * MiB);
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "zero"), >=, 24 * MiB);
    g_assert_cmpuint(info_u64(now, "pool-bytes-sent"), ==, 0);
    g_assert_cmpuint(info_u64(now, "remote"), ==, 0);
    qobject_unref(now);
    for (uint64_t off = 0; off < 32 * MiB; off += CHUNK) {
        qtest_bufread(qts, 16 * MiB + off, buf, CHUNK);
        g_assert_cmpmem(buf, CHUNK, zeroes, CHUNK);
    }
    qtest_quit(qts);
    memnode_stop(node);
}

/* blowfish-restore brings every page back and says so with an event. */
static void test_pool_restore_all(void)
{
    MemnodeProcess *node = memnode_or_skip();
    QTestState *qts;
    QDict *now, *event;

    if (!node) {
        return;
    }
    qts = start_connected(node, ",local-limit=16M");
    write_pattern(qts, 8 * MiB, 48 * MiB, 61);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "resident") <= 16 * MiB);

    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-restore', 'arguments':"
                             " {'id': 'mem0'}}");
    event = qtest_qmp_eventwait_ref(qts, "BLOWFISH_RESTORE_COMPLETED");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(event, "data"), "id"), ==, "mem0");
    g_assert_cmpuint(qdict_get_int(qdict_get_qdict(event, "data"), "bytes"), >=, 30 * MiB);
    qobject_unref(event);
    now = query_backend(qts, "mem0");
    g_assert_cmpuint(info_u64(now, "remote"), ==, 0);
    g_assert_cmpuint(info_u64(now, "local-limit"), ==, 64 * MiB);
    g_assert_false(qdict_get_bool(now, "restoring"));
    g_assert_cmpuint(info_u64(now, "resident"), >=, 48 * MiB);
    qobject_unref(now);
    check_pattern(qts, 8 * MiB, 48 * MiB, 61);
    /* Without a pool there is nothing to restore. */
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': {'qom-type': "
                             "'memory-backend-blowfish', 'id': 'nopool', 'size': %d}}", 8 * MiB);
    assert_qmp_error(qts, "nothing to restore: no memory pool", "{'execute': "
                     "'blowfish-restore', 'arguments': {'id': 'nopool'}}");
    assert_qmp_error(qts, "no object with id 'nosuch'", "{'execute': "
                     "'blowfish-restore', 'arguments': {'id': 'nosuch'}}");
    qtest_quit(qts);
    memnode_stop(node);
}

/*
 * The pool goes away (stopped, or killed and restarted on its store): the state turns
 * unreachable (with an event), the monitor stays responsive, eviction stops; when the pool is
 * back everything resumes by itself, nothing lost.
 */
static void pool_outage(bool kill_it)
{
    g_autofree char *why = NULL;
    MemnodeProcess *node = kill_it ? memnode_start_persistent("1G", &why) :
                                     memnode_start("1G", &why);
    QTestState *qts;
    QDict *now;

    if (!node) {
        g_test_skip(why);
        return;
    }
    qts = start_connected(node, ",pool-timeout=500");
    write_pattern(qts, 8 * MiB, 48 * MiB, 71);
    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-set-target', 'arguments':"
                             " {'id': 'mem0', 'local-limit': %d}}", 32 * MiB);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "resident") <= 32 * MiB);

    if (kill_it) {
        memnode_kill(node);
    } else {
        kill(node->pid, SIGSTOP);
    }
    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-set-target', 'arguments':"
                             " {'id': 'mem0', 'local-limit': %d}}", 8 * MiB);
    wait_pool_state(qts, "unreachable");
    now = query_backend(qts, "mem0");
    g_assert_cmpstr(qdict_get_str(now, "pool-state"), ==, "unreachable");
    qobject_unref(now);

    if (kill_it) {
        memnode_restart(node);
    } else {
        kill(node->pid, SIGCONT);
    }
    wait_pool_state(qts, "connected");
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "resident") <= 8 * MiB);
    check_pattern(qts, 8 * MiB, 48 * MiB, 71);
    qtest_quit(qts);
    memnode_stop(node);
}

static size_t count_fds(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd", pid);
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    size_t n = 0;

    while (g_dir_read_name(dir)) {
        n++;
    }
    return n;
}

/*
 * object-del and QEMU's exit leave nothing behind: not the backend's threads, not its file
 * descriptors, and not its pages at the memory node (the session is dropped).
 */
static void test_pool_teardown(void)
{
    MemnodeProcess *node = memnode_or_skip();
    QTestState *qts;
    pid_t pid;
    size_t fds;

    if (!node) {
        return;
    }
    qts = start_with_pool(node, "");
    pid = qtest_pid(qts);
    WAIT_FOR_INFO(qts, "mem0",
                  !strcmp(qdict_get_str(info, "pool-state"), "connected"));
    write_pattern(qts, 8 * MiB, 16 * MiB, 81);
    qtest_qmp_assert_success(qts, "{'execute': 'blowfish-set-target', 'arguments':"
                             " {'id': 'mem0', 'local-limit': %d}}", 8 * MiB);
    WAIT_FOR_INFO(qts, "mem0", info_u64(info, "remote") > 0);

    fds = count_fds(pid);
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': {'qom-type': "
                             "'memory-backend-blowfish', 'id': 'hot', 'size': %d, "
                             "'pool': %s}}", 8 * MiB, node->address);
    WAIT_FOR_INFO(qts, "hot", !strcmp(qdict_get_str(info, "pool-state"), "connected"));
    g_assert_true(thread_appears(pid, "bf-reclaim-hot"));
    g_assert_cmpuint(count_fds(pid), >, fds);
    qtest_qmp_assert_success(qts, "{'execute': 'object-del', 'arguments': {'id': 'hot'}}");
    g_assert_false(has_thread(pid, "bf-fault-hot"));
    g_assert_false(has_thread(pid, "bf-reclaim-hot"));
    g_assert_cmpuint(count_fds(pid), ==, fds);
    for (int i = 0; i < 500 && !memnode_log_contains(node, "session 'hot' dropped"); i++) {
        g_usleep(10 * 1000);
    }
    g_assert_true(memnode_log_contains(node, "session 'hot' dropped"));

    qtest_quit(qts);
    for (int i = 0; i < 500 && !memnode_log_contains(node, "session 'mem0' dropped"); i++) {
        g_usleep(10 * 1000);
    }
    g_assert_true(memnode_log_contains(node, "session 'mem0' dropped"));
    memnode_stop(node);
}

static void test_pool_stopped(void)
{
    pool_outage(false);
}

static void test_pool_killed(void)
{
    pool_outage(true);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/blowfish/ram/machine-memory-backend", test_machine_ram);
    qtest_add_func("/blowfish/ram/numa-memdev", test_numa_memdev);
    qtest_add_func("/blowfish/ram/pc-dimm", test_pc_dimm);
    qtest_add_func("/blowfish/object/add-del", test_hotplug_object);
    qtest_add_func("/blowfish/object/property-errors", test_property_errors);
    qtest_add_func("/blowfish/object/help", test_help);
    qtest_add_func("/blowfish/qmp/set-target", test_set_target);
    qtest_add_func("/blowfish/qmp/reclaim-free-errors", test_reclaim_free_errors);
    qtest_add_func("/blowfish/hmp/info-blowfish", test_hmp_info);
    qtest_add_func("/blowfish/migration/precopy", test_migrate_precopy);
    qtest_add_func("/blowfish/refuse/at-startup", test_refuse_at_startup);
    qtest_add_func("/blowfish/refuse/no-userfaultfd", test_refuse_no_userfaultfd);
    qtest_add_func("/blowfish/refuse/mem-lock", test_refuse_mem_lock);
    qtest_add_func("/blowfish/refuse/vhost-user", test_refuse_vhost_user);
    qtest_add_func("/blowfish/refuse/postcopy", test_refuse_postcopy);
    qtest_add_func("/blowfish/refuse/background-snapshot", test_refuse_background_snapshot);
    qtest_add_func("/blowfish/refuse/cpr", test_refuse_cpr);
    qtest_add_func("/blowfish/pool/short-cycle", test_pool_short_cycle);
    qtest_add_func("/blowfish/pool/evict-restore", test_pool_evict_restore);
    qtest_add_func("/blowfish/pool/idle", test_pool_idle);
    qtest_add_func("/blowfish/pool/zero-pages", test_pool_zero_pages);
    qtest_add_func("/blowfish/pool/full", test_pool_full);
    qtest_add_func("/blowfish/pool/restore-all", test_pool_restore_all);
    qtest_add_func("/blowfish/pool/teardown", test_pool_teardown);
    qtest_add_func("/blowfish/pool/stopped", test_pool_stopped);
    qtest_add_func("/blowfish/pool/killed", test_pool_killed);
    qtest_add_func("/blowfish/pool/rdma-no-device", test_pool_rdma_no_device);
    qtest_add_func("/blowfish/pool/keys", test_pool_keys);
    qtest_add_func("/blowfish/pool/tls", test_pool_tls);

    return g_test_run();
}
