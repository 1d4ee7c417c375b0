/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "isp-crc32.h"
#include "isp-image.h"

#define LJMP_OPCODE 0x02

/* The loader's working state; the LJMP is collected apart from the flash
 * picture until the end, when it is checked and moved to FF:1000. */
struct loader {
        struct isp_image *img;
        struct isp_image_error *error;
        uint8_t ljmp[ISP_ENTRY_SIZE];
        bool ljmp_seen[ISP_ENTRY_SIZE];
        unsigned ljmp_line;
        unsigned line;          /* current HEX line, 0 for BIN */
};

_Pragma("GCC diagnostic push")
_Pragma("GCC diagnostic ignored \"-Wformat-nonliteral\"")
__attribute__((format(printf, 3, 4)))
static int fail(struct loader *l, unsigned line, const char *fmt, ...) {
        va_list ap;

        l->error->line = line;
        va_start(ap, fmt);
        vsnprintf(l->error->message, sizeof(l->error->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}
_Pragma("GCC diagnostic pop")

static void mark_used(struct isp_image *img, uint32_t offset) {
        img->used[offset / 8] |= (uint8_t) (1u << (offset % 8));
}

/* Place one data byte at a flash offset, enforcing the image rules. */
static int place_byte(struct loader *l, uint32_t offset, uint8_t byte, const char *where) {
        struct isp_image *img = l->img;
        char a[ISP_ADDR_STRING_MAX];

        if (offset >= ISP_AREA_START && offset < ISP_AREA_START + ISP_ENTRY_SIZE) {
                unsigned i = offset - ISP_AREA_START;

                if (l->ljmp_seen[i] && l->ljmp[i] != byte)
                        return fail(l, l->line, "overlapping records with different data at %s%s: 0x%02X here, 0x%02X before",
                                    isp_offset_to_string(offset, a), where, byte, l->ljmp[i]);
                if (!l->ljmp_seen[i])
                        img->data_bytes++;
                l->ljmp[i] = byte;
                l->ljmp_seen[i] = true;
                if (i == 0)
                        l->ljmp_line = l->line;
                return 0;
        }
        if (offset >= ISP_AREA_START && offset < ISP_AREA_END)
                return fail(l, l->line, "data at %s%s is inside the ISP area FF:0003-FF:0FFF, which is never written",
                            isp_offset_to_string(offset, a), where);
        if (offset >= ISP_ENTRY_OFFSET && offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE)
                return fail(l, l->line, "data at %s%s: FF:1000-FF:1002 is reserved for the entry the host moves there",
                            isp_offset_to_string(offset, a), where);

        if (isp_image_byte_used(img, offset)) {
                if (img->flash[offset] != byte)
                        return fail(l, l->line, "overlapping records with different data at %s%s: 0x%02X here, 0x%02X before",
                                    isp_offset_to_string(offset, a), where, byte, img->flash[offset]);
                return 0;
        }

        img->flash[offset] = byte;
        mark_used(img, offset);
        img->data_bytes++;
        return 0;
}

/* Logical or plain 16-bit HEX address → flash offset; -ERANGE outside. */
static int64_t hex_address_to_offset(uint64_t address) {
        if (address < 0x10000)
                return (int64_t) (address + ISP_AREA_START);           /* FF:xxxx */
        if (address >= ISP_LOGICAL_BASE && address < ISP_LOGICAL_BASE + ISP_FLASH_SIZE)
                return (int64_t) (address - ISP_LOGICAL_BASE);
        return -ERANGE;
}

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static int hex_record(struct loader *l, const char *s, size_t n, uint64_t *base, bool *ret_eof) {
        uint8_t rec[1 + 2 + 1 + 255 + 1];
        size_t nbytes;
        uint8_t sum = 0, count, type;
        uint16_t addr16;

        if (n == 0 || s[0] != ':')
                return fail(l, l->line, "line does not start with ':'");
        s++, n--;

        for (size_t i = 0; i < n; i++)
                if (hex_digit(s[i]) < 0) {
                        if ((unsigned char) s[i] >= 0x20 && (unsigned char) s[i] < 0x7F)
                                return fail(l, l->line, "bad hex digit '%c' in column %zu", s[i], i + 2);
                        return fail(l, l->line, "bad hex digit (byte 0x%02X) in column %zu", (unsigned char) s[i], i + 2);
                }
        if (n % 2 != 0)
                return fail(l, l->line, "odd number of hex digits (%zu)", n);
        nbytes = n / 2;
        if (nbytes < 5)
                return fail(l, l->line, "bad record length: record of %zu bytes is shorter than the minimum of 5", nbytes);
        if (nbytes > sizeof(rec))
                return fail(l, l->line, "bad record length: line holds %zu bytes, more than any record can", nbytes);

        for (size_t i = 0; i < nbytes; i++) {
                rec[i] = (uint8_t) (hex_digit(s[2 * i]) << 4 | hex_digit(s[2 * i + 1]));
                sum = (uint8_t) (sum + rec[i]);
        }

        count = rec[0];
        if ((size_t) count + 5 != nbytes)
                return fail(l, l->line, "bad record length: length field says %u data bytes, the line holds %zu",
                            count, nbytes - 5);
        if (sum != 0) {
                uint8_t expected = (uint8_t) (rec[nbytes - 1] - sum);
                return fail(l, l->line, "bad checksum 0x%02X, expected 0x%02X", rec[nbytes - 1], expected);
        }

        addr16 = (uint16_t) (rec[1] << 8 | rec[2]);
        type = rec[3];

        switch (type) {
        case 0x00:
                for (unsigned i = 0; i < count; i++) {
                        uint64_t address = *base + addr16 + i;
                        int64_t offset = hex_address_to_offset(address);
                        int r;

                        if (offset < 0)
                                return fail(l, l->line, "address 0x%06llX is outside flash (FE:0000-FF:FFFF, or 0000-FFFF for FF:xxxx)",
                                            (unsigned long long) address);
                        r = place_byte(l, (uint32_t) offset, rec[4 + i], "");
                        if (r < 0)
                                return r;
                }
                return 0;

        case 0x01:
                if (count != 0)
                        return fail(l, l->line, "bad record length: EOF record with %u data bytes, expected 0", count);
                *ret_eof = true;
                return 0;

        case 0x02:
        case 0x04:
                if (count != 2)
                        return fail(l, l->line, "bad record length: %s address record with %u data bytes, expected 2",
                                    type == 0x02 ? "extended segment" : "extended linear", count);
                if (type == 0x02)
                        *base = (uint64_t) (rec[4] << 8 | rec[5]) << 4;
                else
                        *base = (uint64_t) (rec[4] << 8 | rec[5]) << 16;
                return 0;

        case 0x03:
        case 0x05:
                /* Start addresses mean nothing to the ISP: the LJMP at FF:0000 is
                 * what starts the application. */
                if (count != 4)
                        return fail(l, l->line, "bad record length: start address record with %u data bytes, expected 4", count);
                return 0;

        default:
                return fail(l, l->line, "unknown record type 0x%02X", type);
        }
}

static int load_hex(struct loader *l, const char *buf, size_t len) {
        uint64_t base = 0;
        bool eof = false;
        unsigned last_line = 0;
        size_t pos = 0;

        for (unsigned line = 1; pos < len && !eof; line++) {
                const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - s) : len - pos;
                int r;

                pos += n + (nl ? 1 : 0);

                /* Tolerate CRLF and trailing blanks; skip empty lines. */
                while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
                        n--;
                if (n == 0)
                        continue;

                l->line = last_line = line;
                r = hex_record(l, s, n, &base, &eof);
                if (r < 0)
                        return r;
        }
        l->line = 0;

        if (!eof)
                return fail(l, last_line, "missing EOF record (:00000001FF) at the end of the file");
        return 0;
}

static int load_bin(struct loader *l, const uint8_t *buf, size_t len) {
        uint32_t start;

        if (len > ISP_FLASH_SIZE)
                return fail(l, 0, "binary image of %zu bytes is larger than the 128 KiB flash", len);
        start = len <= 0x10000 ? ISP_AREA_START : 0;

        for (size_t i = 0; i < len; i++) {
                uint32_t offset = start + (uint32_t) i;
                char where[48];
                int r;

                /* The reset vector is taken whole, even where hh or ll is 0xFF. */
                if (offset >= ISP_AREA_START && offset < ISP_AREA_START + ISP_ENTRY_SIZE) {
                        l->ljmp[offset - ISP_AREA_START] = buf[i];
                        l->ljmp_seen[offset - ISP_AREA_START] = true;
                        l->img->data_bytes++;
                        continue;
                }
                if (buf[i] == 0xFF)
                        continue;       /* blank, as erased flash reads */

                snprintf(where, sizeof(where), " (file offset 0x%zX)", i);
                r = place_byte(l, offset, buf[i], where);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Check the LJMP collected at FF:0000 and move it to FF:1000. */
static int take_entry(struct loader *l) {
        struct isp_image *img = l->img;
        unsigned seen = l->ljmp_seen[0] + l->ljmp_seen[1] + l->ljmp_seen[2];
        unsigned line = l->ljmp_line;
        uint16_t target;

        if (seen == 0)
                return fail(l, 0, "no reset vector: the image must start with an LJMP (02 hh ll) at FF:0000");
        if (seen != ISP_ENTRY_SIZE)
                return fail(l, line, "incomplete reset vector: FF:0000-FF:0002 must hold a whole LJMP (02 hh ll)");
        if (l->ljmp[0] != LJMP_OPCODE)
                return fail(l, line, "FF:0000 holds 0x%02X, expected an LJMP (0x02) to the application", l->ljmp[0]);

        target = (uint16_t) (l->ljmp[1] << 8 | l->ljmp[2]);
        if (target < ISP_ENTRY_MIN_TARGET)
                return fail(l, line, "LJMP target 0x%04X is below 0x1003: it would jump into the ISP area or the entry", target);

        memcpy(img->entry, l->ljmp, ISP_ENTRY_SIZE);
        img->entry_target = target;
        return 0;
}

int isp_image_load(struct isp_image *img, const void *buf, size_t len,
                   enum isp_image_format format, struct isp_image_error *ret_error) {
        struct loader l = {
                .img = img,
                .error = ret_error,
        };
        int r;

        *ret_error = (struct isp_image_error) {};
        memset(img, 0, sizeof(*img));
        memset(img->flash, 0xFF, sizeof(img->flash));

        if (format == ISP_IMAGE_AUTO)
                format = isp_image_detect_format(NULL, buf, len);
        img->format = format;

        if (format == ISP_IMAGE_HEX)
                r = load_hex(&l, buf, len);
        else
                r = load_bin(&l, buf, len);
        if (r < 0)
                return r;

        if (img->data_bytes == 0)
                return fail(&l, 0, "empty image: the file holds no data");

        return take_entry(&l);
}

enum isp_image_format isp_image_detect_format(const char *filename, const void *buf, size_t len) {
        static const char *const hex_ext[] = { ".hex", ".ihx", ".ihex", ".h86" };
        static const char *const bin_ext[] = { ".bin", ".img" };
        const char *dot = filename ? strrchr(filename, '.') : NULL;
        const char *p = buf;
        size_t i = 0;

        if (dot && !strchr(dot, '/')) {
                for (size_t k = 0; k < sizeof(hex_ext) / sizeof(hex_ext[0]); k++)
                        if (strcasecmp(dot, hex_ext[k]) == 0)
                                return ISP_IMAGE_HEX;
                for (size_t k = 0; k < sizeof(bin_ext) / sizeof(bin_ext[0]); k++)
                        if (strcasecmp(dot, bin_ext[k]) == 0)
                                return ISP_IMAGE_BIN;
        }

        while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
                i++;
        if (i + 3 <= len && p[i] == ':' && hex_digit(p[i + 1]) >= 0 && hex_digit(p[i + 2]) >= 0)
                return ISP_IMAGE_HEX;
        return ISP_IMAGE_BIN;
}

const char *isp_image_format_to_string(enum isp_image_format format) {
        switch (format) {
        case ISP_IMAGE_HEX:  return "hex";
        case ISP_IMAGE_BIN:  return "bin";
        case ISP_IMAGE_AUTO: return "auto";
        }
        return "unknown";
}

int isp_image_format_from_string(const char *s) {
        if (!s || strcmp(s, "auto") == 0 || *s == '\0')
                return ISP_IMAGE_AUTO;
        if (strcasecmp(s, "hex") == 0 || strcasecmp(s, "ihex") == 0)
                return ISP_IMAGE_HEX;
        if (strcasecmp(s, "bin") == 0 || strcasecmp(s, "binary") == 0)
                return ISP_IMAGE_BIN;
        return -EINVAL;
}

bool isp_image_sector_used(const struct isp_image *img, unsigned sector) {
        uint32_t begin = sector * ISP_SECTOR_SIZE;

        if (sector >= ISP_SECTORS)
                return false;
        if (sector == ISP_ENTRY_OFFSET / ISP_SECTOR_SIZE)
                return true;
        /* 512 bytes = 64 bitmap bytes */
        for (uint32_t i = begin / 8; i < (begin + ISP_SECTOR_SIZE) / 8; i++)
                if (img->used[i])
                        return true;
        return false;
}

unsigned isp_image_sector_count(const struct isp_image *img) {
        unsigned n = 0;

        for (unsigned s = 0; s < ISP_SECTORS; s++)
                n += isp_image_sector_used(img, s);
        return n;
}

uint8_t isp_image_node_byte(const struct isp_image *img, uint32_t offset) {
        if (offset >= ISP_ENTRY_OFFSET && offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE)
                return img->entry[offset - ISP_ENTRY_OFFSET];
        return img->flash[offset];
}

/* Continue a running CRC over [offset, offset+len) of the node's view. */
static uint32_t crc_update_node(const struct isp_image *img, uint32_t crc, uint32_t offset, uint32_t len) {
        uint32_t end = offset + len;

        /* Feed the picture in up to three pieces around the entry bytes. */
        if (offset < ISP_ENTRY_OFFSET) {
                uint32_t e = end < ISP_ENTRY_OFFSET ? end : ISP_ENTRY_OFFSET;
                crc = isp_crc32_update(crc, img->flash + offset, e - offset);
                offset = e;
        }
        for (; offset < end && offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE; offset++) {
                uint8_t b = isp_image_node_byte(img, offset);
                crc = isp_crc32_update(crc, &b, 1);
        }
        if (offset < end)
                crc = isp_crc32_update(crc, img->flash + offset, end - offset);
        return crc;
}

uint32_t isp_image_crc32(const struct isp_image *img, uint32_t offset, uint32_t len) {
        return crc_update_node(img, 0, offset, len);
}

uint32_t isp_image_app_crc32(const struct isp_image *img) {
        uint32_t crc;

        crc = crc_update_node(img, 0, 0, ISP_AREA_START);
        return crc_update_node(img, crc, ISP_AREA_END, ISP_FLASH_SIZE - ISP_AREA_END);
}

bool isp_image_next_range(const struct isp_image *img, uint32_t from,
                          uint32_t *ret_begin, uint32_t *ret_end) {
        uint32_t o = from;

#define PROGRAMMED(x) (isp_image_byte_used(img, (x)) || \
                       ((x) >= ISP_ENTRY_OFFSET && (x) < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE))
        while (o < ISP_FLASH_SIZE && !PROGRAMMED(o))
                o++;
        if (o >= ISP_FLASH_SIZE)
                return false;
        *ret_begin = o;
        while (o < ISP_FLASH_SIZE && PROGRAMMED(o))
                o++;
        *ret_end = o;
#undef PROGRAMMED
        return true;
}
