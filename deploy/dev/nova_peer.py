"""nova's own code, driven from the command line, as the peer of our compute.

Tests and the demo use this to do what nova-api and an operator would: create
an instance row for a libvirt guest (through nova's objects, in the cell
database the real nova-conductor serves), start a snapshot or backup with
nova's API code (`nova.compute.api.API`), call quiesce/unquiesce through nova's
compute rpcapi, and read back what our service caused: task state, faults,
instance actions and events, the Service row and whether the servicegroup API
considers it up.

Run it with the nova venv's python and the stack's nova.conf:

    .stack/venvs/nova/bin/python deploy/dev/nova_peer.py \
        --config-file .stack/nova/nova.conf show-instance --uuid U

Every command prints one JSON document on stdout. Errors from nova are printed
as {"error": {"class": ..., "message": ...}} with exit status 3, so a caller
can assert on nova's exception class.
"""

import argparse
import datetime
import json
import sys
import uuid as uuidlib


def _setup(config_file):
    # Imported here so `--help` works without nova's import cost.
    from nova import config
    from nova import objects
    from nova import rpc

    objects.register_all()
    config.parse_args(['nova-peer', '--config-file', config_file])
    rpc.init(config.CONF)


def _parse_context_json(text):
    """A RequestContext from a to_dict() JSON document (what a Rust test
    sent), so nova builds payloads for exactly that request."""
    from nova import context

    return context.RequestContext.from_dict(json.loads(text))


def _context(args, admin=True):
    from nova import context

    return context.RequestContext(
        user_id=args.user, project_id=args.project, is_admin=admin,
        roles=['admin', 'member', 'reader'] if admin else ['member', 'reader'],
        auth_token=args.auth_token, user_name='peer', project_name='peer',
        request_id=getattr(args, 'request_id', None) or None)


def _cell1(ctx):
    from nova import objects

    for cell in objects.CellMappingList.get_all(ctx):
        if cell.name == 'cell1':
            return cell
    raise SystemExit('no cell1 mapping: run deploy/dev/stack up')


def _flavor():
    from nova import objects

    return objects.Flavor(
        id=1, name='m1.tiny', flavorid='1', memory_mb=256, vcpus=1, root_gb=1,
        ephemeral_gb=0, swap=0, rxtx_factor=1.0, vcpu_weight=0, disabled=False,
        is_public=True, extra_specs={}, projects=[], description=None)


def cmd_create_instance(args):
    from nova.compute import power_state, vm_states
    from nova import objects

    ctx = _context(args)
    sysmeta = {
        'image_base_image_ref': args.image_ref,
        'image_disk_format': 'qcow2',
        'image_container_format': 'bare',
        'image_min_disk': '1',
        'image_min_ram': '0',
        'owner_user_name': 'peer',
        'owner_project_name': 'peer',
    }
    for prop in args.image_prop:
        key, _, value = prop.partition('=')
        sysmeta['image_' + key] = value
    flavor = _flavor()
    now = datetime.datetime.now(datetime.timezone.utc)
    inst = objects.Instance(
        context=ctx, uuid=args.uuid, user_id=args.user, project_id=args.project,
        image_ref=args.image_ref, hostname=args.name, display_name=args.name,
        host=args.host, node=args.host, compute_id=None, launched_on=args.host,
        vm_state=vm_states.STOPPED if args.stopped else vm_states.ACTIVE,
        power_state=power_state.SHUTDOWN if args.stopped else power_state.RUNNING,
        task_state=None, memory_mb=flavor.memory_mb, vcpus=flavor.vcpus,
        root_gb=flavor.root_gb, ephemeral_gb=0, instance_type_id=flavor.id,
        flavor=flavor, old_flavor=None, new_flavor=None, launched_at=now,
        availability_zone='nova', os_type='linux', architecture='x86_64',
        root_device_name='/dev/vda', system_metadata=sysmeta, metadata={},
        locked=False, config_drive='')
    inst.create()
    objects.InstanceMapping(
        ctx, instance_uuid=args.uuid, cell_mapping=_cell1(ctx),
        project_id=args.project, user_id=args.user, queued_for_delete=False,
    ).create()
    return _instance_report(ctx, args.uuid)


