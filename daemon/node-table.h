/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The nodes the daemon knows, keyed by (CAN interface, node id), and kept
 * in <state dir>/nodes.json so that a restart (even after kill -9) lists
 * the same nodes, with their UID and last flash result, before any scan.
 *
 * Pure data and file I/O: no sd-bus, no sd-event. The table owns its
 * entries and their strings; pointers to entries stay valid until the
 * entry is removed, the table is loaded again or freed — node_table_add()
 * may move the array, never the entries.
 *
 * nodes.json is {"version":1,"nodes":[...]}, one object per entry with
 * every field of NodeEntry (see node-table.c, entry_to_json()). A file
 * that is damaged is never silently dropped: it is renamed to
 * nodes.json.damaged-<unix time> and the intact entries, if any, are kept.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isp-frame.h"

#define NODE_TABLE_FILE "nodes.json"

enum node_state {
        NODE_UNKNOWN,           /* never seen answering (e.g. only flashed and failed) */
        NODE_ISP,               /* answered CONNECT/DISCOVER or announced itself */
        NODE_APPLICATION,       /* rebooted into its application by us */
        NODE_NOT_ANSWERING,     /* known, but did not answer the last scan or job */
        _NODE_STATE_MAX,
};

/* "unknown", "isp", "application", "not-answering"; "unknown" for a value
 * out of range, so that a D-Bus property never gets NULL. */
const char *node_state_to_string(enum node_state s);
/* The enum value, or -EINVAL. */
int node_state_from_string(const char *s);

typedef struct NodeEntry {
        char *interface;                /* the CAN interface (line) it is on, e.g. "can0" */
        uint8_t id;                     /* 0 = the legacy node, 1-254 */
        bool legacy;
        bool known;                     /* it answered at least once (form and info are valid) */
        enum node_state state;
        struct isp_info info;           /* from its INFO: versions, capabilities, depth, UID */
        uint64_t first_seen_usec, last_seen_usec;   /* CLOCK_REALTIME, 0 = never */
        char *last_flash_result;        /* "succeeded", "failed: ...", "cancelled", NULL = never flashed */
        uint64_t last_flash_usec;
        uint32_t last_flash_crc;        /* CRC-32 of the application area last flashed there successfully */
        bool has_flash_crc;
        char *last_flash_name;          /* the file name of that flash, NULL if none was given */

        /* its application, from IDENTIFY (docs/protocol.md 4.9) */
        bool has_image_crc;
        uint32_t image_crc;             /* the image CRC it last answered with */
        uint32_t app_version;           /* from ABOUT, 0 none */

        /* Two boards answer on this id (different UIDs): nothing that
         * changes flash is sent to it until a later scan sees one board. */
        bool conflict;
        uint8_t conflict_uids[2][4];
        uint32_t conflict_job;          /* the job that saw it */
} NodeEntry;

typedef struct NodeTable {
        NodeEntry **entries;            /* sorted by (interface, id) */
        size_t n_entries;
        int state_dir_fd;               /* borrowed */
        char *state_dir;                /* for messages */
} NodeTable;

/* An empty table over state_dir_fd, which the caller keeps open for the
 * table's life. Nothing is read: call node_table_load(). */
int node_table_new(NodeTable **ret, int state_dir_fd, const char *state_dir);
NodeTable *node_table_free(NodeTable *t);                /* NULL-safe, returns NULL */

/* Replace the entries with those of nodes.json. A missing file is an
 * empty table and 0. A damaged file is set aside (a warning names it) and
 * 0 is returned with whatever entries were intact; if some were, a clean
 * nodes.json is written with them at once, so that they survive a crash.
 * A file that cannot be read (EACCES, EIO, a directory ...) is logged,
 * left where it is, the table is unchanged and the negative errno is
 * returned. */
int node_table_load(NodeTable *t);
/* Write nodes.json atomically and durably (write_file_atomic). Logs and
 * returns the negative errno on failure; the old file is then intact. */
int node_table_save(NodeTable *t);

NodeEntry *node_table_find(NodeTable *t, const char *interface, uint8_t id);
/* Find or create (state NODE_UNKNOWN, legacy = id is 0); keeps the order.
 * Returns 1 if the entry was created, 0 if it existed, -EINVAL for an
 * invalid interface name or id 255, -ENOMEM. ret may be NULL. */
int node_table_add(NodeTable *t, const char *interface, uint8_t id, NodeEntry **ret);
int node_table_remove(NodeTable *t, const char *interface, uint8_t id);  /* -ENOENT if absent */
void node_entry_format_uid(const NodeEntry *e, char buf[static 9]);  /* "A4917069", "" for legacy/unknown */

/* Record a flash outcome: copies result (NULL = forget it) and sets
 * last_flash_usec. The CRC is left alone: set it on success only. Returns
 * 0 or -ENOMEM (the entry is then unchanged). */
int node_entry_set_flash_result(NodeEntry *e, const char *result, uint64_t when_usec);
/* "A4917069 and 5D0C33E1" for a conflicting entry; "" otherwise. */
void node_entry_format_conflict(const NodeEntry *e, char buf[static 24]);
/* What it runs, for people: "app.hex, flashed 2026-12-01 10:02" when the
 * image its application answered with is what was last flashed there,
 * "image 5907571D" otherwise, "" when unknown. Returns a new string or NULL. */
char *node_entry_running(const NodeEntry *e);


/* The table's order of interface names: digit runs compare as numbers,
 * so "can2" comes before "can10"; a total order (ties broken by bytes). */
int interface_name_compare(const char *a, const char *b);

/* ---- lookup by UID ---- */

/* The entry of the board with this UID (the first 4 bytes, as INFO
 * reports them): a known extended node on `interface`, or on any line
 * when it is NULL. A board that was re-addressed or moved leaves its old
 * entries behind with its UID until another board answers there; the one
 * seen last is where the board is. Ties go to the first in table order.
 * NULL if no entry has the UID. */
NodeEntry *node_table_find_uid(NodeTable *t, const char *interface, const uint8_t uid[static 4]);
