# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fault-matrix trials on the daemon's state directory and its bus
service (issue 12): a full disk under --state-dir, corrupted state files,
50 concurrent status clients during a multicast flash.

Real parts only: the runner (or run-state-trials.py) runs this inside
tools/with-vcan as root; every trial has its own daemon_env.Env (private
dbus-daemon, stcisp-sim, stcispd). The witnesses are the daemon's own
answers on D-Bus (ListJobs after a restart), its log, the files in the
state directory and the simulator's flash files.

TRIALS = [(kind, fn)]; fn(rng, long, env_factory) -> list of records
(see record()). Every random choice comes from rng."""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from daemon_env import SLOW, SRC, expected_flash  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")
# ListJobs: a(ussssttso)
J_ID, J_KIND, J_TARGET, J_STATE, J_PHASE, J_DONE, J_TOTAL, J_ERROR, J_PATH = range(9)


_T0 = [time.monotonic()]


def mark(what):
    """With STCISP_TRIAL_TRACE=1, where a trial's time goes (to stderr)."""
    if os.environ.get("STCISP_TRIAL_TRACE"):
        print(f"  {time.monotonic() - _T0[0]:7.2f} s  {what}", file=sys.stderr, flush=True)


class TrialError(Exception):
    """What makes a record FAIL, with the reason."""


def record(kind, name, ok, detail, outcomes=None, lost=0, duplicated=0, crash=False, figures=None):
    return {"kind": kind, "name": name, "result": "ok" if ok else "FAIL", "detail": detail,
            "outcomes": {str(k): v for k, v in (outcomes or {}).items()},
            "jobs_lost": lost, "jobs_duplicated": duplicated, "crash": crash, "figures": figures or {}}


def classify(image, before, after):
    """A node's flash against the image: new, old, isp or BRICK
    (docs/protocol.md 8: the entry at 0x11000 is valid when it is an LJMP
    to 0x1003 or above)."""
    if after == expected_flash(image, before):
        return "new"
    if after == before:
        return "old"
    if after[0x11000] == 0x02 and (after[0x11001] << 8 | after[0x11002]) >= 0x1003:
        return "BRICK"
    return "isp"


def make_image(env, version, kib):
    """A small image of the project's example generator (the examples'
    16 KiB take seconds a flash in the guest): its path in env.dir."""
    path = os.path.join(env.dir, f"app-v{version}-{kib}k.hex")
    if not os.path.exists(path):
        subprocess.run(["/usr/bin/python3", os.path.join(SRC, "examples", "make-example-image.py"),
                        "--version", str(version), "--size", str(kib), path], check=True)
    return path


def flash_files(env, nodes):
    """Every node's flash file at once: one write-back (SIGUSR1), then the
    files replaced (the simulator renames a new one over each)."""
    def stamp(i):
        try:
            st = os.stat(os.path.join(env.flash_dir, f"node{i}.bin"))
            return st.st_ino, st.st_mtime_ns
        except FileNotFoundError:
            return None

    old = {i: stamp(i) for i in nodes}
    env.sim.send_signal(signal.SIGUSR1)
    end = time.monotonic() + 0.5 * SLOW
    while time.monotonic() < end and any(stamp(i) in (None, old[i]) for i in nodes):
        time.sleep(0.02)
    out = {}
    for i in nodes:
        with open(os.path.join(env.flash_dir, f"node{i}.bin"), "rb") as f:
            out[i] = f.read()
    return out


def close_env(env, problems):
    """env.close(), a sanitizer finding becoming a problem of the trial."""
    try:
        env.close()
    except AssertionError as e:
        problems.append(str(e)[:2000])


def daemon_alive(env):
    return env.daemon is not None and env.daemon.poll() is None


def stop_daemon(env, problems):
    """SIGTERM, and a clean exit expected: anything else is a crash."""
    if env.daemon.poll() is not None:
        problems.append(f"stcispd had exited on its own with status {env.daemon.returncode}")
        return True
    env.daemon.send_signal(signal.SIGTERM)
    try:
        rc = env.daemon.wait(timeout=30 * SLOW)
    except subprocess.TimeoutExpired:
        env.daemon.kill()
        env.daemon.wait()
        problems.append("stcispd did not stop within 30 s of SIGTERM")
        return True
    if rc != 0:
        problems.append(f"stcispd exited with status {rc} on SIGTERM")
        return True
    return False


