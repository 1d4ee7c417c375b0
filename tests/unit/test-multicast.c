/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine flashing a group of nodes at once (QUIET multicast,
 * docs/protocol.md 4.1, 12.4) against real node cores on RAM flash. Every
 * frame the session sends reaches every node (unless a fault drops it on
 * the way to one of them), the replies go back lowest ID first, and the
 * virtual clock jumps to the session's deadline when the bus is quiet.
 *
 * What is asserted is what a user checks: every node's flash byte for
 * byte, which nodes boot the image, each node's end and message, how many
 * PROGRAM frames the bus carried.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hex-writer.h"
#include "isp-frame.h"
#include "isp-image.h"
#include "isp-node-ram.h"
#include "isp-node.h"
#include "session.h"

#define MAX_NODES 16
#define MSEC 1000ULL
#define FRAME_USEC 200ULL

struct fleet {
        struct isp_node_ram ram[MAX_NODES];
        struct isp_node node[MAX_NODES];
        uint8_t id[MAX_NODES];
        unsigned n;

        /* faults, per node */
        unsigned drop_permille[MAX_NODES];      /* frames lost on the way to it */
        bool dead[MAX_NODES];                   /* powered off */
        unsigned cut_after[MAX_NODES];          /* power cut (and back) after taking N frames in */
        unsigned die_after[MAX_NODES];          /* power off for good after N frames */
        unsigned mute_after[MAX_NODES];         /* still acts on requests, but its answers are lost */
        uint64_t slow_usec[MAX_NODES];          /* its answers come this much later */
        struct { uint64_t at; struct isp_can_frame f; } late[4096];
        unsigned n_late;
        unsigned n_in[MAX_NODES];
        uint32_t rng;

        struct isp_image *img;
        struct session_config cfg;
        struct session *s;
        uint64_t now;

        struct isp_can_frame q[8192];           /* replies waiting for the session */
        unsigned nq;

        unsigned n_program;                     /* PROGRAM frames the session sent */
        unsigned n_erase;
        bool check_commit;                      /* after every frame: valid entry => complete image */
        struct isp_image *old;                  /* what the nodes held before, if anything */

        struct session_target_result res[MAX_NODES];
        char err[MAX_NODES][512];
        unsigned n_res;
        bool finished;
};

static struct fleet *F;

static uint32_t lcg(uint32_t *x) {
        *x = *x * 1103515245u + 12345u;
        return *x >> 16;
}

/* ------------------------------------------------------------------------ */
/* Images */

/* About 6 KiB in both halves of the application area; `variant` changes
 * the bytes of one sector only (FE:0400-FE:05FF) when `one_sector`. */
static struct isp_image *make_image(unsigned variant, bool one_sector) {
        struct hex_writer h = HEX_WRITER_INIT;
        static const uint8_t ljmp[3] = { 0x02, 0x11, 0x00 };
        struct isp_image_error e;
        struct isp_image *img;
        uint8_t buf[2048];
        uint32_t rng = 0xF1EE7;

        hex_writer_data(&h, 0x0000, ljmp, 3);
        for (unsigned i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) (lcg(&rng) + (one_sector ? 0 : variant));
        hex_writer_data(&h, 0x1100, buf, sizeof(buf));
        for (unsigned i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) lcg(&rng);
        hex_writer_data(&h, 0xFE0000, buf, sizeof(buf));
        for (unsigned i = 0; i < 512; i++)
                buf[i] = (uint8_t) (lcg(&rng) ^ variant);
        hex_writer_data(&h, 0xFE0400 + 0x800, buf, 512);        /* FE:0C00: changes with variant */
        for (unsigned i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) lcg(&rng);
        hex_writer_data(&h, 0xFE8000, buf, sizeof(buf));
        hex_writer_eof(&h);
        assert_int_equal(h.error, 0);

        img = malloc(sizeof(*img));
        assert_non_null(img);
        if (isp_image_load(img, h.text, h.len, ISP_IMAGE_HEX, &e) < 0)
                fail_msg("test image does not load: line %u: %s", e.line, e.message);
        free(h.text);
        return img;
}

