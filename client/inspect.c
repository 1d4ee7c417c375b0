/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isp-image.h"
#include "ispctl.h"
#include "output.h"
#include "read-file.h"
#include "util.h"

/* A HEX file for 128 KiB of flash is about 360 KiB; anything far larger is
 * not an image for this part. */
#define IMAGE_FILE_MAX (16u * 1024 * 1024)

static void image_freep(struct isp_image **img) {
        free(*img);
}

int ispctl_load_image(const char *path, const struct ispctl_args *args, struct isp_image **ret,
                      char **ret_data, size_t *ret_size) {
        _cleanup_(image_freep) struct isp_image *img = NULL;
        _cleanup_free_ char *data = NULL;
        struct isp_image_error error;
        int format, r;
        size_t size;

        format = isp_image_format_from_string(args->format);
        if (format < 0) {
                ispctl_error(args, NULL, 0, false, "unknown image format '%s' (expected hex or bin)", args->format);
                return ISPCTL_EXIT_USAGE;
        }

        r = read_full_file(path, IMAGE_FILE_MAX, &data, &size);
        if (r == -EFBIG) {
                ispctl_error(args, path, -1, true, "%s: file is larger than %u MiB, not an image for a 128 KiB flash",
                             path, IMAGE_FILE_MAX / 1024 / 1024);
                return ISPCTL_EXIT_INVALID_IMAGE;
        }
        if (r < 0) {
                ispctl_error(args, path, -1, true, "%s: cannot read: %s", path, strerror(-r));
                return ISPCTL_EXIT_INVALID_IMAGE;
        }

        img = malloc(sizeof(*img));
        if (!img) {
                ispctl_error(args, path, -1, true, "out of memory");
                return ISPCTL_EXIT_INVALID_IMAGE;
        }

        if (format == ISP_IMAGE_AUTO)
                format = isp_image_detect_format(strcmp(path, "-") == 0 ? NULL : path, data, size);

        r = isp_image_load(img, data, size, (enum isp_image_format) format, &error);
        if (r < 0) {
                if (error.line > 0)
                        ispctl_error(args, path, (int) error.line, true, "%s:%u: %s", path, error.line, error.message);
                else
                        ispctl_error(args, path, -1, true, "%s: %s", path, error.message);
                return ISPCTL_EXIT_INVALID_IMAGE;
        }

        *ret = TAKE_PTR(img);
        if (ret_data) {
                *ret_data = TAKE_PTR(data);
                *ret_size = size;
        }
        return 0;
}

/* Spans of programmed bytes for display: blank gaps shorter than a sector
 * (a BIN's 0xFF bytes, alignment holes) are bridged, so a person sees the
 * image's regions rather than every run of 0xFF. */
static bool next_span(const struct isp_image *img, uint32_t from, uint32_t *ret_begin, uint32_t *ret_end) {
        uint32_t begin, end, b2, e2;

        if (!isp_image_next_range(img, from, &begin, &end))
                return false;
        while (isp_image_next_range(img, end, &b2, &e2) && b2 - end < ISP_SECTOR_SIZE)
                end = e2;
        *ret_begin = begin;
        *ret_end = end;
        return true;
}

static void print_human(const char *path, const struct isp_image *img, uint32_t crc) {
        char a[ISP_ADDR_STRING_MAX], b[ISP_ADDR_STRING_MAX];
        uint32_t begin, end, from = 0;
        bool first = true;

        printf("      File: %s\n", path);
        printf("    Format: %s\n", img->format == ISP_IMAGE_HEX ? "Intel HEX" : "raw binary");
        while (next_span(img, from, &begin, &end)) {
                printf("%s%s-%s  %6" PRIu32 " bytes span\n", first ? "    Ranges: " : "            ",
                       isp_offset_to_string(begin, a), isp_offset_to_string(end - 1, b), end - begin);
                first = false;
                from = end;
        }
        printf("      Data: %zu bytes (LJMP included)\n", img->data_bytes);
        printf("   Sectors: %u of %u (512 bytes each)\n", isp_image_sector_count(img),
               (ISP_FLASH_SIZE - (ISP_AREA_END - ISP_AREA_START)) / ISP_SECTOR_SIZE);
        printf("     Entry: LJMP FF:%04X, moved from FF:0000 to FF:1000\n", img->entry_target);
        printf("    CRC-32: 0x%08" PRIX32 " (application area, 124 KiB)\n", crc);
}

static int print_json(const char *path, const struct isp_image *img, uint32_t crc) {
        json_object *o = json_object_new_object(), *ranges = json_object_new_array();
        uint32_t begin, end, from = 0;

        if (!o || !ranges)
                return -ENOMEM;

        while (next_span(img, from, &begin, &end)) {
                json_object *r = json_object_new_object();
                json_object_object_add(r, "start", json_object_new_int64(ISP_LOGICAL_BASE + begin));
                json_object_object_add(r, "end", json_object_new_int64(ISP_LOGICAL_BASE + end - 1));
                json_object_object_add(r, "bytes", json_object_new_int64(end - begin));
                json_object_array_add(ranges, r);
                from = end;
        }

        json_object_object_add(o, "file", json_object_new_string(path));
        json_object_object_add(o, "format", json_object_new_string(isp_image_format_to_string(img->format)));
        json_object_object_add(o, "bytes", json_object_new_int64((int64_t) img->data_bytes));
        json_object_object_add(o, "sectors", json_object_new_int64(isp_image_sector_count(img)));
        json_object_object_add(o, "entry_target", json_object_new_int64(img->entry_target));
        json_object_object_add(o, "crc32", json_object_new_int64(crc));
        json_object_object_add(o, "ranges", ranges);

        output_json(o);
        return 0;
}

int verb_inspect(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(image_freep) struct isp_image *img = NULL;
        uint32_t crc;
        int r;

        if (argc != 2) {
                ispctl_error(args, NULL, 0, false, "inspect takes exactly one FILE (see 'ispctl --help')");
                return ISPCTL_EXIT_USAGE;
        }

        r = ispctl_load_image(argv[1], args, &img, NULL, NULL);
        if (r != 0)
                return r;

        crc = isp_image_app_crc32(img);
        if (args->json)
                r = print_json(argv[1], img, crc);
        else {
                print_human(argv[1], img, crc);
                r = 0;
        }
        if (fflush(stdout) != 0 || r < 0) {
                fprintf(stderr, "Failed to write output: %s\n", strerror(r < 0 ? -r : errno));
                return ISPCTL_EXIT_INVALID_IMAGE;
        }
        return ISPCTL_EXIT_SUCCESS;
}