def list_jobs(env):
    return env.call("ListJobs")["data"][0]


def job_id(path):
    return int(path.rsplit("/", 1)[1])


SMALL_KIB = 2


def queue(env, how, node):
    """One job through D-Bus (a flash from BusClient, the rest from
    busctl): (job id or None, the refusal's text)."""
    if how in ("flash", "flash-v2"):
        # busctl takes the image as one argument a byte: seconds a call in the guest
        with open(make_image(env, 1 if how == "flash" else 2, SMALL_KIB), "rb") as f:
            image = f.read()
        c = BusClient(env.env["DBUS_SYSTEM_BUS_ADDRESS"])
        try:
            return job_id(c.flash(f"node{node}", image)), ""
        except OSError as e:
            return None, str(e)
        finally:
            c.close()
    if how == "reboot":
        args = ["Reboot", "sa{sv}", f"node{node}", "0"]
    else:
        args = ["Scan"]
    r = env.call(*args, check=False)
    if isinstance(r, dict):
        return job_id(r["data"][0]), ""
    return None, (r.stderr or "").strip()


def wait_final(env, ids, timeout):
    """Every job in ids final, as ListJobs says; the daemon must stay up."""
    end = time.monotonic() + timeout * SLOW
    while True:
        if not daemon_alive(env):
            raise TrialError(f"stcispd exited ({env.daemon.returncode}) while jobs ran")
        states = {j[J_ID]: j[J_STATE] for j in list_jobs(env)}
        if all(states.get(i) in FINAL for i in ids):
            return states
        if time.monotonic() > end:
            raise TrialError("jobs not final after %d s: %s" % (timeout * SLOW, {i: states.get(i) for i in ids}))
        time.sleep(0.2)


def account(before, after):
    """Jobs accepted before a restart against ListJobs after it: (lost,
    duplicated, why). A job final before must be there once, in the same
    state (never queued or run again)."""
    ids = [j[J_ID] for j in after]
    states = {j[J_ID]: j[J_STATE] for j in after}
    lost = [i for i in before if i not in states]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    again = [i for i, s in before.items() if s in FINAL and i in states and states[i] != s]
    why = []
    if lost:
        why.append(f"jobs lost: {lost}")
    if dup:
        why.append(f"jobs listed twice: {dup}")
    if again:
        why.append("finished jobs changed state after the restart: " +
                   ", ".join(f"{i} {before[i]} -> {states[i]}" for i in again))
    return len(lost), len(dup) + len(again), why


def log_since(env, offset):
    return env.log("stcispd.log")[offset:]


def log_size(env):
    return len(env.log("stcispd.log"))


# ---- disk full ----

PAGE = 4096


def fill(path, leave):
    """Take the tmpfs's space up to `leave` bytes with the file `path`."""
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * PAGE
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
        size = f.tell()
        f.truncate(max(0, size - leave))


