#!/usr/bin/python
# SPDX-License-Identifier: LGPL-2.1-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: flash
short_description: Flash the STC32G boards behind one gateway through stcispd
description:
  - Flashes a firmware image into the boards (nodes) on the CAN buses of
    one gateway, through the gateway's C(stcispd) daemon, by running
    C(ispctl --json flash) there. The daemon checks every target before
    anything is queued, flashes the nodes of each line together and the
    lines in parallel, and reports each node's outcome.
  - Idempotent. A node that holds the image already is left alone and
    reported C(up-to-date) (a running board is asked what it runs, a node
    in its ISP loader is compared sector by sector). The task is
    C(changed) only when a node was flashed.
  - In check mode the daemon's dry run is used (C(ispctl flash --dry-run)).
    Nothing is erased, programmed or entered; a node that would be
    flashed is reported C(would-flash) and makes the task C(changed).
  - A node that fails (does not answer, refuses, does not boot what was
    flashed) fails the task, whose message names each failed node with
    its reason. The other nodes of the task are still flashed, unless
    I(canary) holds them back.
  - The image is copied from the controller (I(src)) or is already on the
    gateway (I(path)). It is validated by C(ispctl) exactly as the daemon
    will, before anything is queued.
version_added: "0.1.0"
author:
  - stcispd developers
requirements:
  - C(ispctl) and a running C(stcispd) on the managed host
  - root, or a member of the daemon's flash group (C(stcisp)) on the managed host
options:
  targets:
    description:
      - The nodes to flash, one job for all of them. Each is a node id
        (C(3) or C(node3)), a line and node (C(can1/node3)), a name or a
        group from the C([Nodes]) and C([Groups]) sections of
        C(stcispd.conf), or C(all) alone for every extended node the
        daemon knows; with I(scan=true), every one that answers now.
    type: list
    elements: str
    required: true
    aliases: [target, nodes]
  src:
    description:
      - The image on the controller, Intel HEX or raw binary. It is copied
        to a temporary file on the managed host, flashed, and removed;
        the daemon records it under its base name.
      - With I(remote_src=true), a path on the managed host instead.
      - Exactly one of I(src) and I(path) is given.
    type: path
  remote_src:
    description:
      - I(src) is a path on the managed host (as I(path)), not on the controller.
    type: bool
    default: false
  path:
    description:
      - The image, already on the managed host.
    type: path
  format:
    description:
      - The image's format. By default it is taken from the file name's
        extension (C(.hex), C(.ihx); C(.bin), C(.img)), else from the content.
    type: str
    choices: [hex, bin]
  scan:
    description:
      - Scan every line first (C(ispctl scan), a DISCOVER and IDENTIFY
        round that changes no board), so that C(all) covers every board
        that answers now rather than those the daemon knows from before.
        Runs in check mode too.
    type: bool
    default: false
  force:
    description:
      - Also flash the nodes that hold the image already (C(ispctl flash --force)).
        The task is then always C(changed).
    type: bool
    default: false
  require_boot:
    description:
      - A node whose new application does not confirm its boot fails.
        Without it, only a node that came back in its ISP loader, or
        runs another image, fails.
    type: bool
    default: false
  canary:
    description:
      - Flash the first N targets first; the others only when every one of
        those succeeded. A canary that fails leaves the others
        C(not-started).
      - This is within one gateway; across gateways, run a canary gateway
        first in its own play (see the collection's README).
    type: int
  reboot:
    description:
      - Reboot each node into its new application after the commit. With
        C(false) the nodes stay in their ISP loader.
    type: bool
    default: true
  timeout:
    description:
      - Wait at most this many seconds for the job. When it expires the
        task fails, and the job goes on in the daemon (C(ispctl wait) follows
        it, C(ispctl cancel) stops it). By default the task waits as long
        as the job takes.
    type: int
  ispctl:
    description:
      - The C(ispctl) program on the managed host, a name looked up in
        C(PATH) or a path.
    type: str
    default: ispctl
  bus_address:
    description:
      - The D-Bus address of the bus the daemon is on, instead of the
        system bus (C(ispctl --address)); for tests and unusual setups.
    type: str
notes:
  - The module runs C(ispctl) on the managed host rather than speaking
    D-Bus itself, so that the image is checked, the targets resolved and
    the per-node outcomes reported exactly as a person at that gateway
    would see them; see the collection's README. Its JSON and exit
    statuses are described in ispctl(1).
  - Check mode is supported (the daemon's dry run); diff mode is not.
seealso:
  - module: stcisp.fleet.info
'''

EXAMPLES = r'''
- name: Flash every board behind the gateway with the image built on the controller
  stcisp.fleet.flash:
    targets: all
    src: build/app.hex
    require_boot: true

- name: Two boards, the first as a canary, an image already on the gateway
  stcisp.fleet.flash:
    targets: [pump, can1/node7]
    path: /srv/firmware/app-2.4.hex
    canary: 1
    timeout: 600
  register: flashed

- name: Show what each board got
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.outcome }}"
  loop: "{{ flashed.nodes }}"
