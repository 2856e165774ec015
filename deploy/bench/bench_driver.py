"""The measuring side of deploy/bench/snapshot-vs-nova, run with the nova
venv's python (nova's own API and object code, through deploy/dev/nova_peer.py).

  prepare-service --host H --state-path P
      The Service row (nova's objects) and the local node identity file of a
      compute host that "already exists" (see docs/benchmarks.md: a new
      nova-compute refuses to start on a libvirtd that has other domains).
  run --host H --uuid U --kind snapshot|backup --count N --snapdir D
      --events F [--probes F] [--log F] [--rotation R] --label L
      N snapshots (or backups) one after the other through nova's
      compute.api.API(); for each: wall time from the API call to task_state
      None, every task-state transition (polled every 50 ms from nova's
      database), the Glance image (status, size, disk format), the peak
      space under snapshots_directory and in libvirt's managed-save file
      (sampled every 50 ms), guest lifecycle events in the window (paused /
      saved / undefined intervals), and the services' own timing lines.
      Prints one JSON document.
  delete-images --ids ...
"""

import argparse
import json
import os
import re
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'dev'))

import nova_peer  # noqa: E402  (deploy/dev/nova_peer.py)

GLANCE = os.environ.get('BENCH_GLANCE', 'http://127.0.0.1:9292')
SAVE_DIR = '/var/lib/libvirt/qemu/save'


def _ctx_args(**kw):
    ns = argparse.Namespace(user='peer-user', project='peer-project',
                            auth_token='peer-token', request_id=None)
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def cmd_prepare_service(args):
    from nova import exception
    from nova import objects

    ctx = nova_peer._context(_ctx_args())
    try:
        svc = objects.Service.get_by_host_and_binary(ctx, args.host, 'nova-compute')
    except exception.NotFound:
        svc = None
    if svc is None:
        svc = objects.Service(ctx, host=args.host, binary='nova-compute',
                              topic='compute', report_count=0, disabled=False)
        svc.create()
    path = os.path.join(args.state_path, 'compute_id')
    if not os.path.exists(path):
        import uuid
        os.makedirs(args.state_path, exist_ok=True)
        with open(path, 'w') as f:
            f.write(str(uuid.uuid4()))
    return {'service_id': svc.id, 'version': svc.version,
            'node_uuid': open(path).read().strip()}


def cmd_create_instance(args):
    """nova_peer's create-instance (after a purge of any old row), plus what
    nova-api stores for an image without kernel/ramdisk: kernel_id and
    ramdisk_id '' (nova_peer leaves them None; nova's libvirt driver then
    sends kernel_id=None in the image PATCH and glanceclient refuses it)."""
    ns = _ctx_args(uuid=args.uuid, host=args.host, name=args.name,
                   image_ref=args.image_ref,
                   image_prop=['hw_qemu_guest_agent=yes'], stopped=False)
    nova_peer.cmd_purge_instance(ns)
    nova_peer.cmd_create_instance(ns)
    ctx = nova_peer._context(ns)
    inst = nova_peer._get_instance(ctx, args.uuid)
    inst.kernel_id = ''
    inst.ramdisk_id = ''
    inst.save()
    return {'uuid': args.uuid, 'host': args.host}


def cmd_purge_instance(args):
    return nova_peer.cmd_purge_instance(_ctx_args(uuid=args.uuid))


def cmd_purge_service(args):
    """Removes the benchmark's Service row and its ComputeNode rows (what
    `openstack compute service delete` does), and the local node identity
    file, so the next run starts from scratch."""
    from nova import exception
    from nova import objects

    ctx = nova_peer._context(_ctx_args())
    out = {'host': args.host, 'compute_nodes': 0, 'service': False}
    try:
        nodes = objects.ComputeNodeList.get_all_by_host(ctx, args.host)
    except exception.ComputeHostNotFound:
        nodes = []
    for cn in nodes:
        cn.destroy()
        out['compute_nodes'] += 1
    try:
        objects.Service.get_by_host_and_binary(ctx, args.host, 'nova-compute').destroy()
        out['service'] = True
    except exception.NotFound:
        pass
    if args.state_path:
        try:
            os.unlink(os.path.join(args.state_path, 'compute_id'))
        except FileNotFoundError:
            pass
    return out


