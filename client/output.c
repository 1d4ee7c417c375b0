/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "output.h"
#include "stcisp-dbus.h"
#include "util.h"

void output_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        fflush(stdout);
        json_object_put(o);
}

const char *format_timestamp(uint64_t usec, char *buf, size_t n) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec == 0) {
                snprintf(buf, n, "never");
                return buf;
        }
        if (!localtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                snprintf(buf, n, "%llu", (unsigned long long) usec);
        return buf;
}

const char *format_ago(uint64_t usec, char *buf, size_t n) {
        uint64_t now, d;

        if (usec == 0) {
                snprintf(buf, n, "never");
                return buf;
        }
        now = now_usec(CLOCK_REALTIME);
        d = now > usec ? (now - usec) / 1000000 : 0;
        if (d < 60)
                snprintf(buf, n, "%llus ago", (unsigned long long) d);
        else if (d < 3600)
                snprintf(buf, n, "%llumin ago", (unsigned long long) d / 60);
        else if (d < 86400)
                snprintf(buf, n, "%lluh ago", (unsigned long long) d / 3600);
        else
                snprintf(buf, n, "%llud ago", (unsigned long long) d / 86400);
        return buf;
}

void camel_to_snake(const char *in, char *out, size_t n) {
        size_t o = 0;

        for (size_t i = 0; in[i] && o + 2 < n; i++) {
                /* systemd's "USec" suffix is one word: "LastSeenUSec" → "last_seen_usec" */
                if (strcmp(in + i, "USec") == 0) {
                        snprintf(out + o, n - o, "%susec", o > 0 ? "_" : "");
                        return;
                }
                unsigned char c = (unsigned char) in[i];
                /* "UID" stays "uid", "RxErrors" becomes "rx_errors" */
                if (isupper(c) && i > 0 && (islower((unsigned char) in[i - 1]) ||
                                            (in[i + 1] && islower((unsigned char) in[i + 1]))))
                        out[o++] = '_';
                out[o++] = (char) tolower(c);
        }
        out[o] = '\0';
}

static json_object *node_row_json(const char *ifname, uint8_t id, const char *name, const char *form,
                                  const char *state, uint8_t proto, uint8_t fw, const char *uid,
                                  uint64_t first_seen, uint64_t seen, const char *result, uint64_t flashed,
                                  uint32_t crc) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "id", json_object_new_int(id));
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "interface", json_object_new_string(ifname));
        json_object_object_add(o, "form", json_object_new_string(form));
        json_object_object_add(o, "state", json_object_new_string(state));
        json_object_object_add(o, "protocol_version", json_object_new_int(proto));
        json_object_object_add(o, "firmware_version", json_object_new_int(fw));
        json_object_object_add(o, "uid", *uid ? json_object_new_string(uid) : NULL);
        json_object_object_add(o, "first_seen_usec", json_object_new_int64((int64_t) first_seen));
        json_object_object_add(o, "last_seen_usec", json_object_new_int64((int64_t) seen));
        json_object_object_add(o, "last_flash_result", *result ? json_object_new_string(result) : NULL);
        json_object_object_add(o, "last_flash_usec", json_object_new_int64((int64_t) flashed));
        json_object_object_add(o, "last_flash_crc", crc ? json_object_new_int64(crc) : NULL);
        return o;
}

int output_node_table(const struct ispctl_args *args, sd_bus *bus, json_object **ret_json) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        json_object *arr = ret_json ? json_object_new_array() : NULL;
        const char *ifname, *name, *form, *state, *uid, *result;
        uint8_t id, proto, fw;
        uint64_t first_seen, seen, flashed;
        uint32_t crc;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE,
                               "ListNodesEx", &error, &reply, "");
        if (r < 0) {
                json_object_put(arr);
                return ispctl_bus_error(args, "Listing the nodes", &error, r);
        }
        r = sd_bus_message_enter_container(reply, 'a', "(sysssyyyysttstuo)");
        if (r < 0)
                goto fail;

        if (!ret_json)
                printf("%-3s %-14s %-8s %-13s %-5s %-3s %-8s %-10s %s\n",
                       "ID", "NAME", "FORM", "STATE", "PROTO", "ISP", "UID", "LAST SEEN", "LAST FLASH");
        while ((r = sd_bus_message_read(reply, "(sysssyyyysttstuo)", &ifname, &id, &name, &form, &state, &proto,
                                        &fw, NULL, NULL, &uid, &first_seen, &seen, &result, &flashed, &crc,
                                        NULL)) > 0) {
                char ago[32], pv[8], fv[8];

                n++;
                if (ret_json) {
                        json_object_array_add(arr, node_row_json(ifname, id, name, form, state, proto, fw, uid,
                                                                 first_seen, seen, result, flashed, crc));
                        continue;
                }
                /* versions come from INFO: a legacy node has none */
                if (strcmp(form, "extended") == 0) {
                        snprintf(pv, sizeof(pv), "%u", proto);
                        snprintf(fv, sizeof(fv), "%u", fw);
                } else
                        strcpy(pv, "-"), strcpy(fv, "-");
                printf("%-3u %-14s %-8s %-13s %-5s %-3s %-8s %-10s %s\n", id, name, form, state, pv, fv,
                       *uid ? uid : "-", format_ago(seen, ago, sizeof(ago)), *result ? result : "-");
        }
        if (r < 0)
                goto fail;
        if (ret_json)
                *ret_json = arr;
        else
                printf("\n%u node%s listed.%s\n", n, n == 1 ? "" : "s",
                       n == 0 ? " 'ispctl scan' asks the bus which nodes are in their ISP." : "");
        return 0;
fail:
        json_object_put(arr);
        return ispctl_bus_error(args, "Listing the nodes", NULL, r);
}