/* ------------------------------------------------------------------------ */
/* The bus */

static struct isp_node_frame to_node(const struct isp_can_frame *f) {
        struct isp_node_frame n = { .id = f->id | ISP_NODE_FRAME_EXTENDED, .dlc = f->len };

        memcpy(n.data, f->data, 8);
        return n;
}

static struct isp_can_frame from_node(const struct isp_node_frame *n) {
        struct isp_can_frame f = {
                .id = n->id & ISP_NODE_FRAME_ID_MASK,
                .flags = ISP_FRAME_EXTENDED,
                .len = n->dlc,
        };

        memcpy(f.data, n->data, 8);
        return f;
}

static bool entry_valid(unsigned i) {
        const uint8_t *e = F->ram[i].flash + ISP_ENTRY_OFFSET;

        return e[0] == 0x02 && ((e[1] << 8) | e[2]) >= 0x1003;
}

static bool flash_is(unsigned i, const struct isp_image *img) {
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++) {
                if (o >= ISP_AREA_START && o < ISP_AREA_END)
                        continue;
                if (F->ram[i].flash[o] != isp_image_node_byte(img, o))
                        return false;
        }
        return true;
}

static void collect(void) {
        struct isp_can_frame got[MAX_NODES * ISP_NODE_RAM_MAX_SENT];
        unsigned n = 0;

        for (unsigned i = 0; i < F->n; i++) {
                struct isp_node_frame nf;

                while (isp_node_ram_pop(&F->ram[i], &nf)) {
                        if (F->mute_after[i] && F->n_in[i] >= F->mute_after[i])
                                continue;
                        if (F->slow_usec[i]) {
                                assert_true(F->n_late < 4096);
                                F->late[F->n_late].at = F->now + F->slow_usec[i];
                                F->late[F->n_late++].f = from_node(&nf);
                                continue;
                        }
                        got[n++] = from_node(&nf);
                }
        }
        for (unsigned i = 1; i < n; i++)
                for (unsigned j = i; j > 0 && got[j].id < got[j - 1].id; j--) {
                        struct isp_can_frame x = got[j];
                        got[j] = got[j - 1];
                        got[j - 1] = x;
                }
        for (unsigned i = 0; i < n; i++) {
                assert_true(F->nq < sizeof(F->q) / sizeof(F->q[0]));
                F->q[F->nq++] = got[i];
        }
}

