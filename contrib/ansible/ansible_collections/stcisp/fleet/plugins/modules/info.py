#!/usr/bin/python
# SPDX-License-Identifier: LGPL-2.1-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: info
short_description: What the stcispd daemon of one gateway knows about its CAN lines and boards, as facts
description:
  - Reads the gateway's C(stcispd) daemon through C(ispctl --json status)
    and C(ispctl --json list) and returns, as the fact C(stcisp), its
    lines (CAN interfaces and their state), its nodes (the boards it has
    seen or flashed) with what each runs (its ISP loader or an
    application, the image's CRC-32, the application's version, the
    last flash) and the conflicts (two boards answering on one id).
  - The daemon's node table is only as fresh as its last scan and its
    last jobs; I(scan=true) runs a scan first (C(ispctl scan)), which
    asks every board on every line and changes nothing on them.
version_added: "0.1.0"
author:
  - stcispd developers
requirements:
  - C(ispctl) and a running C(stcispd) on the managed host
options:
  scan:
    description:
      - Scan every line first (a DISCOVER and IDENTIFY round), so that
        the facts, and the C(all) target of M(stcisp.fleet.flash), cover
        every board that answers now. Needs root or the daemon's flash
        group. It changes no board, and runs in check mode too.
    type: bool
    default: false
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
  - Check mode is supported; the module changes nothing.
seealso:
  - module: stcisp.fleet.flash
'''

EXAMPLES = r'''
- name: Learn what the gateway's boards run
  stcisp.fleet.info:
    scan: true

- name: Stop when two boards answer on one id
  ansible.builtin.assert:
    that: ansible_facts.stcisp.conflicts | length == 0
    fail_msg: "conflicts: {{ ansible_facts.stcisp.conflicts }}"

- name: The boards still in their ISP loader
  ansible.builtin.debug:
    var: ansible_facts.stcisp.in_isp
'''

RETURN = r'''
ansible_facts:
  description: The facts.
  returned: always
  type: dict
  contains:
    stcisp:
      description: What the daemon knows.
      type: dict
      contains:
        version:
          description: The daemon's version.
          type: str
          sample: 0.1.0
        lines:
          description:
            - One entry per CAN interface, by name, as C(ispctl status --json)
              gives it (C(link_state), C(controller_state), C(bitrate), error
              counters, C(frames_sent), C(frames_received), C(running_job),
              C(queue_length)), plus C(nodes), the names of its nodes.
          type: dict
          sample: {can0: {interface: can0, link_state: up, bitrate: 500000, nodes: [node1, node2]}}
        nodes:
          description: The boards the daemon has seen or flashed.
          type: list
          elements: dict
          contains:
            name:
              description: Its name (C(node3), a C([Nodes]) name, C(can1/node3) with several lines).
              type: str
            interface:
              description: Its line.
              type: str
            id:
              description: Its node id.
              type: int
            form:
              description: C(extended), C(legacy) or C(unknown).
              type: str
            state:
              description: C(isp), C(application), C(conflict), C(not-answering) or C(unknown).
              type: str
            runs:
              description: What it runs, C(isp) (its ISP loader), C(application) or C(unknown).
              type: str
            running:
              description: What its application is, as C(ispctl list) says it (C(app.hex, flashed 2026-12-01 10:02) or C(image 1C291CA3)); null when unknown.
              type: str
            image_crc:
              description: The CRC-32 of what its application runs, as C(ispctl inspect) gives it for a file (8 hex digits); null when unknown.
              type: str
            app_version:
              description: The version its application reports; null when none.
              type: int
            uid:
              description: The chip's unique id (its first four bytes, hex).
              type: str
            last_seen:
              description: When it last answered (UTC, ISO 8601).
              type: str
            last_flash:
              description: Its last flash, C(result), C(name) (the file's), C(image_crc), C(time); nulls when never flashed.
              type: dict
            conflict_uids:
              description: The UIDs seen on its id while it is in conflict, else empty.
              type: list
              elements: str
          sample:
            - {name: node1, interface: can0, id: 1, form: extended, state: application, runs: application,
               running: "app.hex, flashed 2026-12-01 10:02", image_crc: F2527343, app_version: null, uid: EC20897A,
               last_flash: {result: succeeded, name: app.hex, image_crc: F2527343, time: "2026-12-01T10:02:11Z"},
               conflict_uids: []}
        conflicts:
          description: The node ids where two boards answer, each C(name), C(interface), C(id) and C(uids).
          type: list
          elements: dict
          sample: [{name: node5, interface: can0, id: 5, uids: [A4917069, 5D0C33E1]}]
        in_isp:
          description: The names of the nodes in their ISP loader.
          type: list
          elements: str
          sample: [node2]
        not_answering:
          description: The names of the nodes that did not answer the last time they were asked.
          type: list
          elements: str
          sample: []
        queue_length:
          description: The jobs waiting in the daemon's queue.
          type: int
          sample: 0
        running_job:
          description: The id of the running job, 0 when none.
          type: int
          sample: 0
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stcisp.fleet.plugins.module_utils.ispctl import (
    IspctlError, base_command, command_error, info_facts, parse_json)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            scan=dict(type='bool', default=False),
            ispctl=dict(type='str', default='ispctl'),
            bus_address=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    ispctl = p['ispctl']
    if '/' not in ispctl:
        ispctl = module.get_bin_path(ispctl, required=True)
    base = base_command(ispctl, p['bus_address'])

    def run(verb):
        rc, out, err = module.run_command(base + [verb])
        if rc != 0:
            module.fail_json(msg=command_error(verb, rc, out, err), rc=rc, cmd=base + [verb])
        try:
            return parse_json(out)
        except IspctlError as e:
            module.fail_json(msg=str(e), cmd=base + [verb])

    if p['scan']:
        run('scan')
    facts = info_facts(run('list'), run('status'))
    module.exit_json(changed=False, ansible_facts={'stcisp': facts})


if __name__ == '__main__':
    main()
