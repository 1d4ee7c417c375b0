/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Node objects: /org/stcisp/ispd1/node/<id> with one line, and
 * /org/stcisp/ispd1/node/<interface>/<id> with several (the interface
 * escaped as sd_bus_path_encode() does). Vtable and getters only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "manager.h"
#include "stcisp-dbus.h"
#include "util.h"

static char *node_path(Manager *m, const NodeEntry *e) {
        _cleanup_free_ char *prefix = NULL;
        char *p;

        if (m->n_lines <= 1)
                return asprintf(&p, STCISP_NODE_PREFIX "/%u", e->id) < 0 ? NULL : p;
        if (sd_bus_path_encode(STCISP_NODE_PREFIX, e->interface, &prefix) < 0)
                return NULL;
        return asprintf(&p, "%s/%u", prefix, e->id) < 0 ? NULL : p;
}

static int parse_id(const char *s, uint8_t *ret) {
        unsigned long id;
        char *end;

        if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1]))
                return -EINVAL;
        errno = 0;
        id = strtoul(s, &end, 10);
        if (*end || errno != 0 || id > ISP_NODE_MAX)
                return -EINVAL;
        *ret = (uint8_t) id;
        return 0;
}

/* The entry an object path names, NULL if none. */
static NodeEntry *node_from_path(Manager *m, const char *path) {
        const char *p = path + strlen(STCISP_NODE_PREFIX), *slash;
        _cleanup_free_ char *prefix = NULL, *ifname = NULL;
        uint8_t id;

        if (strncmp(path, STCISP_NODE_PREFIX, strlen(STCISP_NODE_PREFIX)) != 0 || *p != '/')
                return NULL;
        if (m->n_lines <= 1)
                return parse_id(p + 1, &id) < 0 || m->n_lines == 0 ? NULL :
                       node_table_find(m->nodes, m->lines[0]->interface, id);
        slash = strrchr(path, '/');
        if (slash == p || parse_id(slash + 1, &id) < 0)
                return NULL;
        prefix = strndup(path, (size_t) (slash - path));
        if (!prefix || sd_bus_path_decode(prefix, STCISP_NODE_PREFIX, &ifname) <= 0)
                return NULL;
        return node_table_find(m->nodes, ifname, id);
}

int bus_node_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                  void **found, sd_bus_error *error) {
        Manager *m = userdata;

        if (!node_from_path(m, path))
                return 0;
        /* The getters find the entry from the path: they need the manager. */
        *found = m;
        return 1;
}

int bus_node_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **l = calloc(m->nodes->n_entries + 1, sizeof(char *));
        size_t n = 0;

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < m->nodes->n_entries; i++)
                if ((l[n] = node_path(m, m->nodes->entries[i])))
                        n++;
        *nodes = l;
        return 1;
}

static const char *node_form(const NodeEntry *e) {
        return e && e->known ? (e->legacy ? "legacy" : "extended") : "unknown";
}

static const char *node_flash_result(const NodeEntry *e) {
        return e ? strempty(e->last_flash_result) : "";
}

static const char *node_state(const NodeEntry *e) {
        return e->conflict ? "conflict" : node_state_to_string(e->state);
}

