/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "isp-crc32.h"
#include "isp-image-hex.h"
#include "job-store.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define RECORD_FILE_MAX  (1u << 20)
#define HISTORY_FILE_MAX (64u << 20)
/* 128 KiB of data as HEX: under 2 MiB even with one record a byte */
#define IMAGE_HEX_MAX    (4u << 20)
#define NAME_MAX_LEN     32

static struct isp_image *mfree_image(struct isp_image *p) {
        free(p);
        return NULL;
}

static const char *job_file_name(char buf[static NAME_MAX_LEN], uint32_t id, const char *ext) {
        snprintf(buf, NAME_MAX_LEN, "%u.%s", id, ext);
        return buf;
}

static void list_append(Job **head, Job **tail, Job *j) {
        j->next = NULL;
        j->prev = *tail;
        if (*tail)
                (*tail)->next = j;
        else
                *head = j;
        *tail = j;
}

static void list_remove(Job **head, Job **tail, Job *j) {
        if (j->prev)
                j->prev->next = j->next;
        else
                *head = j->next;
        if (j->next)
                j->next->prev = j->prev;
        else
                *tail = j->prev;
        j->next = j->prev = NULL;
}

Job *job_store_find(JobStore *s, uint32_t id) {
        for (Job *j = s->queue_head; j; j = j->next)
                if (j->id == id)
                        return j;
        for (Job *j = s->history_head; j; j = j->next)
                if (j->id == id)
                        return j;
        return NULL;
}

/* ---- writing ---- */

/* Space held back in the state directory for the records of jobs already
 * accepted: once a job is queued, its start and its end must be written,
 * or it would be lost (a job is refused, with the error, when its queued
 * record does not fit). A database keeps such a reserve for the same
 * reason. Made at start when there is room; released on ENOSPC. */
#define RESERVE_FILE "reserve"
#define RESERVE_SIZE (64u * 1024u)

static void reserve_make(JobStore *s) {
        _cleanup_free_ char *zeros = NULL;
        struct stat st;
        int r;

        if (fstatat(s->state_dir_fd, RESERVE_FILE, &st, 0) >= 0 && st.st_size >= (off_t) RESERVE_SIZE) {
                s->reserve = true;
                return;
        }
        zeros = calloc(1, RESERVE_SIZE);
        if (!zeros)
                return;
        r = write_file_atomic(s->state_dir_fd, RESERVE_FILE, zeros, RESERVE_SIZE);
        if (r < 0) {
                log_warning_errno(r, "Cannot keep a %u KiB reserve in %s for the records of accepted jobs: %m",
                                  RESERVE_SIZE / 1024, s->state_dir);
                return;
        }
        s->reserve = true;
}

/* The write of a record an accepted job needs; on ENOSPC, once, with the
 * reserve released. */
static int write_accepted(JobStore *s, int dir_fd, const char *name, const char *data, size_t size) {
        int r = write_file_atomic(dir_fd, name, data, size);

        if (r != -ENOSPC || !s->reserve)
                return r;
        s->reserve = false;
        if (unlink_durable(s->state_dir_fd, RESERVE_FILE) < 0)
                return r;
        log_warning("%s is full: its %u KiB reserve is used for the records of the jobs already accepted; "
                    "new jobs are refused until there is space (the reserve is made again at the next start)",
                    s->state_dir, RESERVE_SIZE / 1024);
        return write_file_atomic(dir_fd, name, data, size);
}

static int record_save(JobStore *s, Job *j, bool log) {
        _cleanup_free_ char *json = job_to_json(j);
        char name[NAME_MAX_LEN];
        int r;

        if (!json)
                return log_error_errno(-ENOMEM, "Cannot save job %u: %m", j->id);
        job_file_name(name, j->id, "json");
        /* a new job is refused when it does not fit; one accepted is not lost */
        if (j->state == JOB_QUEUED && j->attempts == 0)
                r = write_file_atomic(s->jobs_dir_fd, name, json, strlen(json));
        else
                r = write_accepted(s, s->jobs_dir_fd, name, json, strlen(json));
        if (r < 0 && log)
                return log_error_errno(r, "Cannot save job %u in %s/jobs: %m", j->id, s->state_dir);
        return r;
}

