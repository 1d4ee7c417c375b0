/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target for the image loader.
 *
 * Every input is loaded twice, as Intel HEX and as raw BIN, so the corpus
 * holds plain image files that ispctl would take too. An accepted image
 * must obey the image rules of docs/protocol.md whatever the input was:
 * the checks below recompute each rule from the flash picture and the
 * used bitmap, not from the loader's helpers. An accepted image written
 * back as HEX must load to the same image. A refused one must come with
 * a one-line message a user can read.
 */

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "isp-crc32.h"
#include "isp-image.h"

#define ENTRY_SECTOR (ISP_ENTRY_OFFSET / ISP_SECTOR_SIZE)

/* Large and reused: keep them off the stack and out of the allocator. */
static struct isp_image image, reloaded;
static uint8_t node[ISP_FLASH_SIZE];
static char hex_text[1024 * 1024];

/* Bitwise CRC-32 (reflected 0xEDB88320), independent of isp-crc32.c's
 * table. */
static uint32_t crc32_reference(const uint8_t *p, size_t n) {
        uint32_t crc = 0xFFFFFFFFu;

        for (size_t i = 0; i < n; i++) {
                crc ^= p[i];
                for (unsigned k = 0; k < 8; k++)
                        crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
        }
        return crc ^ 0xFFFFFFFFu;
}

static bool used(const struct isp_image *img, uint32_t offset) {
        return (img->used[offset / 8] >> (offset % 8)) & 1;
}

static bool in_entry(uint32_t offset) {
        return offset >= ISP_ENTRY_OFFSET && offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE;
}

static bool programmed(const struct isp_image *img, uint32_t offset) {
        return used(img, offset) || in_entry(offset);
}

static void check_entry(const struct isp_image *img) {
        fuzz_check(img->entry[0] == 0x02, "entry opcode 0x%02X", img->entry[0]);
        fuzz_check(img->entry_target == (img->entry[1] << 8 | img->entry[2]),
                   "entry_target 0x%04X, entry bytes %02X %02X", img->entry_target, img->entry[1], img->entry[2]);
        fuzz_check(img->entry_target >= ISP_ENTRY_MIN_TARGET, "entry_target 0x%04X", img->entry_target);
}

static void check_picture(const struct isp_image *img) {
        size_t n_used = 0;

        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++) {
                bool u = used(img, o);

                fuzz_check(u == isp_image_byte_used(img, o), "isp_image_byte_used(0x%05X) disagrees", (unsigned) o);
                /* The ISP area and the entry are never programmed as data. */
                fuzz_check(!u || o < ISP_AREA_START || o >= ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE,
                           "byte 0x%05X inside FF:0000-FF:1002 is marked used", (unsigned) o);
                fuzz_check(u || img->flash[o] == 0xFF, "unused byte 0x%05X holds 0x%02X", (unsigned) o, img->flash[o]);
                n_used += u;
        }
        fuzz_check(img->data_bytes >= ISP_ENTRY_SIZE, "data_bytes %zu", img->data_bytes);
        /* Each distinct offset once, and the three LJMP bytes. */
        fuzz_check(img->data_bytes == n_used + ISP_ENTRY_SIZE, "data_bytes %zu, %zu bytes used",
                   img->data_bytes, n_used);
        fuzz_check(!isp_image_byte_used(img, ISP_FLASH_SIZE), "a byte past the flash is used");
}

static void check_sectors(const struct isp_image *img) {
        unsigned n = 0;

        for (unsigned s = 0; s < ISP_SECTORS; s++) {
                bool want = s == ENTRY_SECTOR;

                for (uint32_t o = s * ISP_SECTOR_SIZE; o < (s + 1) * ISP_SECTOR_SIZE && !want; o++)
                        want = used(img, o);
                fuzz_check(isp_image_sector_used(img, s) == want, "sector %u: used %d, expected %d",
                           s, isp_image_sector_used(img, s), want);
                fuzz_check(!want || s < ISP_AREA_START / ISP_SECTOR_SIZE || s >= ISP_AREA_END / ISP_SECTOR_SIZE,
                           "sector %u of the ISP area is used", s);
                n += want;
        }
        fuzz_check(!isp_image_sector_used(img, ISP_SECTORS), "sector %u past the flash is used", ISP_SECTORS);
        fuzz_check(isp_image_sector_count(img) == n, "sector count %u, expected %u", isp_image_sector_count(img), n);
        fuzz_check(n >= 1 && n <= ISP_SECTORS - (ISP_AREA_END - ISP_AREA_START) / ISP_SECTOR_SIZE,
                   "sector count %u", n);
}

