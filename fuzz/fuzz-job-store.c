/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target for the job-store loader (daemon/job-store.c, store.c,
 * job.c): what stcispd reads from its state directory at start-up.
 *
 * Input: the files of a state directory, as text. What comes before the
 * first line "--- NAME" is history.json; each "--- NAME" line starts the
 * file NAME, which is "history.json", "next-id" or "jobs/F" (F: a file
 * name without '/' that does not start with '.'); anything else after
 * "--- " starts a file that is skipped. For example:
 *
 *   {"next_id": 4, "jobs": [ ... ]}
 *   --- next-id
 *   4
 *   --- jobs/3.json
 *   {"id": 3, "kind": "flash", "target": "node3", "node": 3, "state": "running", ...}
 *   --- jobs/3.image
 *   :03000000021003E8
 *   ...
 *
 * The files are written into a fresh state directory and loaded with
 * job_store_load(), then loaded again from what that left (a second
 * start of the daemon). Whatever the files hold:
 *
 *   - the load succeeds (a damaged file is set aside, never fatal);
 *   - the queue holds queued jobs only (a job found running is queued
 *     again or has failed), in id order counted from next_id, and the
 *     history holds finished jobs only; no id is twice in the two;
 *   - every queued job's record is on disk, no finished job's is: a job
 *     reported finished never runs again;
 *   - the second start finds the same queue, in the same order, and every
 *     job of the first start's history in its history (none lost);
 *   - a queued job's image either loads or fails with a message;
 *   - every job survives job_to_json() and job_from_json() unchanged in
 *     id, kind, state and nodes;
 *   - nothing leaks, nothing is read out of bounds.
 *
 * stderr is silenced for speed; FUZZ_VERBOSE=1 shows the store's messages.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "isp-image.h"
#include "job-store.h"
#include "log.h"

#define INPUT_MAX (64 * 1024)
#define MAX_JOBS 4096          /* more than 64 KiB of records can name */
#define MAX_ATTEMPTS 3
#define HISTORY_MAX 100000      /* no trimming: every finished job stays to be compared */

