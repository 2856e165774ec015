"""The real Python nova-compute 34.0.0, started exactly as its console script
does (nova.cmd.compute.main), with timing probes added around a few libvirt
driver steps so the benchmark can see phases the task states do not show.

The probes only record a wall-clock timestamp before and after the original
call (to the JSON-lines file in $BENCH_PROBE_FILE) and then return its
result / re-raise its exception unchanged: nova's behaviour is not altered.

Probed:
  Guest.freeze_filesystems / thaw_filesystems   quiesce window (live path)
  BlockDevice.rebase / abort_job                 the shallow block copy
  Guest.delete_configuration / Host.write_instance_config   transient window
  Guest.save_memory_state                        managedSave (cold path)
  libvirt_utils.extract_snapshot                 qemu-img convert
  glance.API.update                              PATCH + upload of the image
"""

import functools
import json
import os
import sys
import threading
import time

_LOCK = threading.Lock()
_PATH = os.environ.get('BENCH_PROBE_FILE')


def _emit(rec):
    if not _PATH:
        return
    line = json.dumps(rec)
    with _LOCK:
        with open(_PATH, 'a') as f:
            f.write(line + '\n')


def _probe(owner, attr, label):
    orig = getattr(owner, attr)

    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        start = time.time()
        _emit({'probe': label, 'phase': 'begin', 't': start})
        ok = False
        try:
            result = orig(*args, **kwargs)
            ok = True
            return result
        finally:
            end = time.time()
            _emit({'probe': label, 'phase': 'end', 't': end,
                   'seconds': end - start, 'ok': ok})

    setattr(owner, attr, wrapper)


def main():
    # nova.cmd first: it applies nova's concurrency setup (monkey patching)
    # before any other nova module is imported, exactly as the console script.
    from nova.cmd import compute as cmd_compute

    from nova.image import glance
    from nova.virt.libvirt import guest as lv_guest
    from nova.virt.libvirt import host as lv_host
    from nova.virt.libvirt import utils as lv_utils

    _probe(lv_guest.Guest, 'freeze_filesystems', 'freeze')
    _probe(lv_guest.Guest, 'thaw_filesystems', 'thaw')
    _probe(lv_guest.Guest, 'save_memory_state', 'managed_save')
    _probe(lv_guest.Guest, 'delete_configuration', 'undefine')
    _probe(lv_host.Host, 'write_instance_config', 'define')
    _probe(lv_guest.BlockDevice, 'rebase', 'block_rebase')
    _probe(lv_guest.BlockDevice, 'abort_job', 'block_job_abort')
    _probe(lv_utils, 'extract_snapshot', 'convert')
    _probe(glance.API, 'update', 'glance_update')
    sys.argv[0] = 'nova-compute'
    sys.exit(cmd_compute.main())


if __name__ == '__main__':
    main()
