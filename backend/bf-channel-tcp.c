/*
 * bf-channel-tcp: a channel to a memory node over TCP, or TLS over TCP.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel-tcp.h"
#include "bf-error.h"
#include "bf-socket.h"
#include "bf-tls.h"

#include <unistd.h>

typedef struct {
    BfChannel parent;
    BfStream stream;
    uint32_t next_tag;
    /* A request's header, count and page numbers, ahead of its data. */
    uint8_t head[BF_PROTO_HEADER_SIZE + 8 + 8 * BF_PROTO_MAX_PAGES];
    struct iovec iov[1 + BF_PROTO_MAX_PAGES];
} BfChannelTcp;

static gboolean bf_tcp_protocol_error(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static gboolean bf_tcp_protocol_error(GError **errp, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error from the memory node: %s",
                msg);
    return FALSE;
}

/* Receives a header; an ERROR reply's text goes to @code and @message. */
static gboolean bf_tcp_recv_reply(BfChannelTcp *ch, uint32_t tag, gint64 deadline,
                                  BfMsgHeader *header, BfProtoError *code, char *message,
                                  GError **errp)
{
    uint8_t raw[BF_PROTO_HEADER_SIZE];
    uint8_t payload[8 + BF_PROTO_MAX_MESSAGE];
    g_autofree char *text = NULL;

    *code = 0;
    if (!bf_stream_recv(&ch->stream, raw, sizeof(raw), deadline, BF_CHANNEL_TCP_SPIN_US, errp) ||
        !bf_proto_parse_header(raw, header, errp)) {
        return FALSE;
    }
    if (header->tag != tag) {
        return bf_tcp_protocol_error(errp, "reply tagged %u, expected %u", header->tag, tag);
    }
    if (header->type != BF_MSG_ERROR) {
        return TRUE;
    }
    if (!bf_stream_recv(&ch->stream, payload, header->length, deadline, 0, errp) ||
        !bf_proto_parse_error(payload, header->length, code, &text, errp)) {
        return FALSE;
    }
    if (*code == 0) {
        return bf_tcp_protocol_error(errp, "ERROR without a code");
    }
    g_strlcpy(message, text, BF_PROTO_MAX_MESSAGE + 1);
    return TRUE;
}

/*
 * The reply to @request (tagged @tag): of type @expected, @length bytes into @payload (the
 * header's bounds for @expected fit it); an ERROR is a refusal.
 */
static gboolean bf_tcp_recv_expected(BfChannelTcp *ch, BfMsgType request, uint32_t tag,
                                     BfMsgType expected, gint64 deadline, uint8_t *payload,
                                     uint32_t *length, GError **errp)
{
    char message[BF_PROTO_MAX_MESSAGE + 1];
    BfMsgHeader header;
    BfProtoError code;

    if (!bf_tcp_recv_reply(ch, tag, deadline, &header, &code, message, errp)) {
        return FALSE;
    }
    if (code) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node refused %s: %s",
                    request == BF_MSG_HELLO ? "the session" :
                    request == BF_MSG_STATS ? "STATS" : "the key", message);
        return FALSE;
    }
    if (header.type != expected) {
        return bf_tcp_protocol_error(errp, "%s in reply to %s", bf_msg_type_name(header.type),
                                     bf_msg_type_name(request));
    }
    *length = header.length;
    return bf_stream_recv(&ch->stream, payload, header.length, deadline, 0, errp);
}

static gboolean bf_tcp_submit(BfChannel *channel, BfRequest *req, GError **errp)
{
    BfChannelTcp *ch = (BfChannelTcp *)channel;
    uint32_t length = bf_proto_page_list_length(req->type, req->count);
    uint8_t *p = ch->head + BF_PROTO_HEADER_SIZE;
    int iovcnt = 1;

    req->tag = ch->next_tag++;
    bf_proto_put_header(ch->head, req->type, length, req->tag);
    p += bf_proto_put_count(p, req->count);
    p += bf_proto_put_u64s(p, req->pages, req->count);
    ch->iov[0] = (struct iovec) { .iov_base = ch->head, .iov_len = p - ch->head };
    if (req->type == BF_MSG_WRITE) {
        for (uint32_t i = 0; i < req->count; i++) {
            ch->iov[iovcnt++] = (struct iovec) {
                .iov_base = req->data[i], .iov_len = BF_PROTO_PAGE_SIZE,
            };
        }
    }
    return bf_stream_send_iov(&ch->stream, ch->iov, iovcnt, errp);
}

static BfMsgType bf_reply_type(BfMsgType type)
{
    switch (type) {
    case BF_MSG_WRITE:
        return BF_MSG_WRITE_OK;
    case BF_MSG_READ:
        return BF_MSG_READ_OK;
    case BF_MSG_FREE:
        return BF_MSG_FREE_OK;
    default:
        g_assert_not_reached();
    }
}

static BfRequest *bf_tcp_complete(BfChannel *channel, int timeout_ms, GError **errp)
{
    BfChannelTcp *ch = (BfChannelTcp *)channel;
    BfRequest *req = g_queue_peek_head(&channel->inflight);
    gint64 deadline = bf_channel_deadline(timeout_ms);
    uint8_t count[8];
    BfMsgHeader header;

    if (!bf_tcp_recv_reply(ch, req->tag, deadline, &header, &req->pool_error,
                           req->pool_message, errp)) {
        return NULL;
    }
    if (req->pool_error) {
        return req;
    }
    if (header.type != bf_reply_type(req->type)) {
        bf_tcp_protocol_error(errp, "%s in reply to %s", bf_msg_type_name(header.type),
                              bf_msg_type_name(req->type));
        return NULL;
    }
    if (header.type == BF_MSG_READ_OK &&
        header.length != 8 + req->count * BF_PROTO_PAGE_SIZE) {
        bf_tcp_protocol_error(errp, "READ_OK of %u bytes for %u pages", header.length,
                              req->count);
        return NULL;
    }
    if (!bf_stream_recv(&ch->stream, count, sizeof(count), deadline, 0, errp) ||
        !bf_proto_parse_count(count, sizeof(count), req->count, errp)) {
        return NULL;
    }
    if (header.type == BF_MSG_READ_OK) {
        for (uint32_t i = 0; i < req->count; i++) {
            ch->iov[i] = (struct iovec) {
                .iov_base = req->data[i], .iov_len = BF_PROTO_PAGE_SIZE,
            };
        }
        if (!bf_stream_recv_iov(&ch->stream, ch->iov, req->count, deadline, 0, errp)) {
            return NULL;
        }
    }
    return req;
}

