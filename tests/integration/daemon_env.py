# SPDX-License-Identifier: LGPL-2.1-or-later
"""Real parts for the daemon's integration tests: a private system bus
(dbus-daemon with the project's own policy), stcisp-sim on a vcan
interface, stcispd, and clients nobody here wrote (busctl, gdbus,
candump, cangen). Runs inside tools/with-vcan."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time

from intelhex import IntelHex

SRC = os.environ["SOURCE_ROOT"]
STCISPD = os.environ["STCISPD"]
SIM = os.environ["STCISP_SIM"]
EXAMPLES = os.environ["EXAMPLES_DIR"]
# The guest is software-emulated and several times slower than the host.
SLOW = 1 if os.environ.get("STCISP_VCAN") == "netns" else 4

BUS = "org.stcisp.ispd1"
PATH = "/org/stcisp/ispd1"
MANAGER = "org.stcisp.ispd1.Manager"
JOB = "org.stcisp.ispd1.Job"


def require_vcan():
    if not os.environ.get("STCISP_VCAN"):
        raise SystemExit("run this through tools/with-vcan: it needs real SocketCAN (vcan)")


def expected_flash(hex_path, initial):
    """The 128 KiB a node must hold after flashing hex_path over `initial`
    (its flash file before): computed here with python3-intelhex, not with
    the project's loader. Sectors the image touches are erased first."""
    ih = IntelHex(hex_path)
    data = {}
    for a in ih.addresses():
        off = a - 0xFE0000 if a >= 0xFE0000 else a + 0x10000
        data[off] = ih[a]
    ljmp = bytes(data.pop(0x10000 + i) for i in range(3))
    data.update({0x11000 + i: ljmp[i] for i in range(3)})
    out = bytearray(initial)
    for sector in {o // 512 for o in data}:
        out[sector * 512:(sector + 1) * 512] = b"\xff" * 512
    for o, b in data.items():
        out[o] = b
    return bytes(out)


class Env:
    def __init__(self, interface="vcan0"):
        require_vcan()
        self.tmp = tempfile.TemporaryDirectory(prefix="stcispd-it-")
        self.dir = self.tmp.name
        os.chmod(self.dir, 0o755)       # nobody must reach the bus socket
        self.interface = interface
        self.procs = []
        self.daemon = None
        self.sim = None
        self.state_dir = os.path.join(self.dir, "state")
        self.flash_dir = os.path.join(self.dir, "flash")
        os.mkdir(self.flash_dir)
        self.start_bus()

    # ---- processes ----

    def spawn(self, args, log, **kw):
        f = open(os.path.join(self.dir, log), "ab")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=self.env, **kw)
        f.close()
        self.procs.append(p)
        return p

    def log(self, name):
        with open(os.path.join(self.dir, name), errors="replace") as f:
            return f.read()

    def wait_for(self, what, predicate, timeout):
        end = time.monotonic() + timeout * SLOW
        while time.monotonic() < end:
            v = predicate()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def start_bus(self):
        with open(os.path.join(SRC, "dbus", "test-system.conf.in")) as f:
            conf = f.read()
        conf = conf.replace("@SOCKET@", os.path.join(self.dir, "bus"))
        conf = conf.replace("@POLICY@", os.path.join(SRC, "dbus", "org.stcisp.ispd1.conf"))
        path = os.path.join(self.dir, "system.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.env = dict(os.environ)
        self.env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=" + os.path.join(self.dir, "bus")
        self.spawn(["dbus-daemon", "--config-file=" + path, "--nofork"], "dbus.log")
        self.wait_for("the private system bus", lambda: os.path.exists(os.path.join(self.dir, "bus")), 30)

    def start_sim(self, *args):
        self.sim = self.spawn([SIM, "--interface", self.interface, "--flash-dir", self.flash_dir, *args], "sim.log")
        self.wait_for("stcisp-sim", lambda: "ready" in self.log("sim.log"), 30)

    def start_daemon(self, *extra, config=None):
        conf = os.path.join(self.dir, "stcispd.conf")
        if config is None:
            config = "[Protocol]\nTimeout=%d\n" % (200 * SLOW)
        with open(conf, "w") as f:
            f.write(config)
        self.daemon = self.spawn([STCISPD, "--config", conf, "--interface", self.interface,
                                  "--state-dir", self.state_dir, *extra], "stcispd.log")
        self.wait_for("stcispd on the bus", self.daemon_ready, 30)

    def daemon_ready(self):
        if self.daemon.poll() is not None:
            raise AssertionError("stcispd exited: " + self.log("stcispd.log"))
        p = self.run(["busctl", "--system", "--json=short", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                      "org.freedesktop.DBus", "NameHasOwner", "s", BUS], check=False)
        return p.returncode == 0 and json.loads(p.stdout)["data"][0]

    def kill_daemon(self, sig=signal.SIGKILL):
        self.daemon.send_signal(sig)
        self.daemon.wait(timeout=30)

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30 * SLOW)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        # In a sanitizer build a finding in the daemon or the simulator lands
        # in their logs, not in the test's output: fail the test on it.
        findings = []
        for name in ("stcispd.log", "sim.log"):
            path = os.path.join(self.dir, name)
            if os.path.exists(path):
                text = self.log(name)
                for marker in ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer"):
                    if marker in text:
                        findings.append(f"{name}: {marker}\n" + text[text.index(marker) - 200:][:3000])
        self.tmp.cleanup()
        if findings:
            raise AssertionError("sanitizer findings:\n" + "\n".join(findings))

    # ---- clients ----

    def run(self, args, check=True, user=None, timeout=120):
        if user:
            args = ["setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups", "--"] + args
        p = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=timeout * SLOW)
        if check and p.returncode != 0:
            raise AssertionError(f"{args[:6]}... failed ({p.returncode}): {p.stderr}")
        return p

    def busctl(self, *args, check=True, user=None):
        p = self.run(["busctl", "--system", "--json=short", *args], check=check, user=user)
        return json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else p

    def call(self, method, signature="", *args, check=True, user=None):
        return self.busctl("call", BUS, PATH, MANAGER, method, signature, *args, check=check, user=user)

    def flash(self, target, path, *options):
        with open(path, "rb") as f:
            data = f.read()
        opts = [str(len(options) // 3), *options]
        return self.call("Flash", "saya{sv}", target, str(len(data)), *[str(b) for b in data], *opts)["data"][0]

    def flash_nodes(self, targets, path, *options, check=True, user=None):
        """FlashNodes(as, ay, a{sv}): the job's path, or the failed busctl
        run when check is False and the call is refused."""
        with open(path, "rb") as f:
            data = f.read()
        opts = [str(len(options) // 3), *options]
        r = self.call("FlashNodes", "asaya{sv}", str(len(targets)), *targets, str(len(data)),
                      *[str(b) for b in data], *opts, check=check, user=user)
        return r["data"][0] if isinstance(r, dict) else r

    def job(self, path, prop):
        return self.busctl("get-property", BUS, path, JOB, prop)["data"]

    def wait_job(self, path, timeout=240):
        def done():
            s = self.job(path, "State")
            return s if s in ("succeeded", "failed", "cancelled") else None
        return self.wait_for(f"job {path}", done, timeout)

    def flash_file(self, node):
        # the sim writes a node's flash back on REBOOT and on SIGUSR1
        self.sim.send_signal(signal.SIGUSR1)
        time.sleep(0.5 * SLOW)
        with open(os.path.join(self.flash_dir, f"node{node}.bin"), "rb") as f:
            return f.read()

    def sim_lines(self, label):
        return [l.split(": ", 1)[1] for l in self.log("sim.log").splitlines() if l.startswith(label + ": ")]


def check_commit_order(lines):
    """From one node's sim log: every PROGRAM after the entry sector's
    erase, and the LJMP opcode (0x11000) written once, last.

    The opcode frame may be sent again when its answer is late (a loaded
    host stalls the sim past the commit's short time-out): the same frame,
    with nothing programmed in between, writes nothing (protocol.md 4.4),
    and the caller's check of the flash bytes shows what was written."""
    erase_entry = [i for i, l in enumerate(lines) if re.match(r"ERASE (0x11000 count|all)", l)]
    programs = [i for i, l in enumerate(lines) if l.startswith("PROGRAM ")]
    opcode = [i for i in programs if lines[i].startswith("PROGRAM 0x11000 ")]
    assert erase_entry, "the entry sector was never erased"
    assert opcode, "the LJMP opcode was never written"
    assert len({lines[i].split(" -> ")[0] for i in opcode}) == 1, \
        f"LJMP opcode frames differ: {[lines[i] for i in opcode]}"
    assert programs[-len(opcode):] == opcode, \
        "the LJMP opcode was not the last byte programmed (or something was programmed between its resends)"
    assert opcode[0] > erase_entry[-1], "the LJMP opcode was written before the entry sector was erased"
    # the entry sector is the first one erased in the run that committed
    run_start = max((i for i, l in enumerate(lines) if l.startswith("CONNECT") and i < erase_entry[-1]), default=0)
    erases = [i for i, l in enumerate(lines) if l.startswith("ERASE") and i > run_start]
    assert erases[0] == erase_entry[-1], "another sector was erased before the entry sector"
