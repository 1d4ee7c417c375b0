/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The D-Bus glue: vtables, property getters and signals, one file per
 * object (bus-manager.c, bus-job.c, bus-node.c, bus-line.c). It calls the
 * manager; the manager calls only what is declared here. See
 * dbus/org.stcisp.ispd1.xml and docs/dbus-api.md.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>

typedef struct Manager Manager;
typedef struct Job Job;
typedef struct Line Line;
typedef struct NodeEntry NodeEntry;
struct can_link_status;

/* Connect to the system bus, export every object, request the name; the
 * manager is told through manager_ready() when the name is ours. */
int manager_connect_bus(Manager *m);

void bus_emit_job_new(Manager *m, Job *j);
void bus_emit_job_removed(Manager *m, Job *j);
/* PropertiesChanged for the NULL-terminated list of properties. */
void bus_emit_job_changed(Manager *m, Job *j, const char *property, ...) __attribute__((sentinel));
void bus_emit_node_changed(Manager *m, const NodeEntry *e);
void bus_emit_line_changed(Manager *m, Line *l, const char *property, ...) __attribute__((sentinel));
/* The line's counters, when they moved since the last call: returns
 * whether they did. */
bool bus_emit_line_counters(Manager *m, Line *l);

/* ---- between the bus-*.c files ---- */

extern const sd_bus_vtable bus_job_vtable[];
int bus_job_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                 void **found, sd_bus_error *error);
int bus_job_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error);
char *bus_job_path(const Job *j);

extern const sd_bus_vtable bus_node_vtable[];
int bus_node_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                  void **found, sd_bus_error *error);
int bus_node_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error);
/* The node's properties as an a{sv}, for Manager.Status(). */
int bus_node_append_properties(Manager *m, sd_bus_message *reply, Line *line, uint8_t node);
/* One ListNodes() row, and one ListNodesEx() row. */
int bus_node_append_row(Manager *m, sd_bus_message *reply, const NodeEntry *e);
int bus_node_append_row_ex(Manager *m, sd_bus_message *reply, const NodeEntry *e);

extern const sd_bus_vtable bus_line_vtable[];
int bus_line_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                  void **found, sd_bus_error *error);
int bus_line_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error);
/* The line's status `st` (line_get_status()) as a{sv} entries, without
 * the container. */
int bus_line_append_status(Manager *m, sd_bus_message *reply, Line *l, const struct can_link_status *st);

/* PropertiesChanged on path for the properties from `property` on, up
 * to a NULL in `ap`; nothing without a bus. */
void bus_emit_changed_va(Manager *m, const char *path, const char *interface, const char *property, va_list ap);

/* CancelJob and Job.Cancel: access check, cancel, errors by name. */
int bus_cancel_job(Manager *m, sd_bus_message *msg, uint32_t id, sd_bus_error *error);