static int on_send(void *userdata, const struct isp_can_frame *f) {
        struct isp_node_frame nf = to_node(f);
        unsigned cmd = (f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT;

        F->now += FRAME_USEC;
        F->n_program += cmd == ISP_CMD_PROGRAM;
        F->n_erase += cmd == ISP_CMD_ERASE;
        for (unsigned i = 0; i < F->n; i++) {
                if (F->dead[i])
                        continue;
                if (F->drop_permille[i] && lcg(&F->rng) % 1000 < F->drop_permille[i])
                        continue;
                (void) isp_node_ram_receive(&F->ram[i], &F->node[i], &nf);
                F->n_in[i]++;
                if (F->cut_after[i] && F->n_in[i] == F->cut_after[i]) {
                        if (getenv("TEST_MULTICAST_LOG"))
                                fprintf(stderr, "cut node%u after %u frames\n", F->id[i], F->n_in[i]);
                        isp_node_power_off(&F->node[i]);
                        (void) isp_node_power_on(&F->node[i]);
                }
                if (F->die_after[i] && F->n_in[i] == F->die_after[i]) {
                        isp_node_power_off(&F->node[i]);
                        F->dead[i] = true;
                }
                if (F->check_commit && entry_valid(i))
                        /* a valid entry only ever over the complete image (or the old one) */
                        assert_true(flash_is(i, F->img) || (F->old && flash_is(i, F->old)));
        }
        collect();
        return 0;
}

static void on_target_finished(void *userdata, const struct session_target_result *r) {
        unsigned k = F->n_res++;

        assert_true(k < MAX_NODES);
        F->res[k] = *r;
        snprintf(F->err[k], sizeof(F->err[k]), "%s", r->error ? r->error : "");
        F->res[k].error = F->err[k];
        F->res[k].name = NULL;
}

static void on_finished(void *userdata, enum session_state state, const char *error) {
        F->finished = true;
}

static void on_progress(void *userdata, uint8_t node, uint64_t done, uint64_t total) {
        assert_true(done <= total);
}

static void on_log(void *userdata, int level, const char *message) {
        if (getenv("TEST_MULTICAST_LOG"))
                fprintf(stderr, "log: %s\n", message);
}

static const struct session_ops ops = {
        .send = on_send,
        .log = on_log,
        .progress = on_progress,
        .target_finished = on_target_finished,
        .finished = on_finished,
};

static void run(void) {
        struct session_target_spec spec[MAX_NODES];

        for (unsigned i = 0; i < F->n; i++)
                spec[i] = (struct session_target_spec) { .node = F->id[i] };
        F->s = session_free(F->s);
        F->n_res = 0;
        F->finished = false;
        F->n_program = F->n_erase = 0;
        assert_int_equal(session_new_targets(&F->s, SESSION_FLASH, spec, F->n, F->img, &F->cfg, &ops, F), 0);
        assert_int_equal(session_start(F->s, F->now), 0);

        for (unsigned guard = 0; session_get_state(F->s) == SESSION_RUNNING; guard++) {
                uint64_t d;

                assert_true(guard < 10000000);
                if (F->nq > 0) {
                        struct isp_can_frame f = F->q[0];

                        memmove(F->q, F->q + 1, --F->nq * sizeof(F->q[0]));
                        F->now += FRAME_USEC;
                        session_receive(F->s, &f, F->now);
                        continue;
                }
                d = session_deadline(F->s);
                if (F->n_late > 0 && F->late[0].at < d) {
                        /* a slow node's answer comes first */
                        struct isp_can_frame f = F->late[0].f;

                        if (F->late[0].at > F->now)
                                F->now = F->late[0].at;
                        memmove(F->late, F->late + 1, --F->n_late * sizeof(F->late[0]));
                        session_receive(F->s, &f, F->now);
                        continue;
                }
                if (d == UINT64_MAX)
                        fail_msg("the session waits for nothing but still runs");
                if (d > F->now)
                        F->now = d;
                session_timeout(F->s, F->now);
        }
        assert_true(F->finished);
        assert_int_equal(F->n_res, F->n);
}

static const struct session_target_result *result_of(uint8_t id) {
        for (unsigned i = 0; i < F->n_res; i++)
                if (F->res[i].node == id)
                        return &F->res[i];
        fail_msg("no result for node%u", id);
        return NULL;
}

/* Node i holds the image, entry last, and starts it at power-on. */
static void assert_node_flashed(unsigned i) {
        const struct session_target_result *r = result_of(F->id[i]);

        if (r->state != SESSION_SUCCEEDED)
                fail_msg("node%u: %s (%s)", F->id[i], session_state_to_string(r->state), r->error);
        assert_true(flash_is(i, F->img));
        isp_node_power_off(&F->node[i]);
        assert_int_equal(isp_node_power_on(&F->node[i]), ISP_NODE_MODE_APPLICATION);
        while (isp_node_ram_pop(&F->ram[i], &(struct isp_node_frame) { 0 }))
                ;
}

/* Nodes 0..n-1 but `except` hold the image, as assert_node_flashed(). */
static void assert_others_flashed(unsigned n, unsigned except) {
        for (unsigned i = 0; i < n; i++)
                if (i != except)
                        assert_node_flashed(i);
}

static void add_nodes(unsigned n, uint8_t rx_depth) {
        for (unsigned k = 0; k < n; k++) {
                unsigned i = F->n++;
                struct isp_node_config config = {
                        .node_id = (uint8_t) (10 + 3 * k),
                        .isp_version = 3,
                        .rx_depth = rx_depth,
                        .uid = { 0xC0, 0xFF, 0xEE, (uint8_t) k },
                };
                struct isp_node_frame f;

                assert_true(i < MAX_NODES);
                F->id[i] = config.node_id;
                isp_node_ram_init(&F->ram[i]);
                assert_int_equal(isp_node_init(&F->node[i], &config, &isp_node_ram_ops, &F->ram[i]), 0);
                (void) isp_node_power_on(&F->node[i]);
                while (isp_node_ram_pop(&F->ram[i], &f))
                        ;
        }
}

static unsigned plan_frames(const struct isp_image *img) {
        unsigned n = 0;

        /* 1-8 image bytes per frame, as the plan cuts them: at least
         * bytes / 8; count the frames one flash of one node needs by
         * flashing a single node on a fresh bench is simpler: see tests */
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o += 8)
                n += img->used[o / 8] != 0;
        return n;
}

