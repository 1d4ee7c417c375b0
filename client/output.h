/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <json-c/json.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "ispctl.h"

/* Print one JSON object on its own line and free it. */
void output_json(json_object *o);

/* "2026-11-22 13:58:31 UTC" for µs since the epoch, "never" for 0. */
const char *format_timestamp(uint64_t usec, char *buf, size_t n);
/* "5s ago", "3min ago" */
const char *format_ago(uint64_t usec, char *buf, size_t n);

/* ListNodes as a table (or, with ret_json, as a JSON array). Returns an
 * exit status. */
int output_node_table(const struct ispctl_args *args, sd_bus *bus, json_object **ret_json);

/* "BytesDone" → "bytes_done" */
void camel_to_snake(const char *in, char *out, size_t n);