def _instance_report(ctx, instance_uuid):
    from nova import objects

    inst = objects.Instance.get_by_uuid(
        ctx.elevated(read_deleted='yes'), instance_uuid,
        expected_attrs=['system_metadata'])
    faults = objects.InstanceFaultList.get_by_instance_uuids(ctx, [instance_uuid])
    actions = []
    for action in objects.InstanceActionList.get_by_instance_uuid(ctx, instance_uuid):
        events = objects.InstanceActionEventList.get_by_action(ctx, action.id)
        actions.append({
            'action': action.action, 'request_id': action.request_id,
            'message': action.message,
            'events': [{'event': e.event, 'result': e.result, 'host': e.host,
                        'traceback': e.traceback, 'finished': e.finish_time is not None}
                       for e in events],
        })
    return {
        'uuid': inst.uuid, 'host': inst.host, 'deleted': bool(inst.deleted),
        'vm_state': inst.vm_state, 'task_state': inst.task_state,
        'power_state': inst.power_state, 'display_name': inst.display_name,
        'progress': inst.progress, 'locked': inst.locked,
        'system_metadata': dict(inst.system_metadata),
        'faults': [{'code': f.code, 'message': f.message, 'details': f.details,
                    'host': f.host} for f in faults],
        'actions': actions,
    }


def cmd_show_instance(args):
    return _instance_report(_context(args), args.uuid)


def _get_instance(ctx, instance_uuid):
    from nova import objects

    return objects.Instance.get_by_uuid(
        ctx, instance_uuid, expected_attrs=['system_metadata', 'flavor'])


def cmd_snapshot(args):
    from nova.compute import api as compute_api

    ctx = _context(args, admin=False)
    inst = _get_instance(ctx, args.uuid)
    image = compute_api.API().snapshot(ctx, inst, args.name)
    return {'image_id': image['id'], 'request_id': ctx.request_id}


def cmd_backup(args):
    from nova.compute import api as compute_api

    ctx = _context(args, admin=False)
    inst = _get_instance(ctx, args.uuid)
    image = compute_api.API().backup(ctx, inst, args.name, args.backup_type,
                                     args.rotation, extra_properties={})
    return {'image_id': image['id'], 'request_id': ctx.request_id}


def cmd_quiesce(args):
    from nova.compute import rpcapi

    ctx = _context(args)
    inst = _get_instance(ctx, args.uuid)
    result = rpcapi.ComputeAPI().quiesce_instance(ctx, inst)
    return {'result': result, 'request_id': ctx.request_id}


def cmd_unquiesce(args):
    from nova.compute import rpcapi

    ctx = _context(args)
    inst = _get_instance(ctx, args.uuid)
    mapping = json.loads(args.mapping) if args.mapping else None
    rpcapi.ComputeAPI().unquiesce_instance(ctx, inst, mapping=mapping)
    return {'request_id': ctx.request_id}


def cmd_set_task_state(args):
    ctx = _context(args)
    inst = _get_instance(ctx, args.uuid)
    inst.task_state = None if args.task_state == 'none' else args.task_state
    inst.save()
    return _instance_report(ctx, args.uuid)


def cmd_delete_instance(args):
    ctx = _context(args)
    inst = _get_instance(ctx, args.uuid)
    inst.destroy()
    return _instance_report(ctx, args.uuid)


