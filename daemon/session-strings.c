/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine's names for its enums, and the configuration's
 * defaults. See session.h.
 */

#include "session.h"

const char *session_phase_to_string(enum session_phase phase) {
        switch (phase) {
        case SESSION_PHASE_NONE:     return "none";
        case SESSION_PHASE_CONNECT:  return "connect";
        case SESSION_PHASE_ERASE:    return "erase";
        case SESSION_PHASE_PROGRAM:  return "program";
        case SESSION_PHASE_VERIFY:   return "verify";
        case SESSION_PHASE_REPAIR:   return "repair";
        case SESSION_PHASE_COMMIT:   return "commit";
        case SESSION_PHASE_REBOOT:   return "reboot";
        case SESSION_PHASE_DISCOVER: return "discover";
        case SESSION_PHASE_BOOT:     return "boot";
        case SESSION_PHASE_READ:     return "read";
        case _SESSION_PHASE_MAX:     break;
        }
        return "unknown";
}

const char *session_kind_to_string(enum session_kind kind) {
        switch (kind) {
        case SESSION_FLASH:     return "flash";
        case SESSION_REBOOT:    return "reboot";
        case SESSION_SCAN:      return "scan";
        case SESSION_VERIFY:    return "verify";
        case SESSION_READ:      return "read";
        case _SESSION_KIND_MAX: break;
        }
        return "unknown";
}

const char *session_boot_to_string(enum session_boot boot) {
        switch (boot) {
        case SESSION_BOOT_NONE:         return "";
        case SESSION_BOOT_CONFIRMED:    return "confirmed";
        case SESSION_BOOT_UNCONFIRMED:  return "unconfirmed";
        case SESSION_BOOT_FAILED:       return "failed";
        case _SESSION_BOOT_MAX:         break;
        }
        return "";
}

const char *session_outcome_to_string(enum session_outcome o) {
        switch (o) {
        case SESSION_OUTCOME_NONE:        return "";
        case SESSION_OUTCOME_FLASHED:     return "flashed";
        case SESSION_OUTCOME_UP_TO_DATE:  return "up-to-date";
        case SESSION_OUTCOME_REBOOTED:    return "rebooted";
        case SESSION_OUTCOME_WOULD_FLASH: return "would-flash";
        case SESSION_OUTCOME_MATCHES:     return "matches";
        case SESSION_OUTCOME_DIFFERS:     return "differs";
        case SESSION_OUTCOME_READ:        return "read";
        case SESSION_OUTCOME_NOT_STARTED: return "not-started";
        case _SESSION_OUTCOME_MAX:        break;
        }
        return "";
}

const char *session_state_to_string(enum session_state state) {
        switch (state) {
        case SESSION_RUNNING:   return "running";
        case SESSION_SUCCEEDED: return "succeeded";
        case SESSION_FAILED:    return "failed";
        case SESSION_CANCELLED: return "cancelled";
        }
        return "unknown";
}

const char *session_reason_to_string(enum session_reason r) {
        switch (r) {
        case SESSION_REASON_NONE:           return "none";
        case SESSION_REASON_CANCELLED:      return "cancelled";
        case SESSION_REASON_NOT_ANSWERING:  return "not-answering";
        case SESSION_REASON_NO_REPLY:       return "no-reply";
        case SESSION_REASON_REFUSED:        return "refused";
        case SESSION_REASON_VERIFY_FAILED:  return "verify-failed";
        case SESSION_REASON_CONFLICT:       return "conflict";
        case SESSION_REASON_PROTOCOL:       return "protocol";
        case SESSION_REASON_NO_APPLICATION: return "no-application";
        case SESSION_REASON_RESTARTED:      return "restarted";
        case SESSION_REASON_LINK:           return "link";
        case SESSION_REASON_INTERNAL:       return "internal";
        case _SESSION_REASON_MAX:           break;
        }
        return "unknown";
}

void session_config_init(struct session_config *cfg) {
        *cfg = (struct session_config) {
                .timeout_ms = 500,
                .erase_timeout_ms = 50,
                .retries = 3,
                .window = 8,
                .discover_ms = 300,
                .verify = true,
                .reboot = true,
                .full = false,
                .quiet = true,
                .stream_frames = 64,
                .stream_checkpoints = 8,
                .repair_rounds = 3,
                .frame_us = 1300,
                .dry_run = false,
                .boot_timeout_ms = 0,
                .require_boot = false,
        };
}
