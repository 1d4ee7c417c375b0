/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/job-store.c against a real state directory: what survives a
 * restart, what never runs twice, what is set aside when damaged. Disk
 * full and read errors are faked with -Wl,--wrap= on store.c's helpers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hex-writer.h"
#include "isp-image-hex.h"
#include "job-store.h"
#include "read-file.h"
#include "store.h"
#include "util.h"

static char dir[64];

/* ---- fakes for store.c ---- */

static int fail_all_writes;             /* every write fails with this errno */
static char full_while_exists[128];     /* the disk is full while this file exists */
static char fail_write_name[64];        /* writes of this name fail with ENOSPC */
static char eio_read_name[64];          /* reads of this name fail with EIO */

int __real_write_file_atomic(int dir_fd, const char *name, const void *data, size_t size);
int __wrap_write_file_atomic(int dir_fd, const char *name, const void *data, size_t size);
int __real_read_file_at(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_size);
int __wrap_read_file_at(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_size);

int __wrap_write_file_atomic(int dir_fd, const char *name, const void *data, size_t size) {
        if (fail_all_writes)
                return -fail_all_writes;
        if (full_while_exists[0] && access(full_while_exists, F_OK) == 0)
                return -ENOSPC;
        if (fail_write_name[0] && strcmp(name, fail_write_name) == 0)
                return -ENOSPC;
        return __real_write_file_atomic(dir_fd, name, data, size);
}

int __wrap_read_file_at(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_size) {
        if (eio_read_name[0] && strcmp(name, eio_read_name) == 0)
                return -EIO;
        return __real_read_file_at(dir_fd, name, max, ret, ret_size);
}

/* ---- stderr capture: the messages are part of the contract ---- */

static int saved_stderr = -1;
static char log_path[96];

static void log_capture_start(void) {
        int fd;

        fflush(stderr);
        snprintf(log_path, sizeof(log_path), "%s.log", dir);
        fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        saved_stderr = dup(STDERR_FILENO);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);
        close(fd);
}

/* Returns what was logged; the caller frees it. */
static char *log_capture_end(void) {
        char *text = NULL;
        size_t size;

        fflush(stderr);
        assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
        close(saved_stderr);
        saved_stderr = -1;
        assert_int_equal(read_full_file(log_path, 1 << 20, &text, &size), 0);
        (void) unlink(log_path);
        fputs(text, stderr);            /* still visible in the test log */
        return text;
}

#define assert_logged(text, needle) do {                                                  \
                if (!strstr((text), (needle)))                                           \
                        fail_msg("expected a message containing \"%s\", got:\n%s", (needle), (text)); \
        } while (0)

/* ---- fixtures and helpers ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int setup(void **state) {
        snprintf(dir, sizeof(dir), "/tmp/test-job-store.XXXXXX");
        assert_non_null(mkdtemp(dir));
        fail_all_writes = 0;
        full_while_exists[0] = fail_write_name[0] = eio_read_name[0] = '\0';
        return 0;
}

static int teardown(void **state) {
        (void) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static char *path_of(const char *name) {
        static char p[4][160];
        static unsigned n;
        char *r = p[n++ % 4];

        snprintf(r, sizeof(p[0]), "%s/%s", dir, name);
        return r;
}

static char *job_file(uint32_t id, const char *ext) {
        char name[40];

        snprintf(name, sizeof(name), "jobs/%u.%s", id, ext);
        return path_of(name);
}

static bool exists(const char *path) {
        return access(path, F_OK) == 0;
}

/* Whether dir/sub holds a file set aside as "<name>.damaged-<time>". */
static bool damaged_copy_exists(const char *sub, const char *name) {
        DIR *d = opendir(sub ? path_of(sub) : dir);
        struct dirent *de;
        size_t n = strlen(name);
        bool found = false;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, name, n) == 0 && strncmp(de->d_name + n, ".damaged-", 9) == 0)
                        found = true;
        closedir(d);
        return found;
}

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

/* Returns the file's text; the caller frees it. Not inlined: gcc 12 then
 * takes the result for a pointer into this frame (-Wdangling-pointer). */
__attribute__((noinline)) static char *read_text(const char *path) {
        char *text = NULL;
        size_t size;

        assert_int_equal(read_full_file(path, 1 << 24, &text, &size), 0);
        return text;
}

/* A small application: LJMP to 0x1200, code at FE:0000, data at FF:1200,
 * a programmed 0xFF at FE:8000. */
static struct isp_image *make_image(uint8_t seed) {
        struct hex_writer h = HEX_WRITER_INIT;
        struct isp_image *img = malloc(sizeof(*img));
        struct isp_image_error e;
        uint8_t ljmp[3] = { 0x02, 0x12, 0x00 }, ff = 0xFF, code[300], data[64];