def _allocated_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class Sampler(threading.Thread):
    """Peak allocated bytes under snapshots_directory and of the domain's
    managed-save file, every `interval` seconds."""

    def __init__(self, snapdir, save_file, interval=0.05):
        super().__init__(daemon=True)
        self.snapdir, self.save_file, self.interval = snapdir, save_file, interval
        self.peak_snap = 0
        self.peak_save = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            self.peak_snap = max(self.peak_snap, _allocated_bytes(self.snapdir))
            try:
                self.peak_save = max(self.peak_save, os.stat(self.save_file).st_blocks * 512)
            except OSError:
                pass
            time.sleep(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()


def _glance_image(image_id):
    try:
        with urllib.request.urlopen(f'{GLANCE}/v2/images/{image_id}') as r:
            return json.load(r)
    except Exception as exc:  # 404 after a failure deleted it
        return {'status': f'unavailable ({exc})'}


def _read_jsonl(path, since_offset=0):
    out = []
    if not path or not os.path.exists(path):
        return out, since_offset
    with open(path) as f:
        f.seek(since_offset)
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out, f.tell()


def _file_size(path):
    try:
        return os.path.getsize(path)
    except (OSError, TypeError):
        return 0


# libvirt lifecycle event ids (virDomainEventType)
RUNNING_EVENTS = {'STARTED', 'RESUMED'}
DOWN_EVENTS = {'SUSPENDED', 'STOPPED', 'SHUTDOWN', 'CRASHED', 'PMSUSPENDED'}


def _guest_windows(events, uuid, t0, t1):
    """Intervals within [t0, t1 + 5 s] when the guest was not running, and
    when its domain was not defined (transient), from lifecycle events."""
    evs = [e for e in events if e.get('uuid') == uuid and t0 - 0.5 <= e['t'] <= t1 + 5]
    down, transient = [], []
    down_since = undef_since = None
    for e in evs:
        kind = e['event']
        if kind in DOWN_EVENTS and down_since is None:
            down_since = e['t']
        elif kind in RUNNING_EVENTS and down_since is not None:
            # STARTED(restored) then RESUMED can both come; the last one ends it
            if e.get('detail') == 'STARTED_PAUSED':
                continue
            down.append(e['t'] - down_since)
            down_since = None
        if kind == 'UNDEFINED' and undef_since is None:
            undef_since = e['t']
        elif kind == 'DEFINED' and undef_since is not None:
            transient.append(e['t'] - undef_since)
            undef_since = None
    # Outage as the guest sees it: from the first event that stops its vCPUs
    # (SUSPENDED / STOPPED) to the last event that has them running again
    # (a restore from managed save emits STARTED_RESTORED and may also emit
    # RESUMED); one snapshot has at most one outage.
    first_down = next((e['t'] for e in evs if e['event'] in DOWN_EVENTS), None)
    last_up = None
    if first_down is not None:
        ups = [e['t'] for e in evs if e['event'] in RUNNING_EVENTS and e['t'] >= first_down]
        last_up = ups[-1] if ups else None
    span = (last_up - first_down) if (first_down is not None and last_up is not None) else 0.0
    return {'downtime_span_s': span,
            'events': [{k: e[k] for k in ('t', 'event', 'detail')} for e in evs],
            'downtime_s': span, 'downtime_intervals_s': down,
            'still_down': down_since is not None,
            'transient_s': sum(transient), 'transient_intervals_s': transient,
            'still_transient': undef_since is not None}


def _probe_summary(probes, t0, t1):
    """Durations of the Python service's probed steps within [t0, t1]."""
    out = {}
    begin = {}
    for p in probes:
        if not (t0 - 0.5 <= p['t'] <= t1 + 0.5):
            continue
        if p['phase'] == 'begin':
            begin[p['probe']] = p['t']
        else:
            out.setdefault(p['probe'], []).append(round(p['seconds'], 3))
    if 'freeze' in begin and 'thaw' in out:
        # the quiesce window: freeze call start -> thaw call end
        thaw_end = [p['t'] for p in probes if p['probe'] == 'thaw' and p['phase'] == 'end'
                    and t0 <= p['t'] <= t1 + 0.5]
        if thaw_end:
            out['frozen_window_ms'] = round((thaw_end[-1] - begin['freeze']) * 1000)
    return out


RS_EXTRACTED = re.compile(
    r'Snapshot extracted \((?P<strategy>\w+), (?P<fmt>\w+), (?P<bytes>\d+) bytes\) in '
    r'(?P<secs>[\d.]+)s(?:, guest frozen (?P<frozen>\d+) ms)?')
RS_TOOK = re.compile(r'Took (?P<secs>[\d.]+) seconds to snapshot the instance')


def _log_summary(text):
    out = {}
    m = RS_EXTRACTED.search(text)
    if m:
        out['strategy'] = m.group('strategy')
        out['extract_s'] = float(m.group('secs'))
        out['extract_bytes'] = int(m.group('bytes'))
        if m.group('frozen') is not None:
            out['frozen_ms'] = int(m.group('frozen'))
    m = RS_TOOK.search(text)
    if m:
        out['took_s'] = float(m.group('secs'))
    return out


def _wait_task_none(ctx, uuid, timeout):
    from nova import objects

    transitions = []
    last = object()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            inst = objects.Instance.get_by_uuid(ctx, uuid, expected_attrs=[])
            ts = inst.task_state
        except Exception as exc:  # sqlite busy: retry
            ts = last if last is not object() else None
            time.sleep(0.05)
            continue
        now = time.time()
        if ts != last:
            transitions.append({'t': now, 'task_state': ts})
            last = ts
        if ts is None and len(transitions) > 0:
            return transitions, True
        time.sleep(0.05)
    return transitions, False


def cmd_run(args):
    from nova.compute import api as compute_api
    from nova import objects

    results = []
    retried = []
    save_file = os.path.join(SAVE_DIR, f'{args.domain}.save') if args.domain else None
    i = -1
    attempts = 0
    while i + 1 < args.count:
        i += 1
        attempts += 1
        name = f'{args.label}-{args.first + i}' + (f'-a{attempts}' if attempts > 1 else '')
        ctx_args = _ctx_args(uuid=args.uuid, name=name)
        ctx = nova_peer._context(ctx_args, admin=False)
        admin_ctx = nova_peer._context(_ctx_args())
        ev_off = _file_size(args.events)
        pr_off = _file_size(args.probes)
        log_off = _file_size(args.log)
        svc_off = _file_size(args.service_log)
        inst = nova_peer._get_instance(ctx, args.uuid)
        sampler = Sampler(args.snapdir, save_file)
        sampler.start()
        t0 = time.time()
        for api_try in range(5):
            try:
                if args.kind == 'snapshot':
                    image = compute_api.API().snapshot(ctx, inst, name)
                else:
                    image = compute_api.API().backup(ctx, inst, name, args.backup_type,
                                                     args.rotation, extra_properties={})
                break
            except Exception as exc:
                # nova-api's own sqlite write lost to a concurrent writer of
                # the shared test database: same treatment as below
                if 'database is locked' not in str(exc) or api_try == 4:
                    raise
                retried.append({'n': args.first + i, 'image_id': None, 'total_s': None,
                                'reason': 'sqlite database is locked (nova-api side)'})
                time.sleep(1)
                inst = nova_peer._get_instance(ctx, args.uuid)
                t0 = time.time()
        t_api = time.time()
        transitions, done = _wait_task_none(admin_ctx, args.uuid, args.timeout)
        t1 = time.time()
        time.sleep(0.3)  # let the sampler and the event monitor catch up
        sampler.stop()
        img = _glance_image(image['id'])
        events, _ = _read_jsonl(args.events, ev_off)
        probes, _ = _read_jsonl(args.probes, pr_off)
        log_text = ''
        if args.log and os.path.exists(args.log):
            with open(args.log, errors='replace') as f:
                f.seek(log_off)
                log_text = f.read()
        inst_now = nova_peer._instance_report(admin_ctx, args.uuid)
        rec = {
            'label': args.label, 'kind': args.kind, 'n': args.first + i, 'name': name,
            'image_id': image['id'], 'request_id': ctx.request_id,
            'ok': bool(done and img.get('status') == 'active'),
            'total_s': round(t1 - t0, 3), 'api_s': round(t_api - t0, 3),
            'task_states': [{'s': round(tr['t'] - t0, 3), 'task_state': tr['task_state']}
                            for tr in transitions],
            'image': {k: img.get(k) for k in ('status', 'size', 'disk_format',
                                              'container_format', 'checksum')},
            'peak_snapshots_dir_bytes': sampler.peak_snap,
            'peak_managed_save_bytes': sampler.peak_save,
            'guest': _guest_windows(events, args.uuid, t0, t1),
            'faults': len(inst_now['faults']),
            'vm_state': inst_now['vm_state'], 'power_state': inst_now['power_state'],
        }
        if args.probes:
            rec['py_probes'] = _probe_summary(probes, t0, t1)
        if log_text:
            rec['rs_log'] = _log_summary(log_text)
            errs = [ln for ln in log_text.splitlines() if ' ERROR ' in ln][:5]
            if errs:
                rec['log_errors'] = errs
        results.append(rec)
        print(f"[bench] {args.label} #{args.first + i}: {rec['total_s']:.2f}s "
              f"image {rec['image']['status']} {rec['image']['size']} bytes",
              file=sys.stderr)
        if not rec['ok']:
            fault = (inst_now['faults'][:1] or [{}])[0]
            # The shared stack's nova-conductor runs on sqlite, and other
            # engineers' tests write to it concurrently: a task-state save can
            # fail with "database is locked" (SQLITE_BUSY). That is the test
            # stack, not the compute service: record it and take the snapshot
            # again (at most 3 times per position).
            svc_text = ''
            if args.service_log and os.path.exists(args.service_log):
                with open(args.service_log, errors='replace') as f:
                    f.seek(svc_off)
                    svc_text = f.read()
            if 'database is locked' in str(fault.get('details', '')) + \
                    str(fault.get('message', '')) + svc_text and attempts < 3:
                print(f"[bench] {args.label} #{args.first + i}: conductor sqlite 'database is locked'; "
                      f"retrying", file=sys.stderr)
                retried.append({'n': args.first + i, 'image_id': image['id'],
                                'total_s': rec['total_s'],
                                'reason': 'sqlite database is locked (conductor)'})
                i -= 1
                time.sleep(args.pause)
                continue
            print(f"[bench] {args.label} #{args.first + i} FAILED: task states {transitions}, "
                  f"image {img.get('status')}, fault {str(fault)[:2000]}",
                  file=sys.stderr)
            break
        attempts = 0
        time.sleep(args.pause)
    # the backup rotation result: which backups of this instance remain
    extra = {}
    if args.kind == 'backup':
        q = (f'{GLANCE}/v2/images?image_type=backup&backup_type={args.backup_type}'
             f'&instance_uuid={args.uuid}')
        with urllib.request.urlopen(q) as r:
            extra['backups_left'] = [i['id'] for i in json.load(r)['images']]
    return {'label': args.label, 'runs': [r for r in results if r['ok']],
            'failed': [r for r in results if not r['ok']], 'retried': retried, **extra}


def cmd_delete_images(args):
    deleted = []
    ids = list(args.ids)
    # also whatever else was reserved for the bench instances (an API call
    # that failed half-way can leave a queued image behind)
    for uuid in args.instance_uuids:
        try:
            with urllib.request.urlopen(f'{GLANCE}/v2/images?instance_uuid={uuid}&limit=200') as r:
                ids += [i['id'] for i in json.load(r)['images']]
        except Exception:
            pass
    for image_id in sorted(set(ids)):
        req = urllib.request.Request(f'{GLANCE}/v2/images/{image_id}', method='DELETE')
        try:
            urllib.request.urlopen(req)
            deleted.append(image_id)
        except Exception:
            pass
    return {'deleted': deleted}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--config-file', required=True)
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('prepare-service')
    c.add_argument('--host', required=True)
    c.add_argument('--state-path', required=True)
    c.set_defaults(func=cmd_prepare_service)
    c = sub.add_parser('create-instance')
    c.add_argument('--uuid', required=True)
    c.add_argument('--host', required=True)
    c.add_argument('--name', required=True)
    c.add_argument('--image-ref', default='00000000-0000-4000-8000-00000000be7c')
    c.set_defaults(func=cmd_create_instance)
    c = sub.add_parser('purge-instance')
    c.add_argument('--uuid', required=True)
    c.set_defaults(func=cmd_purge_instance)
    c = sub.add_parser('purge-service')
    c.add_argument('--host', required=True)
    c.add_argument('--state-path', default=None)
    c.set_defaults(func=cmd_purge_service)
    c = sub.add_parser('run')
    c.add_argument('--uuid', required=True)
    c.add_argument('--domain', default=None, help='libvirt domain name (managed-save file)')
    c.add_argument('--kind', choices=('snapshot', 'backup'), default='snapshot')
    c.add_argument('--count', type=int, default=3)
    c.add_argument('--first', type=int, default=1, help='number of the first run (names)')
    c.add_argument('--label', required=True)
    c.add_argument('--snapdir', required=True)
    c.add_argument('--events', required=True)
    c.add_argument('--probes', default=None)
    c.add_argument('--log', default=None)
    c.add_argument('--service-log', default=None,
                   help="the compute service's log (to recognise the test stack's sqlite errors)")
    c.add_argument('--backup-type', default='daily')
    c.add_argument('--rotation', type=int, default=1)
    c.add_argument('--timeout', type=float, default=900)
    c.add_argument('--pause', type=float, default=2.0)
    c.set_defaults(func=cmd_run)
    c = sub.add_parser('delete-images')
    c.add_argument('--ids', nargs='*', default=[])
    c.add_argument('--instance-uuids', nargs='*', default=[])
    c.set_defaults(func=cmd_delete_images)
    args = p.parse_args()
    nova_peer._setup(args.config_file)
    for attempt in range(8):
        try:
            out = args.func(args)
            break
        except Exception as exc:
            # The shared test stack's sqlite database: a write can lose to a
            # concurrent writer ("database is locked"). Every command but
            # `run` is idempotent; `run` retries inside.
            if 'database is locked' not in str(exc) or args.command == 'run' or attempt == 7:
                raise
            print(f'[bench] {args.command}: database is locked, retrying', file=sys.stderr)
            time.sleep(1 + attempt)
    print(json.dumps(out, default=str))


if __name__ == '__main__':
    main()
