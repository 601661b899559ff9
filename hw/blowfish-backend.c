/*
 * memory-backend-blowfish: a host memory backend whose RAM is managed by the Blowfish engine
 * (backend/bf-engine.h), which moves cold guest pages to a remote memory pool and brings them
 * back on fault. This file is the QEMU side of it: the QOM type and its properties, the
 * RAM block, and the refusals of everything that would bypass or fight the engine's
 * userfaultfd (preallocation, locked or pinned RAM, RAM shared with other processes,
 * confidential guests, postcopy, background snapshots, CPR).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/madvise.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qom/object_interfaces.h"
#include "crypto/secret_common.h"
#include "crypto/tlscredsx509.h"
#include "exec/memory.h"
#include "system/system.h"
#include "migration/blocker.h"
#include "migration/misc.h"
#include "migration/options.h"
#include "migration/postcopy-ram.h"
#include "blowfish.h"
#include "trace.h"

struct HostMemoryBackendBlowfish {
    HostMemoryBackend parent_obj;

    char *pool;
    char *secret;                  /* id of the secret object holding the pool key */
    char *key_name;                /* the key's name on the memory node; default: @secret */
    char *tls_creds;               /* id of the tls-creds-x509 object for TLS to the pool */
    uint64_t local_limit;          /* 0 until set: the backend's size */
    BfEngineTunables tunables;

    char *engine_id;               /* the engine's event opaque: outlives the engine */
    BfEngine *engine;
    bool discard_required;         /* holds ram_block_discard_require(true) */
    Error *cpr_blocker;
    NotifierWithReturn postcopy_notifier;
    NotifierWithReturn migration_notifier;
    Notifier exit_notifier;
};

static const char *blowfish_id(HostMemoryBackendBlowfish *bf)
{
    return object_get_canonical_path_component(OBJECT(bf));
}

static void blowfish_set_engine_error(HostMemoryBackendBlowfish *bf, GError *gerr,
                                      Error **errp)
{
    error_setg(errp, "memory-backend-blowfish '%s': %s", blowfish_id(bf), gerr->message);
    g_error_free(gerr);
}

/* Postcopy registers its own userfaultfd on guest RAM: it cannot coexist with ours. */
static int blowfish_postcopy_notify(NotifierWithReturn *notifier, void *data, Error **errp)
{
    HostMemoryBackendBlowfish *bf = container_of(notifier, HostMemoryBackendBlowfish,
                                                 postcopy_notifier);
    struct PostcopyNotifyData *pnd = data;

    if (pnd->reason == POSTCOPY_NOTIFY_PROBE) {
        error_setg(errp, "memory-backend-blowfish '%s' does not support postcopy: its "
                   "guest RAM is already served by Blowfish's userfaultfd", blowfish_id(bf));
        return -EBUSY;
    }
    return 0;
}

/* Background snapshots write-protect guest RAM with their own userfaultfd: likewise. */
static int blowfish_migration_notify(NotifierWithReturn *notifier, MigrationEvent *e,
                                     Error **errp)
{
    HostMemoryBackendBlowfish *bf = container_of(notifier, HostMemoryBackendBlowfish,
                                                 migration_notifier);

    if (e->type == MIG_EVENT_PRECOPY_SETUP && migrate_background_snapshot()) {
        error_setg(errp, "memory-backend-blowfish '%s' does not support "
                   "background-snapshot: its guest RAM is already tracked by Blowfish's "
                   "userfaultfd", blowfish_id(bf));
        return -EBUSY;
    }
    return 0;
}

/*
 * QEMU does not finalize the objects in use when it exits: tell the memory node now that
 * this region's pages can go.
 */
static void blowfish_exit_notify(Notifier *notifier, void *data)
{
    HostMemoryBackendBlowfish *bf = container_of(notifier, HostMemoryBackendBlowfish,
                                                 exit_notifier);

    bf_engine_leave_pool(bf->engine);
}