int job_store_save(JobStore *s, Job *j) {
        return record_save(s, j, /* log= */ true);
}

static int history_save(JobStore *s) {
        json_object *o = json_object_new_object(), *a = json_object_new_array();
        const char *text;
        unsigned skip;
        int r = 0;

        if (!o || !a) {
                json_object_put(o);
                json_object_put(a);
                return log_error_errno(-ENOMEM, "Cannot save the job history: %m");
        }
        json_object_object_add(o, "next_id", json_object_new_int64(s->next_id));
        json_object_object_add(o, "jobs", a);
        /* Past History=, the oldest are written no more; job_store_trim()
         * drops them from memory once the caller is done with them. */
        skip = s->history_len > s->history_max ? s->history_len - s->history_max : 0;
        for (Job *j = s->history_head; j && r >= 0; j = j->next) {
                if (skip > 0) {
                        skip--;
                        continue;
                }
                _cleanup_free_ char *str = job_to_json(j);
                json_object *jo = str ? json_tokener_parse(str) : NULL;

                /* an entry missing from the file would be a job lost */
                r = jo ? json_object_array_add(a, jo) : -ENOMEM;
        }
        text = r >= 0 ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE) : NULL;
        r = text ? write_accepted(s, s->state_dir_fd, "history.json", text, strlen(text)) : -ENOMEM;
        json_object_put(o);
        if (r < 0)
                return log_error_errno(r, "Cannot save the job history in %s/history.json: %m", s->state_dir);
        return 0;
}

static int next_id_save(JobStore *s) {
        char buf[16];
        int n = snprintf(buf, sizeof(buf), "%u\n", s->next_id);
        int r = write_file_atomic(s->state_dir_fd, "next-id", buf, (size_t) n);

        if (r < 0)
                return log_error_errno(r, "Cannot save %s/next-id: %m", s->state_dir);
        return 0;
}

static void unlink_job_file(JobStore *s, uint32_t id, const char *ext) {
        char name[NAME_MAX_LEN];
        int r = unlink_durable(s->jobs_dir_fd, job_file_name(name, id, ext));

        if (r < 0)
                log_warning_errno(r, "Cannot remove %s/jobs/%s, ignoring: %m", s->state_dir, name);
}

/* Frees the oldest finished jobs beyond History=: the caller must not
 * hold on to a job it has just added. */
static void history_trim(JobStore *s) {
        while (s->history_len > s->history_max && s->history_head) {
                Job *old = s->history_head;

                list_remove(&s->history_head, &s->history_tail, old);
                s->history_len--;
                if (old->kind == SESSION_READ)
                        unlink_job_file(s, old->id, "read");
                job_free(old);
        }
}

/* j is final and in no list: record, history, files, in that order, so
 * that a crash in between lands it in the history at the next start. A
 * job reported finished must never run again, even on a full disk: if
 * neither its final record nor the history can be written, its record
 * goes, which needs no space. j stays valid until job_store_trim(). */
static void finalize(JobStore *s, Job *j) {
        uint32_t id = j->id;
        char what[96];
        int r_record, r_history, r;

        snprintf(what, sizeof(what), "Job %u (%s %s)", id, session_kind_to_string(j->kind), j->target);
        j->image = mfree_image(j->image);

        r_record = record_save(s, j, /* log= */ false);
        if (r_record < 0) {
                /* the image is of no use now, and its space may be what the record needs */
                unlink_job_file(s, id, "image");
                r_record = record_save(s, j, /* log= */ true);
        }

        list_append(&s->history_head, &s->history_tail, j);
        s->history_len++;
        r_history = history_save(s);

        unlink_job_file(s, id, "image");
        if (r_history < 0 && r_record >= 0)
                return;                 /* the final record stays: the next start puts it in the history */

        r = unlink_durable(s->jobs_dir_fd, job_file_name((char[NAME_MAX_LEN]) {}, id, "json"));
        if (r_history < 0 && r >= 0)
                log_error("%s finished, but neither its final state nor the history can be written in %s: "
                          "its record is removed so that it never runs again; it will be missing from the history after a restart",
                          what, s->state_dir);
        else if (r < 0)
                log_error_errno(r, "%s finished, but %s/jobs/%u.json cannot be removed (%m): remove it by hand, "
                                "or the job may run again after a restart", what, s->state_dir, id);
}

