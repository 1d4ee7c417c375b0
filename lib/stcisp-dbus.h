/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The names of the D-Bus API (docs/dbus-api.md), shared by stcispd and
 * ispctl so that they are spelt once. */

#define STCISP_BUS_NAME         "org.stcisp.ispd1"
#define STCISP_OBJECT_PATH      "/org/stcisp/ispd1"
#define STCISP_JOB_PREFIX       STCISP_OBJECT_PATH "/job"
#define STCISP_NODE_PREFIX      STCISP_OBJECT_PATH "/node"
#define STCISP_LINE_PREFIX      STCISP_OBJECT_PATH "/line"

#define STCISP_MANAGER_IFACE    STCISP_BUS_NAME ".Manager"
#define STCISP_JOB_IFACE        STCISP_BUS_NAME ".Job"
#define STCISP_NODE_IFACE       STCISP_BUS_NAME ".Node"
#define STCISP_LINE_IFACE       STCISP_BUS_NAME ".Line"

#define STCISP_ERROR_NODE_NOT_FOUND     STCISP_BUS_NAME ".Error.NodeNotFound"
#define STCISP_ERROR_AMBIGUOUS_NODE     STCISP_BUS_NAME ".Error.AmbiguousNode"
#define STCISP_ERROR_INVALID_IMAGE      STCISP_BUS_NAME ".Error.InvalidImage"
#define STCISP_ERROR_ACCESS_DENIED      STCISP_BUS_NAME ".Error.AccessDenied"
#define STCISP_ERROR_BUSY               STCISP_BUS_NAME ".Error.Busy"
#define STCISP_ERROR_NO_SUCH_JOB        STCISP_BUS_NAME ".Error.NoSuchJob"
#define STCISP_ERROR_JOB_FINISHED       STCISP_BUS_NAME ".Error.JobFinished"
#define STCISP_ERROR_NO_IMAGE           STCISP_BUS_NAME ".Error.NoImage"
#define STCISP_ERROR_STORAGE            STCISP_BUS_NAME ".Error.StorageFailed"