/* Everything that cannot work with an engine-managed RAM, named in the error. */
static bool blowfish_check_compatible(HostMemoryBackendBlowfish *bf, Error **errp)
{
    HostMemoryBackend *backend = MEMORY_BACKEND(bf);
    const char *id = blowfish_id(bf);

    if (backend->prealloc) {
        error_setg(errp, "memory-backend-blowfish '%s': prealloc=on is not supported: "
                   "preallocation makes all guest RAM resident, which defeats overcommit",
                   id);
        return false;
    }
    if (backend->share) {
        error_setg(errp, "memory-backend-blowfish '%s': share=on is not supported: "
                   "another process mapping guest RAM (vhost-user, ...) would bypass "
                   "Blowfish and read evicted pages as zeroes", id);
        return false;
    }
    if (backend->guest_memfd) {
        error_setg(errp, "memory-backend-blowfish '%s' cannot back a confidential guest: "
                   "guest_memfd memory cannot be tracked with userfaultfd", id);
        return false;
    }
    if (should_mlock(mlock_state)) {
        error_setg(errp, "memory-backend-blowfish '%s' cannot be used with "
                   "-overcommit mem-lock=on: locked guest RAM cannot be evicted", id);
        return false;
    }
    return true;
}

/* The pool key: the bytes of the secret object @bf->secret, named @bf->key_name. */
static BfKey *blowfish_pool_key(HostMemoryBackendBlowfish *bf, Error **errp)
{
    const char *name = bf->key_name ? bf->key_name : bf->secret;
    g_autofree uint8_t *secret = NULL;
    size_t len = 0;
    GError *gerr = NULL;
    BfKey *key;

    if (!bf->pool) {
        error_setg(errp, "memory-backend-blowfish '%s': secret needs a pool",
                   blowfish_id(bf));
        return NULL;
    }
    if (qcrypto_secret_lookup(bf->secret, &secret, &len, errp) < 0) {
        error_prepend(errp, "memory-backend-blowfish '%s': ", blowfish_id(bf));
        return NULL;
    }
    key = bf_key_new(name, secret, len, &gerr);
    memset(secret, 0, len);
    if (!key) {
        blowfish_set_engine_error(bf, gerr, errp);
    }
    return key;
}

/*
 * TLS to the pool, from the tls-creds-x509 object @bf->tls_creds (endpoint=client): its
 * directory, verify-peer and priority go into @config, for the engine to load.
 * The returned strings belong to the caller.
 */
static bool blowfish_pool_tls(HostMemoryBackendBlowfish *bf, BfEngineConfig *config,
                              char **dir, char **priority, Error **errp)
{
    Object *obj = object_resolve_path_component(object_get_objects_root(), bf->tls_creds);
    g_autofree char *passwordid = NULL;

    if (!bf->pool) {
        error_setg(errp, "memory-backend-blowfish '%s': tls-creds needs a pool",
                   blowfish_id(bf));
        return false;
    }
    if (!obj || !object_dynamic_cast(obj, TYPE_QCRYPTO_TLS_CREDS_X509)) {
        error_setg(errp, "memory-backend-blowfish '%s': tls-creds '%s' is not a "
                   "tls-creds-x509 object", blowfish_id(bf), bf->tls_creds);
        return false;
    }
    if (!qcrypto_tls_creds_check_endpoint(QCRYPTO_TLS_CREDS(obj),
                                          QCRYPTO_TLS_CREDS_ENDPOINT_CLIENT, errp)) {
        error_prepend(errp, "memory-backend-blowfish '%s': tls-creds '%s': ",
                      blowfish_id(bf), bf->tls_creds);
        return false;
    }
    passwordid = object_property_get_str(obj, "passwordid", NULL);
    if (passwordid && *passwordid) {
        error_setg(errp, "memory-backend-blowfish '%s': tls-creds '%s': an encrypted key "
                   "(passwordid) is not supported", blowfish_id(bf), bf->tls_creds);
        return false;
    }
    *dir = object_property_get_str(obj, "dir", errp);
    if (!*dir) {
        return false;
    }
    *priority = object_property_get_str(obj, "priority", NULL);
    config->pool_tls_dir = *dir;
    config->pool_tls_priority = *priority && **priority ? *priority : NULL;
    config->pool_tls_verify_peer = object_property_get_bool(obj, "verify-peer", NULL);
    return true;
}