static int setup(void **state) {
        F = calloc(1, sizeof(*F));
        assert_non_null(F);
        F->rng = 12345;
        F->now = 1000 * MSEC;
        F->img = make_image(1, true);
        session_config_init(&F->cfg);
        return 0;
}

static int teardown(void **state) {
        session_free(F->s);
        free(F->img);
        free(F->old);
        free(F);
        F = NULL;
        return 0;
}

/* ------------------------------------------------------------------------ */
/* Tests */

static void test_group_of_8_one_stream(void **state) {
        add_nodes(8, 4);
        F->check_commit = true;
        run();

        for (unsigned i = 0; i < 8; i++) {
                const struct session_target_result *r = result_of(F->id[i]);

                assert_node_flashed(i);
                assert_true(r->multicast);
                assert_int_equal(r->bytes_done, r->bytes_total);
                assert_true(r->sectors_written > 0);
        }
        /* one stream for all eight (plus the two commit frames each) */
        assert_true(F->n_program <= plan_frames(F->img) + 8 * 2);
        assert_int_equal(session_get_state(F->s), SESSION_SUCCEEDED);
}

static void lossy(unsigned permille) {
        add_nodes(8, 4);
        F->check_commit = true;
        F->drop_permille[2] = permille;
        F->drop_permille[5] = permille;
        run();

        for (unsigned i = 0; i < 8; i++)
                assert_node_flashed(i);
        assert_true(result_of(F->id[2])->repairs > 0 || result_of(F->id[5])->repairs > 0);
        assert_int_equal(result_of(F->id[0])->repairs, 0);
}

static void test_lossy_1_percent(void **state) {
        lossy(10);
}

static void test_lossy_5_percent(void **state) {
        lossy(50);
}

static void test_dead_at_start_fails_alone(void **state) {
        add_nodes(8, 4);
        F->dead[3] = true;
        run();

        assert_others_flashed(8, 3);
        assert_int_equal(result_of(F->id[3])->state, SESSION_FAILED);
        assert_non_null(strstr(result_of(F->id[3])->error, "node19 did not answer CONNECT"));
        assert_int_equal(session_get_state(F->s), SESSION_FAILED);
}

static void test_dies_mid_stream_fails_alone(void **state) {
        add_nodes(8, 4);
        F->die_after[6] = 300;
        run();

        assert_others_flashed(8, 6);
        assert_int_equal(result_of(F->id[6])->state, SESSION_FAILED);
        assert_int_equal(result_of(F->id[6])->reason, SESSION_REASON_NO_REPLY);
        assert_non_null(strstr(result_of(F->id[6])->error, "node28"));
        assert_false(entry_valid(6));
}

/* A member whose answers stop coming while it still acts on what it
 * hears: dropped during the checks, and deselected before anything is
 * erased, so its flash is left as it was (found by an independent peer:
 * it used to be erased and programmed with the others). */
