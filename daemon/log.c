/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "log.h"

int log_max_level = 6;

/* "<N>" priority prefixes only where journald reads our stderr (it sets
 * JOURNAL_STREAM for services); on a terminal they are noise. */
static int use_prefix(void) {
        static int cached = -1;

        if (cached < 0)
                cached = getenv("JOURNAL_STREAM") != NULL;
        return cached;
}

int log_internal(const char *prefix, int error, const char *fmt, ...) {
        int saved = errno;
        va_list ap;

        /* prefix is "<N>" */
        if (prefix[1] - '0' <= log_max_level) {
                /* %m prints the error we were given, not whatever errno is now. */
                errno = error < 0 ? -error : error;
                if (use_prefix())
                        fputs(prefix, stderr);
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                fputc('\n', stderr);
        }
        errno = saved;
        return error < 0 ? error : -error;
}

/* stderr is the journal when JOURNAL_STREAM ("DEV:INODE", set by systemd
 * for a service whose output goes to the journal) names it. */
static bool stderr_is_journal(void) {
        static int cached = -1;

        if (cached < 0) {
                const char *e = getenv("JOURNAL_STREAM");
                unsigned long long dev, ino;
                struct stat st;

                cached = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) >= 0 &&
                         (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
        }
        return cached;
}

int log_fields_internal(const char *prefix, const struct log_fields *f, const char *fmt, ...) {
        char message[1024], priority[16], job[32], node[96], iface[48], phase[48], result[48], id[64];
        struct iovec iov[10];
        unsigned n = 0;
        int level = prefix[1] - '0';
        va_list ap;

        if (level > log_max_level)
                return 0;
        va_start(ap, fmt);
        (void) vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        if (stderr_is_journal()) {
                char *m;

                if (asprintf(&m, "MESSAGE=%s", message) >= 0) {
#define FIELD(buf, ...) do {                                                                    \
                snprintf(buf, sizeof(buf), __VA_ARGS__);                                        \
                iov[n++] = (struct iovec) { .iov_base = buf, .iov_len = strlen(buf) };          \
        } while (0)
                        iov[n++] = (struct iovec) { .iov_base = m, .iov_len = strlen(m) };
                        FIELD(priority, "PRIORITY=%d", level);
                        iov[n++] = (struct iovec) { .iov_base = (char *) "SYSLOG_IDENTIFIER=stcispd",
                                                    .iov_len = strlen("SYSLOG_IDENTIFIER=stcispd") };
                        if (f && f->job_id)
                                FIELD(job, "JOB_ID=%u", (unsigned) f->job_id);
                        if (f && f->node)
                                FIELD(node, "NODE=%s", f->node);
                        if (f && f->interface)
                                FIELD(iface, "INTERFACE=%s", f->interface);
                        if (f && f->phase)
                                FIELD(phase, "PHASE=%s", f->phase);
                        if (f && f->result)
                                FIELD(result, "RESULT=%s", f->result);
                        if (f && f->message_id)
                                FIELD(id, "MESSAGE_ID=%s", f->message_id);
#undef FIELD
                        if (sd_journal_sendv(iov, (int) n) >= 0) {
                                free(m);
                                return 0;
                        }
                        free(m);
                }
                /* the journal's socket is gone: a plain line still reaches it */
        }
        return log_internal(prefix, 0, "%s", message);
}
