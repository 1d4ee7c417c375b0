/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <ini.h>

#include "config.h"
#include "log.h"
#include "util.h"

/*
 * inih splits the lines; everything else happens here. Lines reach inih
 * through read_line(), which counts them (Debian's libinih is built
 * without INI_HANDLER_LINENO, and ini_parse() only returns the first bad
 * line), strips comments and indentation, and checks the syntax itself so
 * that every mistake in a file is reported with its line, not only the
 * first one. Comments are stripped here because inih's build decides
 * which inline comments it knows (Debian 12's: " ;" only, not " #");
 * indentation because inih would take an indented "Key=value" for a
 * continuation of the previous value. Debian's runtime knobs
 * (ini_inline_comment_prefixes, ...) are left alone: upstream inih has
 * no such symbols.
 */

#define NAME_MAX_LEN  64        /* [Nodes] and [Groups] names */
#define GROUP_MAX_LEN 32        /* as useradd(8) */

enum section {
        SECTION_NONE,           /* before the first [Section] */
        SECTION_BUS,
        SECTION_PROTOCOL,
        SECTION_ACCESS,
        SECTION_DAEMON,
        SECTION_NODES,
        SECTION_GROUPS,
        SECTION_INVALID,        /* unknown or malformed: reported once, its keys ignored */
};

static const char *const section_names[] = {
        [SECTION_BUS]      = "Bus",
        [SECTION_PROTOCOL] = "Protocol",
        [SECTION_ACCESS]   = "Access",
        [SECTION_DAEMON]   = "Daemon",
        [SECTION_NODES]    = "Nodes",
        [SECTION_GROUPS]   = "Groups",
};

enum key_type {
        KEY_U32,                /* uint32_t in struct config */
        KEY_UINT,               /* unsigned in struct config */
        KEY_IFNAMES,            /* char *: interface names, single spaces between */
        KEY_GROUP,              /* char * */
};

struct key {
        enum section section;
        const char *name;
        enum key_type type;
        size_t offset;
        uint32_t min, max;
        const char *zero;       /* 0 is accepted outside min-max and means this */
        const char *unit;
};

static const struct key keys[] = {
        { SECTION_BUS, "Interface", KEY_IFNAMES, offsetof(struct config, interface) },
        { SECTION_BUS, "Bitrate", KEY_U32, offsetof(struct config, bitrate),
          10000, 1000000, "leave the interface as it is", "bit/s" },
        { SECTION_BUS, "RestartMs", KEY_U32, offsetof(struct config, restart_ms),
          1, 60000, "leave the interface as it is", "ms" },
        { SECTION_PROTOCOL, "Timeout", KEY_U32, offsetof(struct config, session.timeout_ms),
          10, 60000, NULL, "ms" },
        { SECTION_PROTOCOL, "EraseTimeout", KEY_U32, offsetof(struct config, session.erase_timeout_ms),
          0, 60000, NULL, "ms per sector" },
        { SECTION_PROTOCOL, "Retries", KEY_UINT, offsetof(struct config, session.retries),
          0, 20, NULL, NULL },
        { SECTION_PROTOCOL, "Window", KEY_UINT, offsetof(struct config, session.window),
          1, 64, NULL, "frames" },
        { SECTION_PROTOCOL, "DiscoverTime", KEY_U32, offsetof(struct config, session.discover_ms),
          10, 60000, NULL, "ms" },
        { SECTION_PROTOCOL, "BootTimeout", KEY_U32, offsetof(struct config, session.boot_timeout_ms),
          100, 600000, "do not wait for the application after REBOOT", "ms" },
        { SECTION_ACCESS, "FlashGroup", KEY_GROUP, offsetof(struct config, flash_group) },
        { SECTION_DAEMON, "History", KEY_UINT, offsetof(struct config, history),
          0, 100000, NULL, "jobs" },
        { SECTION_DAEMON, "MaxAttempts", KEY_UINT, offsetof(struct config, max_attempts),
          1, 1000, NULL, "starts" },
};

struct parser {
        const char *path;
        FILE *f;
        char *buf;              /* getline()'s */
        size_t buf_size;
        unsigned line;
        enum section section;
        struct config *c;       /* the copy being filled in */
        unsigned names_before;  /* c->names[] from an earlier file: before this index */
        unsigned *name_lines;   /* the line of each later one in this file */
        unsigned groups_before, *group_lines;   /* the same for c->groups[] */
        unsigned n_errors;
        int error;              /* a failure that is not the file's fault: -ENOMEM, a read error */
        /* the keys this file gave, to refuse one given twice (a later
         * file, a drop-in, may override an earlier one's) */
        struct seen_key {
                enum section section;
                char name[64];
                unsigned line;
        } seen[64];
        unsigned n_seen;
};

/* "FILE:LINE: message", the line being read_line()'s current one. */
static void file_error(struct parser *p, const char *fmt, ...) _printf_(2, 3);

static void file_error(struct parser *p, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_error("%s:%u: %s", p->path, p->line, msg);
        p->n_errors++;
}

static bool is_key_char(char ch) {
        return isascii(ch) && (isalnum(ch) || ch == '_' || ch == '-' || ch == '.');
}

static char *strip(char *s) {
        char *e;

        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                *--e = '\0';
        return s;
}