static int append_conflict_uids(sd_bus_message *reply, const NodeEntry *e) {
        int r = sd_bus_message_open_container(reply, 'a', "s");

        for (unsigned i = 0; r >= 0 && e->conflict && i < 2; i++) {
                char u[9];

                snprintf(u, sizeof(u), "%02X%02X%02X%02X", e->conflict_uids[i][0], e->conflict_uids[i][1],
                         e->conflict_uids[i][2], e->conflict_uids[i][3]);
                r = sd_bus_message_append(reply, "s", u);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static int property_get_node_running(sd_bus *bus, const char *path, const char *iface, const char *prop,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const NodeEntry *e = node_from_path(userdata, path);
        _cleanup_free_ char *running = NULL;

        if (!e)
                return -ENOENT;
        running = node_entry_running(e);
        if (!running)
                return -ENOMEM;
        return sd_bus_message_append(reply, "s", running);
}

static int property_get_node_conflict_uids(sd_bus *bus, const char *path, const char *iface, const char *prop,
                                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const NodeEntry *e = node_from_path(userdata, path);

        if (!e)
                return -ENOENT;
        return append_conflict_uids(reply, e);
}

#define NODE_PROPERTY(name, sig, expr)                                                          \
        static int property_get_node_##name(sd_bus *bus, const char *path, const char *iface,  \
                                            const char *prop, sd_bus_message *reply,            \
                                            void *userdata, sd_bus_error *error) {              \
                Manager *m = userdata;                                                          \
                const NodeEntry *e = node_from_path(m, path);                                   \
                _unused_ char uid[9];                                                           \
                if (!e)                                                                         \
                        return -ENOENT;                                                         \
                return sd_bus_message_append(reply, sig, expr);                                 \
        }

static int property_get_node_name(sd_bus *bus, const char *path, const char *iface, const char *prop,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const NodeEntry *e = node_from_path(m, path);
        _cleanup_free_ char *name = NULL;

        if (!e)
                return -ENOENT;
        name = manager_node_display_name(m, manager_find_line(m, e->interface) ?: m->lines[0], e->id);
        if (!name)
                return -ENOMEM;
        return sd_bus_message_append(reply, "s", name);
}

NODE_PROPERTY(id, "y", e->id)
NODE_PROPERTY(interface, "s", e->interface)
NODE_PROPERTY(form, "s", node_form(e))
NODE_PROPERTY(state, "s", node_state(e))
NODE_PROPERTY(protocol, "y", e->info.version)
NODE_PROPERTY(firmware, "y", e->info.firmware)
NODE_PROPERTY(caps, "y", e->info.capabilities)
NODE_PROPERTY(depth, "y", e->info.rx_depth)
NODE_PROPERTY(uid, "s", (node_entry_format_uid(e, uid), uid))
NODE_PROPERTY(first_seen, "t", e->first_seen_usec)
NODE_PROPERTY(last_seen, "t", e->last_seen_usec)
NODE_PROPERTY(last_result, "s", node_flash_result(e))
NODE_PROPERTY(last_flash, "t", e->last_flash_usec)
NODE_PROPERTY(last_crc, "u", e->has_flash_crc ? e->last_flash_crc : 0)
NODE_PROPERTY(image_crc, "u", e->has_image_crc ? e->image_crc : 0)
NODE_PROPERTY(app_version, "u", e->app_version)
NODE_PROPERTY(last_name, "s", strempty(e->last_flash_name))

const sd_bus_vtable bus_node_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "y", property_get_node_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Name", "s", property_get_node_name, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Interface", "s", property_get_node_interface, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Form", "s", property_get_node_form, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", property_get_node_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ProtocolVersion", "y", property_get_node_protocol, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FirmwareVersion", "y", property_get_node_firmware, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Capabilities", "y", property_get_node_caps, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReceiveDepth", "y", property_get_node_depth, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UID", "s", property_get_node_uid, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FirstSeenUSec", "t", property_get_node_first_seen, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastSeenUSec", "t", property_get_node_last_seen, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastFlashResult", "s", property_get_node_last_result, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastFlashUSec", "t", property_get_node_last_flash, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastFlashCRC", "u", property_get_node_last_crc, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastFlashName", "s", property_get_node_last_name, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ImageCRC", "u", property_get_node_image_crc, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AppVersion", "u", property_get_node_app_version, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Running", "s", property_get_node_running, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ConflictUIDs", "as", property_get_node_conflict_uids, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

int bus_node_append_properties(Manager *m, sd_bus_message *reply, Line *line, uint8_t node) {
        const NodeEntry *e = node_table_find(m->nodes, line->interface, node);
        static const NodeEntry none = {};
        _cleanup_free_ char *name = manager_node_display_name(m, line, node), *running = NULL;
        char uid[9];
        int r;

        if (!name)
                return -ENOMEM;
        if (!e)
                e = &none;
        running = node_entry_running(e);
        if (!running)
                return -ENOMEM;
        node_entry_format_uid(e, uid);
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}",
                "ImageCRC", "u", e->has_image_crc ? e->image_crc : 0,
                "AppVersion", "u", e->app_version,
                "Running", "s", running,
                "LastFlashName", "s", strempty(e->last_flash_name));
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "ConflictUIDs");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "as");
        if (r >= 0)
                r = append_conflict_uids(reply, e);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
                "Id", "y", node,
                "Name", "s", name,
                "Interface", "s", line->interface,
                "Form", "s", node_form(e),
                "State", "s", node_state(e),
                "ProtocolVersion", "y", e->info.version,
                "FirmwareVersion", "y", e->info.firmware,
                "Capabilities", "y", e->info.capabilities,
                "ReceiveDepth", "y", e->info.rx_depth,
                "UID", "s", uid,
                "FirstSeenUSec", "t", e->first_seen_usec,
                "LastSeenUSec", "t", e->last_seen_usec,
                "LastFlashResult", "s", node_flash_result(e),
                "LastFlashUSec", "t", e->last_flash_usec,
                "LastFlashCRC", "u", e->has_flash_crc ? e->last_flash_crc : 0);
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