static bool blowfish_memory_alloc(HostMemoryBackend *backend, Error **errp)
{
    HostMemoryBackendBlowfish *bf = MEMORY_BACKEND_BLOWFISH(backend);
    g_autofree char *name = host_memory_backend_get_name(backend);
    BfEngineConfig config = {
        .name = blowfish_id(bf),
        .size = backend->size,
        .local_limit = bf->local_limit,
        .pool = bf->pool,
        .tunables = bf->tunables,
        .events = &blowfish_engine_events,
    };
    g_autoptr(BfKey) key = NULL;
    g_autofree char *tls_dir = NULL, *tls_priority = NULL;
    GError *gerr = NULL;
    void *ram;

    if (!backend->size) {
        error_setg(errp, "can't create backend with size 0");
        return false;
    }
    if (!blowfish_check_compatible(bf, errp)) {
        return false;
    }
    if (bf->key_name && !bf->secret) {
        error_setg(errp, "memory-backend-blowfish '%s': key-name needs secret", config.name);
        return false;
    }
    if (bf->secret) {
        key = blowfish_pool_key(bf, errp);
        if (!key) {
            return false;
        }
        config.pool_key = key;
    }
    if (bf->tls_creds && !blowfish_pool_tls(bf, &config, &tls_dir, &tls_priority, errp)) {
        return false;
    }
    /* Devices that pin guest RAM (VFIO, vDPA, ...) now fail to realize, and vice versa. */
    if (ram_block_discard_require(true)) {
        error_setg(errp, "memory-backend-blowfish '%s' cannot be used while a device "
                   "pins guest RAM (VFIO, vhost-vdpa, ...): pinned pages cannot be evicted",
                   config.name);
        return false;
    }
    bf->discard_required = true;

    bf->engine_id = g_strdup(config.name);
    config.events_opaque = bf->engine_id;
    bf->engine = bf_engine_new(&config, &gerr);
    if (!bf->engine) {
        blowfish_set_engine_error(bf, gerr, errp);
        return false;
    }

    /*
     * QEMU sees plain RAM at a host address: only the engine knows the memfd behind it, so
     * no other process can map it and only the engine ever drops a page from it.
     */
    ram = bf_engine_guest_ram(bf->engine);
    memory_region_init_ram_ptr(&backend->mr, OBJECT(backend), name, backend->size, ram);
    /* Memory devices (pc-dimm) place and size-check the region by this; 0 would divide. */
    backend->mr.align = BF_PAGE_SIZE;
    /* ram_block_add() asked for transparent huge pages; the engine works in 4 KiB. */
    qemu_madvise(ram, backend->size, QEMU_MADV_NOHUGEPAGE);

    error_setg(&bf->cpr_blocker, "memory-backend-blowfish '%s' does not support CPR: part "
               "of its guest RAM lives in the memory pool, not in memory QEMU can hand over",
               config.name);
    if (migrate_add_blocker_modes(&bf->cpr_blocker, errp, MIG_MODE_CPR_REBOOT,
                                  MIG_MODE_CPR_TRANSFER, -1) < 0) {
        return false;
    }
    bf->postcopy_notifier.notify = blowfish_postcopy_notify;
    postcopy_add_notifier(&bf->postcopy_notifier);
    migration_add_notifier(&bf->migration_notifier, blowfish_migration_notify);
    bf->exit_notifier.notify = blowfish_exit_notify;
    qemu_add_exit_notifier(&bf->exit_notifier);

    trace_blowfish_backend_created(config.name, backend->size,
                                   bf->local_limit ? bf->local_limit : backend->size,
                                   bf->pool ? bf->pool : "");
    return true;
}

/* Properties the engine takes at creation only. */
static bool blowfish_check_not_created(HostMemoryBackendBlowfish *bf, const char *name,
                                       Error **errp)
{
    if (host_memory_backend_mr_inited(MEMORY_BACKEND(bf))) {
        error_setg(errp, "cannot change property '%s' of memory-backend-blowfish '%s' "
                   "after creation", name, blowfish_id(bf));
        return false;
    }
    return true;
}

/* The string properties, fixed at creation: opaque is their field's offset. */
static char **blowfish_str_field(Object *obj, void *opaque)
{
    return (char **)((char *)MEMORY_BACKEND_BLOWFISH(obj) + (uintptr_t)opaque);
}