static void check_crc(const struct isp_image *img, size_t input_size) {
        uint32_t crc, o, len;

        for (o = 0; o < ISP_FLASH_SIZE; o++) {
                node[o] = isp_image_node_byte(img, o);
                fuzz_check(node[o] == (in_entry(o) ? img->entry[o - ISP_ENTRY_OFFSET] : img->flash[o]),
                           "node byte 0x%05X is 0x%02X", (unsigned) o, node[o]);
        }

        /* The application area: 0x00000-0x0FFFF, then 0x11000-0x1FFFF. */
        crc = isp_crc32(node, ISP_AREA_START);
        crc = isp_crc32_update(crc, node + ISP_AREA_END, ISP_FLASH_SIZE - ISP_AREA_END);
        fuzz_check(isp_image_app_crc32(img) == crc, "app CRC 0x%08X, expected 0x%08X",
                   (unsigned) isp_image_app_crc32(img), (unsigned) crc);

        fuzz_check(isp_image_crc32(img, 0, ISP_FLASH_SIZE) == isp_crc32(node, ISP_FLASH_SIZE), "whole-flash CRC");

        /* Ranges that start before, in and after the entry bytes, and one
         * that follows the input. */
        static const uint32_t ranges[][2] = {
                { ISP_ENTRY_OFFSET - 5, 4 },
                { ISP_ENTRY_OFFSET - 5, 5 },
                { ISP_ENTRY_OFFSET - 5, 6 },
                { ISP_ENTRY_OFFSET - 5, 16 },
                { ISP_ENTRY_OFFSET + 1, 1 },
                { ISP_ENTRY_OFFSET + 1, 40 },
                { ISP_ENTRY_OFFSET + 3, 0 },
                { 0, 0 },
                { ISP_FLASH_SIZE - 1, 1 },
        };
        for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
                fuzz_check(isp_image_crc32(img, ranges[i][0], ranges[i][1]) == isp_crc32(node + ranges[i][0], ranges[i][1]),
                           "CRC of [0x%05X, +%u)", (unsigned) ranges[i][0], (unsigned) ranges[i][1]);
        o = (uint32_t) (input_size * 7919u % ISP_FLASH_SIZE);
        len = (uint32_t) (input_size * 104729u % (ISP_FLASH_SIZE - o + 1));
        fuzz_check(isp_image_crc32(img, o, len) == isp_crc32(node + o, len),
                   "CRC of [0x%05X, +%u)", (unsigned) o, (unsigned) len);
}

static void check_ranges(const struct isp_image *img) {
        uint32_t from = 0, begin, end;

        while (isp_image_next_range(img, from, &begin, &end)) {
                fuzz_check(begin >= from && begin < end && end <= ISP_FLASH_SIZE,
                           "range [0x%05X, 0x%05X) from 0x%05X", (unsigned) begin, (unsigned) end, (unsigned) from);
                for (uint32_t o = from; o < begin; o++)
                        fuzz_check(!programmed(img, o), "range from 0x%05X skips programmed byte 0x%05X",
                                   (unsigned) from, (unsigned) o);
                for (uint32_t o = begin; o < end; o++)
                        fuzz_check(programmed(img, o), "range [0x%05X, 0x%05X) holds unprogrammed byte 0x%05X",
                                   (unsigned) begin, (unsigned) end, (unsigned) o);
                fuzz_check(end == ISP_FLASH_SIZE || !programmed(img, end), "range [0x%05X, 0x%05X) stops short",
                           (unsigned) begin, (unsigned) end);
                from = end;
        }
        for (uint32_t o = from; o < ISP_FLASH_SIZE; o++)
                fuzz_check(!programmed(img, o), "no range holds programmed byte 0x%05X", (unsigned) o);
}

