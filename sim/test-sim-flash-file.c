/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#include "isp-node-ram.h"
#include "sim-flash-file.h"

static char dir[256];

static int setup(void **state) {
        snprintf(dir, sizeof(dir), "%s/test-sim-flash-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state) {
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
        return 0;
}

/* Silence the error messages the code logs on purpose. */
static int quiet_stderr(void) {
        int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY | O_CLOEXEC);

        assert_true(saved >= 0 && null >= 0);
        dup2(null, STDERR_FILENO);
        close(null);
        return saved;
}

static void restore_stderr(int saved) {
        dup2(saved, STDERR_FILENO);
        close(saved);
}

static void test_create_erased_with_pattern(void **state) {
        static uint8_t flash[ISP_NODE_FLASH_SIZE], file[ISP_NODE_FLASH_SIZE + 1];
        char path[PATH_MAX];
        FILE *f;

        snprintf(path, sizeof(path), "%s/node3.bin", dir);
        assert_int_equal(sim_flash_file_load(path, flash), 1);
        for (uint32_t o = 0; o < ISP_NODE_FLASH_SIZE; o++) {
                uint8_t want = o >= ISP_NODE_ISP_START && o < ISP_NODE_ISP_END ? isp_node_isp_pattern(o) : 0xFF;

                if (flash[o] != want)
                        fail_msg("offset 0x%05x: 0x%02x", o, flash[o]);
        }
        /* and it is on disk, identical */
        f = fopen(path, "rb");
        assert_non_null(f);
        assert_int_equal(fread(file, 1, sizeof(file), f), ISP_NODE_FLASH_SIZE);
        fclose(f);
        assert_memory_equal(file, flash, ISP_NODE_FLASH_SIZE);
}

static void test_roundtrip(void **state) {
        static uint8_t flash[ISP_NODE_FLASH_SIZE], again[ISP_NODE_FLASH_SIZE];
        char path[PATH_MAX];
        struct stat st;

        snprintf(path, sizeof(path), "%s/node7.bin", dir);
        for (uint32_t o = 0; o < ISP_NODE_FLASH_SIZE; o++)
                flash[o] = (uint8_t) (o * 7);
        assert_int_equal(sim_flash_file_save(path, flash), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, ISP_NODE_FLASH_SIZE);
        assert_int_equal(st.st_mode & 0777, 0644);
        assert_int_equal(sim_flash_file_load(path, again), 0);
        assert_memory_equal(flash, again, ISP_NODE_FLASH_SIZE);

        /* overwrite in place, no temporary left behind */
        flash[0x11000] = 0x02;
        assert_int_equal(sim_flash_file_save(path, flash), 0);
        assert_int_equal(sim_flash_file_load(path, again), 0);
        assert_int_equal(again[0x11000], 0x02);
        {
                char cmd[PATH_MAX + 64];
                snprintf(cmd, sizeof(cmd), "test $(ls '%s' | wc -l) -eq 1", dir);
                assert_int_equal(system(cmd), 0);
        }
}

static void test_wrong_size(void **state) {
        static uint8_t flash[ISP_NODE_FLASH_SIZE];
        char path[PATH_MAX];
        FILE *f;
        int saved;

        snprintf(path, sizeof(path), "%s/node1.bin", dir);
        f = fopen(path, "wb");
        assert_non_null(f);
        fputs("short", f);
        fclose(f);

        saved = quiet_stderr();
        assert_int_equal(sim_flash_file_load(path, flash), -EBADMSG);
        /* a directory where the file should be */
        snprintf(path, sizeof(path), "%s/sub", dir);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(sim_flash_file_load(path, flash), -EBADMSG);
        restore_stderr(saved);
}

static void test_dir_prepare(void **state) {
        char path[PATH_MAX];
        FILE *f;
        int saved;

        snprintf(path, sizeof(path), "%s/flash", dir);
        assert_int_equal(sim_flash_dir_prepare(path), 0);
        assert_int_equal(sim_flash_dir_prepare(path), 0);

        snprintf(path, sizeof(path), "%s/file", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
        saved = quiet_stderr();
        assert_int_equal(sim_flash_dir_prepare(path), -ENOTDIR);
        snprintf(path, sizeof(path), "%s/no/such/dir", dir);
        assert_int_equal(sim_flash_dir_prepare(path), -ENOENT);
        restore_stderr(saved);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_create_erased_with_pattern, setup, teardown),
                cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_size, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dir_prepare, setup, teardown),
        };

        return cmocka_run_group_tests_name("sim-flash-file", tests, NULL, NULL);
}
