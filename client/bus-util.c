/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ispctl.h"
#include "stcisp-dbus.h"
#include "util.h"

int ispctl_connect(const struct ispctl_args *args, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        if (args->address) {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, args->address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        } else if (args->host)
                /* ssh HOST systemd-stdio-bridge, as systemctl -H does */
                r = sd_bus_open_system_remote(&bus, args->host);
        else
                r = sd_bus_open_system(&bus);
        /* polkit may then ask for a password (daemon/polkit.c) */
        if (r >= 0 && args->ask_password)
                r = sd_bus_set_allow_interactive_authorization(bus, true);
        if (r < 0) {
                sd_bus_unref(bus);
                if (args->host)
                        ispctl_error(args, NULL, 0, false,
                                     "Cannot reach the system bus of %s over SSH: %s", args->host, strerror(-r));
                else if (args->address)
                        ispctl_error(args, NULL, 0, false, "Cannot connect to the bus at %s: %s",
                                     args->address, strerror(-r));
                else {
                        const char *a = getenv("DBUS_SYSTEM_BUS_ADDRESS");

                        ispctl_error(args, NULL, 0, false,
                                     "Cannot connect to the system bus at %s (%s): is dbus running? "
                                     "('systemctl status dbus'; $DBUS_SYSTEM_BUS_ADDRESS sets another address)",
                                     a && *a ? a : "unix:path=/run/dbus/system_bus_socket", strerror(-r));
                }
                return ISPCTL_EXIT_UNREACHABLE;
        }
        /* --timeout bounds the whole wait, the calls that queue the work
         * included (sd-bus would wait 25 s for each). */
        if (args->deadline_usec > 0) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                (void) sd_bus_set_method_call_timeout(bus, args->deadline_usec > now ? args->deadline_usec - now : 1);
        }
        *ret = bus;
        return 0;
}

int ispctl_bus_error(const struct ispctl_args *args, const char *what, const sd_bus_error *error, int r) {
        const char *name = error && error->name ? error->name : "";
        const char *msg = error && error->message ? error->message : strerror(r < 0 ? -r : r);

        if (args->deadline_usec > 0 && now_usec(CLOCK_MONOTONIC) >= args->deadline_usec &&
            (r == -ETIMEDOUT || strcmp(name, "org.freedesktop.DBus.Error.Timeout") == 0 ||
             strcmp(name, "org.freedesktop.DBus.Error.NoReply") == 0)) {
                ispctl_error(args, NULL, 0, false,
                             "%s: --timeout %s%s expired before stcispd answered; the request may still be "
                             "carried out: 'ispctl jobs' shows the queue", what, args->timeout,
                             args->timeout[strspn(args->timeout, "0123456789")] ? "" : "s");
                return ISPCTL_EXIT_TIMEOUT;
        }

        if (strcmp(name, "org.freedesktop.DBus.Error.ServiceUnknown") == 0 ||
            strcmp(name, "org.freedesktop.DBus.Error.NameHasNoOwner") == 0 ||
            strcmp(name, "org.freedesktop.DBus.Error.NoReply") == 0 ||
            strcmp(name, "org.freedesktop.DBus.Error.Disconnected") == 0 ||
            r == -ECONNRESET || r == -ENOTCONN || r == -ETIMEDOUT) {
                /* over SSH the bus goes away when ssh does: say so, its own
                 * message is on stderr above */
                if (args->host && (r == -ECONNRESET || r == -ENOTCONN ||
                                   strcmp(name, "org.freedesktop.DBus.Error.Disconnected") == 0)) {
                        ispctl_error(args, NULL, 0, false,
                                     "Cannot reach %s over SSH: 'ssh -xT %s systemd-stdio-bridge' ended (%s); "
                                     "ssh's own message, if any, is above: check the host name and that "
                                     "'ssh %s' works", args->host, args->host, msg, args->host);
                        return ISPCTL_EXIT_UNREACHABLE;
                }
                ispctl_error(args, NULL, 0, false,
                             "stcispd is not reachable (%s): is it running? 'systemctl status stcispd' tells", msg);
                return ISPCTL_EXIT_UNREACHABLE;
        }
        if (strcmp(name, STCISP_ERROR_NODE_NOT_FOUND) == 0 || strcmp(name, STCISP_ERROR_AMBIGUOUS_NODE) == 0) {
                ispctl_error(args, NULL, 0, false, "%s", msg);
                return ISPCTL_EXIT_NODE_NOT_FOUND;
        }
        if (strcmp(name, STCISP_ERROR_ACCESS_DENIED) == 0 ||
            strcmp(name, "org.freedesktop.DBus.Error.AccessDenied") == 0) {
                ispctl_error(args, NULL, 0, false, "%s: access denied: %s", what, msg);
                return ISPCTL_EXIT_ACCESS_DENIED;
        }
        if (strcmp(name, STCISP_ERROR_INVALID_IMAGE) == 0) {
                ispctl_error(args, NULL, 0, false, "%s: the daemon refused the image: %s", what, msg);
                return ISPCTL_EXIT_INVALID_IMAGE;
        }
        if (strcmp(name, "org.freedesktop.DBus.Error.InvalidArgs") == 0) {
                ispctl_error(args, NULL, 0, false, "%s: %s", what, msg);
                return ISPCTL_EXIT_USAGE;
        }
        ispctl_error(args, NULL, 0, false, "%s failed: %s", what, msg);
        return ISPCTL_EXIT_DAEMON_ERROR;
}