static char base[256];     /* the directory this process works in */
static char state[300];    /* base/state: the state directory */

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) st;
        (void) ftw;
        return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void wipe_state(void) {
        if (access(state, F_OK) == 0)
                fuzz_check(nftw(state, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0, "cannot remove %s: %s",
                           state, strerror(errno));
}

static void cleanup(void) {
        wipe_state();
        (void) rmdir(base);
}

static void setup_once(void) {
        const char *tmp = getenv("TMPDIR");

        if (base[0])
                return;
        /* tmpfs where there is one: the store fsync()s every write */
        if (!tmp)
                tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(base, sizeof(base), "%s/fuzz-job-store.XXXXXX", tmp);
        fuzz_check(mkdtemp(base), "mkdtemp %s: %s", base, strerror(errno));
        snprintf(state, sizeof(state), "%s/state", base);
        atexit(cleanup);
}

/* A name the input may create: NULL for one it may not. */
static const char *file_path(const char *name, size_t len, char buf[static 128]) {
        const char *f;

        if (len == 0 || len >= 64)
                return NULL;
        snprintf(buf, 128, "%.*s", (int) len, name);
        if (strcmp(buf, "history.json") == 0 || strcmp(buf, "next-id") == 0)
                return buf;
        if (strncmp(buf, "jobs/", 5) != 0)
                return NULL;
        f = buf + 5;
        if (!f[0] || f[0] == '.' || strchr(f, '/') || strlen(f) != len - 5)      /* no NUL in the name */
                return NULL;
        return buf;
}

static void write_state_file(const char *name, const uint8_t *data, size_t size) {
        char path[512];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", state, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        fuzz_check(fd >= 0, "cannot create %s: %s", path, strerror(errno));
        fuzz_check(write(fd, data, size) == (ssize_t) size, "cannot write %s", path);
        close(fd);
}

/* Splits the input into files ("--- NAME" lines) and writes them. */
static void write_state(const uint8_t *data, size_t size) {
        const uint8_t *p = data, *start = data, *end = data + size;
        const char *name = "history.json";
        char buf[128], jobs[320];
        bool named = false;

        snprintf(jobs, sizeof(jobs), "%s/jobs", state);
        fuzz_check(mkdir(state, 0700) == 0, "mkdir %s: %s", state, strerror(errno));
        fuzz_check(mkdir(jobs, 0700) == 0, "mkdir %s: %s", jobs, strerror(errno));

        while (p < end) {
                const uint8_t *nl = memchr(p, '\n', (size_t) (end - p)), *next = nl ? nl + 1 : end;

                if (end - p >= 4 && memcmp(p, "--- ", 4) == 0) {
                        /* an empty history.json only when the input says so */
                        if (name && (named || p > start))
                                write_state_file(name, start, (size_t) (p - start));
                        name = file_path((const char *) p + 4, (size_t) ((nl ?: end) - (p + 4)), buf);
                        named = true;
                        start = next;
                }
                p = next;
        }
        if (name && (named || end > start))
                write_state_file(name, start, (size_t) (end - start));
}

static bool file_exists(const char *name) {
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", state, name);
        return access(path, F_OK) == 0;
}

static void check_round_trip(const Job *j) {
        char *json = job_to_json(j);
        Job *back = NULL;
        int r;

        fuzz_check(json, "job %u does not serialise", j->id);
        r = job_from_json(NULL, json, &back);
        fuzz_check(r == 0, "job %u does not load back from its own record (%d): %s", j->id, r, json);
        fuzz_check(back->id == j->id && back->kind == j->kind && back->state == j->state &&
                   back->node == j->node && back->n_nodes == j->n_nodes &&
                   strcmp(back->target, j->target) == 0,
                   "job %u changed in a round trip: %s", j->id, json);
        for (unsigned i = 0; i < j->n_nodes; i++)
                fuzz_check(back->nodes[i].id == j->nodes[i].id && back->nodes[i].state == j->nodes[i].state &&
                           strcmp(back->nodes[i].name, j->nodes[i].name) == 0,
                           "job %u: node %u changed in a round trip: %s", j->id, i, json);
        job_free(back);
        free(json);
}

struct loaded {
        uint32_t queue[MAX_JOBS], history[MAX_JOBS];
        unsigned n_queue, n_history;
};

static void check_store(JobStore *s, struct loaded *ret) {
        char name[64];
        unsigned n = 0;
        Job *prev = NULL;

        *ret = (struct loaded) {};
        fuzz_check(s->next_id != 0, "next_id is 0");

        for (Job *j = s->queue_head; j; prev = j, j = j->next) {
                fuzz_check(j->state == JOB_QUEUED, "job %u is in the queue in state %s", j->id,
                           job_state_to_string(j->state));
                fuzz_check(j->prev == prev, "queue links broken at job %u", j->id);
                fuzz_check(job_store_find(s, j->id) == j, "job %u in the queue is found as another", j->id);
                if (prev)
                        fuzz_check(prev->id - s->next_id < j->id - s->next_id,
                                   "queue order: job %u before job %u (next id %u)", prev->id, j->id, s->next_id);
                snprintf(name, sizeof(name), "jobs/%u.json", j->id);
                fuzz_check(file_exists(name), "queued job %u has no record on disk", j->id);
                fuzz_check(n < MAX_JOBS, "more jobs than the input can hold");
                ret->queue[n++] = j->id;
                check_round_trip(j);

                if (job_has_image(j)) {
                        char *error = NULL;
                        int r = job_store_load_image(s, j, &error);

                        fuzz_check(r == 0 ? j->image && !error : !j->image && error && error[0],
                                   "job %u: job_store_load_image() returned %d, image %p, error %s",
                                   j->id, r, (void *) j->image, error ? error : "(null)");
                        free(error);
                        free(j->image);
                        j->image = NULL;
                }
        }
        fuzz_check(s->queue_tail == prev && n == s->queue_len, "queue of %u jobs says %u", n, s->queue_len);
        ret->n_queue = n;

        n = 0;
        prev = NULL;
        for (Job *j = s->history_head; j; prev = j, j = j->next) {
                fuzz_check(job_state_is_final(j->state), "job %u is in the history in state %s", j->id,
                           job_state_to_string(j->state));
                fuzz_check(j->prev == prev, "history links broken at job %u", j->id);
                fuzz_check(job_store_find(s, j->id) == j, "job %u of the history is found as another", j->id);
                for (unsigned i = 0; i < ret->n_queue; i++)
                        fuzz_check(ret->queue[i] != j->id, "job %u is both queued and finished", j->id);
                snprintf(name, sizeof(name), "jobs/%u.json", j->id);
                fuzz_check(!file_exists(name), "finished job %u still has a record: it would run again", j->id);
                fuzz_check(n < MAX_JOBS, "more jobs than the input can hold");
                ret->history[n++] = j->id;
                check_round_trip(j);
        }
        fuzz_check(s->history_tail == prev && n == s->history_len, "history of %u jobs says %u", n, s->history_len);
        ret->n_history = n;
}

static void load(struct loaded *ret) {
        JobStore *s = NULL;
        int r;

        r = job_store_new(&s, state, HISTORY_MAX, MAX_ATTEMPTS);
        fuzz_check(r == 0, "job_store_new() failed: %s", strerror(-r));
        r = job_store_load(s);
        fuzz_check(r == 0, "job_store_load() failed: %s", strerror(-r));
        check_store(s, ret);
        job_store_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct loaded first, second;

        setup_once();
        log_max_level = getenv("FUZZ_VERBOSE") ? 7 : -1;
        if (size > INPUT_MAX)
                return 0;

        wipe_state();
        write_state(data, size);

        load(&first);
        load(&second);

        fuzz_check(first.n_queue == second.n_queue &&
                   memcmp(first.queue, second.queue, first.n_queue * sizeof(first.queue[0])) == 0,
                   "the second start has another queue (%u jobs, first start %u)", second.n_queue, first.n_queue);
        for (unsigned i = 0; i < first.n_history; i++) {
                bool found = false;

                for (unsigned k = 0; k < second.n_history && !found; k++)
                        found = second.history[k] == first.history[i];
                fuzz_check(found, "finished job %u is lost at the second start", first.history[i]);
        }
        return 0;
}