void job_store_finish(JobStore *s, Job *j) {
        list_remove(&s->queue_head, &s->queue_tail, j);
        s->queue_len--;
        finalize(s, j);
}

void job_store_trim(JobStore *s) {
        history_trim(s);
}

/* ---- queueing ---- */

static bool id_in_use(JobStore *s, uint32_t id) {
        char name[NAME_MAX_LEN];

        return id == 0 || job_store_find(s, id) ||
               faccessat(s->jobs_dir_fd, job_file_name(name, id, "json"), F_OK, AT_SYMLINK_NOFOLLOW) >= 0 ||
               faccessat(s->jobs_dir_fd, job_file_name(name, id, "image"), F_OK, AT_SYMLINK_NOFOLLOW) >= 0;
}

/* Ids wrap around after 2^32 - 1 jobs; 0 is never one (no object path
 * has it) and neither is an id a job or a file still has. */
static uint32_t allocate_id(JobStore *s) {
        uint32_t id;

        do {
                id = s->next_id;
                s->next_id = id + 1 ? id + 1 : 1;
        } while (id_in_use(s, id));
        return id;
}

static int image_save(JobStore *s, Job *j) {
        _cleanup_free_ char *hex = NULL;
        char name[NAME_MAX_LEN];
        size_t len;
        int r;

        r = isp_image_write_hex(j->image, &hex, &len);
        if (r < 0)
                return log_error_errno(r, "Cannot save the image of job %u: %m", j->id);
        r = write_file_atomic(s->jobs_dir_fd, job_file_name(name, j->id, "image"), hex, len);
        if (r < 0)
                return log_error_errno(r, "Cannot save the image of job %u in %s/jobs: %m", j->id, s->state_dir);
        j->image_crc = isp_crc32(hex, len);
        j->app_crc = isp_image_app_crc32(j->image);
        return 0;
}

int job_store_enqueue(JobStore *s, Job *j) {
        int r;

        if (s->queue_len >= JOB_STORE_QUEUE_MAX)
                return -EBUSY;
        if (job_has_image(j) && !j->image)
                return -EINVAL;

        j->id = allocate_id(s);
        j->state = JOB_QUEUED;
        j->created_usec = now_usec(CLOCK_REALTIME);

        r = next_id_save(s);
        if (r >= 0 && job_has_image(j))
                r = image_save(s, j);
        if (r >= 0) {
                r = record_save(s, j, /* log= */ true);
                if (r < 0 && job_has_image(j))
                        unlink_job_file(s, j->id, "image");
        }
        if (r < 0) {
                j->id = 0;
                return r;
        }

        /* on disk now; job_store_load_image() brings it back to run it */
        j->image = mfree_image(j->image);
        list_append(&s->queue_head, &s->queue_tail, j);
        s->queue_len++;
        return 0;
}

/* ---- what a read job read ---- */

int job_store_save_read(JobStore *s, Job *j, const struct isp_image *img) {
        _cleanup_free_ char *hex = NULL;
        char name[NAME_MAX_LEN];
        size_t len;
        int r;

        r = isp_image_write_hex(img, &hex, &len);
        if (r < 0)
                return log_error_errno(r, "Cannot format what job %u read: %m", j->id);
        r = write_file_atomic(s->jobs_dir_fd, job_file_name(name, j->id, "read"), hex, len);
        if (r < 0)
                return log_error_errno(r, "Cannot save what job %u read in %s/jobs: %m", j->id, s->state_dir);
        return 0;
}

int job_store_load_read(JobStore *s, const Job *j, char **ret, size_t *ret_len) {
        char name[NAME_MAX_LEN];

        return read_file_at(s->jobs_dir_fd, job_file_name(name, j->id, "read"), JOB_STORE_READ_MAX, ret, ret_len);
}

