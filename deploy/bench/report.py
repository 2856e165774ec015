"""Side-by-side table of a snapshot-vs-nova run.

    python3 report.py RESULTS.json

RESULTS.json: {"meta": {...}, "sets": {"<scenario>/<side>": {"runs": [...], ...}}}
as written by deploy/bench/snapshot-vs-nova (one record per snapshot, made by
bench_driver.py run). Prints one table per scenario with the median (min-max)
of each metric for nova (Python) and ours (Rust) and the ratio Python/Rust.
"""

import json
import statistics
import sys

MIB = 1024 * 1024


def _entries(run, state):
    return [tr['s'] for tr in run['task_states'] if tr['task_state'] == state]


def _copy_phase(run):
    """From the first image_pending_upload to the last image_uploading: the
    driver's snapshot work before the upload starts (both services go
    pending_upload -> uploading -> pending_upload -> [copy] -> uploading; the
    first hop lasts ~0.1 s and the 50 ms poll may not see all of it)."""
    pend, upl = _entries(run, 'image_pending_upload'), _entries(run, 'image_uploading')
    return (upl[-1] - pend[0]) if pend and upl else None


def _upload_phase(run):
    """From the last image_uploading to task_state None: PATCH + upload + the
    final save."""
    upl, done = _entries(run, 'image_uploading'), _entries(run, None)
    return (done[-1] - upl[-1]) if upl and done else None


def _frozen_ms(run):
    if 'rs_log' in run:
        return run['rs_log'].get('frozen_ms')
    return run.get('py_probes', {}).get('frozen_window_ms')


def _downtime(run):
    g = run['guest']
    return g['downtime_s'] if g['events'] else 0.0


METRICS = [
    # (label, function(run) -> value, unit formatting)
    ('total: API call -> task_state None', lambda r: r['total_s'], 's'),
    ('  snapshot phase (pending_upload -> uploading)',
     _copy_phase, 's'),
    ('  upload phase (uploading -> None)',
     _upload_phase, 's'),
    ('image size in Glance', lambda r: (r['image']['size'] or 0) / MIB, 'MiB'),
    ('peak temp space, snapshots_directory', lambda r: r['peak_snapshots_dir_bytes'] / MIB, 'MiB'),
    ('peak managed-save file (guest RAM)', lambda r: r['peak_managed_save_bytes'] / MIB, 'MiB'),
    ('guest filesystems frozen (quiesce)', _frozen_ms, 'ms'),
    ('guest not running (paused/saved)', _downtime, 's'),
    ('domain transient (undefined)', lambda r: r['guest']['transient_s'], 's'),
]


def _fmt(vals, unit):
    vals = [v for v in vals if v is not None]
    if not vals:
        return 'n/a', None
    med = statistics.median(vals)
    prec = 0 if unit in ('MiB', 'ms') else 2
    if len(vals) == 1 or min(vals) == max(vals):
        return f'{med:.{prec}f} {unit}', med
    return f'{med:.{prec}f} ({min(vals):.{prec}f}-{max(vals):.{prec}f}) {unit}', med


def _ratio(a, b):
    if a is None or b is None:
        return 'n/a'
    if b == 0:
        return 'n/a' if a == 0 else 'inf (ours: 0)'
    return f'{a / b:.2f}x'


def table(title, py, rs, py_name, rs_name):
    lines = []
    head = f'{"metric":<48} | {py_name:<28} | {rs_name:<28} | Python/Rust'
    lines.append(f'\n== {title}  (n = {len(py["runs"])} vs {len(rs["runs"])}; median (min-max))')
    lines.append(head)
    lines.append('-' * len(head))
    for label, fn, unit in METRICS:
        pv = [fn(r) for r in py['runs']]
        rv = [fn(r) for r in rs['runs']]
        ps, pm = _fmt(pv, unit)
        rs_, rm = _fmt(rv, unit)
        if ps == 'n/a' and rs_ == 'n/a':
            continue
        lines.append(f'{label:<48} | {ps:<28} | {rs_:<28} | {_ratio(pm, rm)}')
    notes = []
    for side, data in ((py_name, py), (rs_name, rs)):
        retried_ids = {r.get('image_id') for r in data.get('retried', [])}
        failed = [f for f in data.get('failed', []) if f.get('image_id') not in retried_ids]
        if failed:
            notes.append(f'{side}: {len(failed)} failed run(s) not repeated: '
                         + '; '.join(f'#{f["n"]} after {f["total_s"]}s' for f in failed))
        if data.get('retried'):
            notes.append(f'{side}: {len(data["retried"])} run(s) repeated after the '
                         f'test conductor\'s sqlite "database is locked"')
        if 'backups_left' in data:
            notes.append(f'{side}: backups left after rotation: {len(data["backups_left"])}')
    for n in notes:
        lines.append(f'  note: {n}')
    return '\n'.join(lines)


SCENARIOS = [
    ('live', 'live snapshot (default config): nova live block-copy vs ours (backup API)',
     'live/py', 'live/rs', 'nova 34 (Python)', 'ours (Rust, backup)'),
    ('mirror', 'live snapshot: nova vs ours with live_snapshot_strategy = mirror',
     'live/py', 'mirror/rs', 'nova 34 (Python)', 'ours (Rust, mirror)'),
    ('backup', 'createBackup (rotation 1, two backups)',
     'backup/py', 'backup/rs', 'nova 34 (Python)', 'ours (Rust)'),
    ('cold', 'cold snapshot ([workarounds] disable_libvirt_livesnapshot = True)',
     'cold/py', 'cold/rs', 'nova 34 (Python)', 'ours (Rust)'),
]


def main():
    data = json.load(open(sys.argv[1]))
    sets = data['sets']
    meta = data.get('meta', {})
    print(f'snapshot-vs-nova  {meta.get("started", "")}  '
          f'disk: {meta.get("disk", "")}  host: {meta.get("machine", "")}')
    for _key, title, pk, rk, pn, rn in SCENARIOS:
        if pk in sets and rk in sets and sets[pk]['runs'] and sets[rk]['runs']:
            print(table(title, sets[pk], sets[rk], pn, rn))


if __name__ == '__main__':
    main()