'''

RETURN = r'''
nodes:
  description:
    - One object per target node, as C(ispctl --json flash) reports it
      (ispctl(1), JSON OUTPUT).
  returned: when ispctl ran the job
  type: list
  elements: dict
  contains:
    name:
      description: The node's canonical name (C(node3); C(can1/node3) with several lines).
      type: str
      sample: node3
    interface:
      description: The CAN interface (line) the node is on.
      type: str
      sample: can0
    id:
      description: The node id.
      type: int
      sample: 3
    state:
      description: How its part of the job ended (C(succeeded), C(failed), C(cancelled)).
      type: str
      sample: succeeded
    outcome:
      description:
        - C(flashed), C(up-to-date), C(would-flash) (check mode),
          C(not-started) (held back by a failed canary); null when it failed.
      type: str
      sample: flashed
    error:
      description: Why it failed; null unless it did.
      type: str
      sample: null
    boot:
      description: After the reboot, C(confirmed), C(unconfirmed) or C(failed); null when not rebooted.
      type: str
      sample: confirmed
    sectors_written:
      description: The 512-byte sectors written (check mode, that would be).
      type: int
      sample: 34
    sectors_skipped:
      description: The sectors skipped because the node already held them as the image has them.
      type: int
      sample: 0
    sectors_to_erase:
      description: The sectors erased (check mode, that would be).
      type: int
      sample: 34
    estimate_usec:
      description: In check mode, the estimated time of the node's flash.
      type: int
      sample: 3200500
  sample:
    - {name: node1, interface: can0, id: 1, state: succeeded, outcome: flashed, boot: confirmed, error: null}
    - {name: node2, interface: can0, id: 2, state: succeeded, outcome: up-to-date, boot: null, error: null}
flashed:
  description: The names of the nodes flashed.
  returned: always
  type: list
  elements: str
  sample: [node1]
up_to_date:
  description: The names of the nodes that held the image already and were left alone.
  returned: always
  type: list
  elements: str
  sample: [node2]
would_flash:
  description: In check mode, the names of the nodes that would be flashed.
  returned: always
  type: list
  elements: str
  sample: []
failed_nodes:
  description: The names of the nodes that failed.
  returned: always
  type: list
  elements: str
  sample: []
not_started:
  description: The names of the nodes held back because a canary failed.
  returned: always
  type: list
  elements: str
  sample: []
jobs:
  description: The daemon's job (its C(id), C(job) object path, C(target), C(state), C(phase), C(error)).
  returned: when ispctl ran the job
  type: list
  elements: dict
  sample: [{id: 7, job: /org/stcisp/ispd1/job/7, target: "node1,node2", state: succeeded, phase: boot, error: null}]