def disk_full_trial(rng, env_factory, n):
    kind, name = "disk-full", f"disk-full-{n}"
    problems, outcomes, lost, dup, crash, figures = [], {}, 0, 0, False, {}
    env = env_factory()
    mounted = False
    try:
        size_k = rng.choice([32, 48, 64])
        os.mkdir(env.state_dir, 0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_k}k,mode=0700", "tmpfs", env.state_dir], check=True)
        mounted = True
        nodes = [1, 2, 3]
        env.start_sim("--nodes", "1-3", "--quiet")
        env.start_daemon()
        mark("disk-full: sim and daemon up")
        before_flash = flash_files(env, nodes)
        mark("disk-full: flash files read")

        leave = rng.choice([0, 1, 2, 3, 4]) * PAGE
        fill(os.path.join(env.state_dir, "filler"), leave)
        name += f" tmpfs {size_k}k, {leave // 1024}k free"
        refused, accepted = [], {}
        flashed = set()
        n_calls = rng.randint(4, 6)
        for c in range(n_calls):
            how = rng.choice(["flash", "flash", "flash", "reboot", "scan"])
            node = rng.choice(nodes)
            if c == n_calls // 2 and rng.random() < 0.5:
                # the rest of the space goes while jobs are queued and run
                fill(os.path.join(env.state_dir, "filler2"), 0)
                name += ", filled mid-queue"
            jid, err = queue(env, how, node)
            if jid is None:
                refused.append(err)
                if "Cannot store the job in" not in err \
                        or env.state_dir not in err or "No space left on device" not in err:
                    problems.append(f"{how} node{node} refused with an unclear error: {err!r}")
            else:
                accepted[jid] = how
                if how == "flash":
                    flashed.add(node)
        figures.update(calls=n_calls, accepted=len(accepted), refused=len(refused))
        mark("disk-full: jobs queued")
        states = wait_final(env, list(accepted), 120 + 30 * len(accepted))
        mark("disk-full: jobs final")
        before = {i: states[i] for i in accepted}
        crash = stop_daemon(env, problems)
        mark("disk-full: daemon stopped")
        listing = sorted(os.listdir(env.state_dir)) + sorted("jobs/" + e for e in os.listdir(os.path.join(env.state_dir, "jobs")))

        # space back, the same directory: every accepted job there once
        for f in ("filler", "filler2"):
            if os.path.exists(os.path.join(env.state_dir, f)):
                os.unlink(os.path.join(env.state_dir, f))
        off = log_size(env)
        env.start_daemon()
        mark("disk-full: daemon restarted")
        after = list_jobs(env)
        lost, dup, why = account(before, after)
        problems += why
        if why:
            # the evidence: what the daemon said of those jobs, what the directory held
            said = [l for l in env.log("stcispd.log").splitlines()
                    if re.search(r"\b[Jj]ob (%s)\b|history|No space" % "|".join(map(str, accepted)), l)]
            problems.append(f"accepted {accepted}, final states {before}; state dir before the restart: {listing}; "
                            "stcispd said: " + " | ".join(said[-12:]))
        text = log_since(env, off)
        bad = [l for l in text.splitlines() if re.search(r"damaged|Cannot (read|load)|Failed to (read|load)", l)]
        if bad:
            problems.append("the state does not load cleanly after the disk was full: " + " | ".join(bad[:5]))
        left = [e for e in os.listdir(os.path.join(env.state_dir, "jobs")) if e.startswith(".#")]
        if left:
            problems.append(f"half-written files left in jobs/: {left}")
        crash = stop_daemon(env, problems) or crash
        after_flash = flash_files(env, nodes)
        for i in nodes:
            outcomes[i] = classify(make_image(env, 1, SMALL_KIB), before_flash[i], after_flash[i])
        if any(v == "BRICK" for v in outcomes.values()):
            problems.append("a node is BRICK")
        figures["succeeded"] = sum(1 for s in before.values() if s == "succeeded")
        detail = (f"{len(accepted)} of {n_calls} jobs accepted, {len(refused)} refused"
                  + (f" ({refused[0]})" if refused else "") + f"; after restart: {len(after)} jobs listed")
    except (TrialError, AssertionError, OSError, subprocess.SubprocessError) as e:
        problems.append(f"{type(e).__name__}: {e}")
        detail = ""
        crash = crash or (env.daemon is not None and env.daemon.poll() not in (None, 0))
    finally:
        if env.sim is not None and env.sim.poll() is None:
            env.sim.terminate()
            env.sim.wait()
        if env.daemon is not None and env.daemon.poll() is None:
            env.daemon.terminate()
            env.daemon.wait()
        if mounted:
            subprocess.run(["umount", env.state_dir], check=False)
        close_env(env, problems)
    return record(kind, name, not problems, "; ".join(problems) or detail, outcomes, lost, dup, crash, figures)


def disk_full(rng, long, env_factory):
    return [disk_full_trial(rng, env_factory, n) for n in range(4 if long else 1)]


# ---- corrupted state ----

def history_spans(text):
    """(id, start, end) of every entry of history.json's "jobs" list."""
    dec = json.JSONDecoder()
    i = text.index("[", text.index('"jobs"'))
    spans = []
    while True:
        i += 1
        while text[i] in " \t\r\n,":
            i += 1
        if text[i] == "]":
            return spans
        obj, end = dec.raw_decode(text, i)
        spans.append((obj["id"], i, end))
        i = end - 1


CORRUPTIONS = ["truncate", "flip", "empty", "garbage", "missing", "other-version"]


