/*
 * Unit tests of bf-endpoint: the pool address syntax shared by pool= and --listen.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-endpoint.h"
#include "bf-error.h"

static void test_valid(void)
{
    static const struct {
        const char *text;
        BfTransportKind transport;
        const char *host;
        unsigned port;
        const char *canonical;
    } cases[] = {
        { "tcp:127.0.0.1:7780", BF_TRANSPORT_TCP, "127.0.0.1", 7780, NULL },
        { "tcp:memnode.example:1", BF_TRANSPORT_TCP, "memnode.example", 1, NULL },
        { "rdma:10.0.0.2:65535", BF_TRANSPORT_RDMA, "10.0.0.2", 65535, NULL },
        { "tcp:[::1]:7780", BF_TRANSPORT_TCP, "::1", 7780, NULL },
        { "rdma:[fe80::1%eth0]:80", BF_TRANSPORT_RDMA, "fe80::1%eth0", 80, NULL },
        { "tcp:0.0.0.0:007", BF_TRANSPORT_TCP, "0.0.0.0", 7, "tcp:0.0.0.0:7" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(BfEndpoint) ep = bf_endpoint_parse(cases[i].text, &err);
        g_autofree char *text = NULL;

        g_assert_no_error(err);
        g_assert_nonnull(ep);
        g_assert_cmpint(ep->transport, ==, cases[i].transport);
        g_assert_cmpstr(ep->host, ==, cases[i].host);
        g_assert_cmpuint(ep->port, ==, cases[i].port);
        text = bf_endpoint_to_string(ep);
        g_assert_cmpstr(text, ==, cases[i].canonical ? cases[i].canonical : cases[i].text);
    }
}

static void test_invalid(void)
{
    static const struct {
        const char *text;
        const char *why;
    } cases[] = {
        { "", "unknown transport" },
        { "udp:1.2.3.4:5", "unknown transport" },
        { "tcp", "unknown transport" },
        { "TCP:1.2.3.4:5", "unknown transport" },
        { "tcp:host", "no port" },
        { "tcp::80", "bad host" },
        { "tcp:a b:80", "bad host" },
        { "tcp:host:", "port must be a number" },
        { "tcp:host:0", "port must be a number" },
        { "tcp:host:65536", "port must be a number" },
        { "tcp:host:-1", "port must be a number" },
        { "tcp:host:80x", "port must be a number" },
        { "tcp:host: 80", "port must be a number" },
        { "tcp:::1:80", "IPv6 addresses must be in brackets" },
        { "tcp:[::1:80", "unterminated IPv6 address" },
        { "tcp:[::1]80", "no port" },
        { "tcp:[]:80", "bad host" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        BfEndpoint *ep = bf_endpoint_parse(cases[i].text, &err);

        g_assert_null(ep);
        g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
        if (!strstr(err->message, cases[i].why)) {
            g_test_message("'%s': %s", cases[i].text, err->message);
            g_assert_not_reached();
        }
        g_assert_nonnull(strstr(err->message, cases[i].text));
    }
}

static void test_listen(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(BfEndpoint) any = bf_endpoint_parse_listen("tcp:127.0.0.1:0", &err);

    g_assert_no_error(err);
    g_assert_cmpuint(any->port, ==, 0);
    g_assert_null(bf_endpoint_parse("tcp:127.0.0.1:0", &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_null(bf_endpoint_parse_listen("tcp:127.0.0.1:65536", &err));
    g_assert_nonnull(strstr(err->message, "from 0 to 65535"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/endpoint/valid", test_valid);
    g_test_add_func("/endpoint/invalid", test_invalid);
    g_test_add_func("/endpoint/listen", test_listen);
    return g_test_run();
}
