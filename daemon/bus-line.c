/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Line objects: /org/stcisp/ispd1/line/<interface> (escaped as
 * sd_bus_path_encode() does), one per CAN interface. Vtable and getters
 * only. The counters move with every frame: they are signalled at most
 * once a second (bus_emit_line_counters), the rest on every change. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "manager.h"
#include "stcisp-dbus.h"
#include "util.h"

static char *line_path(const Line *l) {
        char *p;

        return sd_bus_path_encode(STCISP_LINE_PREFIX, l->interface, &p) < 0 ? NULL : p;
}

static Line *line_from_path(Manager *m, const char *path) {
        _cleanup_free_ char *ifname = NULL;

        if (sd_bus_path_decode(path, STCISP_LINE_PREFIX, &ifname) <= 0)
                return NULL;
        return manager_find_line(m, ifname);
}

int bus_line_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                  void **found, sd_bus_error *error) {
        Line *l = line_from_path(userdata, path);

        if (!l)
                return 0;
        *found = l;
        return 1;
}

int bus_line_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **l = calloc(m->n_lines + 1, sizeof(char *));
        size_t n = 0;

        if (!l)
                return -ENOMEM;
        for (unsigned i = 0; i < m->n_lines; i++)
                if ((l[n] = line_path(m->lines[i])))
                        n++;
        *nodes = l;
        return 1;
}

static Manager *line_manager(Line *l) {
        return l->userdata;     /* line_new()'s userdata is the manager */
}

static uint32_t running_job(const Line *l) {
        return l->job ? l->job->id : 0;
}

#define LINE_PROPERTY(name, sig, query, expr)                                                   \
        static int property_get_line_##name(sd_bus *bus, const char *path, const char *iface,  \
                                            const char *prop, sd_bus_message *reply,            \
                                            void *userdata, sd_bus_error *error) {              \
                Line *l = userdata;                                                             \
                struct can_link_status st;                                                      \
                line_get_status(l, query, &st);                                                 \
                return sd_bus_message_append(reply, sig, expr);                                 \
        }

LINE_PROPERTY(interface, "s", false, l->interface)
LINE_PROPERTY(link_state, "s", false, l->absent ? "absent" : st.up ? "up" : "down")
LINE_PROPERTY(bitrate, "u", true, st.bitrate)
LINE_PROPERTY(controller_state, "s", true, st.controller_state)
LINE_PROPERTY(rx_errors, "i", true, st.rx_errors)
LINE_PROPERTY(tx_errors, "i", true, st.tx_errors)
LINE_PROPERTY(error_frames, "t", false, st.error_frames)
LINE_PROPERTY(bus_off, "t", false, st.bus_off)
LINE_PROPERTY(frames_sent, "t", false, st.frames_sent)
LINE_PROPERTY(frames_received, "t", false, st.frames_received)
LINE_PROPERTY(rx_dropped, "u", false, st.rx_dropped)
LINE_PROPERTY(last_error, "s", false, st.last_error)
LINE_PROPERTY(queue_length, "u", false, manager_line_queue_length(line_manager(l), l))
LINE_PROPERTY(running_job, "u", false, running_job(l))

const sd_bus_vtable bus_line_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Interface", "s", property_get_line_interface, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("LinkState", "s", property_get_line_link_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Bitrate", "u", property_get_line_bitrate, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ControllerState", "s", property_get_line_controller_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RxErrors", "i", property_get_line_rx_errors, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("TxErrors", "i", property_get_line_tx_errors, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ErrorFrames", "t", property_get_line_error_frames, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BusOffCount", "t", property_get_line_bus_off, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FramesSent", "t", property_get_line_frames_sent, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FramesReceived", "t", property_get_line_frames_received, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RxDropped", "u", property_get_line_rx_dropped, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", property_get_line_last_error, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("QueueLength", "u", property_get_line_queue_length, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RunningJob", "u", property_get_line_running_job, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

int bus_line_append_status(Manager *m, sd_bus_message *reply, Line *l, const struct can_link_status *s) {
        const struct can_link_status st = *s;

        return sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
                "Interface", "s", l->interface,
                "LinkState", "s", l->absent ? "absent" : st.up ? "up" : "down",
                "Bitrate", "u", st.bitrate,
                "ControllerState", "s", st.controller_state,
                "RxErrors", "i", st.rx_errors,
                "TxErrors", "i", st.tx_errors,
                "ErrorFrames", "t", st.error_frames,
                "BusOffCount", "t", st.bus_off,
                "FramesSent", "t", st.frames_sent,
                "FramesReceived", "t", st.frames_received,
                "RxDropped", "u", st.rx_dropped,
                "LastError", "s", st.last_error,
                "QueueLength", "u", manager_line_queue_length(m, l),
                "RunningJob", "u", running_job(l));
}

void bus_emit_line_changed(Manager *m, Line *l, const char *property, ...) {
        _cleanup_free_ char *path = line_path(l);
        va_list ap;

        va_start(ap, property);
        bus_emit_changed_va(m, path, STCISP_LINE_IFACE, property, ap);
        va_end(ap);
}

bool bus_emit_line_counters(Manager *m, Line *l) {
        struct can_link_status st, *last = &l->emitted;
        const char *props[10];
        size_t n = 0;

        line_get_status(l, false, &st);
        if (st.frames_sent != last->frames_sent)
                props[n++] = "FramesSent";
        if (st.frames_received != last->frames_received)
                props[n++] = "FramesReceived";
        if (st.rx_dropped != last->rx_dropped)
                props[n++] = "RxDropped";
        if (st.error_frames != last->error_frames || st.bus_off != last->bus_off) {
                /* an error frame: the controller's own view may have moved too */
                props[n++] = "ErrorFrames";
                props[n++] = "BusOffCount";
                props[n++] = "LastError";
                props[n++] = "ControllerState";
                props[n++] = "RxErrors";
                props[n++] = "TxErrors";
        }
        props[n] = NULL;
        *last = st;
        if (n > 0 && m->bus) {
                _cleanup_free_ char *path = line_path(l);

                if (path)
                        (void) sd_bus_emit_properties_changed_strv(m->bus, path, STCISP_LINE_IFACE, (char **) props);
        }
        return n > 0;
}
