"""Lifecycle events of the bench guests, as JSON lines with wall-clock times.

Run with a python that has libvirt-python (the nova-py-compute venv):
    python events.py qemu:///system OUT.jsonl
Only domains named bench-* are recorded. One line per event:
    {"t": 1763..., "uuid": ..., "name": ..., "event": "SUSPENDED", "detail": "SUSPENDED_PAUSED"}
"""

import json
import sys
import time

import libvirt

EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: 'DEFINED',
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: 'UNDEFINED',
    libvirt.VIR_DOMAIN_EVENT_STARTED: 'STARTED',
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: 'SUSPENDED',
    libvirt.VIR_DOMAIN_EVENT_RESUMED: 'RESUMED',
    libvirt.VIR_DOMAIN_EVENT_STOPPED: 'STOPPED',
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: 'SHUTDOWN',
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: 'PMSUSPENDED',
    libvirt.VIR_DOMAIN_EVENT_CRASHED: 'CRASHED',
}


def _details():
    names = {}
    for attr in dir(libvirt):
        for ev in EVENTS.values():
            prefix = f'VIR_DOMAIN_EVENT_{ev}_'
            if attr.startswith(prefix):
                names[(ev, getattr(libvirt, attr))] = f'{ev}_{attr[len(prefix):]}'
    return names


DETAILS = _details()


def main():
    uri, out_path = sys.argv[1], sys.argv[2]
    out = open(out_path, 'a', buffering=1)
    libvirt.virEventRegisterDefaultImpl()
    conn = libvirt.openReadOnly(uri)

    def cb(_conn, dom, event, detail, _opaque):
        name = dom.name()
        if not name.startswith('bench-'):
            return
        ev = EVENTS.get(event, str(event))
        out.write(json.dumps({'t': time.time(), 'uuid': dom.UUIDString(), 'name': name,
                              'event': ev, 'detail': DETAILS.get((ev, detail), str(detail))})
                  + '\n')

    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)
    conn.setKeepAlive(5, 3)
    out.write(json.dumps({'t': time.time(), 'uuid': None, 'event': 'MONITOR_STARTED',
                          'detail': uri}) + '\n')
    while True:
        libvirt.virEventRunDefaultImpl()


if __name__ == '__main__':
    main()
