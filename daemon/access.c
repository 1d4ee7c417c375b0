/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "log.h"
#include "stcisp-dbus.h"
#include "util.h"

int access_init(Access *a, const char *group) {
        struct group *gr;

        *a = (Access) {};
        a->group = strdup(group ? group : "");
        if (!a->group)
                return -ENOMEM;
        if (!*a->group)
                return 0;
        errno = 0;
        gr = getgrnam(a->group);
        if (!gr) {
                log_warning("FlashGroup=%s: no such group%s; only root may flash, reboot, scan or cancel",
                            a->group, errno > 0 ? " (cannot look it up)" : "");
                return 0;
        }
        a->gid = gr->gr_gid;
        a->have_gid = true;
        return 0;
}

void access_done(Access *a) {
        if (a->use_polkit)
                polkit_done(&a->polkit);
        a->use_polkit = false;
        free(a->group);
        a->group = NULL;
}

void access_connect(Access *a, sd_bus *bus) {
        if (polkit_available(bus)) {
                polkit_init(&a->polkit, bus);
                a->use_polkit = true;
                log_info("Access: polkit decides (actions org.stcisp.ispd1.*); root always may");
        } else if (a->have_gid)
                log_info("Access: polkit is not on the bus; root and group '%s' may flash, reboot, read, scan or cancel",
                         a->group);
        else
                log_info("Access: polkit is not on the bus and there is no flash group; only root may change nodes");
}

static bool has_gid(sd_bus_creds *creds, const Access *a, uid_t uid) {
        const gid_t *gids;
        gid_t gid;
        int n;

        if (sd_bus_creds_get_gid(creds, &gid) >= 0 && gid == a->gid)
                return true;
        n = sd_bus_creds_get_supplementary_gids(creds, &gids);
        if (n >= 0) {
                for (int i = 0; i < n; i++)
                        if (gids[i] == a->gid)
                                return true;
                return false;
        }

        /* A bus that does not report supplementary groups: ask NSS, as the
         * bus itself would for a policy check. */
        {
                struct passwd *pw = getpwuid(uid);
                gid_t groups[256];
                int count = (int) ELEMENTSOF(groups);

                if (!pw)
                        return false;
                if (pw->pw_gid == a->gid)
                        return true;
                if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &count) < 0)
                        return false;
                for (int i = 0; i < count; i++)
                        if (groups[i] == a->gid)
                                return true;
        }
        return false;
}

int access_check(Access *a, sd_bus_message *msg, const char *action, uid_t *ret_uid, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID | SD_BUS_CREDS_GID |
                                      SD_BUS_CREDS_SUPPLEMENTARY_GIDS, &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                r = sd_bus_creds_get_uid(creds, &uid);
        if (r < 0)
                return r;
        if (ret_uid)
                *ret_uid = uid;
        if (uid == 0)
                return 0;
        if (a->use_polkit) {
                r = polkit_check(&a->polkit, msg, action);
                if (r >= 0)
                        return r;
                if (r == -EACCES)
                        return sd_bus_error_setf(error, STCISP_ERROR_ACCESS_DENIED,
                                                 "uid %u may not change nodes: polkit refuses %s", (unsigned) uid, action);
                if (r == -EKEYREJECTED)
                        return sd_bus_error_setf(error, STCISP_ERROR_ACCESS_DENIED,
                                                 "uid %u may not change nodes: polkit wants authentication for %s (ispctl --ask-password)",
                                                 (unsigned) uid, action);
                log_warning_errno(r, "polkit could not decide %s for uid %u (%m); the group rule does", action,
                                  (unsigned) uid);
        }
        if (a->have_gid && has_gid(creds, a, uid))
                return 0;
        return sd_bus_error_setf(error, STCISP_ERROR_ACCESS_DENIED,
                                 "uid %u may not change nodes: only root and members of group '%s' may flash, reboot, scan or cancel",
                                 (unsigned) uid, a->group && *a->group ? a->group : "n/a");
}
