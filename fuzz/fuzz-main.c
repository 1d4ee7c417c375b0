/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Replays inputs through a fuzz target where libFuzzer is not available
 * (gcc): each argument is a file, or a directory whose regular files are
 * all replayed, in name order. A violated invariant aborts, as under
 * libFuzzer; the sanitizers of the build catch the rest.
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "read-file.h"
#include "util.h"

#define INPUT_MAX (16u * 1024 * 1024)

static int replay_file(const char *path) {
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;
        int r;

        r = read_full_file(path, INPUT_MAX, &text, &size);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }

        /* An exact-size copy: read_full_file() adds a NUL, which would hide
         * a one-byte over-read from ASan. */
        data = malloc(size ? size : 1);
        if (!data) {
                fprintf(stderr, "%s: %s\n", path, strerror(ENOMEM));
                return -ENOMEM;
        }
        memcpy(data, text, size);

        fprintf(stderr, "replaying %s (%zu bytes)\n", path, size);
        (void) LLVMFuzzerTestOneInput(data, size);
        return 0;
}

static int skip_dots(const struct dirent *de) {
        return de->d_name[0] != '.';
}

static int replay_dir(const char *path, unsigned *count) {
        struct dirent **list = NULL;
        int n, r = 0;

        n = scandir(path, &list, skip_dots, alphasort);
        if (n < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }

        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *file = NULL;
                struct stat st;

                if (asprintf(&file, "%s/%s", path, list[i]->d_name) < 0) {
                        file = NULL;
                        r = -ENOMEM;
                } else if (stat(file, &st) < 0) {
                        fprintf(stderr, "%s: %s\n", file, strerror(errno));
                        r = -errno;
                } else if (S_ISREG(st.st_mode)) {
                        int k = replay_file(file);

                        if (k < 0)
                                r = k;
                        else
                                (*count)++;
                }
                free(list[i]);
        }
        free(list);
        return r;
}

int main(int argc, char *argv[]) {
        unsigned count = 0;
        int r = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
                return EXIT_FAILURE;
        }

        for (int i = 1; i < argc; i++) {
                struct stat st;
                int k;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        r = -errno;
                        continue;
                }
                if (S_ISDIR(st.st_mode))
                        k = replay_dir(argv[i], &count);
                else {
                        k = replay_file(argv[i]);
                        count += k >= 0;
                }
                if (k < 0)
                        r = k;
        }

        fprintf(stderr, "%u inputs replayed\n", count);
        /* An empty corpus would make the test pass while checking nothing. */
        if (count == 0)
                return EXIT_FAILURE;
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