def cmd_purge_instance(args):
    """Removes an instance row (deleted or not) and its mapping for good, so a
    libvirt domain's uuid can be given a fresh row (re-running the demo)."""
    from nova.db.main import api as db
    from nova import exception
    from nova import objects

    ctx = _context(args)
    try:
        db.instance_destroy(ctx.elevated(read_deleted='yes'), args.uuid,
                            hard_delete=True)
    except exception.InstanceNotFound:
        pass
    try:
        objects.InstanceMapping.get_by_instance_uuid(ctx, args.uuid).destroy()
    except exception.InstanceMappingNotFound:
        pass
    return {'purged': args.uuid}


def cmd_rpc(args):
    """Any nova.compute.rpcapi.ComputeAPI method, with instance=<the row> and
    the given keyword arguments: what nova-api sends for operations this
    compute does not implement (reboot_instance, get_console_output, ...)."""
    import time

    from nova.compute import rpcapi

    ctx = _context(args)
    inst = _get_instance(ctx, args.uuid)
    kwargs = json.loads(args.kwargs) if args.kwargs else {}
    started = time.monotonic()
    result = getattr(rpcapi.ComputeAPI(), args.method)(ctx, instance=inst,
                                                       **kwargs)
    return {'result': result, 'seconds': time.monotonic() - started,
            'request_id': ctx.request_id}


def cmd_start_action(args):
    """nova-api's _record_action_start: the action compute events attach to."""
    from nova import objects

    ctx = _context(args)
    action = objects.InstanceAction.action_start(ctx, args.uuid, args.action,
                                                 want_result=True)
    return {'action_id': action.id, 'request_id': ctx.request_id,
            'instance': _instance_report(ctx, args.uuid)}


def cmd_set_service_version(args):
    """Rewrites a Service row's version behind nova's object layer (which
    refuses versions below the deployment minimum), to test upgrades."""
    from nova.db.main import api as db
    from nova import objects

    ctx = _context(args)
    svc = objects.Service.get_by_host_and_binary(ctx, args.host, 'nova-compute')
    db.service_update(ctx, svc.id, {'version': args.version})
    return cmd_service(args)


def cmd_fault_expected(args):
    """What nova's add_instance_fault_from_exc stores for an exception with
    this message and code: the reference our faults are compared to."""
    from nova.compute import utils as compute_utils
    from nova import exception

    class PeerFault(exception.NovaException):
        msg_fmt = '%(text)s'

    exc = PeerFault(text=args.message, code=args.code)
    fault = compute_utils.exception_to_dict(exc)
    return {'code': fault['code'], 'message': fault['message'],
            'details_included': args.code == 500}


def cmd_snapshot_payloads(args):
    """nova's own snapshot notification payloads for an instance, built the
    way ComputeManager._snapshot_instance builds them, plus the instance
    primitive they were built from."""
    from nova.notifications.objects import instance as instance_notification
    from nova import notifications

    from nova import conf
    from nova import objects
    from nova import rpc

    # Payload population only runs with versioned notifications on.
    rpc.cleanup()
    conf.CONF.set_override('notification_format', 'both', 'notifications')
    rpc.init(conf.CONF)
    ctx = _parse_context_json(args.context_json)
    # Round-trip through the wire form: nova-compute builds its payloads from
    # the instance it received over RPC (datetimes without microseconds).
    primitive = _get_instance(ctx, args.uuid).obj_to_primitive()
    inst = objects.Instance.obj_from_primitive(primitive, context=ctx)
    versioned = instance_notification.InstanceActionSnapshotPayload(
        context=ctx, instance=inst, fault=None,
        snapshot_image_id=args.image_id)
    versioned.obj_reset_changes(recursive=True)
    legacy = notifications.info_from_instance(
        ctx, inst, None, populate_image_ref_url=True)
    return {'instance': primitive,
            'versioned': versioned.obj_to_primitive(),
            'legacy': json.loads(json.dumps(legacy, default=str))}