        assert_non_null(img);
        for (unsigned i = 0; i < sizeof(code); i++)
                code[i] = (uint8_t) (i * 7 + seed);
        for (unsigned i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (0xA0 ^ i ^ seed);
        hex_writer_data(&h, 0x0000, ljmp, sizeof(ljmp));
        hex_writer_data(&h, 0xFE0000, code, sizeof(code));
        hex_writer_data(&h, 0xFE8000, &ff, 1);
        hex_writer_data(&h, 0xFF1200, data, sizeof(data));
        hex_writer_eof(&h);
        assert_int_equal(h.error, 0);
        assert_int_equal(isp_image_load(img, h.text, h.len, ISP_IMAGE_HEX, &e), 0);
        free(h.text);
        return img;
}

static Job *flash_job(uint8_t node, uint8_t seed) {
        char target[16];
        Job *j;

        snprintf(target, sizeof(target), "node%u", node);
        j = job_new(NULL, 0, SESSION_FLASH, target, node);
        assert_non_null(j);
        j->image = make_image(seed);
        return j;
}

static Job *scan_job(void) {
        Job *j = job_new(NULL, 0, SESSION_SCAN, "bus", 0);

        assert_non_null(j);
        return j;
}

static JobStore *open_store(unsigned history_max, unsigned max_attempts) {
        JobStore *s = NULL;

        assert_int_equal(job_store_new(&s, dir, history_max, max_attempts), 0);
        assert_int_equal(job_store_load(s), 0);
        return s;
}

/* A restart: everything in memory goes, the disk stays. */
static JobStore *reopen(JobStore *s) {
        unsigned history_max = s->history_max, max_attempts = s->max_attempts;

        job_store_free(s);
        return open_store(history_max, max_attempts);
}

static uint32_t enqueue(JobStore *s, Job *j) {
        assert_int_equal(job_store_enqueue(s, j), 0);
        assert_int_not_equal(j->id, 0);
        assert_ptr_equal(job_store_find(s, j->id), j);
        return j->id;
}

static void fail_job(Job *j, const char *error) {
        j->state = JOB_FAILED;
        free(j->error);
        j->error = strdup(error);
        assert_non_null(j->error);
        j->finished_usec = 1700000000000000ULL;
}

static unsigned count_in(Job *head, uint32_t id) {
        unsigned n = 0;

        for (Job *j = head; j; j = j->next)
                n += j->id == id;
        return n;
}

/* As the manager does: finish, signal, trim. */
static void finish(JobStore *s, Job *j) {
        job_store_finish(s, j);
        job_store_trim(s);
}

/* ---- 1: History=0 ---- */

/* The finished job is freed by the history trim: nothing after that may
 * use it (valgrind and ASan see the read), and the next job's files stay. */
static void test_history_zero_finish(void **state) {
        JobStore *s = open_store(/* history_max= */ 0, /* max_attempts= */ 3);
        Job *a = flash_job(3, 1), *b = flash_job(4, 2);
        uint32_t ida = enqueue(s, a), idb = enqueue(s, b);

        fail_job(a, "node3: no answer");
        job_store_finish(s, a);
        /* the caller still signals the job's end: it must be there */
        assert_ptr_equal(job_store_find(s, ida), a);
        assert_int_equal(a->state, JOB_FAILED);
        assert_string_equal(a->error, "node3: no answer");
        job_store_trim(s);

        assert_null(job_store_find(s, ida));
        assert_int_equal(s->history_len, 0);
        assert_int_equal(s->queue_len, 1);
        assert_false(exists(job_file(ida, "json")));
        assert_false(exists(job_file(ida, "image")));
        assert_true(exists(job_file(idb, "json")));
        assert_true(exists(job_file(idb, "image")));

        s = reopen(s);
        assert_null(job_store_find(s, ida));
        assert_non_null(job_store_find(s, idb));
        job_store_free(s);
}

/* ---- 2: disk full at the end of a job ---- */

/* Neither the final record nor the history can be written: the job was
 * reported failed, so after a restart it must not be queued again. */
static void test_disk_full_finished_job_never_runs_again(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = flash_job(3, 1);
        uint32_t id = enqueue(s, j);
        char *log, what[32];

        j->state = JOB_RUNNING;
        j->attempts = 1;
        assert_int_equal(job_store_save(s, j), 0);

        fail_all_writes = ENOSPC;
        fail_job(j, "node3: PROGRAM at 0x00200 not acknowledged after 3 tries");
        log_capture_start();
        finish(s, j);
        log = log_capture_end();
        fail_all_writes = 0;

        s = reopen(s);
        j = job_store_find(s, id);
        assert_true(!j || job_state_is_final(j->state));
        assert_int_equal(count_in(s->queue_head, id), 0);
        assert_int_equal(s->queue_len, 0);
        job_store_free(s);

        /* and the loss of its final state is told, naming the job */
        snprintf(what, sizeof(what), "Job %u", id);
        assert_logged(log, what);
        assert_logged(log, "never runs again");
        free(log);
}

/* The disk is full until the job's image goes: dropping it first makes
 * room for the final record and the history, so the job is in the history
 * after a restart, with its error. */
static void test_disk_full_image_dropped_first(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = flash_job(3, 1);
        uint32_t id = enqueue(s, j);

        snprintf(full_while_exists, sizeof(full_while_exists), "%s", job_file(id, "image"));
        fail_job(j, "node3: no answer");
        finish(s, j);
        full_while_exists[0] = '\0';

        s = reopen(s);
        j = job_store_find(s, id);
        assert_non_null(j);
        assert_int_equal(j->state, JOB_FAILED);
        assert_string_equal(j->error, "node3: no answer");
        assert_int_equal(count_in(s->history_head, id), 1);
        assert_int_equal(s->queue_len, 0);
        assert_false(exists(job_file(id, "json")));
        job_store_free(s);
}

/* ---- 3: job ids ---- */

static void test_ids_skip_zero_and_ids_in_use(void **state) {
        JobStore *s = open_store(10, 3);
        Job *first = scan_job(), *a = scan_job(), *b = scan_job(), *c = scan_job();
        uint32_t id1 = enqueue(s, first), ida, idb;

        assert_int_equal(id1, 1);
        first->state = JOB_SUCCEEDED;
        finish(s, first);             /* id 1 stays in use, in the history */

        s->next_id = UINT32_MAX;
        ida = enqueue(s, a);
        idb = enqueue(s, b);
        assert_int_equal(ida, UINT32_MAX);
        assert_int_equal(idb, 2);               /* not 0, not 1 */

        s = reopen(s);
        /* queue order survives the wrap: the older job first */
        assert_non_null(s->queue_head);
        assert_int_equal(s->queue_head->id, UINT32_MAX);
        assert_non_null(s->queue_head->next);
        assert_int_equal(s->queue_head->next->id, 2);
        assert_int_equal(s->queue_len, 2);
        assert_int_equal(enqueue(s, c), 3);
        job_store_free(s);
}

/* ---- 4: a file's name is its id ---- */

/* jobs/1.json claiming to be job 2 must not take job 2's files with it,
 * nor come back on every start: it is set aside. */
static void test_load_file_id_differs_from_name(void **state) {
        JobStore *s = open_store(10, 3);
        Job *one = flash_job(3, 1), *two = flash_job(4, 2);
        uint32_t id1 = enqueue(s, one), id2 = enqueue(s, two);
        _cleanup_free_ char *record2 = NULL, *why = NULL;
        char *log;

        assert_int_equal(id1, 1);
        assert_int_equal(id2, 2);
        job_store_free(s);
        record2 = read_text(job_file(2, "json"));
        write_text(job_file(1, "json"), record2);

        log_capture_start();
        s = open_store(10, 3);
        log = log_capture_end();

        assert_true(exists(job_file(2, "json")));
        assert_true(exists(job_file(2, "image")));
        assert_true(damaged_copy_exists("jobs", "1.json"));
        assert_false(exists(job_file(1, "json")));
        assert_logged(log, "jobs/1.json");
        free(log);
        two = job_store_find(s, 2);
        assert_non_null(two);
        assert_int_equal(two->state, JOB_QUEUED);
        assert_int_equal(two->node, 4);
        assert_int_equal(job_store_load_image(s, two, &why), 0);
        assert_int_equal(s->queue_len, 1);

        s = reopen(s);
        assert_int_equal(s->queue_len, 1);
        assert_int_equal(s->history_len, 0);
        job_store_free(s);
}

/* ---- 5: damaged files ---- */

static void finish_three(JobStore *s, uint32_t ids[3]) {
        for (unsigned i = 0; i < 3; i++) {
                Job *j = scan_job();

                ids[i] = enqueue(s, j);
                j->state = JOB_SUCCEEDED;
                j->finished_usec = 1700000000000000ULL + i;
                finish(s, j);
        }
}

/* A history.json cut short in its third entry keeps the first two; the
 * file is set aside with a warning naming it. */
static void test_damaged_history_keeps_intact_entries(void **state) {
        JobStore *s = open_store(10, 3);
        char *text;
        uint32_t ids[3];
        char *log, *cut;

        finish_three(s, ids);
        job_store_free(s);

        text = read_text(path_of("history.json"));
        cut = strstr(text, "\"id\":3");
        assert_non_null(cut);
        cut[4] = '\0';
        write_text(path_of("history.json"), text);
        free(text);

        log_capture_start();
        s = open_store(10, 3);
        log = log_capture_end();
        assert_logged(log, "history.json");
        free(log);

        assert_int_equal(s->history_len, 2);
        assert_non_null(job_store_find(s, ids[0]));
        assert_non_null(job_store_find(s, ids[1]));
        assert_true(damaged_copy_exists(NULL, "history.json"));

        /* the intact entries were written back: they survive another start */
        s = reopen(s);
        assert_int_equal(s->history_len, 2);
        job_store_free(s);
}

/* An entry that is valid JSON but not a job: the others stay, the file is
 * set aside rather than the entry being dropped in silence. */
static void test_damaged_history_entry(void **state) {
        JobStore *s = open_store(10, 3);
        char *text;
        uint32_t ids[3];
        char *bad;

        finish_three(s, ids);
        job_store_free(s);

        text = read_text(path_of("history.json"));
        bad = strstr(text, "\"kind\":\"scan\"");
        assert_non_null(bad);
        memcpy(bad, "\"kind\":\"scam\"", 13);
        write_text(path_of("history.json"), text);
        free(text);

        s = open_store(10, 3);
        assert_int_equal(s->history_len, 2);
        assert_null(job_store_find(s, ids[0]));
        assert_non_null(job_store_find(s, ids[2]));
        assert_true(damaged_copy_exists(NULL, "history.json"));
        job_store_free(s);
}

/* A jobs/N.json that is not JSON is set aside, never ignored. */
static void test_damaged_job_record_quarantined(void **state) {
        JobStore *s = open_store(10, 3);
        uint32_t id = enqueue(s, scan_job());
        char *log;

        job_store_free(s);
        write_text(job_file(id, "json"), "{ \"id\": 1, \"kind\": ");

        log_capture_start();
        s = open_store(10, 3);
        log = log_capture_end();

        assert_true(damaged_copy_exists("jobs", "1.json"));
        assert_false(exists(job_file(id, "json")));
        assert_int_equal(s->queue_len, 0);
        job_store_free(s);
        assert_logged(log, "jobs/1.json");
        assert_logged(log, "not valid JSON");
        free(log);
}

/* A read error is told apart from damage: the message says EIO. */
static void test_job_record_read_error(void **state) {
        JobStore *s = open_store(10, 3);
        char *log;

        (void) enqueue(s, scan_job());
        job_store_free(s);
        snprintf(eio_read_name, sizeof(eio_read_name), "1.json");

        log_capture_start();
        s = open_store(10, 3);
        log = log_capture_end();
        eio_read_name[0] = '\0';
        assert_logged(log, "jobs/1.json");
        assert_logged(log, "Input/output error");
        free(log);
        job_store_free(s);
}

/* ---- 6: the stored image is checked before it is flashed ---- */

static void test_image_crc_mismatch_refused(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = flash_job(3, 1);
        uint32_t id = enqueue(s, j);
        _cleanup_free_ struct isp_image *other = make_image(9);
        _cleanup_free_ char *hex = NULL, *why = NULL;

        /* still valid Intel HEX, but not what was queued */
        assert_int_equal(isp_image_write_hex(other, &hex, NULL), 0);
        write_text(job_file(id, "image"), hex);

        s = reopen(s);
        j = job_store_find(s, id);
        assert_non_null(j);
        assert_int_equal(job_store_load_image(s, j, &why), -EBADMSG);
        assert_null(j->image);
        assert_non_null(why);
        assert_logged(why, "jobs/1.image");
        job_store_free(s);
}

static void test_image_garbage_refused(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = flash_job(3, 1);
        uint32_t id = enqueue(s, j);
        _cleanup_free_ char *why = NULL;

        write_text(job_file(id, "image"), "garbage\n");
        s = reopen(s);
        j = job_store_find(s, id);
        assert_int_equal(job_store_load_image(s, j, &why), -EBADMSG);
        assert_null(j->image);
        assert_non_null(why);
        assert_logged(why, "jobs/1.image");
        job_store_free(s);
}

/* ---- 7: the node image is stored, not the upload ---- */

static void test_node_image_stored(void **state) {
        JobStore *s = open_store(10, 3);
        _cleanup_free_ struct isp_image *want = make_image(1);
        _cleanup_free_ char *text = NULL, *why = NULL;
        Job *j = flash_job(3, 1);
        uint32_t id = enqueue(s, j), app_crc;
        struct stat st;

        assert_int_equal(JOB_IMAGE_FILE_MAX, 4u << 20);
        assert_null(j->image);                  /* on disk, not in memory, while queued */
        app_crc = j->app_crc;
        assert_int_equal(app_crc, isp_image_app_crc32(want));

        assert_int_equal(stat(job_file(id, "image"), &st), 0);
        assert_true(st.st_size < 4096);         /* 367 data bytes as HEX */
        text = read_text(job_file(id, "image"));
        assert_int_equal(text[0], ':');

        s = reopen(s);
        j = job_store_find(s, id);
        assert_int_equal(j->app_crc, app_crc);
        assert_int_equal(job_store_load_image(s, j, &why), 0);
        assert_non_null(j->image);
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                if (isp_image_node_byte(j->image, o) != isp_image_node_byte(want, o) ||
                    isp_image_byte_used(j->image, o) != isp_image_byte_used(want, o))
                        fail_msg("offset 0x%05X differs after the round trip", o);
        assert_int_equal(isp_image_app_crc32(j->image), app_crc);

        j->state = JOB_SUCCEEDED;
        finish(s, j);                 /* frees the image */
        assert_false(exists(job_file(id, "image")));
        job_store_free(s);
}

/* ---- 8: a job that keeps crashing the daemon ---- */

static void test_interrupted_job_gives_up(void **state) {
        JobStore *s = open_store(10, /* max_attempts= */ 3);
        Job *j = flash_job(3, 1);
        uint32_t id = enqueue(s, j);

        j->state = JOB_RUNNING;
        j->phase = SESSION_PHASE_PROGRAM;
        j->attempts = 3;
        assert_int_equal(job_store_save(s, j), 0);

        s = reopen(s);
        j = job_store_find(s, id);
        assert_non_null(j);
        assert_int_equal(j->state, JOB_FAILED);
        assert_string_equal(j->error, "interrupted 3 times while it ran (the daemon stopped or crashed): giving up");
        assert_int_equal(s->queue_len, 0);
        assert_int_equal(count_in(s->history_head, id), 1);
        assert_false(exists(job_file(id, "json")));

        s = reopen(s);
        assert_int_equal(s->queue_len, 0);
        assert_int_equal(count_in(s->history_head, id), 1);
        job_store_free(s);
}

static void test_interrupted_job_requeued(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = flash_job(3, 1);
        uint32_t id = enqueue(s, j);
        char *log;

        j->state = JOB_RUNNING;
        j->phase = SESSION_PHASE_PROGRAM;
        j->bytes_done = 512;
        j->attempts = 2;
        assert_int_equal(job_store_save(s, j), 0);

        job_store_free(s);
        log_capture_start();
        s = open_store(10, 3);
        log = log_capture_end();
        assert_logged(log, "program");
        free(log);

        j = job_store_find(s, id);
        assert_ptr_equal(s->queue_head, j);
        assert_int_equal(j->state, JOB_QUEUED);
        assert_int_equal(j->phase, SESSION_PHASE_NONE);
        assert_int_equal(j->bytes_done, 0);
        assert_int_equal(j->attempts, 2);
        job_store_free(s);
}

/* ---- guarantees kept from today's store ---- */

/* Crash after the final record, before the history: the job lands in the
 * history exactly once, and its record goes. */
static void test_crash_before_history_write(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = scan_job();
        uint32_t id = enqueue(s, j);

        j->state = JOB_SUCCEEDED;
        assert_int_equal(job_store_save(s, j), 0);

        s = reopen(s);
        assert_int_equal(count_in(s->history_head, id), 1);
        assert_int_equal(s->queue_len, 0);
        s = reopen(s);
        assert_int_equal(count_in(s->history_head, id), 1);
        assert_false(exists(job_file(id, "json")));
        job_store_free(s);
}

/* Crash after the history, before the files went: still once. */
static void test_crash_before_files_removed(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = scan_job();
        uint32_t id = enqueue(s, j);
        _cleanup_free_ char *record = NULL;

        j->state = JOB_SUCCEEDED;
        assert_int_equal(job_store_save(s, j), 0);
        record = read_text(job_file(id, "json"));
        finish(s, j);
        write_text(job_file(id, "json"), record);

        s = reopen(s);
        assert_int_equal(count_in(s->history_head, id), 1);
        assert_int_equal(s->history_len, 1);
        assert_false(exists(job_file(id, "json")));
        job_store_free(s);
}

static void test_queue_order_is_id_order(void **state) {
        JobStore *s = open_store(10, 3);
        uint32_t ids[4];
        Job *j;

        for (unsigned i = 0; i < 4; i++)
                ids[i] = enqueue(s, i % 2 ? scan_job() : flash_job((uint8_t) (i + 1), (uint8_t) i));
        s = reopen(s);
        j = s->queue_head;
        for (unsigned i = 0; i < 4; i++, j = j->next) {
                assert_non_null(j);
                assert_int_equal(j->id, ids[i]);
        }
        assert_null(j);
        assert_ptr_equal(s->queue_tail->id, ids[3]);
        job_store_free(s);
}

static void test_history_trimmed(void **state) {
        JobStore *s = open_store(2, 3);
        uint32_t ids[3];

        finish_three(s, ids);
        assert_int_equal(s->history_len, 2);
        assert_null(job_store_find(s, ids[0]));
        s = reopen(s);
        assert_int_equal(s->history_len, 2);
        assert_ptr_equal(s->history_head->id, ids[1]);
        job_store_free(s);
}

/* A failed enqueue leaves nothing behind and does not queue the job. */
static void test_enqueue_failure_leaves_nothing(void **state) {
        JobStore *s = open_store(10, 3);
        Job *j = flash_job(3, 1);

        snprintf(fail_write_name, sizeof(fail_write_name), "1.json");
        assert_int_equal(job_store_enqueue(s, j), -ENOSPC);
        fail_write_name[0] = '\0';
        assert_int_equal(s->queue_len, 0);
        assert_null(s->queue_head);
        assert_false(exists(job_file(1, "image")));
        assert_false(exists(job_file(1, "json")));
        job_free(j);

        s->queue_len = JOB_STORE_QUEUE_MAX;     /* full, without writing 1000 jobs */
        j = scan_job();
        assert_int_equal(job_store_enqueue(s, j), -EBUSY);
        job_free(j);
        s->queue_len = 0;
        job_store_free(s);
}

static void test_record_fields_round_trip(void **state) {
        Job *j = job_new(NULL, 7, SESSION_FLASH, "node3", 3), *k = NULL;
        _cleanup_free_ char *json = NULL;

        j->interface = strdup("can1");
        j->image_name = strdup("pump-v2.hex");
        j->image_crc = 0xDEADBEEF;
        j->app_crc = 0x12345678;
        json = job_to_json(j);
        assert_int_equal(job_from_json(NULL, json, &k), 0);
        assert_string_equal(k->interface, "can1");
        assert_string_equal(k->image_name, "pump-v2.hex");
        assert_int_equal(k->image_crc, 0xDEADBEEF);
        assert_int_equal(k->app_crc, 0x12345678);
        job_free(k);
        job_free(j);

        /* a record from before "interface" */
        assert_int_equal(job_from_json(NULL, "{\"id\": 4, \"kind\": \"reboot\", \"target\": \"node3\", "
                                             "\"node\": 3, \"state\": \"queued\"}", &k), 0);
        assert_null(k->interface);
        job_free(k);
}

/* ---- several nodes in one job ---- */

static Job *fleet_job(uint8_t seed) {
        Job *j = job_new(NULL, 0, SESSION_FLASH, "can0/node1,can0/node2,can1/node2", 1);

        assert_non_null(j);
        assert_int_equal(job_add_node(j, "can0", 1, "can0/node1"), 0);
        assert_int_equal(job_add_node(j, "can0", 2, "can0/node2"), 0);
        assert_int_equal(job_add_node(j, "can1", 2, "can1/node2"), 0);
        j->opt_full = true;
        j->image = make_image(seed);
        return j;
}

static void test_nodes_round_trip(void **state) {
        Job *j = fleet_job(1), *k = NULL;
        _cleanup_free_ char *json = NULL;

        j->id = 9;
        j->state = JOB_FAILED;
        j->nodes[0] = (struct job_node) { .interface = j->nodes[0].interface, .id = 1, .name = j->nodes[0].name,
                                          .state = JOB_SUCCEEDED, .phase = SESSION_PHASE_REBOOT,
                                          .bytes_done = 4096, .bytes_total = 4096, .sectors_written = 8,
                                          .sectors_skipped = 3, .repairs = 1 };
        j->nodes[2].state = JOB_FAILED;
        j->nodes[2].phase = SESSION_PHASE_CONNECT;
        j->nodes[2].error = strdup("node2 did not answer CONNECT within 200 ms");
        json = job_to_json(j);
        assert_non_null(json);
        assert_int_equal(job_from_json(NULL, json, &k), 0);

        assert_true(k->opt_full);
        assert_string_equal(k->target, "can0/node1,can0/node2,can1/node2");
        assert_int_equal(k->n_nodes, 3);
        for (unsigned i = 0; i < 3; i++) {
                assert_string_equal(k->nodes[i].interface, j->nodes[i].interface);
                assert_string_equal(k->nodes[i].name, j->nodes[i].name);
                assert_int_equal(k->nodes[i].id, j->nodes[i].id);
                assert_int_equal(k->nodes[i].state, j->nodes[i].state);
                assert_int_equal(k->nodes[i].phase, j->nodes[i].phase);
        }
        assert_int_equal(k->nodes[0].bytes_done, 4096);
        assert_int_equal(k->nodes[0].bytes_total, 4096);
        assert_int_equal(k->nodes[0].sectors_written, 8);
        assert_int_equal(k->nodes[0].sectors_skipped, 3);
        assert_int_equal(k->nodes[0].repairs, 1);
        assert_null(k->nodes[0].error);
        assert_int_equal(k->nodes[1].state, JOB_QUEUED);
        assert_string_equal(k->nodes[2].error, "node2 did not answer CONNECT within 200 ms");
        assert_ptr_equal(job_find_node(k, "can1", 2), &k->nodes[2]);
        assert_null(job_find_node(k, "can1", 1));
        job_free(k);
        job_free(j);

        /* a node without a name, or an empty list, is no job */
        assert_int_equal(job_from_json(NULL, "{\"id\": 4, \"kind\": \"flash\", \"target\": \"node3\", \"node\": 3, "
                                             "\"state\": \"queued\", \"nodes\": [{\"id\": 3}]}", &k), -EINVAL);
        assert_int_equal(job_from_json(NULL, "{\"id\": 4, \"kind\": \"flash\", \"target\": \"node3\", \"node\": 3, "
                                             "\"state\": \"queued\", \"nodes\": []}", &k), -EINVAL);
        assert_int_equal(job_from_json(NULL, "{\"id\": 4, \"kind\": \"flash\", \"target\": \"node3\", \"node\": 3, "
                                             "\"state\": \"queued\", \"nodes\": [{\"id\": 300, \"name\": \"x\"}]}",
                                       &k), -EINVAL);
}

/* What issue 10 added to a record survives a restart: the options, and
 * each node's outcome, boot, dry-run figures and differing sectors. */
static void test_outcomes_round_trip(void **state) {
        Job *j = fleet_job(1), *k = NULL;
        _cleanup_free_ char *json = NULL;

        j->id = 11;
        j->opt_force = true;
        j->opt_dry_run = true;
        j->opt_require_boot = true;
        j->opt_canary = 1;
        j->nodes[0].state = JOB_SUCCEEDED;
        j->nodes[0].outcome = SESSION_OUTCOME_WOULD_FLASH;
        j->nodes[0].sectors_to_erase = 12;
        j->nodes[0].estimate_usec = 1234567;
        j->nodes[0].differing[0] = 0x05;                /* sectors 0 and 2 */
        j->nodes[0].differing[0x88 / 8] = 1u << (0x88 % 8);      /* the entry sector */
        j->nodes[1].state = JOB_SUCCEEDED;
        j->nodes[1].outcome = SESSION_OUTCOME_UP_TO_DATE;
        j->nodes[1].boot = SESSION_BOOT_CONFIRMED;
        j->nodes[1].identified = true;
        j->nodes[1].image_crc = 0x5907571D;
        j->nodes[2].state = JOB_CANCELLED;
        j->nodes[2].outcome = SESSION_OUTCOME_NOT_STARTED;
        json = job_to_json(j);
        assert_non_null(json);
        assert_int_equal(job_from_json(NULL, json, &k), 0);

        assert_true(k->opt_force && k->opt_dry_run && k->opt_require_boot);
        assert_int_equal(k->opt_canary, 1);
        assert_int_equal(k->nodes[0].outcome, SESSION_OUTCOME_WOULD_FLASH);
        assert_int_equal(k->nodes[0].sectors_to_erase, 12);
        assert_int_equal(k->nodes[0].estimate_usec, 1234567);
        assert_memory_equal(k->nodes[0].differing, j->nodes[0].differing, sizeof(j->nodes[0].differing));
        assert_int_equal(k->nodes[1].outcome, SESSION_OUTCOME_UP_TO_DATE);
        assert_int_equal(k->nodes[1].boot, SESSION_BOOT_CONFIRMED);
        assert_true(k->nodes[1].identified);
        assert_int_equal(k->nodes[1].image_crc, 0x5907571D);
        assert_false(k->nodes[0].identified);
        assert_int_equal(k->nodes[2].outcome, SESSION_OUTCOME_NOT_STARTED);
        job_free(k);
        job_free(j);
}

/* A canary flash: its first opt_canary nodes, then the others. */
static void test_canary_stages(void **state) {
        Job *j = fleet_job(1);

        for (unsigned i = 0; i < 3; i++)
                assert_true(job_node_in_stage(j, i));   /* no canary: one stage */
        j->opt_canary = 1;
        assert_true(job_node_in_stage(j, 0));
        assert_false(job_node_in_stage(j, 1));
        assert_false(job_node_in_stage(j, 2));
        j->stage = 1;
        assert_false(job_node_in_stage(j, 0));
        assert_true(job_node_in_stage(j, 1));
        assert_true(job_node_in_stage(j, 2));
        /* as many canaries as nodes: no second stage, all at once */
        j->opt_canary = 3;
        j->stage = 0;
        for (unsigned i = 0; i < 3; i++)
                assert_true(job_node_in_stage(j, i));
        job_free(j);
}

/* Records from before "nodes": the one node they name, with the job's end. */
static void test_single_target_record_loads_as_one_node(void **state) {
        Job *k = NULL;

        assert_int_equal(job_from_json(NULL, "{\"id\": 4, \"kind\": \"flash\", \"target\": \"can1/node3\", \"node\": 3, "
                                             "\"interface\": \"can1\", \"state\": \"failed\", \"phase\": \"verify\", "
                                             "\"error\": \"node3: verify failed at 0x11200\"}", &k), 0);
        assert_int_equal(k->n_nodes, 1);
        assert_string_equal(k->nodes[0].interface, "can1");
        assert_string_equal(k->nodes[0].name, "can1/node3");
        assert_int_equal(k->nodes[0].id, 3);
        assert_int_equal(k->nodes[0].state, JOB_FAILED);
        assert_int_equal(k->nodes[0].phase, SESSION_PHASE_VERIFY);
        assert_string_equal(k->nodes[0].error, "node3: verify failed at 0x11200");
        assert_false(k->opt_full);
        job_free(k);

        /* before lines too: no interface (the manager gives it the first line) */
        assert_int_equal(job_from_json(NULL, "{\"id\": 5, \"kind\": \"reboot\", \"target\": \"node3\", "
                                             "\"node\": 3, \"state\": \"queued\"}", &k), 0);
        assert_int_equal(k->n_nodes, 1);
        assert_null(k->nodes[0].interface);
        assert_int_equal(k->nodes[0].state, JOB_QUEUED);
        job_free(k);

        /* a scan has no nodes */
        assert_int_equal(job_from_json(NULL, "{\"id\": 6, \"kind\": \"scan\", \"target\": \"bus\", "
                                             "\"node\": 0, \"state\": \"succeeded\"}", &k), 0);
        assert_int_equal(k->n_nodes, 0);
        job_free(k);
}

/* A queued fleet job survives a restart whole; one interrupted while it
 * ran is queued again with every node back to the start; a finished one
 * keeps its nodes' results in the history. */
static void test_fleet_job_survives_restart(void **state) {
        JobStore *s = open_store(10, 3);
        uint32_t queued = enqueue(s, fleet_job(1)), running = enqueue(s, fleet_job(2)), done = enqueue(s, fleet_job(3));
        Job *j;

        j = job_store_find(s, running);
        j->state = JOB_RUNNING;
        j->attempts = 1;
        j->nodes[1].state = JOB_RUNNING;
        j->nodes[1].phase = SESSION_PHASE_PROGRAM;
        j->nodes[1].bytes_done = 512;
        j->nodes[0].state = JOB_FAILED;
        j->nodes[0].error = strdup("node1 did not answer");
        assert_int_equal(job_store_save(s, j), 0);

        j = job_store_find(s, done);
        j->nodes[0].state = j->nodes[1].state = JOB_SUCCEEDED;
        j->nodes[2].state = JOB_FAILED;
        j->nodes[2].error = strdup("can1/node2: refused");
        j->nodes[0].sectors_written = 33;
        fail_job(j, "1 of 3 nodes failed: can1/node2: refused");
        finish(s, j);

        s = reopen(s);
        j = job_store_find(s, queued);
        assert_non_null(j);
        assert_int_equal(j->state, JOB_QUEUED);
        assert_int_equal(j->n_nodes, 3);
        assert_string_equal(j->nodes[2].interface, "can1");
        assert_true(j->opt_full);
        assert_int_equal(job_store_load_image(s, j, NULL), 0);

        j = job_store_find(s, running);
        assert_int_equal(j->state, JOB_QUEUED);
        for (unsigned i = 0; i < 3; i++) {
                assert_int_equal(j->nodes[i].state, JOB_QUEUED);
                assert_int_equal(j->nodes[i].phase, SESSION_PHASE_NONE);
                assert_int_equal(j->nodes[i].bytes_done, 0);
                assert_null(j->nodes[i].error);
        }

        j = job_store_find(s, done);
        assert_int_equal(count_in(s->history_head, done), 1);
        assert_int_equal(j->n_nodes, 3);
        assert_int_equal(j->nodes[0].state, JOB_SUCCEEDED);
        assert_int_equal(j->nodes[0].sectors_written, 33);
        assert_int_equal(j->nodes[2].state, JOB_FAILED);
        assert_string_equal(j->nodes[2].error, "can1/node2: refused");
        job_store_free(s);
}

static void test_summary_of_nodes(void **state) {
        Job *j = fleet_job(1);

        j->phase = SESSION_PHASE_CONNECT;
        j->nodes[0].state = JOB_RUNNING;
        j->nodes[0].phase = SESSION_PHASE_VERIFY;
        j->nodes[0].bytes_done = j->nodes[0].bytes_total = 1000;
        j->nodes[1].state = JOB_RUNNING;
        j->nodes[1].phase = SESSION_PHASE_PROGRAM;
        j->nodes[1].bytes_done = 200;
        j->nodes[1].bytes_total = 1000;
        j->nodes[2].state = JOB_FAILED;                 /* ended in connect: not the least advanced any more */
        j->nodes[2].phase = SESSION_PHASE_CONNECT;
        job_summarize_nodes(j);
        assert_int_equal(j->phase, SESSION_PHASE_PROGRAM);
        assert_int_equal(j->bytes_done, 1200);
        assert_int_equal(j->bytes_total, 2000);

        /* none running: the phase stays where it was */
        j->nodes[0].state = j->nodes[1].state = JOB_SUCCEEDED;
        job_summarize_nodes(j);
        assert_int_equal(j->phase, SESSION_PHASE_PROGRAM);
        job_free(j);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
                T(test_history_zero_finish),
                T(test_outcomes_round_trip),
                T(test_canary_stages),
                T(test_disk_full_finished_job_never_runs_again),
                T(test_disk_full_image_dropped_first),
                T(test_ids_skip_zero_and_ids_in_use),
                T(test_load_file_id_differs_from_name),
                T(test_damaged_history_keeps_intact_entries),
                T(test_damaged_history_entry),
                T(test_damaged_job_record_quarantined),
                T(test_job_record_read_error),
                T(test_image_crc_mismatch_refused),
                T(test_image_garbage_refused),
                T(test_node_image_stored),
                T(test_interrupted_job_gives_up),
                T(test_interrupted_job_requeued),
                T(test_crash_before_history_write),
                T(test_crash_before_files_removed),
                T(test_queue_order_is_id_order),
                T(test_history_trimmed),
                T(test_enqueue_failure_leaves_nothing),
                T(test_record_fields_round_trip),
                T(test_nodes_round_trip),
                T(test_single_target_record_loads_as_one_node),
                T(test_fleet_job_survives_restart),
                T(test_summary_of_nodes),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
