/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
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

#define IMAGE_FILE_MAX (16u << 20)

static uint64_t now_realtime(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static struct isp_image *mfree_image(struct isp_image *p) {
        free(p);
        return NULL;
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

static int job_save(JobStore *s, Job *j) {
        _cleanup_free_ char *json = job_to_json(j);
        char name[32];
        int r;

        if (!json)
                return -ENOMEM;
        snprintf(name, sizeof(name), "%u.json", j->id);
        r = write_file_atomic(s->jobs_dir_fd, name, json, strlen(json));
        if (r < 0)
                return log_error_errno(r, "Cannot save job %u in %s/jobs: %m", j->id, s->state_dir);
        return 0;
}

int job_store_save(JobStore *s, Job *j) {
        return job_save(s, j);
}

static int history_save(JobStore *s) {
        json_object *o = json_object_new_object(), *a = json_object_new_array();
        int r;

        if (!o || !a) {
                json_object_put(o);
                json_object_put(a);
                return -ENOMEM;
        }
        for (Job *j = s->history_head; j; j = j->next) {
                _cleanup_free_ char *str = job_to_json(j);
                json_object *jo = str ? json_tokener_parse(str) : NULL;
                if (jo)
                        json_object_array_add(a, jo);
        }
        json_object_object_add(o, "next_id", json_object_new_int64(s->next_id));
        json_object_object_add(o, "jobs", a);
        {
                const char *str = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
                r = write_file_atomic(s->state_dir_fd, "history.json", str, strlen(str));
        }
        json_object_put(o);
        if (r < 0)
                return log_error_errno(r, "Cannot save the job history in %s: %m", s->state_dir);
        return 0;
}

static int next_id_save(JobStore *s) {
        char buf[16];
        int n = snprintf(buf, sizeof(buf), "%u\n", s->next_id);
        int r = write_file_atomic(s->state_dir_fd, "next-id", buf, (size_t) n);
        if (r < 0)
                return log_error_errno(r, "Cannot save next-id in %s: %m", s->state_dir);
        return 0;
}

static void history_add(JobStore *s, Job *j) {
        list_append(&s->history_head, &s->history_tail, j);
        s->history_len++;
        while (s->history_len > s->history_max && s->history_head) {
                Job *old = s->history_head;
                list_remove(&s->history_head, &s->history_tail, old);
                s->history_len--;
                job_free(old);
        }
}

int job_store_load_image(JobStore *s, Job *j, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        struct isp_image_error e;
        char name[32];
        size_t size;
        int r;

        snprintf(name, sizeof(name), "%u.image", j->id);
        r = read_file_at(s->jobs_dir_fd, name, IMAGE_FILE_MAX, &data, &size);
        if (r < 0) {
                if (ret_error && !(*ret_error = strdup("stored image is missing or unreadable")))
                        return -ENOMEM;
                return r;
        }
        free(j->image);
        j->image = malloc(sizeof(*j->image));
        if (!j->image)
                return -ENOMEM;
        if (isp_image_load(j->image, data, size, ISP_IMAGE_HEX, &e) < 0) {
                if (ret_error && asprintf(ret_error, "stored image no longer loads: %s", e.message) < 0)
                        *ret_error = NULL;
                j->image = mfree_image(j->image);
                return -EBADMSG;
        }
        return 0;
}

int job_store_load(JobStore *s) {
        _cleanup_free_ char *hist = NULL, *nid = NULL;
        DIR *d;
        struct dirent *de;
        Job **loaded = NULL;
        size_t n_loaded = 0;
        uint32_t max_id = 0;
        int r;

        /* history first, so that a job file left in a final state by a crash
         * between its last write and its removal lands there exactly once */
        if (read_file_at(s->state_dir_fd, "history.json", 64 << 20, &hist, NULL) >= 0) {
                json_object *o = json_tokener_parse(hist), *a, *v;
                if (o && json_object_object_get_ex(o, "jobs", &a) && json_object_is_type(a, json_type_array)) {
                        for (size_t i = 0; i < json_object_array_length(a); i++) {
                                Job *j;
                                if (job_from_json(NULL, json_object_to_json_string(json_object_array_get_idx(a, i)), &j) < 0)
                                        continue;
                                if (j->id > max_id)
                                        max_id = j->id;
                                history_add(s, j);
                        }
                } else
                        log_warning("%s/history.json is damaged, starting with an empty history", s->state_dir);
                if (o && json_object_object_get_ex(o, "next_id", &v) && json_object_get_int64(v) > max_id)
                        max_id = (uint32_t) json_object_get_int64(v) - 1;
                json_object_put(o);
        }
        if (read_file_at(s->state_dir_fd, "next-id", 64, &nid, NULL) >= 0) {
                unsigned long v = strtoul(nid, NULL, 10);
                if (v > 0 && v - 1 > max_id && v < UINT32_MAX)
                        max_id = (uint32_t) v - 1;
        }

        r = openat(s->jobs_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r < 0)
                return -errno;
        d = fdopendir(r);
        if (!d) {
                close(r);
                return -errno;
        }
        while ((de = readdir(d))) {
                _cleanup_free_ char *json = NULL;
                char *end;
                unsigned long id = strtoul(de->d_name, &end, 10);
                Job *j, **p;

                if (de->d_name[0] == '.' || id == 0 || strcmp(end, ".json") != 0)
                        continue;
                if (read_file_at(s->jobs_dir_fd, de->d_name, 1 << 20, &json, NULL) < 0 ||
                    job_from_json(NULL, json, &j) < 0) {
                        log_warning("%s/jobs/%s is damaged, ignoring it", s->state_dir, de->d_name);
                        continue;
                }
                p = realloc(loaded, (n_loaded + 1) * sizeof(*loaded));
                if (!p) {
                        job_free(j);
                        closedir(d);
                        free(loaded);
                        return -ENOMEM;
                }
                loaded = p;
                loaded[n_loaded++] = j;
        }
        closedir(d);

        /* Queue order is id order: ids grow with every Flash/Reboot/Scan call. */
        for (size_t a = 1; a < n_loaded; a++)
                for (size_t b = a; b > 0 && loaded[b - 1]->id > loaded[b]->id; b--) {
                        Job *t = loaded[b];
                        loaded[b] = loaded[b - 1];
                        loaded[b - 1] = t;
                }

        for (size_t i = 0; i < n_loaded; i++) {
                Job *j = loaded[i];
                char name[32];

                if (j->id > max_id)
                        max_id = j->id;
                if (job_store_find(s, j->id)) {
                        /* already in the history: the crash came after that write */
                        snprintf(name, sizeof(name), "%u.json", j->id);
                        (void) unlink_durable(s->jobs_dir_fd, name);
                        snprintf(name, sizeof(name), "%u.image", j->id);
                        (void) unlink_durable(s->jobs_dir_fd, name);
                        job_free(j);
                        continue;
                }
                if (job_state_is_final(j->state)) {
                        history_add(s, j);
                        continue;
                }
                if (j->state == JOB_RUNNING) {
                        log_notice("Job %u (%s %s) was interrupted in phase %s, restarting it from the beginning",
                                   j->id, session_kind_to_string(j->kind), j->target, session_phase_to_string(j->phase));
                        j->state = JOB_QUEUED;
                        j->phase = SESSION_PHASE_NONE;
                        j->bytes_done = 0;
                }
                list_append(&s->queue_head, &s->queue_tail, j);
                s->queue_len++;
        }
        free(loaded);

        s->next_id = max_id + 1;
        if (s->queue_len > 0)
                log_info("Loaded %u queued job(s) from %s", s->queue_len, s->state_dir);
        return 0;
}

void job_store_finish(JobStore *s, Job *j) {
        char name[32];
        int r;

        /* Final state on disk first, then the history, then the files go:
         * a crash anywhere in between never runs a finished job again. */
        (void) job_save(s, j);
        list_remove(&s->queue_head, &s->queue_tail, j);
        s->queue_len--;
        j->image = mfree_image(j->image);
        history_add(s, j);
        r = history_save(s);
        if (r >= 0) {
                snprintf(name, sizeof(name), "%u.json", j->id);
                (void) unlink_durable(s->jobs_dir_fd, name);
                snprintf(name, sizeof(name), "%u.image", j->id);
                (void) unlink_durable(s->jobs_dir_fd, name);
        }
}

static int write_image(JobStore *s, Job *j) {
        _cleanup_free_ char *hex = NULL;
        size_t len;
        char name[32];
        int r;

        r = isp_image_write_hex(j->image, &hex, &len);
        if (r < 0)
                return r;
        j->image_crc = isp_crc32(hex, len);
        j->app_crc = isp_image_app_crc32(j->image);
        snprintf(name, sizeof(name), "%u.image", j->id);
        r = write_file_atomic(s->jobs_dir_fd, name, hex, len);
        if (r < 0)
                return log_error_errno(r, "Cannot save the image of job %u: %m", j->id);
        return 0;
}

int job_store_enqueue(JobStore *s, Job *j) {
        char name[32];
        int r;

        if (s->queue_len >= JOB_STORE_QUEUE_MAX)
                return -EBUSY;

        j->id = s->next_id++;
        j->state = JOB_QUEUED;
        j->created_usec = now_realtime();

        r = next_id_save(s);
        if (r < 0)
                return r;
        if (j->kind == SESSION_FLASH) {
                r = write_image(s, j);
                if (r < 0)
                        return r;
        }
        r = job_save(s, j);
        if (r < 0) {
                snprintf(name, sizeof(name), "%u.image", j->id);
                (void) unlink_durable(s->jobs_dir_fd, name);
                return r;
        }

        list_append(&s->queue_head, &s->queue_tail, j);
        s->queue_len++;
        log_info("Job %u (%s %s) queued", j->id, session_kind_to_string(j->kind), j->target);
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