static void blowfish_get_str(Object *obj, Visitor *v, const char *name, void *opaque,
                             Error **errp)
{
    char *value = g_strdup(*blowfish_str_field(obj, opaque) ?: "");

    visit_type_str(v, name, &value, errp);
    g_free(value);
}

static void blowfish_set_str(Object *obj, Visitor *v, const char *name, void *opaque,
                             Error **errp)
{
    char **field = blowfish_str_field(obj, opaque);
    char *value;

    if (!blowfish_check_not_created(MEMORY_BACKEND_BLOWFISH(obj), name, errp) ||
        !visit_type_str(v, name, &value, errp)) {
        return;
    }
    g_free(*field);
    *field = value;
}

static void blowfish_get_local_limit(Object *obj, Visitor *v, const char *name,
                                     void *opaque, Error **errp)
{
    HostMemoryBackendBlowfish *bf = MEMORY_BACKEND_BLOWFISH(obj);
    uint64_t value = bf->local_limit ? bf->local_limit : MEMORY_BACKEND(obj)->size;

    visit_type_size(v, name, &value, errp);
}

static void blowfish_set_local_limit(Object *obj, Visitor *v, const char *name,
                                     void *opaque, Error **errp)
{
    HostMemoryBackendBlowfish *bf = MEMORY_BACKEND_BLOWFISH(obj);
    uint64_t value;

    if (!visit_type_size(v, name, &value, errp)) {
        return;
    }
    if (!value) {
        error_setg(errp, "memory-backend-blowfish '%s': local-limit must not be 0",
                   blowfish_id(bf));
        return;
    }
    if (bf->engine) {
        blowfish_backend_set_local_limit(bf, value, errp);
        return;
    }
    /* Checked against size and pool when the backend is created. */
    bf->local_limit = value;
}

/* The engine tunables: uint32 properties fixed at creation; opaque is their offset. */
static void blowfish_get_tunable(Object *obj, Visitor *v, const char *name, void *opaque,
                                 Error **errp)
{
    HostMemoryBackendBlowfish *bf = MEMORY_BACKEND_BLOWFISH(obj);
    uint32_t *field = (uint32_t *)((char *)&bf->tunables + (uintptr_t)opaque);

    visit_type_uint32(v, name, field, errp);
}

static void blowfish_set_tunable(Object *obj, Visitor *v, const char *name, void *opaque,
                                 Error **errp)
{
    HostMemoryBackendBlowfish *bf = MEMORY_BACKEND_BLOWFISH(obj);
    uint32_t *field = (uint32_t *)((char *)&bf->tunables + (uintptr_t)opaque);
    uint32_t value;

    if (!blowfish_check_not_created(bf, name, errp)) {
        return;
    }
    if (visit_type_uint32(v, name, &value, errp)) {
        *field = value;     /* checked by the engine at creation */
    }
}

static bool blowfish_check_created(HostMemoryBackendBlowfish *bf, Error **errp)
{
    if (!bf->engine) {
        error_setg(errp, "memory-backend-blowfish '%s' is not created yet", blowfish_id(bf));
        return false;
    }
    return true;
}

bool blowfish_backend_set_local_limit(HostMemoryBackendBlowfish *bf, uint64_t local_limit,
                                      Error **errp)
{
    GError *gerr = NULL;

    if (!blowfish_check_created(bf, errp)) {
        return false;
    }
    if (!bf_engine_set_local_limit(bf->engine, local_limit, &gerr)) {
        blowfish_set_engine_error(bf, gerr, errp);
        return false;
    }
    bf->local_limit = local_limit;
    trace_blowfish_set_local_limit(blowfish_id(bf), local_limit);
    return true;
}

bool blowfish_backend_restore(HostMemoryBackendBlowfish *bf, Error **errp)
{
    GError *gerr = NULL;

    if (!blowfish_check_created(bf, errp)) {
        return false;
    }
    if (!bf_engine_restore_all(bf->engine, &gerr)) {
        blowfish_set_engine_error(bf, gerr, errp);
        return false;
    }
    bf->local_limit = MEMORY_BACKEND(bf)->size;
    trace_blowfish_restore(blowfish_id(bf));
    return true;
}