static size_t hex_record(char *p, uint16_t address, uint8_t type, const uint8_t *data, uint8_t count) {
        uint8_t sum = (uint8_t) (count + (address >> 8) + address + type);
        size_t n = (size_t) sprintf(p, ":%02X%04X%02X", count, address, type);

        for (unsigned i = 0; i < count; i++) {
                n += (size_t) sprintf(p + n, "%02X", data[i]);
                sum = (uint8_t) (sum + data[i]);
        }
        n += (size_t) sprintf(p + n, "%02X\n", (uint8_t) -sum);
        return n;
}

/* The image as a HEX file in logical addresses (FE:xxxx, FF:xxxx), from
 * the used bitmap, with the LJMP at FF:0000. */
static size_t write_hex(const struct isp_image *img, char *p) {
        uint32_t upper = UINT32_MAX;
        size_t n = 0;
        uint8_t b[2];

        for (uint32_t o = 0; o < ISP_FLASH_SIZE; ) {
                uint32_t logical = ISP_LOGICAL_BASE + o;
                uint8_t count = 0;

                if (!used(img, o)) {
                        o++;
                        continue;
                }
                if ((logical >> 16) != upper) {
                        upper = logical >> 16;
                        b[0] = (uint8_t) (upper >> 8), b[1] = (uint8_t) upper;
                        n += hex_record(p + n, 0, 0x04, b, 2);
                }
                /* Up to 32 bytes, never across a 64 KiB boundary. */
                while (count < 32 && o + count < ISP_FLASH_SIZE && used(img, o + count) &&
                       (count == 0 || ((o + count) & 0xFFFF) != 0))
                        count++;
                n += hex_record(p + n, (uint16_t) logical, 0x00, img->flash + o, count);
                o += count;
        }
        b[0] = 0x00, b[1] = 0xFF;
        n += hex_record(p + n, 0, 0x04, b, 2);
        n += hex_record(p + n, 0x0000, 0x00, img->entry, ISP_ENTRY_SIZE);
        n += hex_record(p + n, 0, 0x01, NULL, 0);
        return n;
}

static void check_reload(const struct isp_image *img) {
        struct isp_image_error error;
        size_t n;
        int r;

        n = write_hex(img, hex_text);
        fuzz_check(n < sizeof(hex_text), "HEX text of %zu bytes", n);
        r = isp_image_load(&reloaded, hex_text, n, ISP_IMAGE_AUTO, &error);
        fuzz_check(r == 0, "image written back as HEX does not load: %u: %s", error.line, error.message);
        fuzz_check(reloaded.format == ISP_IMAGE_HEX, "written back as HEX, detected as %s",
                   isp_image_format_to_string(reloaded.format));
        fuzz_check(memcmp(reloaded.flash, img->flash, sizeof(img->flash)) == 0, "reloaded flash differs");
        fuzz_check(memcmp(reloaded.used, img->used, sizeof(img->used)) == 0, "reloaded bitmap differs");
        fuzz_check(memcmp(reloaded.entry, img->entry, sizeof(img->entry)) == 0, "reloaded entry differs");
        fuzz_check(reloaded.entry_target == img->entry_target, "reloaded entry target differs");
        fuzz_check(reloaded.data_bytes == img->data_bytes, "reloaded data_bytes %zu, was %zu",
                   reloaded.data_bytes, img->data_bytes);
}

/* A BIN file is the flash picture itself: from FF:0000 when it fits in
 * 64 KiB, else from FE:0000; 0xFF is blank. */
static void check_bin_picture(const struct isp_image *img, const uint8_t *data, size_t size) {
        uint32_t start = size <= 0x10000 ? ISP_AREA_START : 0;

        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++) {
                bool in_file = o >= start && o - start < size;

                if (o >= ISP_AREA_START && o < ISP_AREA_START + ISP_ENTRY_SIZE) {
                        fuzz_check(in_file && img->entry[o - ISP_AREA_START] == data[o - start],
                                   "entry byte %u differs from the file", (unsigned) (o - ISP_AREA_START));
                        continue;
                }
                if (in_file && data[o - start] != 0xFF)
                        fuzz_check(used(img, o) && img->flash[o] == data[o - start],
                                   "file byte 0x%X (0x%02X) is not at flash offset 0x%05X",
                                   (unsigned) (o - start), data[o - start], (unsigned) o);
                else
                        fuzz_check(!used(img, o), "flash offset 0x%05X is used, the file has no data there", (unsigned) o);
        }
}

