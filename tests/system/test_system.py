#!/usr/bin/python3
"""stcispd as a user meets it: `systemctl start stcispd` under Debian's
systemd as PID 1, through the real system bus, with the files `meson
install` put in place (the unit, the bus policy, the activation file) and
none of the test's own copies. Runs only inside
`tools/with-vcan --systemd --install BUILDDIR` (the `system` suite), as
root; the harness created the users stcisp-user (in group stcisp) and
stcisp-other (not in it).

One boot for every check, in order: each step leaves the daemon as the
next one needs it, and a failed step ends the test with its reason."""

import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["SOURCE_ROOT"], "tests", "integration"))
from daemon_env import expected_flash  # noqa: E402  (python3-intelhex, not the project's loader)

SIM = os.environ["STCISP_SIM"]
EXAMPLES = os.environ["EXAMPLES_DIR"]
ISPCTL = "/usr/bin/ispctl"          # the installed one
FLASH_DIR = "/var/tmp/stcisp-sim"
BUS = "org.stcisp.ispd1"
JOB = "org.stcisp.ispd1.Job"
T0 = time.monotonic()


def step(what):
    print(f"[{time.monotonic() - T0:6.1f}s] {what}", flush=True)


def run(args, check=True, user=None, timeout=120):
    if user:
        args = ["runuser", "-u", user, "--"] + args
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p


def wait_for(what, predicate, timeout):
    end = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def show(prop):
    return run(["systemctl", "show", "-p", prop, "--value", "stcispd"]).stdout.strip()


def main_pid():
    return int(show("MainPID"))


def job_prop(path, prop):
    p = run(["busctl", "--system", "--json=short", "get-property", BUS, path, JOB, prop])
    return json.loads(p.stdout)["data"]


def journal(*args):
    if not any(a.startswith("-o") for a in args):
        args = ("-o", "cat") + args
    return run(["journalctl", "--no-pager", "-u", "stcispd", *args]).stdout


class Sim:
    def __init__(self):
        os.makedirs(FLASH_DIR, exist_ok=True)
        self.log = open("/var/tmp/stcisp-sim.log", "w")
        # Under emulation the big image takes long enough to stop the
        # daemon in the middle of it, with the sim's default timing.
        self.p = subprocess.Popen([SIM, "--interface", "vcan0", "--flash-dir", FLASH_DIR,
                                   "--nodes", "1-4"],
                                  stdout=self.log, stderr=subprocess.STDOUT)

    def flash(self, node):
        self.p.send_signal(signal.SIGUSR1)  # write the flash file back
        time.sleep(1)
        with open(f"{FLASH_DIR}/node{node}.bin", "rb") as f:
            return f.read()


def flash_job(node, image, user="stcisp-user"):
    """Queues a flash as `user` and returns the job's object path."""
    p = run([ISPCTL, "--no-block", "flash", f"vcan0/node{node}", image], user=user)
    paths = re.findall(r"/org/stcisp/ispd1/job/\w+", p.stdout)
    assert len(paths) == 1, f"no job path in: {p.stdout!r}"
    return paths[0]


def wait_running(path, min_bytes=4096):
    def going():
        return job_prop(path, "State") == "running" and job_prop(path, "BytesDone") >= min_bytes
    wait_for(f"{path} to be running with {min_bytes} bytes done", going, 120)


def wait_done(path, timeout=300):
    def done():
        s = job_prop(path, "State")
        return s if s in ("succeeded", "failed", "cancelled") else None
    return wait_for(f"{path} to end", done, timeout)


