/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "isp-image.h"
#include "session.h"

typedef struct Manager Manager;

enum job_state {
        JOB_QUEUED,
        JOB_RUNNING,
        JOB_SUCCEEDED,
        JOB_FAILED,
        JOB_CANCELLED,
        _JOB_STATE_MAX,
};

typedef struct Job Job;

/* Why a job or node was cancelled when a client asked for it. */
#define JOB_CANCELLED_REASON "cancelled by a client ('ispctl cancel' or CancelJob)"

/* One node of a flash or reboot job: where it is and how its work went.
 * A job has one per target (a scan has none); a record from before
 * several targets existed loads as one. */
struct job_node {
        char *interface;                /* its line */
        uint8_t id;                     /* 0 = legacy */
        char *name;                     /* canonical: "node3", "can1/node3", "legacy" */
        enum job_state state;
        enum session_phase phase;       /* the last it entered */
        uint64_t bytes_done, bytes_total;       /* PROGRAM bytes (session_target_result) */
        unsigned sectors_written, sectors_skipped, repairs;
        char *error;                    /* NULL unless it failed (or was cancelled with a reason) */
        enum session_outcome outcome;   /* once it succeeded; NOT_STARTED after a failed canary */
        enum session_boot boot;
        unsigned sectors_to_erase;      /* dry run */
        uint64_t estimate_usec;         /* dry run */
        uint8_t differing[ISP_SECTORS / 8];     /* verify, dry run: a bit per sector */
        bool identified;                /* its application answered: image_crc is valid */
        uint32_t image_crc;
};

struct Job {
        Manager *manager;
        Job *next, *prev;               /* in the queue or in the history */

        uint32_t id;
        enum session_kind kind;
        char *target;                   /* canonical: "node3", "legacy", "bus" for a scan;
                                         * several nodes: their names, comma-separated */
        uint8_t node;                   /* 0 = legacy; several nodes: the first one's */
        enum job_state state;
        enum session_phase phase;
        uint64_t bytes_done, bytes_total;
        char *error;                    /* NULL unless failed or cancelled */
        uint64_t created_usec, started_usec, finished_usec;    /* CLOCK_REALTIME */
        uint32_t requested_by;          /* uid */
        unsigned attempts;              /* starts, counting restarts after a daemon crash */

        char *interface;                /* CAN line the job runs on; NULL = every line (scan), or
                                         * the nodes are on several lines */

        struct job_node *nodes;         /* flash, reboot: the targets, in the order given */
        unsigned n_nodes;

        /* flash (and verify: image, name) only */
        bool opt_reboot, opt_verify, opt_full;
        bool opt_force, opt_dry_run, opt_require_boot;
        unsigned opt_canary;            /* the first this many nodes first */
        char *image_name;               /* file name the client gave, may be NULL */
        uint32_t image_crc;             /* CRC-32 of the stored jobs/<id>.image */
        uint32_t app_crc;               /* isp_image_app_crc32(): what the node will hold */
        /* The node image. The raw upload is never kept: the store writes
         * this to jobs/<id>.image and frees it at enqueue, brings it back
         * when the job starts and frees it when the job finishes. */
        struct isp_image *image;

        /* A job on several lines (a scan, nodes on several lines) runs in
         * parts, one per line; in memory only (a restarted job starts
         * over). */
        uint32_t lines_started, lines_done;     /* bit i: line i */
        unsigned lines_running;
        enum job_state part_state;              /* of the first part that did not succeed */
        char *part_error;
        unsigned stage;                         /* canary: 0 the canaries, 1 the others */
        enum session_phase saved_phase;         /* the phase in the record on disk */
};

Job *job_new(Manager *m, uint32_t id, enum session_kind kind, const char *target, uint8_t node);
Job *job_free(Job *j);

const char *job_state_to_string(enum job_state s);
int job_state_from_string(const char *s);
bool job_state_is_final(enum job_state s);

/* Append a node (strings copied). -ENOMEM. */
int job_add_node(Job *j, const char *interface, uint8_t id, const char *name);
/* The node with this id on this line, or NULL. */
struct job_node *job_find_node(Job *j, const char *interface, uint8_t id);
/* Every node back to queued, nothing done: the job starts (again). */
void job_reset_nodes(Job *j);
/* A node's figures, and with_end also its state, phase and error, from
 * the session's result for it. Figures the engine does not fill (0 bytes
 * total) leave what the progress callbacks told. */
void job_node_update(struct job_node *n, const struct session_target_result *r, bool with_end);
/* A job of several nodes: its phase is the least advanced phase of the
 * nodes still running (unchanged while none runs), its bytes the sums
 * over its nodes. */
void job_summarize_nodes(Job *j);
/* Whether node i runs in the job's current stage (a canary flash runs
 * its first opt_canary nodes first). */
bool job_node_in_stage(const Job *j, unsigned i);
/* Kinds that carry an image (flash, verify). */
static inline bool job_has_image(const Job *j) {
        return j->kind == SESSION_FLASH || j->kind == SESSION_VERIFY;
}

/* (De)serialise the job's record, not the image. job_from_json() returns
 * -EBADMSG for text that is not a JSON object, -EINVAL for an object that
 * is not a job (bad or missing id, kind, target, node or state, or a
 * "nodes" entry without id and name). */
char *job_to_json(const Job *j);
int job_from_json(Manager *m, const char *json, Job **ret);
