# SPDX-License-Identifier: LGPL-2.1-or-later
"""The controller's half of stcisp.fleet.flash: copies an image given as
src from the controller into the task's temporary directory on the
managed host (under its own base name, which the daemon records), runs
the module with it as path, and removes it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        if task_vars is None:
            task_vars = dict()
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp

        args = self._task.args.copy()
        src = args.get('src')
        remote_src = boolean(args.get('remote_src', False), strict=False)
        try:
            if src is not None and args.get('path') is not None:
                raise AnsibleActionFail("parameters are mutually exclusive: src|path")
            if src is not None and not remote_src:
                try:
                    local = self._loader.get_real_file(self._find_needle('files', src))
                except AnsibleError as e:
                    raise AnsibleActionFail(to_text(e))
                if self._connection._shell.tmpdir is None:
                    self._make_tmp_path()
                remote = self._connection._shell.join_path(self._connection._shell.tmpdir,
                                                           os.path.basename(src))
                self._transfer_file(local, remote)
                self._fixup_perms2((self._connection._shell.tmpdir, remote))
                del args['src']
                args.pop('remote_src', None)
                args['path'] = remote
            result.update(self._execute_module(module_name='stcisp.fleet.flash', module_args=args,
                                               task_vars=task_vars))
        except AnsibleActionFail as e:
            result.update(e.result)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
