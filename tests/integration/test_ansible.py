#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The stcisp.fleet Ansible collection as a plant runs it: Debian's
ansible-playbook runs the README's example playbook
(contrib/ansible/examples/fleet.yml) against "gateways" that are
localhost with connection: local, in front of one real stcispd on a
private bus and a simulated fleet on vcan0:

  gw-canary  node1, node2 (in their ISP loader), node3 (running an application)
  gw-dead    node9, which no board answers

--check changes nothing and reports, after the canary, the dead board
with its reason; the first run flashes, the second changes nothing; the
facts say what each board runs. The witnesses are independent of the
collection: the simulator's flash files (against python3-intelhex),
candump for what went over the bus, ansible's own output (each task's
result, the recap).

ansible-playbook takes many seconds to start, and a task as many, in the
emulated guest (see the budget in tests/integration/meson.build): so one
live gateway, and the test starts ansible-playbook twice, --check, then
the two runs and the facts as three playbooks of one ansible-playbook;
the flash tasks' start and end and candump's timestamps tell the runs
apart."""

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

from daemon_env import EXAMPLES, SLOW, SRC, Env, expected_flash

ISPCTL = os.environ["ISPCTL"]
BLINK = os.path.join(EXAMPLES, "blink.hex")
PLAYBOOK = os.path.join(SRC, "contrib", "ansible", "examples", "fleet.yml")
INFO_PLAYBOOK = os.path.join(SRC, "tests", "integration", "ansible-info.yml")
COLLECTIONS = os.path.join(SRC, "contrib", "ansible")

# Requests that change a node: PROGRAM, ERASE, REBOOT, ENTER_ISP
PROGRAM, ERASE, REBOOT, ENTER_ISP = "1A2", "1A3", "1A4", "1A7"

INVENTORY = """\
[gateways]
gw-canary stcisp_targets='["node1", "node2", "node3"]'
gw-dead   stcisp_targets='["node9"]'

[canary]
gw-canary

[all:vars]
ansible_connection=local
ansible_python_interpreter=/usr/bin/python3
"""

RESULT = re.compile(r"^(ok|changed|fatal|skipping): \[([^\]]+)\](?:: FAILED!)? => (\{.*\})$")
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def epoch(stamp):
    """A flash task's start or end (UTC) as candump's timestamps count."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class Run:
    """One ansible-playbook: its exit status, its output, each task's
    result per host in order (from -v), and each playbook's recap (the
    counts add up over the playbooks of one run)."""

    def __init__(self, p, seconds):
        self.rc, self.out, self.seconds = p.returncode, p.stdout + p.stderr, seconds
        self.results = []
        self.recaps = []
        for line in p.stdout.splitlines():
            if line.startswith("PLAY RECAP "):
                self.recaps.append({})
            m = RESULT.match(line)
            if m:
                self.results.append((m.group(1), m.group(2), json.loads(m.group(3))))
            m = RECAP.match(line)
            if m and self.recaps:
                self.recaps[-1][m.group(1)] = dict(zip(("ok", "changed", "unreachable", "failed"),
                                                       map(int, m.groups()[1:])))

    def flashes(self):
        """(status, host, result) of each flash task, in order."""
        return [(s, h, r) for s, h, r in self.results if "nodes" in r]


def counts(ok, changed, failed=0):
    return {"ok": ok, "changed": changed, "unreachable": 0, "failed": failed}