/* ---- the image, when the job starts ---- */

_Pragma("GCC diagnostic push")
_Pragma("GCC diagnostic ignored \"-Wformat-nonliteral\"")
_printf_(3, 4)
static int image_error(char **ret_error, int error, const char *fmt, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return error;
}
_Pragma("GCC diagnostic pop")

int job_store_load_image(JobStore *s, Job *j, char **ret_error) {
        _cleanup_free_ struct isp_image *img = NULL;
        _cleanup_free_ char *text = NULL;
        struct isp_image_error e;
        char name[NAME_MAX_LEN];
        uint32_t crc;
        size_t size;
        int r;

        if (ret_error)
                *ret_error = NULL;
        job_file_name(name, j->id, "image");
        r = read_file_at(s->jobs_dir_fd, name, IMAGE_HEX_MAX, &text, &size);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return image_error(ret_error, r, "Cannot read the stored image %s/jobs/%s: %s", s->state_dir, name, strerror(-r));

        crc = isp_crc32(text, size);
        if (crc != j->image_crc)
                return image_error(ret_error, -EBADMSG,
                                   "The stored image %s/jobs/%s is damaged (CRC-32 0x%08X, the job's record says 0x%08X): not flashing it",
                                   s->state_dir, name, crc, j->image_crc);

        img = malloc(sizeof(*img));
        if (!img)
                return -ENOMEM;
        if (isp_image_load(img, text, size, ISP_IMAGE_HEX, &e) < 0)
                return image_error(ret_error, -EBADMSG, "The stored image %s/jobs/%s:%u does not load: %s",
                                   s->state_dir, name, e.line, e.message);
        crc = isp_image_app_crc32(img);
        if (crc != j->app_crc)
                return image_error(ret_error, -EBADMSG,
                                   "The stored image %s/jobs/%s holds an application with CRC-32 0x%08X, the job's record says 0x%08X: not flashing it",
                                   s->state_dir, name, crc, j->app_crc);

        free(j->image);
        j->image = TAKE_PTR(img);
        return 0;
}

/* ---- loading ---- */

/* One entry of history.json; a bad one is counted, not fatal. */
static int history_take_entry(JobStore *s, json_object *entry, unsigned *n_bad) {
        Job *j = NULL;
        int r;

        r = job_from_json(NULL, json_object_to_json_string(entry), &j);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !job_state_is_final(j->state) || job_store_find(s, j->id)) {
                (*n_bad)++;
                job_free(j);
                return 0;
        }
        list_append(&s->history_head, &s->history_tail, j);
        s->history_len++;
        return 0;
}

/* Text that is not JSON (cut short, overwritten in part): take every job
 * object that still parses, from the "jobs" list on. */
static int history_salvage(JobStore *s, const char *text, size_t size, unsigned *n_bad) {
        const char *p = strstr(text, "\"jobs\""), *end = text + size;
        json_tokener *tok = json_tokener_new();
        int r = 0;

        if (!tok)
                return -ENOMEM;
        for (p = p ?: text; r >= 0 && (p = memchr(p, '{', (size_t) (end - p))); ) {
                json_object *o;

                json_tokener_reset(tok);
                o = json_tokener_parse_ex(tok, p, (int) (end - p));
                if (o && json_object_is_type(o, json_type_object)) {
                        r = history_take_entry(s, o, n_bad);
                        p += json_tokener_get_parse_end(tok);
                } else
                        p++;
                json_object_put(o);
        }
        json_tokener_free(tok);
        return r;
}

