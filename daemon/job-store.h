/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The job store: the queue and the history of finished jobs, in memory and
 * in the state directory:
 *
 *   jobs/<id>.json    the record of a queued or running job
 *   jobs/<id>.image   its node image, as Intel HEX (flash jobs)
 *   history.json      {"next_id": N, "jobs": [finished jobs, oldest first]}
 *   next-id           the next job id, written before a job's files
 *
 * Every write is atomic and durable (store.h). A file that does not load
 * is set aside as <name>.damaged-<time> with a warning, never dropped.
 * A job reported finished never runs again.
 */

#include <stdint.h>

#include "job.h"

typedef struct JobStore {
        int state_dir_fd, jobs_dir_fd;
        char *state_dir;                        /* for messages */
        unsigned history_max;                   /* [Daemon] History=, 0 allowed */
        unsigned max_attempts;                  /* starts before an interrupted job fails, >= 1 */
        Job *queue_head, *queue_tail;           /* queued and running jobs, queue order (j->next/prev) */
        unsigned queue_len;
        Job *history_head, *history_tail;       /* finished jobs, oldest first */
        unsigned history_len;
        uint32_t next_id;
        bool reserve;                           /* state_dir/reserve is there, for the records of accepted jobs */
} JobStore;

#define JOB_STORE_QUEUE_MAX 1000

/* The largest uploaded image file the daemon accepts (the D-Bus side
 * refuses more); what is stored is the node image, at most 128 KiB of data. */
#define JOB_IMAGE_FILE_MAX (4u << 20)

/* Create the state directory and jobs/ in it, open both. Logs and returns
 * a negative errno on failure. */
int job_store_new(JobStore **ret, const char *state_dir, unsigned history_max, unsigned max_attempts);
/* Frees every job too. NULL-safe, returns NULL. */
JobStore *job_store_free(JobStore *s);

/* Load the history and the queue. Queue order is id order (from the next
 * id on, so that ids which wrapped around come last). A job found running
 * was interrupted: it is queued again from the beginning, or fails once it
 * has been started max_attempts times. A record already in the history
 * (the daemon stopped between the two writes) lands there exactly once.
 * Damaged files are set aside. j->manager is NULL in loaded jobs. */
int job_store_load(JobStore *s);

/* A queued, running or finished job, or NULL. */
Job *job_store_find(JobStore *s, uint32_t id);

/* Queue j: assigns j->id (never 0, never an id in use), writes the node
 * image of a flash job (j->image, which is then freed; j->image_crc and
 * j->app_crc are set), then the record, and appends j to the queue.
 * -EBUSY when JOB_STORE_QUEUE_MAX jobs are queued. On any error nothing
 * is left on disk and j is not queued: the caller still owns it. */
int job_store_enqueue(JobStore *s, Job *j);

/* Write the record of a queued or running job, e.g. JOB_RUNNING before
 * its first frame. Logs and returns a negative errno. */
int job_store_save(JobStore *s, Job *j);

/* Read a flash job's jobs/<id>.image back into j->image, checking its
 * CRC-32 against j->image_crc. -EBADMSG on a mismatch or a file that does
 * not load, the file's errno when it cannot be read; *ret_error (if not
 * NULL) then gets a message naming the file, for the job's error. */
int job_store_load_image(JobStore *s, Job *j, char **ret_error);

/* j's final state, error and finished_usec are set by the caller. Persist
 * it so that it never runs again, move it from the queue to the history
 * and drop its files. j stays valid (the caller signals its end) until
 * job_store_trim(), which frees what History= no longer keeps; j may be
 * among those (History=0), so the caller must not touch j after it. */
void job_store_finish(JobStore *s, Job *j);
/* A read job's result, Intel HEX, kept as jobs/<id>.read while the job is
 * in the history. */
#define JOB_STORE_READ_MAX (1024 * 1024)
int job_store_save_read(JobStore *s, Job *j, const struct isp_image *img);
int job_store_load_read(JobStore *s, const Job *j, char **ret, size_t *ret_len);
void job_store_trim(JobStore *s);