BfEngine *blowfish_backend_engine(HostMemoryBackendBlowfish *bf)
{
    return bf->engine;
}

static BlowfishLatencyBucketList *
blowfish_fault_latency_histogram(HostMemoryBackendBlowfish *bf)
{
    g_autofree uint64_t *upper_ns = NULL, *counts = NULL;
    unsigned n = bf_engine_fault_latency_histogram(bf->engine, &upper_ns, &counts);
    BlowfishLatencyBucketList *list = NULL;

    while (n--) {
        BlowfishLatencyBucket *bucket = g_new0(BlowfishLatencyBucket, 1);

        bucket->le_ns = upper_ns[n];
        bucket->count = counts[n];
        QAPI_LIST_PREPEND(list, bucket);
    }
    return list;
}

BlowfishInfo *blowfish_backend_query(HostMemoryBackendBlowfish *bf)
{
    BlowfishInfo *info;
    BfEngineStats stats;

    if (!bf->engine) {
        return NULL;
    }
    bf_engine_get_stats(bf->engine, &stats);

    info = g_new0(BlowfishInfo, 1);
    info->id = g_strdup(blowfish_id(bf));
    info->size = stats.size;
    info->local_limit = stats.local_limit;
    info->resident = stats.resident;
    info->remote = stats.remote;
    info->zero = stats.zero;
    info->free = stats.free;
    info->free_reports = stats.free_reports;
    info->free_latency = g_new0(BlowfishLatency, 1);
    info->free_latency->p50_ns = stats.free_latency_p50_ns;
    info->free_latency->p99_ns = stats.free_latency_p99_ns;
    info->free_hinted = stats.free_hinted;
    info->faults = g_new0(BlowfishFaultCounts, 1);
    info->faults->missing = stats.faults_missing;
    info->faults->minor = stats.faults_minor;
    info->faults->write_protect = stats.faults_wp;
    info->fault_latency = g_new0(BlowfishLatency, 1);
    info->fault_latency->p50_ns = stats.fault_latency_p50_ns;
    info->fault_latency->p99_ns = stats.fault_latency_p99_ns;
    info->fault_latency_histogram = blowfish_fault_latency_histogram(bf);
    info->pages_evicted = stats.pages_evicted;
    info->pages_restored = stats.pages_restored;
    info->clean_evictions = stats.clean_evictions;
    info->readahead_pages = stats.readahead_pages;
    info->drop_behind_pages = stats.drop_behind_pages;
    info->pool_bytes_sent = stats.pool_bytes_sent;
    info->pool_bytes_received = stats.pool_bytes_received;
    info->pool_stored = stats.pool_stored;
    info->scan_time_ns = stats.scan_ns;
    info->scan_samples = stats.scan_samples;
    info->pool = g_strdup(bf_engine_pool(bf->engine));
    info->pool_state = blowfish_pool_state(stats.pool_state);
    info->pool_full = stats.pool_full;
    info->restoring = stats.restoring;
    info->pool_error = stats.pool_error[0] ? g_strdup(stats.pool_error) : NULL;
    return info;
}

static void blowfish_instance_finalize(Object *obj)
{
    HostMemoryBackendBlowfish *bf = MEMORY_BACKEND_BLOWFISH(obj);

    if (bf->exit_notifier.notify) {
        qemu_remove_exit_notifier(&bf->exit_notifier);
    }
    migration_remove_notifier(&bf->migration_notifier);
    if (bf->postcopy_notifier.notify) {
        postcopy_remove_notifier(&bf->postcopy_notifier);
    }
    migrate_del_blocker(&bf->cpr_blocker);
    /* The RAM block is gone already: QOM deleted the memory region child first. */
    bf_engine_free(bf->engine);
    g_free(bf->engine_id);
    if (bf->discard_required) {
        ram_block_discard_require(false);
    }
    g_free(bf->pool);
    g_free(bf->secret);
    g_free(bf->key_name);
    g_free(bf->tls_creds);
}

static void blowfish_instance_init(Object *obj)
{
    bf_engine_tunables_init(&MEMORY_BACKEND_BLOWFISH(obj)->tunables);
}

