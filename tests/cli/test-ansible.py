#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The stcisp.fleet collection on the host: what its modules make of
ispctl's --json output (the pure functions of its module_utils, fed with
output ispctl printed in the guest), and ansible-doc (Debian's
ansible-core) rendering both modules from their DOCUMENTATION, EXAMPLES
and RETURN."""

import importlib.util
import json
import os
import subprocess
import tempfile
import unittest

COLLECTIONS = os.path.join(os.environ["SOURCE_ROOT"], "contrib", "ansible")
FLEET = os.path.join(COLLECTIONS, "ansible_collections", "stcisp", "fleet")

spec = importlib.util.spec_from_file_location("ispctl_utils", os.path.join(FLEET, "plugins", "module_utils", "ispctl.py"))
ispctl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ispctl)


def node(name, outcome, state="succeeded", error=None, boot=None):
    return {"interface": "vcan0", "name": name, "id": int(name[4:]), "job_id": 3, "state": state,
            "phase": "connect", "bytes_done": 0, "bytes_total": 0, "sectors_written": 0, "sectors_skipped": 0,
            "repairs": 0, "error": error, "outcome": outcome, "boot": boot, "sectors_to_erase": 0,
            "estimate_usec": 0, "differing": []}


def flash_output(nodes, result="succeeded", error=None):
    return json.dumps({"jobs": [{"id": 3, "job": "/org/stcisp/ispd1/job/3", "target": ",".join(n["name"] for n in nodes),
                                 "state": result, "phase": "boot", "error": error}],
                       "nodes": nodes, "result": result})


DEAD = ("node9 did not answer CONNECT within 800 ms (4 tries, then IDENTIFY, ENTER_ISP and 4 more, then IDENTIFY): "
        "is it powered and on the bus? 'ispctl scan' lists the nodes that answer")


class Commands(unittest.TestCase):
    def test_flash_command(self):
        self.assertEqual(ispctl.flash_command("ispctl", ["node1", 2, "can1/node3"], "/tmp/a.hex"),
                         ["ispctl", "--json", "flash", "--", "node1", "2", "can1/node3", "/tmp/a.hex"])
        self.assertEqual(ispctl.flash_command("/opt/ispctl", ["all"], "a.hex", bus_address="unix:path=/b",
                                              check_mode=True, force=True, require_boot=True, canary=2,
                                              reboot=False, image_format="hex", timeout=90),
                         ["/opt/ispctl", "--json", "--address", "unix:path=/b", "flash", "--dry-run", "--force",
                          "--require-boot", "--canary", "2", "--no-reboot", "--format", "hex", "--timeout", "90s",
                          "--all", "--", "a.hex"])

    def test_bad_targets(self):
        with self.assertRaisesRegex(ispctl.IspctlError, "'all' stands for every known node"):
            ispctl.flash_command("ispctl", ["all", "node1"], "a.hex")
        with self.assertRaisesRegex(ispctl.IspctlError, "at least one node"):
            ispctl.flash_command("ispctl", [], "a.hex")
        with self.assertRaisesRegex(ispctl.IspctlError, "no empty one"):
            ispctl.flash_command("ispctl", ["node1", " "], "a.hex")


class FlashResult(unittest.TestCase):
    def test_flashed_is_changed(self):
        out = flash_output([node("node1", "flashed", boot="confirmed"), node("node2", "up-to-date")])
        failed, r = ispctl.flash_result(0, out, "")
        self.assertFalse(failed)
        self.assertTrue(r["changed"])
        self.assertEqual((r["flashed"], r["up_to_date"], r["failed_nodes"]), (["node1"], ["node2"], []))
        self.assertEqual(r["msg"], "flashed node1; up to date node2")
        self.assertEqual(r["jobs"][0]["id"], 3)
        self.assertEqual(len(r["nodes"]), 2)

    def test_all_up_to_date_is_unchanged(self):
        failed, r = ispctl.flash_result(0, flash_output([node("node1", "up-to-date"), node("node2", "up-to-date")]), "")
        self.assertEqual((failed, r["changed"], r["msg"]), (False, False, "up to date node1, node2"))

    def test_dry_run(self):
        out = flash_output([node("node1", "would-flash"), node("node2", "up-to-date")])
        failed, r = ispctl.flash_result(0, out, "", check_mode=True)
        self.assertEqual((failed, r["changed"], r["would_flash"]), (False, True, ["node1"]))
        failed, r = ispctl.flash_result(0, flash_output([node("node2", "up-to-date")]), "", check_mode=True)
        self.assertEqual((failed, r["changed"]), (False, False))

    def test_dead_node_fails_with_its_reason(self):
        out = flash_output([node("node1", "up-to-date"), node("node9", None, state="failed", error=DEAD)],
                           result="failed", error="1 of 2 nodes failed: " + DEAD)
        failed, r = ispctl.flash_result(3, out, "")
        self.assertTrue(failed)
        self.assertFalse(r["changed"])
        self.assertEqual(r["failed_nodes"], ["node9"])
        self.assertEqual(r["msg"], "1 of 2 nodes failed: " + DEAD)     # the name once
        self.assertEqual(r["rc"], 3)

    def test_failure_named_when_the_message_does_not_name_it(self):
        out = flash_output([node("node1", "flashed"), node("node2", None, state="failed", error="boot failed: runs image 1C291CA3"),
                            node("node3", "not-started")], result="failed")
        failed, r = ispctl.flash_result(3, out, "")
        self.assertTrue(failed)
        self.assertTrue(r["changed"])           # node1 was flashed all the same
        self.assertEqual(r["msg"], "1 of 3 nodes failed: node2: boot failed: runs image 1C291CA3 (not started: node3)")

    def test_errors_without_nodes(self):
        failed, r = ispctl.flash_result(4, '{"error":"no node \'pump\': not in [Nodes] and not node<N>"}\n', "")
        self.assertEqual((failed, r["msg"], r["nodes"]), (True, "no node 'pump': not in [Nodes] and not node<N>", []))
        failed, r = ispctl.flash_result(1, '{"error":"a.hex:5: bad checksum 0xFB, expected 0xEB","file":"a.hex","line":5}', "")
        self.assertEqual((failed, r["msg"]), (True, "a.hex:5: bad checksum 0xFB, expected 0xEB"))
        failed, r = ispctl.flash_result(127, "", "sh: ispctl: not found")
        self.assertEqual((failed, r["msg"]), (True, "ispctl failed (exit status 127): sh: ispctl: not found"))
        failed, r = ispctl.flash_result(6, "", "")
        self.assertEqual(r["msg"], "ispctl failed (exit status 6: the daemon is not reachable), and printed nothing")

    def test_timeout(self):
        msg = ("ispctl: timed out after 30s: job 12 is still running and goes on in the daemon "
               "('ispctl cancel 12' stops it)")
        o = json.loads(flash_output([node("node1", None, state="running")], result="timeout"))
        o["error"] = msg
        failed, r = ispctl.flash_result(9, json.dumps(o), msg)
        self.assertEqual((failed, r["msg"], r["result"]), (True, msg, "timeout"))

    def test_not_json(self):
        with self.assertRaisesRegex(ispctl.IspctlError, "not JSON: 'node1: succeeded"):
            ispctl.flash_result(0, "node1: succeeded\n", "")
        with self.assertRaisesRegex(ispctl.IspctlError, "not an object"):
            ispctl.flash_result(0, "[1]", "")


LIST = {"nodes": [
    {"id": 1, "name": "node1", "interface": "vcan0", "form": "extended", "state": "application", "protocol_version": 1,
     "firmware_version": 1, "uid": "EC20897A", "first_seen_usec": 1796153328088704, "last_seen_usec": 1796153349151159,
     "last_flash_result": "succeeded", "last_flash_usec": 1796153333924629, "last_flash_crc": 4065489731,
     "image_crc": 4065489731, "app_version": None, "last_flash_name": "blink.hex",
     "running": "blink.hex, flashed 2026-12-01 19:28", "conflict_uids": []},
    {"id": 2, "name": "node2", "interface": "vcan0", "form": "extended", "state": "isp", "protocol_version": 1,
     "firmware_version": 1, "uid": "41F007C0", "first_seen_usec": 1796153328100472, "last_seen_usec": 1796153328100472,
     "last_flash_result": None, "last_flash_usec": 0, "last_flash_crc": None, "image_crc": None, "app_version": None,
     "last_flash_name": None, "running": None, "conflict_uids": []},
    {"id": 5, "name": "can1/pump", "interface": "can1", "form": "extended", "state": "conflict", "protocol_version": 1,
     "firmware_version": 1, "uid": "A4917069", "first_seen_usec": 1, "last_seen_usec": 2, "last_flash_result": None,
     "last_flash_usec": 0, "last_flash_crc": None, "image_crc": 2921500096, "app_version": 258, "last_flash_name": None,
     "running": "image AE228DC0", "conflict_uids": ["A4917069", "5D0C33E1"]}]}
STATUS = {"interface": "vcan0", "link_state": "up", "version": "0.1.0", "history_length": 1, "queue_length": 0,
          "running_job": 0,
          "lines": {"vcan0": {"interface": "vcan0", "link_state": "up", "bitrate": 0, "running_job": 0},
                    "can1": {"interface": "can1", "link_state": "down", "bitrate": 500000, "running_job": 0}}}


class Facts(unittest.TestCase):
    def test_facts(self):
        f = ispctl.info_facts(LIST, STATUS)
        self.assertEqual(f["version"], "0.1.0")
        self.assertEqual(sorted(f["lines"]), ["can1", "vcan0"])
        self.assertEqual(f["lines"]["vcan0"]["nodes"], ["node1", "node2"])
        self.assertEqual(f["lines"]["can1"], {"interface": "can1", "link_state": "down", "bitrate": 500000,
                                              "running_job": 0, "nodes": ["can1/pump"]})
        n1, n2, pump = f["nodes"]
        self.assertEqual((n1["runs"], n1["image_crc"], n1["running"]), ("application", "F2527343", "blink.hex, flashed 2026-12-01 19:28"))
        self.assertEqual(n1["last_flash"], {"result": "succeeded", "name": "blink.hex", "image_crc": "F2527343",
                                            "time": "2026-12-01T19:28:53Z"})
        self.assertEqual(n1["last_seen"], "2026-12-01T19:29:09Z")
        self.assertEqual((n2["runs"], n2["image_crc"], n2["last_flash"]["time"]), ("isp", None, None))
        self.assertEqual((pump["runs"], pump["app_version"], pump["image_crc"]), ("unknown", 258, "AE228DC0"))
        self.assertEqual(f["conflicts"], [{"name": "can1/pump", "interface": "can1", "id": 5,
                                           "uids": ["A4917069", "5D0C33E1"]}])
        self.assertEqual((f["in_isp"], f["not_answering"]), (["node2"], []))

    def test_one_line_without_lines(self):
        status = {k: v for k, v in STATUS.items() if k != "lines"}
        f = ispctl.info_facts({"nodes": []}, status)
        self.assertEqual(f["lines"], {"vcan0": {"interface": "vcan0", "link_state": "up", "queue_length": 0,
                                                "running_job": 0, "nodes": []}})

    def test_command_error(self):
        self.assertEqual(ispctl.command_error("list", 6, '{"error":"cannot connect to the system bus: No such file or directory"}', ""),
                         "ispctl list failed (exit status 6, the daemon is not reachable): "
                         "cannot connect to the system bus: No such file or directory")
        self.assertEqual(ispctl.command_error("scan", 5, "garbage", "ispctl: access denied\n"),
                         "ispctl scan failed (exit status 5, access denied): ispctl: access denied")


class AnsibleDoc(unittest.TestCase):
    def doc(self, module):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, HOME=d, ANSIBLE_HOME=os.path.join(d, "ah"), ANSIBLE_LOCAL_TEMP=os.path.join(d, "t"),
                       ANSIBLE_CONFIG=os.path.join(d, "none.cfg"), ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
                       ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False", ANSIBLE_NOCOLOR="1", LC_ALL="C.UTF-8",
                       PAGER="cat")
            p = subprocess.run(["ansible-doc", module], capture_output=True, text=True, env=env, timeout=120)
            j = subprocess.run(["ansible-doc", "--json", module], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual((p.returncode, p.stderr), (0, ""), p.stdout)
        self.assertEqual(j.returncode, 0, j.stderr)
        return p.stdout, json.loads(j.stdout)[module]

    def test_flash(self):
        text, doc = self.doc("stcisp.fleet.flash")
        self.assertIn("> STCISP.FLEET.FLASH", text)
        self.assertIn("This module has a corresponding action plugin", text)
        for section in ("OPTIONS (= is mandatory):", "EXAMPLES:", "RETURN VALUES:"):
            self.assertIn(section, text)
        self.assertEqual(sorted(doc["doc"]["options"]),
                         ["bus_address", "canary", "force", "format", "ispctl", "path", "reboot", "remote_src",
                          "require_boot", "scan", "src", "targets", "timeout"])
        self.assertTrue(doc["doc"]["options"]["targets"]["required"])
        self.assertEqual(doc["doc"]["options"]["ispctl"]["default"], "ispctl")
        self.assertIn("nodes", doc["return"])
        self.assertIn("outcome", doc["return"]["nodes"]["contains"])
        self.assertIn("stcisp.fleet.flash:", doc["examples"])

    def test_info(self):
        text, doc = self.doc("stcisp.fleet.info")
        self.assertIn("> STCISP.FLEET.INFO", text)
        for section in ("OPTIONS (= is mandatory):", "EXAMPLES:", "RETURN VALUES:"):
            self.assertIn(section, text)
        self.assertEqual(sorted(doc["doc"]["options"]), ["bus_address", "ispctl", "scan"])
        facts = doc["return"]["ansible_facts"]["contains"]["stcisp"]["contains"]
        for key in ("lines", "nodes", "conflicts", "version"):
            self.assertIn(key, facts)


if __name__ == "__main__":
    unittest.main(verbosity=2)