def corrupt(rng, path, how):
    """Damage one file; returns the byte range touched (None: all of it)."""
    with open(path, "rb") as f:
        data = f.read()
    if how == "truncate":
        at = rng.randrange(0, max(1, len(data)))
        with open(path, "r+b") as f:
            f.truncate(at)
        return (at, len(data)), f"cut at {at} of {len(data)}"
    if how == "flip":
        b = bytearray(data)
        spots = sorted(rng.sample(range(len(b)), min(len(b), rng.randint(1, 4))))
        for s in spots:
            b[s] ^= rng.randrange(1, 256)
        with open(path, "wb") as f:
            f.write(b)
        return (spots[0], spots[-1] + 1), f"bytes flipped at {spots}"
    if how == "empty":
        open(path, "wb").close()
        return None, "emptied"
    if how == "garbage":
        with open(path, "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(rng.randint(1, 2048))))
        return None, "garbage"
    if how == "missing":
        os.unlink(path)
        return None, "removed"
    # other-version: what a newer daemon could have written
    base = os.path.basename(path)
    text = data.decode(errors="replace")
    if base == "nodes.json":
        text = re.sub(r'"version"\s*:\s*\d+', '"version": 99', text, count=1)
    elif base == "next-id":
        text = "v2:" + text
    elif base.endswith(".json"):
        text = re.sub(r'"kind"\s*:\s*"[a-z]+"', '"kind": "flash-delta"', text)
    else:
        text = text.replace(":", ";", 1)
    with open(path, "w") as f:
        f.write(text)
    return None, "in another version's format"


def build_state(env):
    """A state directory with a history and queued jobs (with images):
    returns (finished {id: state}, queued ids) as the daemon left them."""
    def must(how, node):
        jid, err = queue(env, how, node)
        if jid is None:
            raise TrialError(f"{how} node{node} was refused while the state was built: {err}")
        return jid

    done = [must("flash", 1), must("scan", 0), must("flash", 2)]
    finished = wait_final(env, done, 240)
    queued = [must("flash-v2", 1), must("flash-v2", 2), must("reboot", 1)]
    env.kill_daemon()
    return {i: finished[i] for i in done}, queued


def corrupt_trial(rng, env, pristine, finished, queued, n):
    """One corruption of one file, then a start on it: the record."""
    kind = "corrupt-state"
    problems, lost, dup, crash = [], 0, 0, False
    shutil.rmtree(env.state_dir)
    shutil.copytree(pristine, env.state_dir, symlinks=True)
    files = ["history.json", "next-id", "nodes.json"] + \
            [f"jobs/{i}.json" for i in queued] + [f"jobs/{i}.image" for i in queued[:2]]
    files = [f for f in files if os.path.exists(os.path.join(env.state_dir, f))]
    target = files[n % len(files)] if n < len(files) else rng.choice(files)
    how = rng.choice(CORRUPTIONS)
    path = os.path.join(env.state_dir, target)
    with open(path, errors="replace") as f:
        text = f.read()
    span, what = corrupt(rng, path, how)
    name = f"{target} {what}"

    # what must come back: every job none of whose bytes were touched
    intact = {i: s for i, s in finished.items()}
    intact.update({i: "queued" for i in queued})
    maybe = set()               # damaged: may come back (the damage kept it valid) or be set aside
    if target == "history.json":
        for i, a, b in history_spans(text):
            if span is None or (span[0] < b and a < span[1]):
                maybe.add(i)
    elif target.startswith("jobs/") and target.endswith(".json"):
        maybe.add(int(target[5:-5]))
    for i in maybe:
        intact.pop(i, None)

    off = log_size(env)
    mark(f"corrupt-state: {name}")
    try:
        env.start_daemon()
        mark("corrupt-state: daemon up")
    except AssertionError as e:
        text = log_since(env, off)
        if target.split("/")[-1] not in text:
            problems.append(f"stcispd refused to start without naming {target}: {text[-500:]!r}")
        crash = env.daemon.returncode not in (0, 1)
        return record(kind, name, False, "; ".join(problems) or f"stcispd refused to start: {e}", {}, 0, 0, crash)
    try:
        after = list_jobs(env)
        ids = [j[J_ID] for j in after]
        states = {j[J_ID]: j[J_STATE] for j in after}
        lost_ids = [i for i in intact if i not in states]
        dup_ids = sorted({i for i in ids if ids.count(i) > 1})
        again = [i for i in intact if intact[i] in FINAL and states.get(i, intact[i]) != intact[i]]
        lost, dup = len(lost_ids), len(dup_ids) + len(again)
        if lost_ids:
            problems.append(f"intact jobs lost: {lost_ids}")
        if dup_ids:
            problems.append(f"jobs listed twice: {dup_ids}")
        if again:
            problems.append(f"finished jobs changed state: {again}")
        text = log_since(env, off)
        base = target.split("/")[-1]
        gone = [i for i in maybe if i not in states]
        if how != "missing" and gone:
            # a damaged file the daemon does not use must be kept aside and named
            aside = [e for e in os.listdir(os.path.dirname(path)) if e.startswith(base + ".damaged-")]
            if not aside:
                problems.append(f"jobs {gone} dropped, and {target} was not set aside")
            if base not in text:
                problems.append(f"jobs {gone} dropped without a log line naming {target}")
        if target.endswith(".image"):
            # a damaged image is never flashed: its job fails naming the file
            jid = int(base.split(".")[0])
            st = wait_final(env, [jid], 240)[jid]
            err = [j[J_ERROR] for j in list_jobs(env) if j[J_ID] == jid][0]
            if st != "failed":
                problems.append(f"job {jid} {st} with a {what} image")
            elif f"jobs/{base}" not in err:
                problems.append(f"job {jid} failed on its damaged image with an unclear error: {err!r}")
            name += f" -> job {st}"
        mark("corrupt-state: checked")
        kept = len([i for i in maybe if i in states])
        detail = f"started; {len(after)} jobs listed, {kept} of {len(maybe)} damaged kept"
    except (TrialError, AssertionError) as e:
        problems.append(f"{type(e).__name__}: {e}")
        detail = ""
    crash = stop_daemon(env, problems)
    mark("corrupt-state: daemon stopped")
    return record(kind, name, not problems, "; ".join(problems) or detail, {}, lost, dup, crash)


def corrupt_state(rng, long, env_factory):
    out = []
    env = env_factory()
    problems = []
    try:
        env.start_sim("--nodes", "1-2", "--quiet")
        before = flash_files(env, (1, 2))
        env.start_daemon()
        mark("corrupt-state: sim and daemon up")
        finished, queued = build_state(env)
        mark("corrupt-state: state built")
        pristine = os.path.join(env.dir, "pristine-state")
        shutil.copytree(env.state_dir, pristine, symlinks=True)
        for n in range(24 if long else 10):
            out.append(corrupt_trial(rng, env, pristine, finished, queued, n))
        # the nodes after every interrupted start: never BRICK
        outcomes = {}
        after_flash = flash_files(env, (1, 2))
        for i in (1, 2):
            after = after_flash[i]
            v1, v2 = make_image(env, 1, SMALL_KIB), make_image(env, 2, SMALL_KIB)
            outcomes[i] = "new" if after == expected_flash(v2, expected_flash(v1, before[i])) else \
                classify(v1, before[i], after)
        bricks = [i for i, v in outcomes.items() if v == "BRICK"]
        out.append(record("corrupt-state", "nodes after the interrupted starts", not bricks,
                          f"BRICK: {bricks}" if bricks else "no node BRICK", outcomes))
    except (TrialError, AssertionError, OSError) as e:
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        close_env(env, problems)
    if problems:
        out.append(record("corrupt-state", "set-up and clean-up", False, "; ".join(problems)))
    return out


# ---- status clients ----

def _pad(n, a):
    return -n % a


class BusClient:
    """A D-Bus client of its own, in this process (the wire format of the
    D-Bus specification, "Message Protocol"): 50 busctl processes at once
    would measure process start-up under the guest's emulation, not the
    daemon (measured: p50 11.6 s, the flash 42 times slower). Method calls
    with string arguments, replies read whole; the reply's type (return or
    error) and serial are what is checked."""

    def __init__(self, address):
        path = address.split("unix:path=", 1)[1].split(",")[0]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
        line = self._line()
        if not line.startswith(b"OK "):
            raise OSError(f"the bus refused authentication: {line!r}")
        self.sock.sendall(b"BEGIN\r\n")
        self.serial = 0
        self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")

    def _line(self):
        buf = b""
        while not buf.endswith(b"\r\n"):
            c = self.sock.recv(1)
            if not c:
                raise OSError("the bus closed the connection")
            buf += c
        return buf

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            c = self.sock.recv(n - len(buf))
            if not c:
                raise OSError("the bus closed the connection")
            buf += c
        return bytes(buf)

    def call(self, dest, path, iface, member, *args, signature=None, body=None):
        """String arguments, or a body marshalled by the caller with its
        signature. Returns the reply's body; an error reply raises OSError."""
        self.serial += 1
        if body is None:
            body = bytearray()
            for a in args:
                v = a.encode()
                body += b"\0" * _pad(len(body), 4)
                body += struct.pack("<I", len(v)) + v + b"\0"
            signature = "s" * len(args)
        fields = bytearray()
        for code, sig, value in ((1, "o", path), (2, "s", iface), (3, "s", member), (6, "s", dest)) + \
                (((8, "g", signature),) if signature else ()):
            # alignment counts from the message's start, 16 bytes before the fields
            fields += b"\0" * _pad(len(fields) + 16, 8)
            fields += bytes([code, 1]) + sig.encode() + b"\0"
            v = value.encode()
            if sig == "g":
                fields += bytes([len(v)]) + v + b"\0"
            else:
                fields += b"\0" * _pad(len(fields) + 16, 4)
                fields += struct.pack("<I", len(v)) + v + b"\0"
        head = struct.pack("<cBBBIII", b"l", 1, 0, 1, len(body), self.serial, len(fields)) + fields
        head += b"\0" * _pad(len(head), 8)
        self.sock.sendall(head + body)
        while True:
            fixed = self._recv(16)
            if fixed[0:1] != b"l":
                raise OSError("a big-endian message: not expected from this bus")
            mtype, blen, flen = fixed[1], struct.unpack_from("<I", fixed, 4)[0], struct.unpack_from("<I", fixed, 12)[0]
            rest = self._recv(flen + _pad(16 + flen, 8) + blen)
            if mtype in (2, 3) and self._reply_serial(fixed + rest, 16 + flen) == self.serial:
                if mtype == 3:
                    text = rest[len(rest) - blen + 4:].split(b"\0")[0].decode(errors="replace")
                    raise OSError(f"{member}: error reply: {text}")
                return rest[len(rest) - blen:]

    @staticmethod
    def _reply_serial(msg, end):
        i = 16
        while i < end:
            i += _pad(i, 8)
            code, slen = msg[i], msg[i + 1]
            sig = msg[i + 2:i + 2 + slen].decode()
            i += 3 + slen
            if sig == "g":
                i += 2 + msg[i]
                continue
            i += _pad(i, 4)
            if sig == "u":
                if code == 5:
                    return struct.unpack_from("<I", msg, i)[0]
                i += 4
            else:
                i += 4 + struct.unpack_from("<I", msg, i)[0] + 1
        return None

    def flash(self, target, image):
        """Manager.Flash(s, ay, a{sv}) with no options: the job's path."""
        t, body = target.encode(), bytearray()
        body += struct.pack("<I", len(t)) + t + b"\0"
        body += b"\0" * _pad(len(body), 4)
        body += struct.pack("<I", len(image)) + image
        body += b"\0" * _pad(len(body), 4)
        body += struct.pack("<I", 0) + b"\0" * _pad(len(body) + 4, 8)   # a{sv}: empty, its entries 8-aligned
        reply = self.call("org.stcisp.ispd1", "/org/stcisp/ispd1", "org.stcisp.ispd1.Manager", "Flash",
                          signature="saya{sv}", body=body)
        n = struct.unpack_from("<I", reply, 0)[0]
        return reply[4:4 + n].decode()

    def close(self):
        self.sock.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def multicast(env, nodes, image):
    t = time.monotonic()
    job = env.flash_nodes([f"node{i}" for i in nodes], image)
    state = env.wait_job(job, timeout=600)
    return job, state, time.monotonic() - t


N_CLIENTS = 50
# the flash under the clients must last some seconds: 8 KiB
STATUS_KIB = 8
# each client asks every POLL_S: a monitor's rate, 500 calls a second in all
POLL_S = 0.1
PROPS = "org.freedesktop.DBus.Properties"
# what a status client asks: Get and GetAll on the job and node objects, the Manager's lists
CALLS = [
    ("JOB", PROPS, "Get", "org.stcisp.ispd1.Job", "State"),
    ("JOB", PROPS, "GetAll", "org.stcisp.ispd1.Job"),
    ("NODE", PROPS, "GetAll", "org.stcisp.ispd1.Node"),
    ("/org/stcisp/ispd1", "org.stcisp.ispd1.Manager", "ListJobs"),
    ("/org/stcisp/ispd1", "org.stcisp.ispd1.Manager", "ListNodesEx"),
    ("/org/stcisp/ispd1", "org.stcisp.ispd1.Manager", "Status", ""),
]


def status_clients(rng, long, env_factory):
    kind = "status-clients"
    problems, outcomes, figures, crash = [], {}, {}, False
    env = env_factory()
    name = ""
    clients = []
    try:
        nodes = list(range(1, rng.choice([3, 4]) + 1))
        name = f"{N_CLIENTS} clients, multicast of {len(nodes)} nodes"
        env.start_sim("--nodes", f"1-{nodes[-1]}", "--quiet")
        env.start_daemon()
        v1, v2 = make_image(env, 1, STATUS_KIB), make_image(env, 2, STATUS_KIB)
        mark("status-clients: sim and daemon up")
        job, state, quiet_s = multicast(env, nodes, v1)
        mark("status-clients: first flash done")
        if state != "succeeded":
            raise TrialError(f"the flash without clients {state}: {env.job(job, 'Error')}")
        before = flash_files(env, nodes)
        pid = env.daemon.pid
        figures["rss_before_kb"] = rss_kb(pid)

        node_paths = [n[15] for n in env.call("ListNodesEx")["data"][0] if n[1] in nodes]
        plans = [[(rng.randrange(len(CALLS)), rng.choice(node_paths)) for _ in range(64)] for _ in range(N_CLIENTS)]
        phase = [rng.random() * POLL_S for _ in range(N_CLIENTS)]
        lat, errors, stop = [], [], threading.Event()
        current = {}
        lock = threading.Lock()
        clients = [BusClient(env.env["DBUS_SYSTEM_BUS_ADDRESS"]) for _ in range(N_CLIENTS)]

        def client(k):
            time.sleep(phase[k])
            n = 0
            while not stop.is_set():
                which, node = plans[k][n % len(plans[k])]
                n += 1
                args = tuple(current["job"] if a == "JOB" else node if a == "NODE" else a for a in CALLS[which])
                t = time.monotonic()
                try:
                    clients[k].call("org.stcisp.ispd1", *args)
                    err = None
                except OSError as e:
                    err = f"{args[2]} {args[0]}: {e}"
                dt = time.monotonic() - t
                with lock:
                    lat.append(dt)
                    if err:
                        errors.append(err)
                stop.wait(max(0.0, POLL_S - dt))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(N_CLIENTS)]
        t0 = time.monotonic()
        job = env.flash_nodes([f"node{i}" for i in nodes], v2)
        current["job"] = job
        for t in threads:
            t.start()
        state = env.wait_job(job, timeout=600)
        loaded_s = time.monotonic() - t0
        mark("status-clients: loaded flash done")
        stop.set()
        for t in threads:
            t.join()
        figures["rss_after_kb"] = rss_kb(pid)
        if not daemon_alive(env):
            crash = True
            raise TrialError("stcispd exited under the clients")
        lat.sort()
        figures.update(calls=len(lat), p50_ms=round(lat[len(lat) // 2] * 1000, 1) if lat else 0,
                       p99_ms=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1) if lat else 0,
                       flash_s=round(quiet_s, 2), flash_loaded_s=round(loaded_s, 2),
                       slowdown=round(loaded_s / quiet_s, 2), failed_calls=len(errors),
                       calls_per_s=round(len(lat) / loaded_s, 1))
        if not lat:
            problems.append("no status call was made")
        if errors:
            problems.append(f"{len(errors)} status calls failed, e.g. {errors[0]}")
        if state != "succeeded":
            problems.append(f"the flash under the clients {state}: {env.job(job, 'Error')}")
        after = flash_files(env, nodes)
        for i in nodes:
            outcomes[i] = classify(v2, before[i], after[i])
            if outcomes[i] != "new":
                problems.append(f"node{i} is {outcomes[i]}, not new")
        crash = stop_daemon(env, problems) or crash
    except (TrialError, AssertionError, OSError, subprocess.SubprocessError) as e:
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        for c in clients:
            c.close()
        close_env(env, problems)
    detail = "; ".join(problems) or ("flash new on every node; %(calls)d calls, p50 %(p50_ms)s ms, p99 %(p99_ms)s ms, "
                                     "RSS %(rss_before_kb)d -> %(rss_after_kb)d kB, flash %(slowdown)sx slower" % figures)
    return [record(kind, name, not problems, detail, outcomes, 0, 0, crash, figures)]


TRIALS = [("disk-full", disk_full), ("corrupt-state", corrupt_state), ("status-clients", status_clients)]