def cmd_api_delete(args):
    """What nova-api's API._delete does to the instance row before it casts
    terminate_instance: task_state DELETING (saved with no expected state,
    so it preempts any running task) and progress 0. With --destroy, also
    what terminate_instance ends with on the compute: instance.destroy()
    (the row is soft-deleted; later saves raise InstanceNotFound)."""
    from nova.compute import task_states

    ctx = _context(args)
    inst = _get_instance(ctx, args.uuid)
    inst.update({'task_state': task_states.DELETING, 'progress': 0})
    inst.save()
    if args.destroy:
        inst.destroy()
    return _instance_report(ctx, args.uuid)


def cmd_nova_fault(args):
    """What add_instance_fault_from_exc stores for nova.exception.<class>
    raised with these kwargs (code, message): nova's own msg_fmt and code."""
    from nova.compute import utils as compute_utils
    from nova import exception

    exc = getattr(exception, args.exc_class)(**json.loads(args.kwargs))
    fault = compute_utils.exception_to_dict(exc)
    return {'code': fault['code'], 'message': fault['message']}


def cmd_drain_notifications(args):
    """Every message waiting in a notification queue (`<topic>.<priority>`,
    declared by the publisher), decoded from oslo's envelope, in order; with
    --delete the queue is deleted afterwards. A queue that does not exist
    yet reads as empty."""
    import kombu

    from nova import conf

    url = conf.CONF.transport_url.replace('rabbit://', 'amqp://', 1)
    if url.endswith(':5672/'):
        url += '/'
    messages = []
    missing = False
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        try:
            while True:
                msg = channel.basic_get(queue=args.queue, no_ack=True)
                if msg is None:
                    break
                body = json.loads(msg.body)
                if 'oslo.message' in body:
                    body = json.loads(body['oslo.message'])
                messages.append(body)
        except Exception as exc:  # 404: the publisher never declared it
            if '404' not in str(exc) and 'NOT_FOUND' not in str(exc):
                raise
            missing = True
            channel = conn.channel()
        if args.delete and not missing:
            channel.queue_delete(queue=args.queue)
    return {'queue': args.queue, 'missing': missing, 'messages': messages}