/* Parsed history.json: ret_next_id gets its "next_id", 0 if none. */
static int history_parse(JobStore *s, const char *text, size_t size, uint32_t *ret_next_id, char why[static 128]) {
        json_object *o = json_tokener_parse(text), *a, *v;
        unsigned n_bad = 0, n_total;
        int r = 0;

        if (!o || !json_object_object_get_ex(o, "jobs", &a) || !json_object_is_type(a, json_type_array)) {
                bool json = o != NULL;

                json_object_put(o);
                r = history_salvage(s, text, size, &n_bad);
                snprintf(why, 128, "%s; kept the %u job(s) that still parse", json ? "no \"jobs\" list" : "not valid JSON",
                         s->history_len);
                return r < 0 ? r : 1;
        }
        n_total = (unsigned) json_object_array_length(a);
        for (unsigned i = 0; i < n_total && r >= 0; i++)
                r = history_take_entry(s, json_object_array_get_idx(a, i), &n_bad);
        if (json_object_object_get_ex(o, "next_id", &v)) {
                int64_t n = json_object_get_int64(v);
                *ret_next_id = n > 0 && n <= UINT32_MAX ? (uint32_t) n : 0;
        }
        json_object_put(o);
        if (r < 0)
                return r;
        if (n_bad == 0)
                return 0;
        snprintf(why, 128, "%u of %u entries are not finished jobs or appear twice; kept the others", n_bad, n_total);
        return 1;
}

/* Returns 1 when the file was set aside and must be written again. */
static int history_load(JobStore *s, uint32_t *ret_next_id) {
        _cleanup_free_ char *text = NULL;
        char why[128];
        size_t size;
        int r;

        *ret_next_id = 0;
        r = read_file_at(s->state_dir_fd, "history.json", HISTORY_FILE_MAX, &text, &size);
        if (r == -ENOENT)
                return 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                /* not damage, but what it holds would be overwritten by the next finished job */
                log_error_errno(r, "Cannot read %s/history.json (%m): starting with an empty history", s->state_dir);
                snprintf(why, sizeof(why), "cannot be read: %s", strerror(-r));
                (void) quarantine_file(s->state_dir_fd, s->state_dir, "history.json", why);
                return 0;
        }
        r = history_parse(s, text, size, ret_next_id, why);
        if (r <= 0)
                return r;
        (void) quarantine_file(s->state_dir_fd, s->state_dir, "history.json", why);
        return 1;
}

static uint32_t next_id_load(JobStore *s) {
        _cleanup_free_ char *text = NULL;
        unsigned long long v;
        char *end;
        int r;

        r = read_file_at(s->state_dir_fd, "next-id", 64, &text, NULL);
        if (r < 0) {
                if (r != -ENOENT)
                        log_warning_errno(r, "Cannot read %s/next-id, taking the next id from the jobs: %m", s->state_dir);
                return 0;
        }
        errno = 0;
        v = strtoull(text, &end, 10);
        if (errno != 0 || end == text || (*end != '\n' && *end != '\0') || v == 0 || v > UINT32_MAX) {
                log_warning("%s/next-id does not hold a job id, taking the next id from the jobs", s->state_dir);
                return 0;
        }
        return (uint32_t) v;
}

/* 1 and the id for "<id>.json", 0 for what is no record (images,
 * temporary files, files set aside), -EINVAL for a .json no id names. */
