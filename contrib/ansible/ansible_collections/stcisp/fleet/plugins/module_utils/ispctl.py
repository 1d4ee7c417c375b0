# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the stcisp.fleet modules make of ispctl: its command lines and its
--json output (ispctl(1), "JSON OUTPUT" and "EXIT STATUS").

Pure functions, no Ansible and no I/O, so that the parsing is tested on
its own (tests/cli/test-ansible-parse.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json

# ispctl's exit statuses (ispctl(1), EXIT STATUS)
EXIT_STATUS = {
    1: "invalid or unreadable image",
    2: "usage error",
    3: "a job failed or was cancelled",
    4: "node not found",
    5: "access denied",
    6: "the daemon is not reachable",
    7: "other error from the daemon",
    8: "a node differs from the image",
    9: "timed out",
}

# A node's outcome (the "outcome" of a node in --json) that changed it or,
# in a dry run, would.
CHANGING_OUTCOMES = ("flashed", "would-flash")


class IspctlError(Exception):
    """ispctl could not be run as asked, or said something we cannot read."""


def base_command(ispctl, bus_address=None):
    argv = [ispctl, "--json"]
    if bus_address:
        argv += ["--address", bus_address]
    return argv


def targets_arguments(targets):
    """The targets as ispctl takes them: names, ids, groups, IF/nodeN, or
    'all' alone (--all)."""
    names = [str(t).strip() for t in targets]
    if not names or any(not n for n in names):
        raise IspctlError("targets must name at least one node, and no empty one")
    if "all" in names:
        if len(names) > 1:
            raise IspctlError("'all' stands for every known node and cannot be given with other targets")
        return ["--all"]
    return ["--"] + names


def flash_command(ispctl, targets, path, bus_address=None, check_mode=False, force=False,
                  require_boot=False, canary=None, reboot=True, image_format=None, timeout=None):
    argv = base_command(ispctl, bus_address) + ["flash"]
    if check_mode:
        argv.append("--dry-run")
    if force:
        argv.append("--force")
    if require_boot:
        argv.append("--require-boot")
    if canary:
        argv += ["--canary", str(int(canary))]
    if not reboot:
        argv.append("--no-reboot")
    if image_format:
        argv += ["--format", image_format]
    if timeout:
        argv += ["--timeout", "%ds" % int(timeout)]
    t = targets_arguments(targets)
    if t == ["--all"]:
        return argv + ["--all", "--", path]
    return argv + t + [path]


def parse_json(stdout):
    """ispctl --json prints exactly one JSON object on standard output,
    errors included; None when there is none (it could not even start)."""
    text = (stdout or "").strip()
    if not text:
        return None
    try:
        o = json.loads(text)
    except ValueError:
        # not ours: ispctl's JSON is one object; say what came instead
        raise IspctlError("ispctl printed something that is not JSON: %r" % text[:200])
    if not isinstance(o, dict):
        raise IspctlError("ispctl printed JSON that is not an object: %r" % text[:200])
    return o


def node_reason(node):
    """'node9: did not answer ...': the node's name and why it failed,
    without the name twice when the daemon's message starts with it."""
    name = node.get("name") or "node%s" % node.get("id")
    error = node.get("error") or node.get("state") or "failed"
    if error.startswith(name + " ") or error.startswith(name + ":"):
        return error
    return "%s: %s" % (name, error)


def _names(nodes, pred):
    return [n.get("name") for n in nodes if pred(n)]


def flash_result(rc, stdout, stderr, check_mode=False):
    """What one ispctl flash run means to Ansible: (failed, result).

    result carries 'changed', 'msg', 'nodes' (ispctl's per-node objects),
    the names by outcome ('flashed', 'up_to_date', 'would_flash',
    'failed_nodes', 'not_started'), 'jobs' and 'rc'. A task changed
    something when a node was flashed (in check mode: would be); a node
    that failed fails the task, named with its reason."""
    o = parse_json(stdout)
    err = (stderr or "").strip()
    if o is None:
        return True, {"changed": False, "rc": rc, "nodes": [],
                      "msg": "ispctl failed (exit status %d%s)%s" % (
                          rc, ": " + EXIT_STATUS[rc] if rc in EXIT_STATUS else "",
                          ": " + err if err else ", and printed nothing")}
    nodes = o.get("nodes") or []
    res = {
        "rc": rc,
        "nodes": nodes,
        "jobs": o.get("jobs") or [],
        "result": o.get("result"),
        "flashed": _names(nodes, lambda n: n.get("outcome") == "flashed"),
        "up_to_date": _names(nodes, lambda n: n.get("outcome") == "up-to-date"),
        "would_flash": _names(nodes, lambda n: n.get("outcome") == "would-flash"),
        "not_started": _names(nodes, lambda n: n.get("outcome") == "not-started"),
        "failed_nodes": _names(nodes, lambda n: n.get("state") == "failed" or
                               (n.get("outcome") is None and n.get("error"))),
    }
    res["changed"] = any(n.get("outcome") in CHANGING_OUTCOMES for n in nodes)

    failed = [n for n in nodes if n.get("name") in res["failed_nodes"]]
    if failed:
        res["msg"] = "%d of %d nodes failed: %s" % (len(failed), len(nodes), "; ".join(node_reason(n) for n in failed))
        if res["not_started"]:
            res["msg"] += " (not started: %s)" % ", ".join(res["not_started"])
        return True, res
    if rc != 0 or o.get("error"):
        # no node failed, but ispctl did not succeed: a usage error, a node
        # not found, no access, no daemon, a time-out, a cancelled job...
        msg = o.get("error") or err or "ispctl failed"
        if rc in EXIT_STATUS and not o.get("error"):
            msg = "%s (exit status %d: %s)" % (msg, rc, EXIT_STATUS[rc])
        cancelled = [n for n in nodes if n.get("state") == "cancelled"]
        if cancelled:
            msg += ": " + "; ".join(node_reason(n) for n in cancelled)
        res["msg"] = msg
        return True, res

    parts = []
    for key, label in (("flashed", "flashed"), ("would_flash", "would flash"),
                       ("up_to_date", "up to date")):
        if res[key]:
            parts.append("%s %s" % (label, ", ".join(res[key])))
    res["msg"] = "; ".join(parts) if parts else "no node"
    return False, res


def _usec_to_iso(usec):
    if not usec:
        return None
    t = datetime.datetime.fromtimestamp(usec / 1e6, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _crc_hex(v):
    return None if v is None else "%08X" % v


def node_fact(n):
    """One node of 'ispctl list --json', with what it runs in words a
    playbook can test: 'runs' is 'isp' (its ISP loader), 'application' or
    'unknown'; image_crc as ispctl inspect prints it (hex)."""
    state = n.get("state")
    if state == "isp":
        runs = "isp"
    elif state == "application":
        runs = "application"
    else:
        runs = "unknown"
    return {
        "name": n.get("name"),
        "interface": n.get("interface"),
        "id": n.get("id"),
        "form": n.get("form"),
        "state": state,
        "runs": runs,
        "uid": n.get("uid"),
        "running": n.get("running"),
        "image_crc": _crc_hex(n.get("image_crc")),
        "app_version": n.get("app_version"),
        "protocol_version": n.get("protocol_version"),
        "firmware_version": n.get("firmware_version"),
        "last_seen": _usec_to_iso(n.get("last_seen_usec")),
        "last_flash": {
            "result": n.get("last_flash_result"),
            "name": n.get("last_flash_name"),
            "image_crc": _crc_hex(n.get("last_flash_crc")),
            "time": _usec_to_iso(n.get("last_flash_usec")),
        },
        "conflict_uids": list(n.get("conflict_uids") or []),
    }


def info_facts(list_json, status_json):
    """The stcisp facts from 'ispctl list --json' and 'ispctl status
    --json': the daemon's version, its lines, its nodes, and the
    conflicts (two boards answering on one id)."""
    nodes = [node_fact(n) for n in (list_json or {}).get("nodes") or []]
    status = status_json or {}
    lines = status.get("lines")
    if not lines and status.get("interface"):
        lines = {status["interface"]: {k: v for k, v in status.items() if k not in ("version", "history_length", "lines")}}
    lines = dict(lines or {})
    for ifname, line in lines.items():
        line = dict(line)
        line["nodes"] = [n["name"] for n in nodes if n["interface"] == ifname]
        lines[ifname] = line
    return {
        "version": status.get("version"),
        "queue_length": status.get("queue_length"),
        "running_job": status.get("running_job"),
        "lines": lines,
        "nodes": nodes,
        "conflicts": [{"name": n["name"], "interface": n["interface"], "id": n["id"], "uids": n["conflict_uids"]}
                      for n in nodes if n["state"] == "conflict"],
        "in_isp": [n["name"] for n in nodes if n["runs"] == "isp"],
        "not_answering": [n["name"] for n in nodes if n["state"] == "not-answering"],
    }


def command_error(what, rc, stdout, stderr):
    """The message for a read-only ispctl command that failed."""
    try:
        o = parse_json(stdout)
    except IspctlError:
        o = None
    msg = (o or {}).get("error") or (stderr or "").strip() or "no output"
    return "ispctl %s failed (exit status %d%s): %s" % (
        what, rc, ", " + EXIT_STATUS[rc] if rc in EXIT_STATUS else "", msg)
