"""A stand-in for the placement API, for the benchmark's Python nova-compute.

nova-compute 34 refuses to start unless placement answers version discovery
(ComputeManager.__init__ -> SchedulerReportClient -> openstacksdk adapter ->
keystoneauth discovery), and this stack runs no placement service. This stub
answers discovery only (GET / and GET /placement) with placement's own
version document; every other request gets 503, so the resource tracker's
placement sync fails and is logged, which does not affect the snapshot path
(it reports nothing to placement).

Usage: python placement_stub.py PORT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSIONS = {
    'versions': [{
        'id': 'v1.0', 'min_version': '1.0', 'max_version': '1.39',
        'status': 'CURRENT',
        'links': [{'rel': 'self', 'href': ''}],
    }]
}


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        if code == 200:
            self.send_header('OpenStack-API-Version', 'placement 1.0')
        self.end_headers()
        self.wfile.write(data)

    def _any(self):
        if self.command == 'GET' and self.path.rstrip('/') in ('', '/placement'):
            self._send(200, VERSIONS)
        else:
            self._send(503, {'errors': [{'status': 503, 'title': 'Service Unavailable',
                                         'detail': 'placement stub of the benchmark'}]})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

    def log_message(self, fmt, *args):
        sys.stderr.write('placement-stub: ' + (fmt % args) + '\n')


if __name__ == '__main__':
    ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