def cmd_service(args):
    from nova import exception
    from nova import objects
    from nova import servicegroup

    if getattr(args, 'service_down_time', None) is not None:
        from nova import conf
        # servicegroup.API raises service_down_time to 2.5 x report_interval
        # when it is not above it, so lower the interval with it.
        conf.CONF.set_override('report_interval', max(1, args.service_down_time // 3))
        conf.CONF.set_override('service_down_time', args.service_down_time)
    ctx = _context(args)
    try:
        svc = objects.Service.get_by_host_and_binary(ctx, args.host, 'nova-compute')
    except exception.NotFound:
        svc = None
    if svc is None:
        return {'service': None}
    return {'service': {
        'id': svc.id, 'host': svc.host, 'binary': svc.binary, 'topic': svc.topic,
        'version': svc.version, 'report_count': svc.report_count,
        'disabled': svc.disabled, 'forced_down': svc.forced_down,
        'up': servicegroup.API().service_is_up(svc),
        'last_seen_up': svc.last_seen_up.isoformat() if svc.last_seen_up else None,
    }}


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config-file', required=True)
    p.add_argument('--user', default='peer-user')
    p.add_argument('--project', default='peer-project')
    p.add_argument('--auth-token', default='peer-token')
    p.add_argument('--request-id', default=None,
                   help='req-<uuid> to use (default: a new one)')
    sub = p.add_subparsers(dest='command', required=True)

    c = sub.add_parser('create-instance')
    c.add_argument('--uuid', default=None)
    c.add_argument('--host', required=True)
    c.add_argument('--name', default='vm1')
    c.add_argument('--image-ref', default=str(uuidlib.uuid4()))
    c.add_argument('--image-prop', action='append', default=[],
                   help='image property K=V stored as image_K in system_metadata')
    c.add_argument('--stopped', action='store_true')
    c.set_defaults(func=cmd_create_instance)

    for name, func in (('show-instance', cmd_show_instance),
                       ('quiesce', cmd_quiesce),
                       ('delete-instance', cmd_delete_instance)):
        c = sub.add_parser(name)
        c.add_argument('--uuid', required=True)
        c.set_defaults(func=func)

    c = sub.add_parser('purge-instance')
    c.add_argument('--uuid', required=True)
    c.set_defaults(func=cmd_purge_instance)

    c = sub.add_parser('rpc')
    c.add_argument('--uuid', required=True)
    c.add_argument('--method', required=True)
    c.add_argument('--kwargs', default=None, help='JSON object of extra arguments')
    c.set_defaults(func=cmd_rpc)

    c = sub.add_parser('snapshot')
    c.add_argument('--uuid', required=True)
    c.add_argument('--name', required=True)
    c.set_defaults(func=cmd_snapshot)

    c = sub.add_parser('backup')
    c.add_argument('--uuid', required=True)
    c.add_argument('--name', required=True)
    c.add_argument('--backup-type', default='daily')
    c.add_argument('--rotation', type=int, required=True)
    c.set_defaults(func=cmd_backup)

    c = sub.add_parser('unquiesce')
    c.add_argument('--uuid', required=True)
    c.add_argument('--mapping', default=None, help='JSON list of BDM mappings')
    c.set_defaults(func=cmd_unquiesce)

    c = sub.add_parser('set-task-state')
    c.add_argument('--uuid', required=True)
    c.add_argument('--task-state', required=True, help="a task state, or 'none'")
    c.set_defaults(func=cmd_set_task_state)

    c = sub.add_parser('service')
    c.add_argument('--host', required=True)
    c.add_argument('--service-down-time', type=int, default=None,
                   help='judge is_up with this service_down_time (seconds)')
    c.set_defaults(func=cmd_service)

    c = sub.add_parser('set-service-version')
    c.add_argument('--host', required=True)
    c.add_argument('--version', type=int, required=True)
    c.set_defaults(func=cmd_set_service_version)

    c = sub.add_parser('start-action')
    c.add_argument('--uuid', required=True)
    c.add_argument('--action', default='createImage')
    c.set_defaults(func=cmd_start_action)

    c = sub.add_parser('fault-expected')
    c.add_argument('--message', required=True)
    c.add_argument('--code', type=int, required=True)
    c.set_defaults(func=cmd_fault_expected)

    c = sub.add_parser('snapshot-payloads')
    c.add_argument('--uuid', required=True)
    c.add_argument('--image-id', required=True)
    c.add_argument('--context-json', required=True,
                   help='the RequestContext.to_dict() to build them for')
    c.set_defaults(func=cmd_snapshot_payloads)
    c = sub.add_parser('api-delete')
    c.add_argument('--uuid', required=True)
    c.add_argument('--destroy', action='store_true')
    c.set_defaults(func=cmd_api_delete)

    c = sub.add_parser('nova-fault')
    c.add_argument('--exc-class', required=True)
    c.add_argument('--kwargs', required=True, help='JSON object')
    c.set_defaults(func=cmd_nova_fault)

    c = sub.add_parser('drain-notifications')
    c.add_argument('--queue', required=True)
    c.add_argument('--delete', action='store_true')
    c.set_defaults(func=cmd_drain_notifications)
    return p


def main():
    args = _parser().parse_args()
    if getattr(args, 'uuid', '') is None:
        args.uuid = str(uuidlib.uuid4())
    if args.request_id is None:
        args.request_id = 'req-' + str(uuidlib.uuid4())
    _setup(args.config_file)
    try:
        out = args.func(args)
    except Exception as exc:  # report nova's exception class to the caller
        print(json.dumps({'error': {'class': type(exc).__name__,
                                    'module': type(exc).__module__,
                                    'message': str(exc)}}))
        return 3
    print(json.dumps(out, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
