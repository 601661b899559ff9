/*
 * memory-backend-blowfish: the QMP commands (qapi/blowfish.json) and HMP "info blowfish".
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-blowfish.h"
#include "qom/object.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "blowfish.h"

static int blowfish_query_one(Object *obj, void *opaque)
{
    BlowfishInfoList ***tail = opaque;
    HostMemoryBackendBlowfish *bf = (HostMemoryBackendBlowfish *)
        object_dynamic_cast(obj, TYPE_MEMORY_BACKEND_BLOWFISH);
    BlowfishInfo *info = bf ? blowfish_backend_query(bf) : NULL;

    if (info) {
        QAPI_LIST_APPEND(*tail, info);
    }
    return 0;
}

BlowfishInfoList *qmp_query_blowfish(Error **errp)
{
    BlowfishInfoList *list = NULL, **tail = &list;

    object_child_foreach(object_get_objects_root(), blowfish_query_one, &tail);
    return list;
}

static HostMemoryBackendBlowfish *blowfish_find(const char *id, Error **errp)
{
    Object *obj = object_resolve_path_component(object_get_objects_root(), id);
    HostMemoryBackendBlowfish *bf;

    if (!obj) {
        error_setg(errp, "no object with id '%s'", id);
        return NULL;
    }
    bf = (HostMemoryBackendBlowfish *)object_dynamic_cast(obj, TYPE_MEMORY_BACKEND_BLOWFISH);
    if (!bf) {
        error_setg(errp, "object '%s' is a %s, not a memory-backend-blowfish", id,
                   object_get_typename(obj));
    }
    return bf;
}

void qmp_blowfish_set_target(const char *id, uint64_t local_limit, Error **errp)
{
    HostMemoryBackendBlowfish *bf = blowfish_find(id, errp);

    if (bf) {
        blowfish_backend_set_local_limit(bf, local_limit, errp);
    }
}

void qmp_blowfish_restore(const char *id, Error **errp)
{
    HostMemoryBackendBlowfish *bf = blowfish_find(id, errp);

    if (bf) {
        blowfish_backend_restore(bf, errp);
    }
}

static void hmp_print_bytes(Monitor *mon, const char *what, uint64_t bytes)
{
    g_autofree char *human = size_to_str(bytes);

    monitor_printf(mon, "  %-12s %" PRIu64 " (%s)\n", what, bytes, human);
}

void hmp_info_blowfish(Monitor *mon, const QDict *qdict)
{
    g_autoptr(BlowfishInfoList) list = qmp_query_blowfish(NULL);

    if (!list) {
        monitor_printf(mon, "No memory-backend-blowfish objects\n");
        return;
    }
    for (BlowfishInfoList *l = list; l; l = l->next) {
        BlowfishInfo *info = l->value;

        monitor_printf(mon, "memory-backend-blowfish %s\n", info->id);
        hmp_print_bytes(mon, "size:", info->size);
        hmp_print_bytes(mon, "local-limit:", info->local_limit);
        hmp_print_bytes(mon, "resident:", info->resident);
        hmp_print_bytes(mon, "remote:", info->remote);
        hmp_print_bytes(mon, "zero:", info->zero);
        hmp_print_bytes(mon, "free:", info->free);
        monitor_printf(mon, "  %-12s %" PRIu64 " ranges, p50 %" PRIu64 " ns, p99 %" PRIu64
                       " ns\n", "freed:", info->free_reports, info->free_latency->p50_ns,
                       info->free_latency->p99_ns);
        hmp_print_bytes(mon, "hinted:", info->free_hinted);
        monitor_printf(mon, "  %-12s missing %" PRIu64 ", minor %" PRIu64
                       ", write-protect %" PRIu64 "\n", "faults:", info->faults->missing,
                       info->faults->minor, info->faults->write_protect);
        monitor_printf(mon, "  %-12s p50 %" PRIu64 " ns, p99 %" PRIu64 " ns\n", "latency:",
                       info->fault_latency->p50_ns, info->fault_latency->p99_ns);
        monitor_printf(mon, "  %-12s evicted %" PRIu64 " (clean %" PRIu64 ", drop-behind %"
                       PRIu64 "), restored %" PRIu64 " (readahead %" PRIu64 ")\n", "pages:",
                       info->pages_evicted, info->clean_evictions, info->drop_behind_pages,
                       info->pages_restored, info->readahead_pages);
        monitor_printf(mon, "  %-12s sent %" PRIu64 ", received %" PRIu64 " bytes, pool "
                       "holds %" PRIu64 "\n", "transfers:", info->pool_bytes_sent,
                       info->pool_bytes_received, info->pool_stored);
        monitor_printf(mon, "  %-12s %" PRIu64 " samples, %" PRIu64 " ms\n", "scanner:",
                       info->scan_samples, info->scan_time_ns / 1000000);
        monitor_printf(mon, "  %-12s %s (%s)%s%s\n", "pool:", info->pool ? info->pool : "none",
                       BlowfishPoolState_str(info->pool_state),
                       info->pool_full ? ", full: eviction paused" : "",
                       info->restoring ? ", restoring" : "");
        if (info->pool_error) {
            monitor_printf(mon, "  %-12s %s\n", "pool error:", info->pool_error);
        }
    }
}