def main():
    if os.environ.get("STCISP_VCAN") != "qemu" or not os.path.exists("/run/systemd/system"):
        raise SystemExit("run this through tools/with-vcan --systemd --install BUILDDIR")
    with open("/proc/1/comm") as f:
        assert f.read().strip() == "systemd", "PID 1 is not systemd"
    for path in ["/usr/sbin/stcispd", ISPCTL, "/lib/systemd/system/stcispd.service",
                 "/usr/share/dbus-1/system.d/org.stcisp.ispd1.conf",
                 "/usr/share/dbus-1/system-services/org.stcisp.ispd1.service"]:
        assert os.path.exists(path), \
            f"{path} is not installed (configure the build with --prefix=/usr, as tools/run-tests does)"

    # The administrator's configuration: both interfaces (vcan1 does not
    # exist yet), a bitrate vcan cannot take, a reply timeout for an
    # emulated machine.
    with open("/etc/stcispd/stcispd.conf", "w") as f:
        f.write("[Bus]\nInterface=vcan0 vcan1\nBitrate=500000\n[Protocol]\nTimeout=800\n")
    sim = Sim()
    blink = os.path.join(EXAMPLES, "blink.hex")
    big = os.path.join(EXAMPLES, "big.hex")

    step("systemctl start stcispd")
    run(["systemctl", "start", "stcispd"], timeout=90)
    assert show("ActiveState") == "active" and show("SubState") == "running", show("SubState")
    assert show("Type") == "notify"
    status = run(["systemctl", "status", "--no-pager", "stcispd"]).stdout
    assert "Active: active (running)" in status, status
    print("\n".join(status.splitlines()[:3]))

    step("ispctl status through the system bus, as a member of stcisp")
    out = run([ISPCTL, "status"], user="stcisp-user").stdout
    print(out)
    assert "vcan0" in out, out

    step("flash node1 as stcisp-user")
    before = sim.flash(1)
    run([ISPCTL, "flash", "vcan0/node1", blink], user="stcisp-user", timeout=150)
    assert sim.flash(1) == expected_flash(blink, before), "node1's flash does not hold blink.hex"

    step("flash node2 as stcisp-other: AccessDenied, no frame on the bus")
    dump = subprocess.Popen(["candump", "-L", "vcan0"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    p = run([ISPCTL, "flash", "vcan0/node2", blink], check=False, user="stcisp-other")
    time.sleep(1)
    dump.terminate()
    frames = dump.communicate()[0]
    assert p.returncode != 0, "stcisp-other was allowed to flash"
    assert "may not change nodes: " in p.stderr, p.stderr
    print(p.stderr.strip())
    assert frames == "", f"frames on vcan0 after a refused flash:\n{frames}"

    step("polkit decides: the daemon said so at start, and the refusal is polkit's")
    assert "Access: polkit decides" in journal(), journal()[-1500:]
    assert "polkit" in p.stderr, p.stderr
    # The error's name, as a client other than ispctl sees it.
    p = run(["gdbus", "call", "--system", "--dest", BUS, "--object-path", "/org/stcisp/ispd1",
             "--method", "org.stcisp.ispd1.Manager.Scan"], check=False, user="stcisp-other")
    assert p.returncode != 0 and "org.stcisp.ispd1.Error.AccessDenied" in p.stderr, p.stdout + p.stderr
    assert "polkit wants authentication for org.stcisp.ispd1.scan" in p.stderr, p.stderr

    step("a new polkit rule takes effect without restarting the daemon")
    pid = main_pid()
    # CancelJob of the finished job 1: refused as AccessDenied before the
    # rule, answered "already finished" after it; it changes nothing.
    p = run([ISPCTL, "cancel", "1"], check=False, user="stcisp-other")
    assert p.returncode != 0 and "may not change nodes: polkit" in p.stderr, p.stdout + p.stderr
    with open("/etc/polkit-1/rules.d/10-stcisp-test.rules", "w") as f:
        f.write('polkit.addRule(function(action, subject) {\n'
                '        if (action.id == "org.stcisp.ispd1.cancel" && subject.user == "stcisp-other")\n'
                '                return polkit.Result.YES;\n'
                '});\n')

    # polkitd reloads its rules when the directory changes (inotify).
    def allowed():
        p = run([ISPCTL, "cancel", "1"], check=False, user="stcisp-other")
        return "already finished" in p.stderr
    wait_for("stcisp-other may cancel", allowed, 30)
    assert main_pid() == pid, "the daemon restarted"

    step("the sandbox, from /proc of the running daemon")
    pid = main_pid()
    with open(f"/proc/{pid}/status") as f:
        st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    assert st["NoNewPrivs"] == "1", st["NoNewPrivs"]
    assert st["Seccomp"] == "2", st["Seccomp"]                  # SystemCallFilter=, RestrictAddressFamilies=
    cap_net_admin = 1 << 12
    for k in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[k], 16) == cap_net_admin, f"{k} {st[k]}: not CAP_NET_ADMIN alone"
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0
    ns = ["nsenter", "-t", str(pid), "-m", "--"]
    for d in ("/etc", "/usr", "/var/lib", "/root"):
        p = run(ns + ["sh", "-c", f"echo x > {d}/stcispd-write-test"], check=False)
        assert p.returncode != 0, f"the daemon's mount namespace can write {d}"
        assert "Read-only file system" in p.stderr or "Permission denied" in p.stderr, p.stderr
    run(ns + ["sh", "-c", "echo x > /var/lib/stcispd/write-test && rm /var/lib/stcispd/write-test"])
    # PrivateTmp=: its /tmp is writable and its own.
    run(ns + ["sh", "-c", "echo x > /tmp/stcispd-private-test"])
    assert not os.path.exists("/tmp/stcispd-private-test"), "the daemon's /tmp is the system's"
    # RestrictAddressFamilies= is part of the seccomp filter counted
    # above; that the daemon works in it (CAN, netlink, UNIX) is what the
    # other steps show.
    step("the configured bitrate: vcan has none, the journal says so")
    j = journal()
    assert "vcan0: cannot set bitrate 500000" in j, j[-2000:]
    print([l for l in j.splitlines() if "bitrate" in l][0])

    step("systemd-analyze security stcispd (the live unit)")
    p = run(["systemd-analyze", "security", "--no-pager", "stcispd"], check=False)
    m = re.search(r"Overall exposure level for stcispd.service: ([0-9.]+)", p.stdout)
    assert m, p.stdout[-500:] + p.stderr
    print(m.group(0))
    assert float(m.group(1)) <= 2.5, m.group(0)

    step("journalctl -u stcispd NODE=...: node1's job")
    # With two lines a node is named with its line (vcan0/node1).
    nodes = {json.loads(l).get("NODE") for l in journal("-o", "json").splitlines()}
    print("NODE values:", sorted(n for n in nodes if n))
    assert "vcan0/node1" in nodes, nodes
    j = journal("NODE=vcan0/node1")
    assert "vcan0/node1" in j and "node2" not in j, j
    print(j.strip().splitlines()[-1])

    step("vcan1 appears after the start: attached without a restart")
    run(["ip", "link", "add", "vcan1", "type", "vcan"])
    run(["ip", "link", "set", "vcan1", "up"])
    wait_for("vcan1 in ispctl status",
             lambda: "Interface: vcan1 (link up)" in run([ISPCTL, "status"]).stdout, 10)
    assert main_pid() == pid, "the daemon restarted"

    step("D-Bus activation: stopped, ispctl status starts it")
    run(["systemctl", "stop", "stcispd"], timeout=90)
    assert show("ActiveState") == "inactive"
    run([ISPCTL, "status"], user="stcisp-user", timeout=90)
    assert show("ActiveState") == "active", show("ActiveState")

    step("systemctl stop during a flash, then start: the job resumes")
    before = sim.flash(3)
    job = flash_job(3, big)
    wait_running(job)
    run(["systemctl", "stop", "stcispd"], timeout=90)
    run(["systemctl", "start", "stcispd"], timeout=90)
    assert wait_done(job) == "succeeded", job_prop(job, "Error")
    assert job_prop(job, "Attempts") >= 2
    assert sim.flash(3) == expected_flash(big, before), "node3's flash does not hold big.hex"

    step("the watchdog: SIGSTOP during a flash, systemd restarts the daemon")
    # WatchdogSec=30s and TimeoutAbortSec= (90 s) are too long for a
    # test: a drop-in shortens them; the rest is the installed unit.
    os.makedirs("/run/systemd/system/stcispd.service.d", exist_ok=True)
    with open("/run/systemd/system/stcispd.service.d/test-watchdog.conf", "w") as f:
        f.write("[Service]\nWatchdogSec=4s\nTimeoutAbortSec=3s\n")
    run(["systemctl", "daemon-reload"])
    run(["systemctl", "restart", "stcispd"], timeout=90)
    restarts = int(show("NRestarts"))
    before = sim.flash(4)
    job = flash_job(4, big)
    wait_running(job)
    pid = main_pid()
    os.kill(pid, signal.SIGSTOP)
    t = time.monotonic()
    wait_for("a new daemon", lambda: show("SubState") == "running" and main_pid() not in (0, pid), 60)
    step(f"restarted {time.monotonic() - t:.1f}s after SIGSTOP")
    assert int(show("NRestarts")) == restarts + 1
    assert "Watchdog timeout" in run(["journalctl", "--no-pager", "-u", "stcispd"]).stdout
    assert wait_done(job) == "succeeded", job_prop(job, "Error")
    assert sim.flash(4) == expected_flash(big, before), "node4's flash does not hold big.hex"

    sim.p.terminate()
    sim.p.wait()
    step("all passed")


def diagnose():
    for args in (["journalctl", "--no-pager", "-n", "60", "-u", "stcispd"],
                 ["journalctl", "--no-pager", "-n", "20", "-u", "polkit"],
                 ["systemctl", "status", "--no-pager", "stcispd"],
                 [ISPCTL, "jobs"], ["tail", "-n", "30", "/var/tmp/stcisp-sim.log"]):
        p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        print(f"--- {' '.join(args)}\n{p.stdout}{p.stderr}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        diagnose()
        raise
