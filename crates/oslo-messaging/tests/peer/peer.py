"""The real oslo.messaging as the peer of the Rust crate's interop tests.

    peer.py server  URL EXCHANGE TOPIC SERVER OPTIONS_JSON
        An RPCServer (threading executor) on Target(topic, server, exchange),
        version 1.3, endpoints: echo, fail, sleep, record_cast, get_casts.
        Prints READY once consuming; runs until stdin closes.
    peer.py client  URL EXCHANGE TOPIC SERVER OPTIONS_JSON SCRIPT_JSON
        Runs a list of {"op": "call"|"cast", "method", "args", "version",
        "namespace", "timeout", "call_monitor_timeout"} and prints one JSON
        line per step: {"ok": result} or {"error": {...}}.
    peer.py notify-listen URL EXCHANGE TOPIC OPTIONS_JSON COUNT TIMEOUT
        A notification listener on TOPIC; prints READY, then one JSON line per
        notification, and exits after COUNT notifications or TIMEOUT seconds.

OPTIONS_JSON are [oslo_messaging_rabbit] overrides.
"""
import json
import os
import sys
import tempfile
import threading
import time
import warnings

warnings.simplefilter("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oslo_concurrency import lockutils  # noqa: E402
from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402

import peer_exceptions  # noqa: E402


def transport(url, options, notification=False):
    # The global CONF: oslo.messaging registers some options (tracing) there.
    conf = cfg.CONF
    conf([], project='peer')
    # use_queue_manager takes an external lock.
    lockutils.set_defaults(tempfile.gettempdir())
    if notification:
        t = oslo_messaging.get_notification_transport(conf, url=url)
    else:
        t = oslo_messaging.get_rpc_transport(
            conf, url=url, allowed_remote_exmods=['peer_exceptions',
                                      'oslo_messaging.rpc.dispatcher'])
    for key, value in options.items():
        conf.set_override(key, value, group='oslo_messaging_rabbit')
    return t


class Endpoint:
    target = oslo_messaging.Target(version='1.3')

    def __init__(self):
        self.casts = []

    def echo(self, ctxt, **kwargs):
        return {'args': kwargs, 'request_id': ctxt.get('request_id')}

    def fail(self, ctxt, widget):
        raise peer_exceptions.WidgetNotFound(widget=widget)

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds

    def record_cast(self, ctxt, value):
        self.casts.append(value)

    def get_casts(self, ctxt):
        return self.casts


def serve(url, exchange, topic, server, options):
    t = transport(url, options)
    target = oslo_messaging.Target(topic=topic, server=server,
                                   exchange=exchange)
    srv = oslo_messaging.get_rpc_server(t, target, [Endpoint()],
                                        executor='threading')
    srv.start()
    print('READY', flush=True)
    sys.stdin.read()
    srv.stop()
    srv.wait()
    t.cleanup()


def describe(exc):
    return {
        'class': type(exc).__name__,
        'module': type(exc).__module__,
        'is_widget_not_found': isinstance(exc, peer_exceptions.WidgetNotFound),
        'is_no_such_method': isinstance(
            exc, oslo_messaging.rpc.dispatcher.NoSuchMethod),
        'is_unsupported_version': isinstance(
            exc, oslo_messaging.rpc.dispatcher.UnsupportedVersion),
        'is_timeout': isinstance(exc, oslo_messaging.MessagingTimeout),
        'is_remote_error': isinstance(exc, oslo_messaging.RemoteError),
        'kwargs': getattr(exc, 'kwargs', None),
        'message': str(exc).split('\n')[0],
    }


def client(url, exchange, topic, server, options, script):
    t = transport(url, options)
    for step in script:
        target = oslo_messaging.Target(topic=topic, server=server,
                                       exchange=exchange,
                                       version=step.get('version'),
                                       namespace=step.get('namespace'))
        c = oslo_messaging.get_rpc_client(
            t, target, timeout=step.get('timeout', 30),
            call_monitor_timeout=step.get('call_monitor_timeout'))
        ctxt = step.get('context', {'request_id': 'req-python-peer'})
        started = time.monotonic()
        try:
            if step['op'] == 'cast':
                c.cast(ctxt, step['method'], **step.get('args', {}))
                out = {'ok': None}
            else:
                out = {'ok': c.call(ctxt, step['method'],
                                    **step.get('args', {}))}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out = {'error': describe(exc)}
        out['seconds'] = time.monotonic() - started
        print(json.dumps(out), flush=True)
    # The reply queue outlives the process (x-expires); the test deletes it.
    print(json.dumps({'reply_q': getattr(t._driver, '_reply_q', None)}),
          flush=True)
    t.cleanup()


class NotificationEndpoint:
    def __init__(self, sink):
        self.sink = sink

    def _record(self, priority, ctxt, publisher_id, event_type, payload,
                metadata):
        self.sink({'priority': priority, 'ctxt': ctxt,
                   'publisher_id': publisher_id, 'event_type': event_type,
                   'payload': payload, 'metadata': metadata})

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record('info', ctxt, publisher_id, event_type, payload,
                     metadata)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record('error', ctxt, publisher_id, event_type, payload,
                     metadata)


def notify_listen(url, exchange, topic, options, count, timeout):
    t = transport(url, options, notification=True)
    seen = []
    done = threading.Event()

    def sink(n):
        print(json.dumps(n), flush=True)
        seen.append(n)
        if len(seen) >= count:
            done.set()

    listener = oslo_messaging.get_notification_listener(
        t, [oslo_messaging.Target(topic=topic, exchange=exchange)],
        [NotificationEndpoint(sink)], executor='threading')
    listener.start()
    print('READY', flush=True)
    done.wait(timeout)
    listener.stop()
    listener.wait()
    t.cleanup()


def probe(url, exchange, topic, options, rust_server):
    """A server on TOPIC.py, then (after a line on stdin) calls to the Rust
    server TOPIC.RUST_SERVER and a fanout cast, all with OPTIONS."""
    t = transport(url, options)
    srv = oslo_messaging.get_rpc_server(
        t, oslo_messaging.Target(topic=topic, server='py', exchange=exchange),
        [Endpoint()], executor='threading')
    try:
        srv.start()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        print(json.dumps({'server_error': str(exc)}), flush=True)
        return
    print('READY', flush=True)
    sys.stdin.readline()
    results = []
    for target in (
            oslo_messaging.Target(topic=topic, server=rust_server,
                                  exchange=exchange, version='1.0'),
            oslo_messaging.Target(topic=topic, exchange=exchange,
                                  version='1.0', fanout=True)):
        c = oslo_messaging.get_rpc_client(t, target, timeout=20)
        try:
            if target.fanout:
                c.cast({}, 'echo', via='fanout')
                results.append({'ok': None})
            else:
                results.append({'ok': c.call({'request_id': 'req-probe'},
                                             'echo', via='python')})
        except Exception as exc:  # noqa: BLE001
            results.append({'error': describe(exc)})
    print(json.dumps({'results': results,
                      'reply_q': getattr(t._driver, '_reply_q', None)}),
          flush=True)
    srv.stop()
    srv.wait()
    t.cleanup()


def main(argv):
    mode = argv[1]
    if mode == 'server':
        serve(argv[2], argv[3], argv[4], argv[5], json.loads(argv[6]))
    elif mode == 'client':
        client(argv[2], argv[3], argv[4], argv[5], json.loads(argv[6]),
               json.loads(argv[7]))
    elif mode == 'notify-listen':
        notify_listen(argv[2], argv[3], argv[4], json.loads(argv[5]),
                      int(argv[6]), float(argv[7]))
    elif mode == 'probe':
        probe(argv[2], argv[3], argv[4], json.loads(argv[5]), argv[6])
    else:
        sys.exit('unknown mode %s' % mode)


if __name__ == '__main__':
    main(sys.argv)
