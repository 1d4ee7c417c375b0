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

struct Job {
        Manager *manager;
        Job *next, *prev;               /* in the queue or in the history */

        uint32_t id;
        enum session_kind kind;
        char *target;                   /* canonical: "node3", "legacy", "bus" for a scan */
        uint8_t node;                   /* 0 = legacy */
        enum job_state state;
        enum session_phase phase;
        uint64_t bytes_done, bytes_total;
        char *error;                    /* NULL unless failed or cancelled */
        uint64_t created_usec, started_usec, finished_usec;    /* CLOCK_REALTIME */
        uint32_t requested_by;          /* uid */
        unsigned attempts;              /* starts, counting restarts after a daemon crash */

        char *interface;                /* CAN line the job runs on; NULL = every line (scan) */

        /* flash only */
        bool opt_reboot, opt_verify;
        char *image_name;               /* file name the client gave, may be NULL */
        uint32_t image_crc;             /* CRC-32 of the stored jobs/<id>.image */
        uint32_t app_crc;               /* isp_image_app_crc32(): what the node will hold */
        /* The node image. The raw upload is never kept: the store writes
         * this to jobs/<id>.image and frees it at enqueue, brings it back
         * when the job starts and frees it when the job finishes. */
        struct isp_image *image;

        /* A scan on every line (interface NULL) runs in parts, one per
         * line; in memory only (a restarted scan starts over). */
        uint32_t lines_started, lines_done;     /* bit i: line i */
        unsigned lines_running;
        enum job_state part_state;              /* of the first part that did not succeed */
        char *part_error;
};

Job *job_new(Manager *m, uint32_t id, enum session_kind kind, const char *target, uint8_t node);
Job *job_free(Job *j);

const char *job_state_to_string(enum job_state s);
int job_state_from_string(const char *s);
bool job_state_is_final(enum job_state s);

/* (De)serialise the job's record, not the image. job_from_json() returns
 * -EBADMSG for text that is not a JSON object, -EINVAL for an object that
 * is not a job (bad or missing id, kind, target, node or state). */
char *job_to_json(const Job *j);
int job_from_json(Manager *m, const char *json, Job **ret);