class Ansible(unittest.TestCase):
    def setUp(self):
        e = self.env = Env("vcan0")
        e.start_sim("--nodes", "1-3", "--fault", "3:app")
        e.start_daemon()
        d = e.dir
        with open(os.path.join(d, "inventory.ini"), "w") as f:
            f.write(INVENTORY)
        # ispctl on PATH and the private bus in DBUS_SYSTEM_BUS_ADDRESS,
        # as on a gateway (the info playbook names both through options)
        os.mkdir(os.path.join(d, "bin"))
        os.symlink(ISPCTL, os.path.join(d, "bin", "ispctl"))
        open(os.path.join(d, "ansible.cfg"), "w").close()
        os.mkdir(os.path.join(d, "home"))
        self.ansible_env = dict(e.env)
        self.ansible_env.update({
            "PATH": os.path.join(d, "bin") + ":" + e.env["PATH"],
            # nothing of ansible's in ~, in the user's configuration or in
            # the system's collections: only this tree's collection
            "HOME": os.path.join(d, "home"),
            "ANSIBLE_HOME": os.path.join(d, "ansible-home"),
            "ANSIBLE_CONFIG": os.path.join(d, "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": os.path.join(d, "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": os.path.join(d, "ansible-remote"),
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "LC_ALL": "C.UTF-8",
        })

    def tearDown(self):
        self.env.close()

    # ---- helpers ----

    def playbook(self, *args):
        cmd = ["ansible-playbook", "-v", "-i", os.path.join(self.env.dir, "inventory.ini"),
               "-e", "fleet_image=" + BLINK, *args]
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.ansible_env, cwd=self.env.dir,
                           timeout=300 * SLOW)
        run = Run(p, time.monotonic() - t)
        print(f"ansible-playbook {' '.join(os.path.basename(a) for a in args)}: {run.seconds:.1f} s, "
              f"exit status {run.rc}", file=sys.stderr)
        return run

    def flashes(self):
        """Every node's flash file, written back by the simulator at once."""
        e = self.env
        paths = {n: os.path.join(e.flash_dir, f"node{n}.bin") for n in (1, 2, 3)}

        def ident(path):
            try:
                st = os.stat(path)
                return st.st_ino, st.st_mtime_ns
            except FileNotFoundError:
                return None
        old = {n: ident(p) for n, p in paths.items()}
        e.sim.send_signal(signal.SIGUSR1)
        # each is written to a temporary file renamed over it
        e.wait_for("the flash files written back", lambda: all(ident(p) not in (None, old[n])
                                                               for n, p in paths.items()), 30)
        out = {}
        for n, p in paths.items():
            with open(p, "rb") as f:
                out[n] = f.read()
        return out

    def dump_start(self):
        path = os.path.join(self.env.dir, "candump-%d.log" % time.monotonic_ns())
        f = open(path, "w")
        p = subprocess.Popen(["candump", "-L", "-r", str(8 << 20), self.env.interface + ",1A000000:1F000000"],
                             stdout=f)
        time.sleep(0.5 * SLOW)
        return p, f, path

    def dump_stop(self, d):
        """The requests candump saw: (timestamp, frame) pairs."""
        p, f, path = d
        # the last request went out long before ansible-playbook ended
        time.sleep(0.2)
        p.terminate()
        p.wait()
        f.close()
        with open(path) as f:
            rows = [l.split() for l in f.read().splitlines()]
        return [(float(r[0].strip("()")), r[2]) for r in rows if len(r) == 3]

    def assert_bus_unchanged(self, frames, what):
        self.assertTrue(frames, f"{what}: candump saw no request at all")
        bad = [f for t, f in frames if f.startswith((PROGRAM, ERASE, REBOOT, ENTER_ISP))]
        self.assertEqual(bad, [], f"{what}: ERASE, PROGRAM, REBOOT or ENTER_ISP on the bus")

    # ---- the test ----

    def test_fleet_playbook(self):
        before = self.flashes()
        total = time.monotonic()

        # --check, the daemons' dry run: the canary gateway first, "changed"
        # (its boards would be flashed); then the other gateway, whose
        # dead board fails its task with the reason. Nothing written,
        # nothing on the bus that changes a board.
        dump = self.dump_start()
        run = self.playbook("--check", PLAYBOOK)
        frames = self.dump_stop(dump)
        self.assertEqual(run.rc, 2, run.out)      # a host failed: the dead one
        self.assertEqual(run.recaps, [{"gw-canary": counts(1, 1), "gw-dead": counts(0, 0, failed=1)}], run.out)
        [(s1, h1, r1), (s2, h2, r2)] = run.flashes()
        self.assertEqual((s1, h1, r1["would_flash"]), ("changed", "gw-canary", ["node1", "node2", "node3"]), r1)
        self.assertEqual([n["outcome"] for n in r1["nodes"]], ["would-flash"] * 3, r1)
        self.assertIn("--dry-run", r1["cmd"])
        self.assertEqual((s2, h2, r2["failed_nodes"]), ("fatal", "gw-dead", ["node9"]), r2)
        self.assertRegex(r2["msg"], r"^1 of 1 nodes failed: node9 answered neither CONNECT nor IDENTIFY within \d+ ms")
        self.assertRegex(run.out, r'fatal: \[gw-dead\]: FAILED! => .*"msg": "1 of 1 nodes failed: '
                                  r'node9 answered neither CONNECT nor IDENTIFY')
        self.assert_bus_unchanged(frames, "check mode")
        self.assertEqual(self.flashes(), before, "check mode changed a board's flash")

        # one ansible-playbook without the dead gateway: the fleet playbook
        # twice, then the facts
        dump = self.dump_start()
        run = self.playbook("--limit", "gateways:!gw-dead", PLAYBOOK, PLAYBOOK, INFO_PLAYBOOK,
                            "-e", "test_ispctl=" + ISPCTL,
                            "-e", "test_bus_address=" + self.env.env["DBUS_SYSTEM_BUS_ADDRESS"])
        frames = self.dump_stop(dump)
        self.assertEqual(run.rc, 0, run.out)
        self.assertEqual(len(run.recaps), 3, run.out)
        first, second, info = run.recaps
        flashes = run.flashes()
        self.assertEqual([(s, h) for s, h, r in flashes], [("changed", "gw-canary"), ("ok", "gw-canary")], run.out)

        # the first run: the boards hold the image, each boot confirmed
        self.assertEqual(first, {"gw-canary": counts(1, 1)}, run.out)
        r = flashes[0][2]
        self.assertEqual(r["flashed"], ["node1", "node2", "node3"], r)
        self.assertEqual([n["boot"] for n in r["nodes"]], ["confirmed"] * 3, r)
        self.assertTrue([f for t, f in frames if epoch(r["start"]) <= t <= epoch(r["end"]) and f.startswith(PROGRAM)],
                        "candump saw no PROGRAM in the first run")
        after = self.flashes()
        for n in (1, 2, 3):
            self.assertEqual(after[n], expected_flash(BLINK, before[n]), f"node{n}'s flash")

        # the second run changed nothing (the recap counts add up over the
        # playbooks: one more ok, no more changed) and put nothing on the
        # bus that changes a board
        self.assertEqual(second, {"gw-canary": counts(2, 1)}, run.out)
        r = flashes[1][2]
        self.assertEqual((r["up_to_date"], r["flashed"]), (["node1", "node2", "node3"], []), r)
        start, end = epoch(r["start"]), epoch(r["end"])
        self.assertGreater(start, epoch(flashes[0][2]["end"]))
        self.assert_bus_unchanged([(t, f) for t, f in frames if start <= t <= end], "the second run")
        self.assertEqual(self.flashes(), after, "the second run changed a board's flash")

        # the facts, with ispctl and the bus named by the module's options
        self.assertEqual(info, {"gw-canary": counts(3, 1)}, run.out)
        [facts] = [r["ansible_facts"]["stcisp"] for s, h, r in run.results if "ansible_facts" in r]
        crc = json.loads(subprocess.run([ISPCTL, "--json", "inspect", BLINK], capture_output=True,
                                        text=True, check=True).stdout)["crc32"]
        self.assertEqual(facts["version"], "0.1.0")
        self.assertEqual(facts["lines"]["vcan0"]["link_state"], "up", facts["lines"])
        self.assertEqual(facts["lines"]["vcan0"]["nodes"], ["node1", "node2", "node3"], facts["lines"])
        self.assertEqual([n["name"] for n in facts["nodes"]], ["node1", "node2", "node3"], facts)
        for n in facts["nodes"]:
            self.assertEqual((n["state"], n["runs"], n["image_crc"]), ("application", "application", "%08X" % crc), n)
            self.assertEqual((n["last_flash"]["result"], n["last_flash"]["name"]), ("succeeded", "blink.hex"), n)
            self.assertRegex(n["running"], r"^blink\.hex, flashed ")
        self.assertEqual((facts["conflicts"], facts["in_isp"], facts["not_answering"]), ([], [], []))

        print(f"both ansible-playbook runs: {time.monotonic() - total:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