static enum section section_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(section_names); i++)
                if (section_names[i] && strcmp(section_names[i], s) == 0)
                        return (enum section) i;
        return SECTION_INVALID;
}

/* Checks one stripped, comment-free line and returns what inih gets to
 * see: the line itself, or "" in its place after an error. */
static const char *check_line(struct parser *p, char *s) {
        size_t len;
        char *e;

        if (*s == '\0')
                return s;

        if (*s == '[') {
                e = strchr(s, ']');
                if (!e) {
                        file_error(p, "%s: missing ']' after the section name", s);
                        p->section = SECTION_INVALID;
                        return "";
                }
                if (e[1] != '\0') {
                        file_error(p, "%s: text after ']'", s);
                        p->section = SECTION_INVALID;
                        return "";
                }
                *e = '\0';
                p->section = section_from_string(s + 1);
                if (p->section == SECTION_INVALID) {
                        file_error(p, "unknown section [%s], expected [Bus], [Protocol], [Access], [Daemon], [Nodes] or [Groups]",
                                   s + 1);
                        return "";
                }
                *e = ']';
                return s;
        }

        e = strchr(s, '=');
        if (!e) {
                file_error(p, "\"%s\": expected Key=value, a [Section] or a comment", s);
                return "";
        }
        len = (size_t) (e - s);
        while (len > 0 && isspace((unsigned char) s[len - 1]))
                len--;
        if (len == 0) {
                file_error(p, "\"%s\": missing key before '='", s);
                return "";
        }
        /* inih also splits at ':', so a key must not hold one. */
        for (size_t i = 0; i < len; i++)
                if (!is_key_char(s[i])) {
                        file_error(p, "\"%.*s\": invalid key, expected letters, digits, '_', '-' or '.'",
                                   (int) len, s);
                        return "";
                }
        return s;
}

/* inih's fgets(): one line per call, so p->line is the line inih is
 * working on when it calls on_key(). */