static void check_error(const struct isp_image_error *error, int r, enum isp_image_format format,
                        const uint8_t *data, size_t size) {
        const char *end;
        unsigned lines = 1;

        fuzz_check(r == -EINVAL, "%s load returned %d", isp_image_format_to_string(format), r);
        end = memchr(error->message, '\0', sizeof(error->message));
        fuzz_check(end, "%s error message is not NUL-terminated", isp_image_format_to_string(format));
        fuzz_check(end > error->message, "%s error message is empty", isp_image_format_to_string(format));
        /* It follows "file:line: " on one line of a terminal. */
        for (const char *c = error->message; c < end; c++)
                fuzz_check(*c >= 0x20 && *c < 0x7F, "error message holds byte 0x%02X: %s",
                           (unsigned char) *c, error->message);

        for (size_t i = 0; i < size; i++)
                lines += data[i] == '\n';
        if (format == ISP_IMAGE_BIN)
                fuzz_check(error->line == 0, "BIN error on line %u: %s", error->line, error->message);
        else
                fuzz_check(error->line <= lines, "error on line %u of %u: %s", error->line, lines, error->message);
}

static void fuzz_load(const uint8_t *data, size_t size, enum isp_image_format format) {
        struct isp_image_error error;
        int r;

        memset(&error, 0xAA, sizeof(error));    /* the loader must write the message */
        r = isp_image_load(&image, data, size, format, &error);
        if (r < 0) {
                check_error(&error, r, format, data, size);
                return;
        }

        fuzz_check(r == 0, "load returned %d", r);
        fuzz_check(image.format == format, "loaded as %s, asked for %s",
                   isp_image_format_to_string(image.format), isp_image_format_to_string(format));
        check_entry(&image);
        check_picture(&image);
        check_sectors(&image);
        check_crc(&image, size);
        check_ranges(&image);
        check_reload(&image);
        if (format == ISP_IMAGE_BIN)
                check_bin_picture(&image, data, size);
}

static void check_crc32(const uint8_t *data, size_t size) {
        uint32_t crc;
        size_t split;

        if (size > 4096)
                size = 4096;    /* the bitwise reference is slow */
        crc = crc32_reference(data, size);
        fuzz_check(isp_crc32(data, size) == crc, "CRC-32 of %zu bytes", size);
        split = size ? data[0] % (size + 1) : 0;
        fuzz_check(isp_crc32_update(isp_crc32(data, split), data + split, size - split) == crc,
                   "CRC-32 of %zu bytes split at %zu", size, split);
}

static void check_detect(const uint8_t *data, size_t size) {
        static const char *const names[] = { NULL, "app.hex", "APP.IHX", "app.bin", "app.Img", "app", "dir.hex/app", ".hex" };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                enum isp_image_format f = isp_image_detect_format(names[i], data, size);

                fuzz_check(f == ISP_IMAGE_HEX || f == ISP_IMAGE_BIN, "detected format %d for %s",
                           f, names[i] ? names[i] : "(no name)");
        }
}

/* The start of the input as a --format argument. */
static void check_format_name(const uint8_t *data, size_t size) {
        char name[16] = {};
        int f;

        memcpy(name, data, size < sizeof(name) - 1 ? size : sizeof(name) - 1);
        f = isp_image_format_from_string(name);
        fuzz_check(f == ISP_IMAGE_AUTO || f == ISP_IMAGE_HEX || f == ISP_IMAGE_BIN || f == -EINVAL,
                   "format name gives %d", f);
        if (f >= 0)
                fuzz_check(isp_image_format_from_string(isp_image_format_to_string(f)) == f,
                           "format %d does not survive its name", f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_load(data, size, ISP_IMAGE_HEX);
        fuzz_load(data, size, ISP_IMAGE_BIN);
        check_detect(data, size);
        check_format_name(data, size);
        check_crc32(data, size);
        return 0;
}