static gboolean bf_tcp_stats(BfChannel *channel, int timeout_ms, BfPoolStats *stats,
                             GError **errp)
{
    BfChannelTcp *ch = (BfChannelTcp *)channel;
    uint8_t msg[BF_PROTO_HEADER_SIZE], payload[24];
    gint64 deadline = bf_channel_deadline(timeout_ms);
    uint32_t tag = ch->next_tag++;
    uint32_t length;

    bf_proto_put_header(msg, BF_MSG_STATS, 0, tag);
    return bf_stream_send(&ch->stream, msg, sizeof(msg), errp) &&
           bf_tcp_recv_expected(ch, BF_MSG_STATS, tag, BF_MSG_STATS_OK, deadline, payload,
                                &length, errp) &&
           bf_proto_parse_stats(payload, length, stats, errp);
}

static void bf_tcp_close(BfChannel *channel, gboolean drop_session)
{
    BfChannelTcp *ch = (BfChannelTcp *)channel;

    if (drop_session) {
        uint8_t bye[BF_PROTO_HEADER_SIZE];
        BfMsgHeader header;
        BfProtoError code;
        char message[BF_PROTO_MAX_MESSAGE + 1];
        uint32_t tag = ch->next_tag++;

        /* Best effort: a node that is gone keeps the pages until it drops the session. */
        bf_proto_put_header(bye, BF_MSG_BYE, 0, tag);
        if (bf_stream_send(&ch->stream, bye, sizeof(bye), NULL)) {
            bf_tcp_recv_reply(ch, tag, bf_channel_deadline(1000), &header, &code, message, NULL);
        }
    }
    bf_tls_end(&ch->stream);
    close(ch->stream.fd);
    g_free(ch);
}

static const BfChannelOps bf_channel_tcp_ops = {
    .submit = bf_tcp_submit,
    .complete = bf_tcp_complete,
    .stats = bf_tcp_stats,
    .close = bf_tcp_close,
};

static gboolean bf_tcp_send(BfChannelTcp *ch, BfMsgType type, uint8_t *msg, uint32_t length,
                            GError **errp)
{
    bf_proto_put_header(msg, type, length, 0);
    return bf_stream_send(&ch->stream, msg, BF_PROTO_HEADER_SIZE + length, errp);
}

/* A BfAuthCall over TCP. */
static gboolean bf_tcp_auth_call(gpointer channel, BfMsgType type, const uint8_t *payload,
                                 uint32_t length, BfMsgType reply, uint8_t *out, uint32_t size,
                                 uint32_t *out_length, gint64 deadline, GError **errp)
{
    BfChannelTcp *ch = channel;
    uint8_t msg[BF_PROTO_HEADER_SIZE + BF_AUTH_MAX_PAYLOAD];

    g_assert(length <= BF_AUTH_MAX_PAYLOAD);
    memcpy(msg + BF_PROTO_HEADER_SIZE, payload, length);
    return bf_tcp_send(ch, type, msg, length, errp) &&
           bf_tcp_recv_expected(ch, type, 0, reply, deadline, out, out_length, errp);
}

BfChannel *bf_channel_tcp_connect(const BfEndpoint *endpoint, const BfHello *hello,
                                  const BfKey *key, const BfTlsCreds *tls, int timeout_ms,
                                  GError **errp)
{
    g_autofree BfChannelTcp *ch = g_new0(BfChannelTcp, 1);
    uint8_t msg[BF_PROTO_HEADER_SIZE + 32 + BF_PROTO_MAX_NAME];
    uint8_t payload[16];
    gint64 deadline = bf_channel_deadline(timeout_ms);
    uint64_t free_pages;
    uint32_t length;

    ch->parent.ops = &bf_channel_tcp_ops;
    ch->stream.fd = bf_socket_connect(endpoint->host, endpoint->port, timeout_ms, errp);
    if (ch->stream.fd < 0) {
        return NULL;
    }
    ch->next_tag = 1;
    if (tls && !bf_tls_start(&ch->stream, tls, endpoint->host, deadline, errp)) {
        goto fail;
    }
    if (key && !bf_auth_client(key, bf_tcp_auth_call, ch, deadline, errp)) {
        goto fail;
    }
    if (!bf_tcp_send(ch, BF_MSG_HELLO, msg, bf_proto_put_hello(msg + BF_PROTO_HEADER_SIZE, hello),
                     errp) ||
        !bf_tcp_recv_expected(ch, BF_MSG_HELLO, 0, BF_MSG_HELLO_OK, deadline, payload,
                              &length, errp) ||
        !bf_proto_parse_hello_ok(payload, length, &ch->parent.stored_at_hello, &free_pages,
                                 errp)) {
        goto fail;
    }
    return &g_steal_pointer(&ch)->parent;

fail:
    bf_tls_end(&ch->stream);
    close(ch->stream.fd);
    return NULL;
}
