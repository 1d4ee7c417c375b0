/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <json-c/json.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "ispctl.h"

/* How output_json() prints: JSON_C_TO_STRING_PLAIN (--json, --json=short:
 * one line) or JSON_C_TO_STRING_PRETTY (--json=pretty). */
void output_set_json_flags(int flags);
/* Print one JSON object (its own line, or pretty lines) and free it. */
void output_json(json_object *o);
/* The text output_json() would print for o (valid until o changes). */
const char *output_json_string(json_object *o);

/* Columns to fit: $COLUMNS, else the terminal's on stdout, else 80. */
unsigned output_columns(void);

/* Whether stdout gets colour: a terminal, no $NO_COLOR (any value), not
 * TERM=dumb, no SYSTEMD_COLORS=0|false|no|off (1|true|yes|on forces it). */
bool output_colors(void);
/* The ANSI SGR sequence for a state or result word ("succeeded",
 * "failed: ...", "up-to-date"), "" for none or without colour. */
const char *output_color_of(const char *word);
#define ANSI_NORMAL "\033[0m"

/* The display width of UTF-8 text, one column a character, not counting
 * SGR sequences ("\033[...m"). */
size_t text_width(const char *s);
/* Print s cut to `width` columns, "…" at the cut (escape sequences are
 * kept, and a colour cut off is reset). */
void print_cut(const char *s, size_t width);
/* One table cell in `color` ("" none), padded to `width` visible columns
 * (not when last); longer text is cut to width - 1 and ends with "…". */
void print_cell(const char *s, const char *color, size_t width, bool last);
/* A column as wide as its widest cell, at most `max`. */
void widen(size_t *width, const char *cell, size_t max);
/* Fit a table into `budget` columns: shrink the columns in `order`
 * (indexes into w), each down to its min[], until the widths and one
 * space between each fit. */
void fit_columns(size_t *w, const size_t *min, size_t n, const size_t *order, size_t n_order, size_t budget);

/* "2026-11-22 13:58:31 UTC" for µs since the epoch, "never" for 0. */
const char *format_timestamp(uint64_t usec, char *buf, size_t n);
/* "5s ago", "3min ago" */
const char *format_ago(uint64_t usec, char *buf, size_t n);

/* ListNodes as a table (or, with ret_json, as a JSON array). Returns an
 * exit status. */
int output_node_table(const struct ispctl_args *args, sd_bus *bus, json_object **ret_json);

/* "BytesDone" → "bytes_done" */
void camel_to_snake(const char *in, char *out, size_t n);
