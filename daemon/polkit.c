/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "polkit.h"
#include "util.h"

struct PolkitQuery {
        PolkitQuery *next;
        Polkit *polkit;
        sd_bus_message *request;        /* the method call being decided (a reference) */
        sd_bus_slot *slot;              /* the CheckAuthorization call in flight */
        int result;                     /* 1 while pending, else polkit_check()'s answer */
};

bool polkit_available(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *name;
        int has = 0, r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &error, &reply, "s", POLKIT_BUS_NAME);
        if (r >= 0)
                r = sd_bus_message_read(reply, "b", &has);
        sd_bus_error_free(&error);
        if (r >= 0 && has)
                return true;

        reply = sd_bus_message_unref(reply);
        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "ListActivatableNames", &error, &reply, NULL);
        sd_bus_error_free(&error);
        if (r < 0)
                return false;
        r = sd_bus_message_enter_container(reply, 'a', "s");
        while (r >= 0 && (r = sd_bus_message_read(reply, "s", &name)) > 0)
                if (strcmp(name, POLKIT_BUS_NAME) == 0)
                        return true;
        return false;
}

void polkit_init(Polkit *p, sd_bus *bus) {
        *p = (Polkit) { .bus = sd_bus_ref(bus) };
}

static void query_free(PolkitQuery *q) {
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        free(q);
}

static void query_unlink(PolkitQuery *q) {
        for (PolkitQuery **pp = &q->polkit->queries; *pp; pp = &(*pp)->next)
                if (*pp == q) {
                        *pp = q->next;
                        return;
                }
}

void polkit_done(Polkit *p) {
        while (p->queries) {
                PolkitQuery *q = p->queries;

                p->queries = q->next;
                query_free(q);
        }
        p->bus = sd_bus_unref(p->bus);
}

static int on_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitQuery *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized = 0, challenge = 0, r;

        (void) ret_error;
        q->slot = sd_bus_slot_unref(q->slot);
        if (e) {
                r = sd_bus_error_get_errno(e);
                log_warning("polkit: CheckAuthorization failed: %s: %s", e->name, strna(e->message));
                q->result = r > 0 ? -r : -EIO;
        } else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                if (r < 0) {
                        log_warning_errno(r, "polkit: malformed CheckAuthorization reply: %m");
                        q->result = r;
                } else
                        q->result = authorized ? 0 : challenge ? -EKEYREJECTED : -EACCES;
        }

        /* Dispatch the method call again: its handler now finds the answer. */
        r = sd_bus_message_rewind(q->request, true);     /* a handler may have read arguments */
        if (r >= 0)
                r = sd_bus_enqueue_for_read(sd_bus_message_get_bus(q->request), q->request);
        if (r < 0) {
                log_error_errno(r, "polkit: cannot dispatch the call again, dropping it: %m");
                query_unlink(q);
                query_free(q);
        }
        return 0;
}

int polkit_check(Polkit *p, sd_bus_message *msg, const char *action) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        const char *sender = sd_bus_message_get_sender(msg);
        PolkitQuery *q;
        uint32_t flags = 0;
        int r;

        for (q = p->queries; q; q = q->next)
                if (q->request == msg) {
                        if (q->result == 1)
                                return 1;
                        r = q->result;
                        query_unlink(q);
                        query_free(q);
                        return r;
                }

        if (!sender)
                return -EBADMSG;
        if (sd_bus_message_get_allow_interactive_authorization(msg) > 0)
                flags |= 1;     /* AllowUserInteraction */

        r = sd_bus_message_new_method_call(p->bus, &call, POLKIT_BUS_NAME, "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", sender,
                                          action, 0, flags, "");
        if (r < 0)
                return r;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (PolkitQuery) { .polkit = p, .request = sd_bus_message_ref(msg), .result = 1 };
        /* An authentication dialog may take a while; a plain check does not. */
        r = sd_bus_call_async(p->bus, &q->slot, call, on_check_reply, q, flags ? 120 * 1000000ULL : 0);
        if (r < 0) {
                query_free(q);
                return r;
        }
        q->next = p->queries;
        p->queries = q;
        return 1;
}