int bus_node_append_row(Manager *m, sd_bus_message *reply, const NodeEntry *e) {
        Line *line = manager_find_line(m, e->interface);
        _cleanup_free_ char *name = NULL;

        name = line ? manager_node_display_name(m, line, e->id) : NULL;
        if (!name && asprintf(&name, "%s/node%u", e->interface, e->id) < 0)
                return -ENOMEM;
        return sd_bus_message_append(reply, "(ysssyyts)", e->id, name, node_form(e),
                                     node_state(e), e->info.version, e->info.firmware,
                                     e->last_seen_usec, node_flash_result(e));
}

int bus_node_append_row_ex(Manager *m, sd_bus_message *reply, const NodeEntry *e) {
        Line *line = manager_find_line(m, e->interface);
        _cleanup_free_ char *name = NULL, *path = node_path(m, e), *running = node_entry_running(e);
        char uid[9];
        int r;

        name = line ? manager_node_display_name(m, line, e->id) : NULL;
        if (!name && asprintf(&name, "%s/node%u", e->interface, e->id) < 0)
                return -ENOMEM;
        if (!path || !running)
                return -ENOMEM;
        node_entry_format_uid(e, uid);
        r = sd_bus_message_open_container(reply, 'r', "sysssyyyysttstuouussas");
        if (r >= 0)
                r = sd_bus_message_append(reply, "sysssyyyysttstuouuss", e->interface, e->id, name, node_form(e),
                                          node_state(e), e->info.version, e->info.firmware,
                                          e->info.capabilities, e->info.rx_depth, uid, e->first_seen_usec,
                                          e->last_seen_usec, node_flash_result(e), e->last_flash_usec,
                                          e->has_flash_crc ? e->last_flash_crc : 0, path,
                                          e->has_image_crc ? e->image_crc : 0, e->app_version,
                                          strempty(e->last_flash_name), running);
        if (r >= 0)
                r = append_conflict_uids(reply, e);
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

void bus_emit_node_changed(Manager *m, const NodeEntry *e) {
        _cleanup_free_ char *path = NULL;

        if (!m->bus || !(path = node_path(m, e)))
                return;
        (void) sd_bus_emit_properties_changed(m->bus, path, STCISP_NODE_IFACE,
                                              "Name", "Form", "State", "ProtocolVersion", "FirmwareVersion",
                                              "Capabilities", "ReceiveDepth", "UID", "FirstSeenUSec",
                                              "LastSeenUSec", "LastFlashResult", "LastFlashUSec",
                                              "LastFlashCRC", "LastFlashName", "ImageCRC", "AppVersion",
                                              "Running", "ConflictUIDs", NULL);
}