static char *read_line(char *str, int num, void *userdata) {
        struct parser *p = userdata;
        const char *out;
        ssize_t n;
        size_t len;
        char *s;

        if (num < 2)
                return NULL;    /* no room for even "\n"; inih never asks that */

        errno = 0;
        n = getline(&p->buf, &p->buf_size, p->f);
        if (n < 0) {
                if (errno == ENOMEM)
                        p->error = -ENOMEM;
                else if (ferror(p->f))
                        p->error = errno > 0 ? -errno : -EIO;
                return NULL;
        }
        p->line++;

        s = p->buf;
        if (p->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3;

        if (strlen(s) != (size_t) n - (size_t) (s - p->buf)) {
                file_error(p, "NUL byte in the line; this is not a text file");
                out = "";
        } else {
                s = strip(s);
                if (*s == '#' || *s == ';')
                        *s = '\0';
                /* Inline comments: " #" or " ;" ends the line, whatever inih's
                 * build allows. No value here may contain a space. */
                for (char *c = s; *c; c++)
                        if ((*c == '#' || *c == ';') && c > s && isspace((unsigned char) c[-1])) {
                                *c = '\0';
                                s = strip(s);
                                break;
                        }
                out = check_line(p, s);
        }

        len = strlen(out);
        if (len > (size_t) num - 2) {
                file_error(p, "line too long, at most %d characters without comments", num - 2);
                len = 0;
        }
        memcpy(str, out, len);
        str[len] = '\n';
        str[len + 1] = '\0';
        return str;
}

static int parse_number(const char *s, uint32_t *ret) {
        unsigned long v;
        char *end;

        /* strtoul() would take "-1", " 1" and "+1"; digits only. */
        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (*end != '\0')
                return -EINVAL;
        if (errno == ERANGE || v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

static void describe_range(const struct key *k, char *buf, size_t size) {
        int n = 0;

        if (k->zero)
                n = snprintf(buf, size, "0 (%s) or ", k->zero);
        (void) snprintf(buf + n, size - (size_t) n, "%" PRIu32 "-%" PRIu32 "%s%s",
                        k->min, k->max, k->unit ? " " : "", k->unit ? k->unit : "");
}

static bool is_group_valid(const char *s) {
        if (!(isascii(s[0]) && (isalpha(s[0]) || s[0] == '_')) || strlen(s) > GROUP_MAX_LEN)
                return false;
        for (; *s; s++)
                if (!is_key_char(*s))
                        return false;
        return true;
}

static int set_string(struct parser *p, char **field, const char *value) {
        char *copy = strdup(value);

        if (!copy)
                return p->error = -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static int parse_key_into(struct parser *p, const struct key *k, const char *value, struct config *c);

/* Splits a list of interface names at white space into `words`
 * (pointing into `buf`). Returns the count, or -E2BIG past `max`. */
static int split_words(char *buf, char **words, unsigned max) {
        unsigned n = 0;

        for (char *w = strtok(buf, " \t"); w; w = strtok(NULL, " \t")) {
                if (n >= max)
                        return -E2BIG;
                words[n++] = w;
        }
        return (int) n;
}

static int parse_interfaces(struct parser *p, const struct key *k, char **field, const char *value) {
        _cleanup_free_ char *buf = strdup(value), *joined = NULL;
        char *words[CONFIG_LINES_MAX];
        size_t len = 0;
        int n;

        if (!buf || !(joined = malloc(strlen(value) + 1)))
                return p->error = -ENOMEM;
        n = split_words(buf, words, CONFIG_LINES_MAX);
        if (n < 0) {
                file_error(p, "%s=%s: more than %d interfaces", k->name, value, CONFIG_LINES_MAX);
                return -EINVAL;
        }
        for (int i = 0; i < n; i++) {
                if (!ifname_is_valid(words[i])) {
                        file_error(p, "%s=%s: expected a network interface name, 1-%d characters without '/' or ':'",
                                   k->name, words[i], IFNAMSIZ - 1);
                        return -EINVAL;
                }
                for (int j = 0; j < i; j++)
                        if (strcmp(words[i], words[j]) == 0) {
                                file_error(p, "%s=%s: %s is named twice", k->name, value, words[i]);
                                return -EINVAL;
                        }
                len += (size_t) sprintf(joined + len, "%s%s", i ? " " : "", words[i]);
        }
        free(*field);
        *field = TAKE_PTR(joined);
        return 0;
}

static struct config_override *override_get(struct config *c, const char *ifname) {
        struct config_override *o;

        for (unsigned i = 0; i < c->n_overrides; i++)
                if (strcmp(c->overrides[i].interface, ifname) == 0)
                        return &c->overrides[i];
        o = realloc(c->overrides, (c->n_overrides + 1) * sizeof(*o));
        if (!o)
                return NULL;
        c->overrides = o;
        o = &c->overrides[c->n_overrides];
        *o = (struct config_override) { .interface = strdup(ifname) };
        if (!o->interface)
                return NULL;
        c->n_overrides++;
        return o;
}

/* "Bitrate.can1=250000": the key's range and messages, for one interface. */
static int parse_override(struct parser *p, const struct key *k, const char *name, const char *ifname,
                          const char *value) {
        bool is_bitrate = k->offset == offsetof(struct config, bitrate);
        struct config_override *o;
        struct config tmp = {};
        struct key one = *k;
        int r;

        if (!ifname_is_valid(ifname)) {
                file_error(p, "%s=%s: \"%s\" is not a network interface name", name, value, ifname);
                return -EINVAL;
        }
        one.name = name;
        r = parse_key_into(p, &one, value, &tmp);
        if (r < 0)
                return r;
        o = override_get(p->c, ifname);
        if (!o)
                return p->error = -ENOMEM;
        if (is_bitrate) {
                o->has_bitrate = true;
                o->bitrate = tmp.bitrate;
        } else {
                o->has_restart_ms = true;
                o->restart_ms = tmp.restart_ms;
        }
        return 0;
}

static int parse_key(struct parser *p, const struct key *k, const char *value) {
        return parse_key_into(p, k, value, p->c);
}

static int parse_key_into(struct parser *p, const struct key *k, const char *value, struct config *c) {
        char *field = (char *) c + k->offset;
        char range[128];
        uint32_t v;
        int r;

        switch (k->type) {
        case KEY_IFNAMES:
                return parse_interfaces(p, k, (char **) field, value);

        case KEY_GROUP:
                if (!is_group_valid(value)) {
                        file_error(p, "%s=%s: expected a group name, a letter or '_' then letters, digits, '_', '-' or '.', at most %d characters",
                                   k->name, value, GROUP_MAX_LEN);
                        return -EINVAL;
                }
                return set_string(p, (char **) field, value);

        case KEY_U32:
        case KEY_UINT:
                describe_range(k, range, sizeof(range));
                r = parse_number(value, &v);
                if (r == -EINVAL) {
                        file_error(p, "%s=%s: not a number, expected %s", k->name, value, range);
                        return r;
                }
                if (r < 0 || ((v < k->min || v > k->max) && !(v == 0 && k->zero))) {
                        file_error(p, "%s=%s: out of range, expected %s", k->name, value, range);
                        return -ERANGE;
                }
                if (k->type == KEY_U32)
                        *(uint32_t *) field = v;
                else
                        *(unsigned *) field = v;
                return 0;
        }
        return -EINVAL;
}

static bool is_reserved_name(const char *name) {
        if (strcasecmp(name, "legacy") == 0)
                return true;
        /* "nodeN" means node id N to ispctl and in messages. */
        return strncasecmp(name, "node", 4) == 0 && name[4] != '\0' &&
                strspn(name + 4, "0123456789") == strlen(name + 4);
}

/* The line of this file that gave c->names[i] or c->groups[i], 0 for an
 * earlier file. */
static unsigned name_line(const struct parser *p, unsigned i) {
        return i >= p->names_before ? p->name_lines[i - p->names_before] : 0;
}

static unsigned group_line(const struct parser *p, unsigned i) {
        return i >= p->groups_before ? p->group_lines[i - p->groups_before] : 0;
}

/* Appends the current line to *lines, which holds n. */
static int add_line(struct parser *p, unsigned **lines, unsigned n) {
        unsigned *v = realloc(*lines, (n + 1) * sizeof(*v));

        if (!v)
                return p->error = -ENOMEM;
        v[n] = p->line;
        *lines = v;
        return 0;
}

/* The syntax shared by node and group names; `what` is "node" or "group". */
static int check_name(struct parser *p, const char *what, const char *name, const char *value) {
        if (!isascii(name[0]) || !isalpha(name[0])) {
                file_error(p, "%s=%s: invalid %s name, expected a letter, then letters, digits, '_', '-' or '.'",
                           name, value, what);
                return -EINVAL;
        }
        if (strlen(name) > NAME_MAX_LEN) {
                file_error(p, "%s=%s: %s name longer than %d characters", name, value, what, NAME_MAX_LEN);
                return -EINVAL;
        }
        if (is_reserved_name(name)) {
                file_error(p, "%s=%s: %s name \"%s\" is reserved, \"legacy\" and \"nodeN\" already name nodes",
                           name, value, what, name);
                return -EINVAL;
        }
        return 0;
}

/* "3", "legacy" or "uid:A4917069" (hex digits in either case). */
static int parse_node_value(struct parser *p, const char *name, const char *value, struct config_node_name *ret) {
        uint32_t id;

        *ret = (struct config_node_name) {};
        if (strcmp(value, "legacy") == 0)
                return 0;
        if (strncmp(value, "uid:", 4) == 0) {
                const char *hex = value + 4;

                if (strlen(hex) != 8 || strspn(hex, "0123456789abcdefABCDEF") != 8) {
                        file_error(p, "%s=%s: expected uid: and the board's UID, 8 hexadecimal digits as 'ispctl list' shows it",
                                   name, value);
                        return -EINVAL;
                }
                ret->by_uid = true;
                for (unsigned i = 0; i < 4; i++) {
                        char byte[3] = { hex[2 * i], hex[2 * i + 1], '\0' };

                        ret->uid[i] = (uint8_t) strtoul(byte, NULL, 16);
                }
                return 0;
        }
        if (parse_number(value, &id) < 0 || id < 1 || id > 254) {
                file_error(p, "%s=%s: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)", name, value);
                return -EINVAL;
        }
        ret->node = (uint8_t) id;
        return 0;
}

static int parse_node_name(struct parser *p, const char *name, const char *value) {
        struct config_node_name *names, entry;
        int r;

        r = check_name(p, "node", name, value);
        if (r < 0)
                return r;
        r = parse_node_value(p, name, value, &entry);
        if (r < 0)
                return r;

        for (unsigned i = 0; i < p->c->n_names; i++) {
                const struct config_node_name *n = &p->c->names[i];
                unsigned line = name_line(p, i);

                if (strcmp(n->name, name) == 0) {
                        if (line > 0)
                                file_error(p, "%s=%s: duplicate node name \"%s\", first given on line %u",
                                           name, value, name, line);
                        else
                                file_error(p, "%s=%s: duplicate node name \"%s\", given in an earlier file",
                                           name, value, name);
                        return -EINVAL;
                }
                /* Two names for one node are an error, not an alias: a
                 * mistyped id would otherwise flash one board's image into
                 * another board. */
                if (!n->by_uid && !entry.by_uid && n->node == entry.node) {
                        if (line > 0)
                                file_error(p, "%s=%s: node %s is already named \"%s\" on line %u; a node has one name",
                                           name, value, value, n->name, line);
                        else
                                file_error(p, "%s=%s: node %s is already named \"%s\" in an earlier file; a node has one name",
                                           name, value, value, n->name);
                        return -EINVAL;
                }
                if (n->by_uid && entry.by_uid && memcmp(n->uid, entry.uid, sizeof(n->uid)) == 0) {
                        if (line > 0)
                                file_error(p, "%s=%s: board %02X%02X%02X%02X is already named \"%s\" on line %u; a board has one name",
                                           name, value, entry.uid[0], entry.uid[1], entry.uid[2], entry.uid[3],
                                           n->name, line);
                        else
                                file_error(p, "%s=%s: board %02X%02X%02X%02X is already named \"%s\" in an earlier file; a board has one name",
                                           name, value, entry.uid[0], entry.uid[1], entry.uid[2], entry.uid[3],
                                           n->name);
                        return -EINVAL;
                }
        }
        for (unsigned i = 0; i < p->c->n_groups; i++) {
                unsigned line = group_line(p, i);

                if (strcmp(p->c->groups[i].name, name) != 0)
                        continue;
                if (line > 0)
                        file_error(p, "%s=%s: \"%s\" is already a group name, given on line %u", name, value, name, line);
                else
                        file_error(p, "%s=%s: \"%s\" is already a group name, given in an earlier file", name, value, name);
                return -EINVAL;
        }

        names = realloc(p->c->names, (p->c->n_names + 1) * sizeof(*names));
        if (!names)
                return p->error = -ENOMEM;
        p->c->names = names;
        entry.name = strdup(name);
        if (!entry.name)
                return p->error = -ENOMEM;
        if (add_line(p, &p->name_lines, p->c->n_names - p->names_before) < 0) {
                free(entry.name);
                return p->error;
        }
        names[p->c->n_names++] = entry;
        return 0;
}

static void group_free_members(struct config_group *g) {
        for (unsigned i = 0; i < g->n_members; i++)
                free(g->members[i]);
        free(g->members);
        g->members = NULL;
        g->n_members = 0;
}

/* "pumps = pump 5 can1/node7": the name and the members as written. What
 * the members name is checked at the end of the file (check_groups()), as
 * [Nodes] may come after [Groups]. */
static int parse_group(struct parser *p, const char *name, const char *value) {
        _cleanup_free_ char *buf = NULL;
        struct config_group g = { .name = NULL }, *groups;
        int r;

        r = check_name(p, "group", name, value);
        if (r < 0)
                return r;
        if (strcasecmp(name, "all") == 0) {
                file_error(p, "%s=%s: group name \"%s\" is reserved, \"all\" already means every node", name, value, name);
                return -EINVAL;
        }
        for (unsigned i = 0; i < p->c->n_groups; i++) {
                unsigned line = group_line(p, i);

                if (strcmp(p->c->groups[i].name, name) != 0)
                        continue;
                if (line > 0)
                        file_error(p, "%s=%s: duplicate group name \"%s\", first given on line %u", name, value, name, line);
                else
                        file_error(p, "%s=%s: duplicate group name \"%s\", given in an earlier file", name, value, name);
                return -EINVAL;
        }
        for (unsigned i = 0; i < p->c->n_names; i++) {
                unsigned line = name_line(p, i);

                if (strcmp(p->c->names[i].name, name) != 0)
                        continue;
                if (line > 0)
                        file_error(p, "%s=%s: \"%s\" is already a node name, given on line %u", name, value, name, line);
                else
                        file_error(p, "%s=%s: \"%s\" is already a node name, given in an earlier file", name, value, name);
                return -EINVAL;
        }

        buf = strdup(value);
        if (!buf)
                return p->error = -ENOMEM;
        for (char *w = strtok(buf, " \t"); w; w = strtok(NULL, " \t")) {
                char **v = realloc(g.members, (g.n_members + 1) * sizeof(*v));

                if (!v || !(v[g.n_members] = strdup(w))) {
                        if (v)
                                g.members = v;
                        group_free_members(&g);
                        return p->error = -ENOMEM;
                }
                g.members = v;
                g.n_members++;
        }
        if (g.n_members == 0) {
                file_error(p, "%s=: empty group, expected the nodes it holds, separated by spaces", name);
                return -EINVAL;
        }

        groups = realloc(p->c->groups, (p->c->n_groups + 1) * sizeof(*groups));
        if (groups)
                p->c->groups = groups;
        if (!groups || !(g.name = strdup(name)) ||
            add_line(p, &p->group_lines, p->c->n_groups - p->groups_before) < 0) {
                free(g.name);
                group_free_members(&g);
                return p->error = -ENOMEM;
        }
        p->c->groups[p->c->n_groups++] = g;
        return 0;
}

/* What a group member names, to find one node named twice. */
struct member_key {
        const char *ifname;     /* into the member, iflen long; NULL: whichever line */
        size_t iflen;
        bool by_uid;
        uint8_t node;
        uint8_t uid[4];
};

static bool member_key_equal(const struct member_key *a, const struct member_key *b) {
        if (a->iflen != b->iflen || (a->iflen > 0 && memcmp(a->ifname, b->ifname, a->iflen) != 0) ||
            a->by_uid != b->by_uid)
                return false;
        return a->by_uid ? memcmp(a->uid, b->uid, sizeof(a->uid)) == 0 : a->node == b->node;
}

/* One member of group `g` (written `g=joined` in messages): the forms a
 * target takes, as targets.c resolves them, but one node each. */
static int classify_member(struct parser *p, const struct config_group *g, const char *joined, const char *m,
                           struct member_key *ret) {
        const char *slash = strchr(m, '/'), *s = m, *digits;
        const struct config_node_name *n;
        uint32_t id;

        *ret = (struct member_key) {};
        if (slash) {
                char ifname[IFNAMSIZ];
                size_t len = (size_t) (slash - m);

                if (len < sizeof(ifname)) {
                        memcpy(ifname, m, len);
                        ifname[len] = '\0';
                }
                if (len >= sizeof(ifname) || !ifname_is_valid(ifname)) {
                        file_error(p, "%s=%s: \"%s\": \"%.*s\" is not a network interface name",
                                   g->name, joined, m, (int) len, m);
                        return -EINVAL;
                }
                ret->ifname = m;
                ret->iflen = len;
                s = slash + 1;
        }
        if (strcmp(s, "all") == 0) {
                file_error(p, "%s=%s: \"%s\": a group cannot hold \"all\", name its nodes", g->name, joined, m);
                return -EINVAL;
        }
        n = config_find_name(p->c, s);
        if (strcmp(s, "legacy") == 0 || (n && !n->by_uid && n->node == ISP_NODE_LEGACY)) {
                file_error(p, "%s=%s: \"%s\" is the legacy node, which is flashed alone: it cannot be in a group",
                           g->name, joined, m);
                return -EINVAL;
        }
        if (n) {
                ret->by_uid = n->by_uid;
                ret->node = n->node;
                memcpy(ret->uid, n->uid, sizeof(ret->uid));
                return 0;
        }
        if (config_find_group(p->c, s)) {
                file_error(p, "%s=%s: \"%s\" is a group: a group holds nodes, not groups", g->name, joined, m);
                return -EINVAL;
        }
        digits = strncmp(s, "node", 4) == 0 ? s + 4 : s;
        if (isdigit((unsigned char) digits[0])) {
                if (parse_number(digits, &id) < 0 || id < ISP_NODE_MIN || id > ISP_NODE_MAX) {
                        file_error(p, "%s=%s: \"%s\": expected a node id 1-254", g->name, joined, m);
                        return -EINVAL;
                }
                ret->node = (uint8_t) id;
                return 0;
        }
        file_error(p, "%s=%s: \"%s\" is not a node: expected a name from [Nodes], nodeN or N (N = 1-254), "
                   "each optionally after INTERFACE/", g->name, joined, m);
        return -EINVAL;
}

/* "pump 5 can1/node7", as messages show a group's value. */
static char *join_members(const struct config_group *g) {
        size_t size = 1, len = 0;
        char *s;

        for (unsigned i = 0; i < g->n_members; i++)
                size += strlen(g->members[i]) + 1;
        s = malloc(size);
        if (!s)
                return NULL;
        s[0] = '\0';
        for (unsigned i = 0; i < g->n_members; i++)
                len += (size_t) sprintf(s + len, "%s%s", i ? " " : "", g->members[i]);
        return s;
}

static int check_group(struct parser *p, const struct config_group *g) {
        _cleanup_free_ struct member_key *member_keys = calloc(g->n_members, sizeof(*keys));
        _cleanup_free_ char *joined = join_members(g);
        _cleanup_free_ bool *valid = calloc(g->n_members, sizeof(*valid));
        int ret = 0;

        if (!member_keys || !joined || !valid)
                return p->error = -ENOMEM;
        for (unsigned i = 0; i < g->n_members; i++) {
                if (classify_member(p, g, joined, g->members[i], &member_keys[i]) < 0) {
                        ret = -EINVAL;
                        continue;
                }
                valid[i] = true;
                for (unsigned k = 0; k < i; k++) {
                        if (!valid[k] || !member_key_equal(&member_keys[k], &member_keys[i]))
                                continue;
                        if (strcmp(g->members[k], g->members[i]) == 0)
                                file_error(p, "%s=%s: \"%s\" is given twice: name each node once",
                                           g->name, joined, g->members[i]);
                        else if (member_keys[i].by_uid)
                                file_error(p, "%s=%s: \"%s\" and \"%s\" both name board %02X%02X%02X%02X: name each node once",
                                           g->name, joined, g->members[k], g->members[i],
                                           member_keys[i].uid[0], member_keys[i].uid[1], member_keys[i].uid[2], member_keys[i].uid[3]);
                        else
                                file_error(p, "%s=%s: \"%s\" and \"%s\" both name %.*s%snode%u: name each node once",
                                           g->name, joined, g->members[k], g->members[i], (int) member_keys[i].iflen,
                                           member_keys[i].iflen ? member_keys[i].ifname : "", member_keys[i].iflen ? "/" : "", member_keys[i].node);
                        valid[i] = false;
                        ret = -EINVAL;
                        break;
                }
        }
        return ret;
}

/* The members of this file's groups, at the line of each group, once the
 * whole file (its [Nodes] too) is read. */
static void check_groups(struct parser *p) {
        unsigned line = p->line;

        for (unsigned i = p->groups_before; i < p->c->n_groups && p->error == 0; i++) {
                p->line = group_line(p, i);
                (void) check_group(p, &p->c->groups[i]);
        }
        p->line = line;
}

static void list_keys(enum section section, char *buf, size_t size) {
        size_t n = 0, count = 0, i = 0;

        for (const struct key *k = keys; k < keys + ELEMENTSOF(keys); k++)
                count += k->section == section;
        buf[0] = '\0';
        for (const struct key *k = keys; k < keys + ELEMENTSOF(keys) && n < size; k++) {
                if (k->section != section)
                        continue;
                i++;
                n += (size_t) snprintf(buf + n, size - n, "%s%s=",
                                       i == 1 ? "" : i == count ? " or " : ", ", k->name);
        }
}

#if INI_HANDLER_LINENO
static int on_key(void *userdata, const char *section, const char *name, const char *value, int lineno) {
#else
static int on_key(void *userdata, const char *section, const char *name, const char *value) {
#endif
        struct parser *p = userdata;
        char known[256];

        /* p->section follows the file; inih's `section` is the same name, or
         * "" after a section read_line() refused. */
        if (p->error < 0)
                return 0;

        switch (p->section) {
        case SECTION_INVALID:
                return 1;       /* reported at the section's line */

        case SECTION_NONE:
                file_error(p, "%s=%s: outside a section, put it under [Bus], [Protocol], [Access], [Daemon], [Nodes] or [Groups]",
                           name, value);
                return 0;

        case SECTION_NODES:
                return parse_node_name(p, name, value) >= 0;

        case SECTION_GROUPS:
                return parse_group(p, name, value) >= 0;

        default:
                break;
        }

        if (value[0] == '\0') {
                file_error(p, "%s=: empty value; remove the line to use the default", name);
                return 0;
        }

        for (unsigned i = 0; i < p->n_seen; i++)
                if (p->seen[i].section == p->section && strcmp(p->seen[i].name, name) == 0) {
                        file_error(p, "%s=%s: %s= is already given on line %u; give each key once",
                                   name, value, name, p->seen[i].line);
                        return 0;
                }
        if (p->n_seen < ELEMENTSOF(p->seen) && strlen(name) < sizeof(p->seen[0].name)) {
                p->seen[p->n_seen].section = p->section;
                strcpy(p->seen[p->n_seen].name, name);
                p->seen[p->n_seen++].line = p->line;
        }

        for (const struct key *k = keys; k < keys + ELEMENTSOF(keys); k++)
                if (k->section == p->section && strcmp(k->name, name) == 0)
                        return parse_key(p, k, value) >= 0;

        /* Bitrate.IF= and RestartMs.IF=: the [Bus] numbers, per interface. */
        for (const struct key *k = keys; k < keys + ELEMENTSOF(keys); k++) {
                size_t n = strlen(k->name);

                if (k->section == SECTION_BUS && k->type == KEY_U32 &&
                    strncmp(name, k->name, n) == 0 && name[n] == '.')
                        return parse_override(p, k, name, name + n + 1, value) >= 0;
        }

        list_keys(p->section, known, sizeof(known));
        file_error(p, "unknown key %s= in [%s], expected %s", name, section_names[p->section], known);
        return 0;
}

static int config_copy(struct config *dst, const struct config *src) {
        _cleanup_(config_done) struct config c = *src;

        c.interface = c.flash_group = c.state_dir = NULL;
        c.names = NULL;
        c.n_names = 0;
        c.groups = NULL;
        c.n_groups = 0;
        c.overrides = NULL;
        c.n_overrides = 0;

        for (unsigned i = 0; i < src->n_overrides; i++) {
                struct config_override *o = override_get(&c, src->overrides[i].interface);

                if (!o)
                        return -ENOMEM;
                *o = (struct config_override) { .interface = o->interface,
                        .has_bitrate = src->overrides[i].has_bitrate, .bitrate = src->overrides[i].bitrate,
                        .has_restart_ms = src->overrides[i].has_restart_ms, .restart_ms = src->overrides[i].restart_ms };
        }
        if ((src->interface && !(c.interface = strdup(src->interface))) ||
            (src->flash_group && !(c.flash_group = strdup(src->flash_group))) ||
            (src->state_dir && !(c.state_dir = strdup(src->state_dir))))
                return -ENOMEM;
        if (src->n_names > 0) {
                c.names = calloc(src->n_names, sizeof(*c.names));
                if (!c.names)
                        return -ENOMEM;
                for (; c.n_names < src->n_names; c.n_names++) {
                        c.names[c.n_names] = src->names[c.n_names];
                        c.names[c.n_names].name = strdup(src->names[c.n_names].name);
                        if (!c.names[c.n_names].name)
                                return -ENOMEM;
                }
        }
        if (src->n_groups > 0) {
                c.groups = calloc(src->n_groups, sizeof(*c.groups));
                if (!c.groups)
                        return -ENOMEM;
                for (; c.n_groups < src->n_groups; c.n_groups++) {
                        const struct config_group *from = &src->groups[c.n_groups];
                        struct config_group *g = &c.groups[c.n_groups];

                        g->name = strdup(from->name);
                        g->members = calloc(from->n_members, sizeof(*g->members));
                        if (!g->name || !g->members) {
                                c.n_groups++;   /* config_done() frees what there is */
                                return -ENOMEM;
                        }
                        for (; g->n_members < from->n_members; g->n_members++)
                                if (!(g->members[g->n_members] = strdup(from->members[g->n_members]))) {
                                        c.n_groups++;
                                        return -ENOMEM;
                                }
                }
        }

        *dst = c;
        c = (struct config) {};  /* handed over to dst */
        return 0;
}

int config_init(struct config *c) {
        *c = (struct config) {
                .interface = strdup(CONFIG_DEFAULT_INTERFACE),
                .flash_group = strdup(CONFIG_DEFAULT_GROUP),
                .state_dir = strdup(CONFIG_DEFAULT_STATE_DIR),
                .history = CONFIG_DEFAULT_HISTORY,
                .max_attempts = CONFIG_DEFAULT_MAX_ATTEMPTS,
        };
        session_config_init(&c->session);
        c->session.boot_timeout_ms = CONFIG_DEFAULT_BOOT_TIMEOUT_MS;

        if (!c->interface || !c->flash_group || !c->state_dir) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(struct config *c) {
        if (!c)
                return;
        free(c->interface);
        free(c->flash_group);
        free(c->state_dir);
        for (unsigned i = 0; i < c->n_names; i++)
                free(c->names[i].name);
        free(c->names);
        for (unsigned i = 0; i < c->n_groups; i++) {
                free(c->groups[i].name);
                group_free_members(&c->groups[i]);
        }
        free(c->groups);
        c->groups = NULL;
        c->n_groups = 0;
        for (unsigned i = 0; i < c->n_overrides; i++)
                free(c->overrides[i].interface);
        free(c->overrides);
        c->overrides = NULL;
        c->n_overrides = 0;
        c->interface = c->flash_group = c->state_dir = NULL;
        c->names = NULL;
        c->n_names = 0;
}

int config_load(struct config *c, const char *path, bool must_exist) {
        _cleanup_(config_done) struct config copy = {};
        _cleanup_fclose_ FILE *f = NULL;
        struct parser p = { .path = path, .section = SECTION_NONE, .c = &copy };
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                if (r == -ENOENT && !must_exist)
                        return 0;
                return log_error_errno(r, "%s: cannot open: %m", path);
        }
        p.f = f;

        /* Everything goes into a copy: a file with an error changes nothing. */
        r = config_copy(&copy, c);
        if (r < 0)
                return log_error_errno(r, "%s: %m", path);

        p.names_before = copy.n_names;
        p.groups_before = copy.n_groups;
        r = ini_parse_stream(read_line, &p, on_key, &p);
        free(p.buf);
        if (p.error == 0 && r < 0)
                p.error = r == -2 ? -ENOMEM : -EIO;
        if (p.error == 0)
                check_groups(&p);
        free(p.name_lines);
        free(p.group_lines);
        if (p.error < 0)
                return log_error_errno(p.error, "%s: cannot read: %m", path);
        if (p.n_errors > 0)
                return -EINVAL;
        if (r > 0) {
                /* Not reachable: read_line() checks everything inih refuses. */
                p.line = (unsigned) r;
                file_error(&p, "syntax error");
                return -EINVAL;
        }

        config_done(c);
        *c = copy;
        copy = (struct config) {};  /* handed over to c */
        return 0;
}

const struct config_node_name *config_find_name(const struct config *c, const char *name) {
        if (!name)
                return NULL;
        for (unsigned i = 0; i < c->n_names; i++)
                if (strcmp(c->names[i].name, name) == 0)
                        return &c->names[i];
        return NULL;
}

int config_lookup_name(const struct config *c, const char *name) {
        const struct config_node_name *n = config_find_name(c, name);

        return n && !n->by_uid ? n->node : -ENOENT;
}

const char *config_node_name(const struct config *c, uint8_t node) {
        for (unsigned i = 0; i < c->n_names; i++)
                if (!c->names[i].by_uid && c->names[i].node == node)
                        return c->names[i].name;
        return NULL;
}

const char *config_uid_name(const struct config *c, const uint8_t uid[static 4]) {
        for (unsigned i = 0; i < c->n_names; i++)
                if (c->names[i].by_uid && memcmp(c->names[i].uid, uid, sizeof(c->names[i].uid)) == 0)
                        return c->names[i].name;
        return NULL;
}

const struct config_group *config_find_group(const struct config *c, const char *name) {
        if (!name)
                return NULL;
        for (unsigned i = 0; i < c->n_groups; i++)
                if (strcmp(c->groups[i].name, name) == 0)
                        return &c->groups[i];
        return NULL;
}

int config_set_interfaces(struct config *c, char *const *names, unsigned n) {
        _cleanup_free_ char *joined = NULL;
        size_t len = 0, size = 1;

        if (n == 0 || n > CONFIG_LINES_MAX)
                return log_error_errno(-EINVAL, "--interface: between 1 and %d interfaces", CONFIG_LINES_MAX);
        for (unsigned i = 0; i < n; i++) {
                if (!ifname_is_valid(names[i]))
                        return log_error_errno(-EINVAL, "--interface %s: expected a network interface name, "
                                               "1-%d characters without '/' or ':'", names[i], IFNAMSIZ - 1);
                for (unsigned j = 0; j < i; j++)
                        if (strcmp(names[i], names[j]) == 0)
                                return log_error_errno(-EINVAL, "--interface %s: named twice", names[i]);
                size += strlen(names[i]) + 1;
        }
        joined = malloc(size);
        if (!joined)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
                len += (size_t) sprintf(joined + len, "%s%s", i ? " " : "", names[i]);
        free(c->interface);
        c->interface = TAKE_PTR(joined);
        return 0;
}

void config_lines_free(struct config_line *lines, unsigned n) {
        for (unsigned i = 0; lines && i < n; i++)
                free(lines[i].interface);
        free(lines);
}

int config_get_lines(const struct config *c, struct config_line **ret, unsigned *ret_n) {
        _cleanup_free_ char *buf = strdup(c->interface ? c->interface : CONFIG_DEFAULT_INTERFACE);
        char *words[CONFIG_LINES_MAX];
        struct config_line *lines;
        int n;

        if (!buf)
                return -ENOMEM;
        n = split_words(buf, words, CONFIG_LINES_MAX);
        if (n <= 0)
                return -EINVAL;
        lines = calloc((size_t) n, sizeof(*lines));
        if (!lines)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                lines[i] = (struct config_line) {
                        .interface = strdup(words[i]),
                        .bitrate = c->bitrate,
                        .restart_ms = c->restart_ms,
                };
                if (!lines[i].interface) {
                        config_lines_free(lines, (unsigned) n);
                        return -ENOMEM;
                }
        }
        for (unsigned o = 0; o < c->n_overrides; o++) {
                const struct config_override *ov = &c->overrides[o];
                int i;

                for (i = 0; i < n && strcmp(lines[i].interface, ov->interface) != 0; i++)
                        ;
                if (i == n) {
                        log_warning("Bitrate.%s=/RestartMs.%s= name an interface stcispd does not use (%s), ignoring",
                                    ov->interface, ov->interface, c->interface);
                        continue;
                }
                if (ov->has_bitrate)
                        lines[i].bitrate = ov->bitrate;
                if (ov->has_restart_ms)
                        lines[i].restart_ms = ov->restart_ms;
        }
        *ret = lines;
        *ret_n = (unsigned) n;
        return 0;
}