result:
  description: The job's result as ispctl gives it (C(succeeded), C(failed), C(timeout), ...).
  returned: when ispctl ran the job
  type: str
  sample: succeeded
msg:
  description: What happened, per outcome; on failure each failed node with its reason.
  returned: always
  type: str
  sample: "1 of 2 nodes failed: node9 did not answer CONNECT within 800 ms (...)"
cmd:
  description: The ispctl command line run.
  returned: always
  type: list
  elements: str
  sample: [ispctl, --json, flash, --, node1, node2, /tmp/app.hex]
start:
  description: When ispctl was started (UTC).
  returned: always
  type: str
  sample: "2026-12-01 10:02:11.123456"
end:
  description: When ispctl ended (UTC).
  returned: always
  type: str
  sample: "2026-12-01 10:02:14.654321"
delta:
  description: How long ispctl ran.
  returned: always
  type: str
  sample: "0:00:03.530865"
rc:
  description: ispctl's exit status (ispctl(1), EXIT STATUS).
  returned: always
  type: int
  sample: 0
'''

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stcisp.fleet.plugins.module_utils.ispctl import (
    IspctlError, base_command, command_error, flash_command, flash_result)

TIME_FORMAT = '%Y-%m-%d %H:%M:%S.%f'


def main():
    module = AnsibleModule(
        argument_spec=dict(
            targets=dict(type='list', elements='str', required=True, aliases=['target', 'nodes']),
            src=dict(type='path'),
            remote_src=dict(type='bool', default=False),
            path=dict(type='path'),
            format=dict(type='str', choices=['hex', 'bin']),
            scan=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
            require_boot=dict(type='bool', default=False),
            canary=dict(type='int'),
            reboot=dict(type='bool', default=True),
            timeout=dict(type='int'),
            ispctl=dict(type='str', default='ispctl'),
            bus_address=dict(type='str'),
        ),
        mutually_exclusive=[('src', 'path')],
        required_one_of=[('src', 'path')],
        supports_check_mode=True,
    )
    p = module.params
    path = p['path']
    if path is None:
        # the action plugin turns a controller 'src' into 'path'; only a
        # remote one reaches here
        if not p['remote_src']:
            module.fail_json(msg="src names a file on the controller: it is copied by the action plugin, "
                                 "which did not run (use path for a file on the managed host)")
        path = p['src']
    if p['canary'] is not None and p['canary'] < 1:
        module.fail_json(msg="canary must be at least 1")
    if p['timeout'] is not None and p['timeout'] < 1:
        module.fail_json(msg="timeout must be at least 1 second")

    ispctl = p['ispctl']
    if '/' not in ispctl:
        ispctl = module.get_bin_path(ispctl, required=True)
    try:
        cmd = flash_command(ispctl, p['targets'], path, bus_address=p['bus_address'],
                            check_mode=module.check_mode, force=p['force'],
                            require_boot=p['require_boot'], canary=p['canary'], reboot=p['reboot'],
                            image_format=p['format'], timeout=p['timeout'])
    except IspctlError as e:
        module.fail_json(msg=str(e))

    start = datetime.datetime.now(datetime.timezone.utc)
    times = {}

    def stamp():
        end = datetime.datetime.now(datetime.timezone.utc)
        times.update(start=start.strftime(TIME_FORMAT), end=end.strftime(TIME_FORMAT), delta=str(end - start))
        return times

    if p['scan']:
        scan = base_command(ispctl, p['bus_address']) + ['scan']
        rc, out, err = module.run_command(scan)
        if rc != 0:
            module.fail_json(msg=command_error('scan', rc, out, err), rc=rc, cmd=scan, **stamp())
    rc, out, err = module.run_command(cmd)
    try:
        failed, result = flash_result(rc, out, err, check_mode=module.check_mode)
    except IspctlError as e:
        module.fail_json(msg=str(e), cmd=cmd, rc=rc, stderr=err, **stamp())
    result['cmd'] = cmd
    result.update(stamp())
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