static int record_name_parse(const char *name, uint32_t *ret_id) {
        size_t len = strlen(name), digits;
        unsigned long long v = 0;

        if (name[0] == '.' || len < 5 || strcmp(name + len - 5, ".json") != 0)
                return 0;
        digits = len - 5;
        if (digits == 0 || digits > 10 || name[0] == '0')
                return -EINVAL;
        for (size_t i = 0; i < digits; i++) {
                if (name[i] < '0' || name[i] > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (name[i] - '0');
        }
        if (v > UINT32_MAX)
                return -EINVAL;
        *ret_id = (uint32_t) v;
        return 1;
}

/* A jobs/ file that does not load: never dropped, never used. Returns 0:
 * loading goes on (quarantine_file() has told what happened). */
static int set_aside(JobStore *s, const char *name, const char *why) {
        _cleanup_free_ char *dir = NULL;

        if (asprintf(&dir, "%s/jobs", s->state_dir) < 0)
                dir = NULL;
        (void) quarantine_file(s->jobs_dir_fd, dir ?: "jobs", name, why);
        return 0;
}

/* Read jobs/<name>; what does not load is set aside. *ret is NULL then. */
static int record_load(JobStore *s, const char *name, uint32_t id, Job **ret) {
        _cleanup_free_ char *json = NULL;
        char why[128];
        Job *j = NULL;
        int r;

        *ret = NULL;
        r = read_file_at(s->jobs_dir_fd, name, RECORD_FILE_MAX, &json, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_error_errno(r, "Cannot read %s/jobs/%s: %m", s->state_dir, name);
                snprintf(why, sizeof(why), "cannot be read: %s", strerror(-r));
                return set_aside(s, name, why);
        }
        r = job_from_json(NULL, json, &j);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_aside(s, name, r == -EBADMSG ? "not valid JSON" :
                                 "not a job record: bad or missing id, kind, target, node, state or nodes");
        if (j->id != id) {
                /* Trusting either id would drop or run the wrong job's files. */
                snprintf(why, sizeof(why), "it holds job %u, not job %u", j->id, id);
                job_free(j);
                return set_aside(s, name, why);
        }
        *ret = j;
        return 0;
}

static int records_load(JobStore *s, Job ***ret, size_t *ret_n) {
        _cleanup_close_ int fd = openat(s->jobs_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        Job **loaded = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (fd < 0)
                return log_error_errno(-errno, "Cannot open %s/jobs: %m", s->state_dir);
        d = fdopendir(fd);
        if (!d)
                return log_error_errno(-errno, "Cannot read %s/jobs: %m", s->state_dir);
        fd = -EBADF;                    /* the DIR has it */
        while (r >= 0 && (errno = 0, de = readdir(d))) {
                uint32_t id = 0;
                Job *j, **p;

                r = record_name_parse(de->d_name, &id);
                if (r == -EINVAL)
                        r = set_aside(s, de->d_name, "not named after a job id");
                if (r <= 0)
                        continue;
                r = record_load(s, de->d_name, id, &j);
                if (r < 0 || !j)
                        continue;
                p = realloc(loaded, (n + 1) * sizeof(*loaded));
                if (!p) {
                        job_free(j);
                        r = -ENOMEM;
                        break;
                }
                loaded = p;
                loaded[n++] = j;
        }
        if (r >= 0 && errno != 0)
                r = log_error_errno(-errno, "Cannot read %s/jobs: %m", s->state_dir);
        closedir(d);
        if (r < 0) {
                while (n > 0)
                        job_free(loaded[--n]);
                free(loaded);
                return r;
        }
        *ret = loaded;
        *ret_n = n;
        return 0;
}

/* Queue order is id order, counted from the next id, so that the ids
 * that wrapped around after 2^32 - 1 come after the ones before them. */
static int compare_queue_order(const void *a, const void *b, void *userdata) {
        uint32_t next = *(const uint32_t *) userdata;
        uint32_t ka = (*(Job *const *) a)->id - next, kb = (*(Job *const *) b)->id - next;

        return ka < kb ? -1 : ka > kb;
}

static void record_place(JobStore *s, Job *j) {
        if (job_store_find(s, j->id)) {
                /* in the history already: the daemon stopped before the files went */
                unlink_job_file(s, j->id, "image");
                unlink_job_file(s, j->id, "json");
                job_free(j);
                return;
        }
        if (job_state_is_final(j->state)) {
                finalize(s, j);         /* stopped between its final record and the history */
                return;
        }
        if (j->state == JOB_RUNNING && j->attempts >= s->max_attempts) {
                free(j->error);
                if (asprintf(&j->error, "interrupted %u times while it ran (the daemon stopped or crashed): giving up",
                             j->attempts) < 0)
                        j->error = NULL;
                j->state = JOB_FAILED;
                j->finished_usec = now_usec(CLOCK_REALTIME);
                log_warning("Job %u (%s %s) failed: %s", j->id, session_kind_to_string(j->kind), j->target,
                            strna(j->error));
                finalize(s, j);
                return;
        }
        if (j->state == JOB_RUNNING) {
                log_notice("Job %u (%s %s) was interrupted in phase %s, restarting it from the beginning (start %u of %u)",
                           j->id, session_kind_to_string(j->kind), j->target, session_phase_to_string(j->phase),
                           j->attempts + 1, s->max_attempts);
                j->state = JOB_QUEUED;
                j->phase = SESSION_PHASE_NONE;
                j->bytes_done = 0;
                job_reset_nodes(j);
        }
        list_append(&s->queue_head, &s->queue_tail, j);
        s->queue_len++;
}

/* next-id is written before every job's files, so it is the one to trust;
 * without it, one past every id seen. */
static uint32_t next_id_pick(JobStore *s, uint32_t from_file, uint32_t from_history, Job **loaded, size_t n) {
        uint32_t max = from_history ? from_history - 1 : 0;

        if (from_file)
                return from_file;
        for (Job *j = s->history_head; j; j = j->next)
                max = j->id > max ? j->id : max;
        for (size_t i = 0; i < n; i++)
                max = loaded[i]->id > max ? loaded[i]->id : max;
        return max + 1 ? max + 1 : 1;
}

int job_store_load(JobStore *s) {
        uint32_t history_next_id, file_next_id;
        Job **loaded = NULL;
        size_t n = 0;
        int r, rewrite;

        /* The history first, so that a record left in a final state by a
         * stop between its last write and its removal lands there once. */
        rewrite = history_load(s, &history_next_id);
        if (rewrite < 0)
                return rewrite;
        file_next_id = next_id_load(s);
        r = records_load(s, &loaded, &n);
        if (r < 0)
                return r;

        s->next_id = next_id_pick(s, file_next_id, history_next_id, loaded, n);
        if (n > 0)
                qsort_r(loaded, n, sizeof(*loaded), compare_queue_order, &s->next_id);
        history_trim(s);
        if (rewrite)
                (void) history_save(s);
        for (size_t i = 0; i < n; i++)
                record_place(s, loaded[i]);
        free(loaded);

        if (s->queue_len > 0)
                log_info("Loaded %u queued job(s) from %s", s->queue_len, s->state_dir);
        return 0;
}

int job_store_new(JobStore **ret, const char *state_dir, unsigned history_max, unsigned max_attempts) {
        JobStore *s = calloc(1, sizeof(*s));

        if (!s)
                return log_error_errno(-ENOMEM, "Cannot allocate the job store: %m");
        s->state_dir_fd = s->jobs_dir_fd = -EBADF;
        s->history_max = history_max;
        s->max_attempts = max_attempts;
        s->next_id = 1;
        s->state_dir = strdup(state_dir);
        if (!s->state_dir) {
                job_store_free(s);
                return log_error_errno(-ENOMEM, "Cannot allocate the job store: %m");
        }
        if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
                goto fail;
        s->state_dir_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->state_dir_fd < 0)
                goto fail;
        if (mkdirat(s->state_dir_fd, "jobs", 0700) < 0 && errno != EEXIST)
                goto fail_jobs;
        s->jobs_dir_fd = openat(s->state_dir_fd, "jobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->jobs_dir_fd < 0)
                goto fail_jobs;
        reserve_make(s);
        *ret = s;
        return 0;
fail: {
        int r = log_error_errno(-errno, "Cannot create or open state directory %s: %m", state_dir);
        job_store_free(s);
        return r;
}
fail_jobs: {
        int r = log_error_errno(-errno, "Cannot create or open %s/jobs: %m", state_dir);
        job_store_free(s);
        return r;
}
}

static void free_list(Job **head, Job **tail) {
        while (*head) {
                Job *j = *head;
                list_remove(head, tail, j);
                job_free(j);
        }
}

JobStore *job_store_free(JobStore *s) {
        if (!s)
                return NULL;
        free_list(&s->queue_head, &s->queue_tail);
        free_list(&s->history_head, &s->history_tail);
        if (s->jobs_dir_fd >= 0)
                close(s->jobs_dir_fd);
        if (s->state_dir_fd >= 0)
                close(s->state_dir_fd);
        free(s->state_dir);
        free(s);
        return NULL;
}