static void test_mute_member_left_untouched(void **state) {
        add_nodes(8, 4);
        F->mute_after[3] = 12;
        run();

        assert_others_flashed(8, 3);
        assert_int_equal(result_of(F->id[3])->state, SESSION_FAILED);
        assert_int_equal(result_of(F->id[3])->reason, SESSION_REASON_NO_REPLY);
        assert_false(result_of(F->id[3])->flash_touched);
        assert_int_equal(F->ram[3].n_erased, 0);
        assert_int_equal(F->ram[3].n_programmed, 0);
}

/* A member that answers late (but in order) and loses requests: its late
 * answers to a batch sent again must never be taken for other requests'.
 * Every node ends byte-exact. */
static void test_slow_lossy_member(void **state) {
        add_nodes(4, 4);
        F->slow_usec[1] = 60 * MSEC;
        F->drop_permille[1] = 30;
        F->check_commit = true;
        run();

        for (unsigned i = 0; i < 4; i++)
                assert_node_flashed(i);
}

static void test_write_failure_dropped(void **state) {
        add_nodes(8, 4);
        F->ram[4].fail_program = 1;
        run();

        assert_others_flashed(8, 4);
        assert_int_equal(result_of(F->id[4])->state, SESSION_FAILED);
        assert_int_equal(result_of(F->id[4])->reason, SESSION_REASON_REFUSED);
        assert_non_null(strstr(result_of(F->id[4])->error, "node22: PROGRAM at "));
        assert_non_null(strstr(result_of(F->id[4])->error, "failed with status 2"));
        assert_false(entry_valid(4));
}

/* A member's power is cut (and comes back) at many points: it never
 * boots a half-written image, the others succeed, and it is flashed
 * anyway (alone, after the group) or left in its ISP for a retry that
 * succeeds. */
static void test_power_cut_of_a_member(void **state) {
        for (unsigned cut = 3; cut < 1400; cut += 23) {
                F->n = 0;
                add_nodes(4, 4);
                F->check_commit = true;
                F->cut_after[1] = cut;
                run();

                for (unsigned i = 0; i < 4; i++)
                        if (i != 1)
                                assert_node_flashed(i);
                if (result_of(F->id[1])->state != SESSION_SUCCEEDED) {
                        assert_false(entry_valid(1));
                        F->cut_after[1] = 0;
                        run();
                }
                assert_node_flashed(1);
                memset(F->n_in, 0, sizeof(F->n_in));
        }
}

/* Reflash with one sector changed: only that sector and the entry
 * sector are erased and written, on every node. */
static void test_differential(void **state) {
        struct isp_image *next = make_image(2, true);
        unsigned sectors = 0;

        add_nodes(8, 4);
        run();
        for (unsigned i = 0; i < 8; i++)
                assert_node_flashed(i);

        F->old = F->img;
        F->img = next;
        F->check_commit = true;
        run();
        for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                sectors += isp_image_sector_used(F->img, sec);
        for (unsigned i = 0; i < 8; i++) {
                const struct session_target_result *r = result_of(F->id[i]);

                assert_node_flashed(i);
                assert_int_equal(r->sectors_written, 2);
                assert_int_equal(r->sectors_skipped, sectors - 2);
                assert_int_equal(r->sectors_erased, 2);
        }
        /* at most two sectors' worth of PROGRAM frames */
        assert_true(F->n_program <= 2 * 512 / 8 + 8 * 2);
        /* entry sector, the changed sector: two group ERASEs */
        assert_int_equal(F->n_erase, 2);

        /* and `full` writes everything again */
        F->cfg.full = true;
        run();
        for (unsigned i = 0; i < 8; i++) {
                assert_node_flashed(i);
                assert_int_equal(result_of(F->id[i])->sectors_skipped, 0);
                assert_int_equal(result_of(F->id[i])->sectors_written, sectors);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_group_of_8_one_stream, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lossy_1_percent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lossy_5_percent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_power_cut_of_a_member, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dead_at_start_fails_alone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dies_mid_stream_fails_alone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_failure_dropped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mute_member_left_untouched, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slow_lossy_member, setup, teardown),
                cmocka_unit_test_setup_teardown(test_differential, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