static const struct {
    const char *name;
    size_t offset;
    const char *description;
} blowfish_tunables[] = {
    { "scan-period", offsetof(BfEngineTunables, scan_period_ms),
      "How often, in milliseconds, guest page use is sampled (default: 1000)" },
    { "scan-budget", offsetof(BfEngineTunables, scan_budget),
      "Pages sampled per period; each costs the guest a minor fault if in use "
      "(default: 256)" },
    { "cold-age", offsetof(BfEngineTunables, cold_age),
      "Periods a page must go unused to be cold (default: 2)" },
    { "idle-age", offsetof(BfEngineTunables, idle_age),
      "Periods a page must go unused to go to the pool even under local-limit; "
      "0: only local-limit evicts (default: 0)" },
    { "evict-batch", offsetof(BfEngineTunables, evict_batch),
      "Pages per eviction request to the pool, 1 to 256 (default: 256)" },
    { "readahead", offsetof(BfEngineTunables, readahead),
      "Most pages fetched ahead of sequential remote faults; 0: none (default: 32)" },
    { "pool-timeout", offsetof(BfEngineTunables, pool_timeout_ms),
      "Milliseconds after which a pool request or connection counts as failed "
      "(default: 5000)" },
};

static const struct {
    const char *name;
    size_t offset;
    const char *description;
} blowfish_str_properties[] = {
    { "pool", offsetof(HostMemoryBackendBlowfish, pool),
      "Address of the memory pool that holds evicted pages: tcp:HOST:PORT or "
      "rdma:HOST:PORT (default: none, only free and zero pages are reclaimed)" },
    { "secret", offsetof(HostMemoryBackendBlowfish, secret),
      "ID of the secret object holding the key to prove to the memory pool "
      "(default: none, for a pool that takes clients without keys)" },
    { "key-name", offsetof(HostMemoryBackendBlowfish, key_name),
      "Name of that key on the memory pool (default: the secret's ID)" },
    { "tls-creds", offsetof(HostMemoryBackendBlowfish, tls_creds),
      "ID of the tls-creds-x509 object (endpoint=client) for TLS to a tcp: pool "
      "(default: none, plain TCP)" },
};

static void blowfish_class_init(ObjectClass *oc, void *data)
{
    HostMemoryBackendClass *bc = MEMORY_BACKEND_CLASS(oc);

    bc->alloc = blowfish_memory_alloc;

    for (size_t i = 0; i < ARRAY_SIZE(blowfish_str_properties); i++) {
        object_class_property_add(oc, blowfish_str_properties[i].name, "string",
                                  blowfish_get_str, blowfish_set_str, NULL,
                                  (void *)(uintptr_t)blowfish_str_properties[i].offset);
        object_class_property_set_description(oc, blowfish_str_properties[i].name,
                                              blowfish_str_properties[i].description);
    }
    object_class_property_add(oc, "local-limit", "size", blowfish_get_local_limit,
                              blowfish_set_local_limit, NULL, NULL);
    object_class_property_set_description(oc, "local-limit",
        "Most guest RAM kept in host memory, in bytes: a multiple of 4 KiB, at least "
        "4 MiB; below size it needs a pool (default: size)");
    for (size_t i = 0; i < ARRAY_SIZE(blowfish_tunables); i++) {
        object_class_property_add(oc, blowfish_tunables[i].name, "uint32",
                                  blowfish_get_tunable, blowfish_set_tunable, NULL,
                                  (void *)(uintptr_t)blowfish_tunables[i].offset);
        object_class_property_set_description(oc, blowfish_tunables[i].name,
                                              blowfish_tunables[i].description);
    }
}

static const TypeInfo blowfish_backend_info = {
    .name = TYPE_MEMORY_BACKEND_BLOWFISH,
    .parent = TYPE_MEMORY_BACKEND,
    .instance_init = blowfish_instance_init,
    .instance_finalize = blowfish_instance_finalize,
    .class_init = blowfish_class_init,
    .instance_size = sizeof(HostMemoryBackendBlowfish),
};

static void blowfish_register_types(void)
{
    type_register_static(&blowfish_backend_info);
}

type_init(blowfish_register_types);
