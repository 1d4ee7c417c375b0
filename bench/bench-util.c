/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"

int bench_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *ret) {
        char *end;
        unsigned long v;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

int bench_parse_list(const char *s, unsigned long min, unsigned long max, unsigned *list, unsigned *n) {
        char buf[256], *save = NULL, *tok;

        if (snprintf(buf, sizeof(buf), "%s", s) >= (int) sizeof(buf))
                return -EINVAL;
        *n = 0;
        for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                unsigned long v;

                if (*n >= BENCH_MAX_LIST || bench_parse_uint(tok, min, max, &v) < 0)
                        return -EINVAL;
                list[(*n)++] = (unsigned) v;
        }
        return *n > 0 ? 0 : -EINVAL;
}

void bench_json_string(const char *s) {
        putchar('"');
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}
