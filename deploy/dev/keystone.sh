# Keystone and the Keystone-backed Glance instances (sourced after lib.sh and venv.sh).
#
# Keystone 30.0.0 from PyPI under uWSGI on a sqlite database with fernet tokens, two ways:
#   127.0.0.1:5000  normal tokens (1 h); Glance validates every token here.
#   127.0.0.1:5001  the same database and fernet keys, `[token] expiration = 20`: tokens issued
#                   here expire after 20 s but validate anywhere (a fernet token carries its
#                   own expiry), so a test gets a user token that is expired when Glance sees it
#                   while the service user keeps normal tokens. Keystone's
#                   `allow_expired_window` (48 h) is what lets Glance accept such a token
#                   together with a valid service token.
# Identities (idempotent): admin/$KEYSTONE_ADMIN_PASSWORD (bootstrap); project `service` with
# users `nova` (the [service_user]) and `glance` (keystonemiddleware), both with roles `service`
# and `admin` as Kolla gives them; project `demo` with user `demo` (member); an application
# credential of `nova` in $KEYSTONE_DIR/nova-appcred.json; the image service in the catalog
# pointing at the auth Glance.
#
# Extra Glance instances (own config, own MariaDB database, file store, pid and log; the shared one on
# $GLANCE_PORT is never touched):
#   glance_auth_up       :9293  `flavor = keystone`, `[keystone_authtoken]` on :5000,
#                               service tokens required to carry the `service` role
#   glance_capped_up     :9294  no auth, `image_size_cap` = 64 MiB (operator's cap exceeded)
#   glance_spare_up      :9295  no auth; tests restart it in the middle of uploads

KEYSTONE_VERSION=30.0.0
KEYSTONE_PIP="keystone==$KEYSTONE_VERSION uwsgi"
KEYSTONE_PORT=5000
KEYSTONE_SHORT_PORT=5001
KEYSTONE_SHORT_EXPIRATION=20
KEYSTONE_DIR="$STACK_DIR/keystone"
KEYSTONE_VENV="$STACK_DIR/venvs/keystone"
KEYSTONE_URL="http://127.0.0.1:$KEYSTONE_PORT"
KEYSTONE_ADMIN_PASSWORD="${KEYSTONE_ADMIN_PASSWORD:-stack-admin}"
KEYSTONE_SERVICE_PASSWORD="${KEYSTONE_SERVICE_PASSWORD:-stack-service}"
KEYSTONE_DEMO_PASSWORD="${KEYSTONE_DEMO_PASSWORD:-stack-demo}"
GLANCE_VENV="${GLANCE_VENV:-$STACK_DIR/venvs/glance}"
GLANCE_AUTH_PORT=9293
GLANCE_CAPPED_PORT=9294
GLANCE_CAPPED_SIZE_CAP=67108864
GLANCE_SPARE_PORT=9295

keystone_config() {  # file, token expiration (s)
    cat >"$1" <<CONF
[DEFAULT]
log_file = $LOG_DIR/keystone-app.log

[database]
connection = sqlite:///$KEYSTONE_DIR/keystone.sqlite

[token]
provider = fernet
expiration = $2

[fernet_tokens]
key_repository = $KEYSTONE_DIR/fernet-keys

[fernet_receipts]
key_repository = $KEYSTONE_DIR/fernet-keys

[credential]
key_repository = $KEYSTONE_DIR/credential-keys
CONF
}

keystone_running() { curl -fs -o /dev/null "http://127.0.0.1:${1:-$KEYSTONE_PORT}/v3"; }

keystone_setup() {
    mkdir -p "$KEYSTONE_DIR/etc" "$KEYSTONE_DIR/fernet-keys" "$KEYSTONE_DIR/credential-keys"
    keystone_config "$KEYSTONE_DIR/etc/keystone.conf" 3600
    keystone_config "$KEYSTONE_DIR/etc/keystone-short.conf" "$KEYSTONE_SHORT_EXPIRATION"
    [[ -f "$KEYSTONE_DIR/bootstrap.done" ]] && return 0
    say "creating the Keystone database, keys and admin"
    local manage=("$KEYSTONE_VENV/bin/keystone-manage" --config-file "$KEYSTONE_DIR/etc/keystone.conf")
    logged keystone-manage.log "${manage[@]}" db_sync
    logged keystone-manage.log "${manage[@]}" fernet_setup --keystone-user root --keystone-group root
    logged keystone-manage.log "${manage[@]}" credential_setup --keystone-user root --keystone-group root
    logged keystone-manage.log "${manage[@]}" bootstrap --bootstrap-password "$KEYSTONE_ADMIN_PASSWORD" \
        --bootstrap-admin-url "$KEYSTONE_URL/v3/" --bootstrap-internal-url "$KEYSTONE_URL/v3/" \
        --bootstrap-public-url "$KEYSTONE_URL/v3/" --bootstrap-region-id RegionOne
    touch "$KEYSTONE_DIR/bootstrap.done"
}

keystone_start() {  # name, port, config file
    local name="$1" port="$2" conf="$3"
    keystone_running "$port" && return 0
    say "starting $name (uWSGI) on 127.0.0.1:$port"
    local site; site=$("$KEYSTONE_VENV/bin/python" -c 'import keystone, os; print(os.path.dirname(keystone.__file__))')
    OS_KEYSTONE_CONFIG_FILES="$conf" "$KEYSTONE_VENV/bin/uwsgi" \
        --http-socket "127.0.0.1:$port" --wsgi-file "$site/wsgi/api.py" \
        --master --processes 1 --threads 4 --die-on-term \
        --add-header 'Connection: close' \
        --pidfile "$RUN_DIR/$name.pid" --daemonize "$LOG_DIR/$name.log"
    wait_for 90 keystone_running "$port" || { tail -n 30 "$LOG_DIR/$name.log" >&2; die "$name did not start"; }
}

# Users, projects, roles, the application credential and the catalog entry, created through
# Keystone's API when missing.
keystone_provision() {
    [[ -f "$KEYSTONE_DIR/provision.done" ]] && return 0
    say "creating the Keystone service and demo identities"
    KS_URL="$KEYSTONE_URL/v3" KS_ADMIN_PW="$KEYSTONE_ADMIN_PASSWORD" KS_SERVICE_PW="$KEYSTONE_SERVICE_PASSWORD" \
    KS_DEMO_PW="$KEYSTONE_DEMO_PASSWORD" KS_DIR="$KEYSTONE_DIR" \
    KS_IMAGE_URL="http://127.0.0.1:$GLANCE_AUTH_PORT" \
        logged keystone-provision.log "$KEYSTONE_VENV/bin/python" - <<'PY'
import json, os, urllib.request, urllib.error

URL = os.environ["KS_URL"]

def call(method, path, body=None, token=None, want=(200, 201, 204)):
    req = urllib.request.Request(URL + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req) as resp:
            data = resp.read()
            return resp.headers, (json.loads(data) if data else {})
    except urllib.error.HTTPError as e:
        if e.code in want:
            return e.headers, {}
        raise SystemExit(f"{method} {path}: {e.code} {e.read()[:300]!r}")

def password_token(user, password, project):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
    headers, _ = call("POST", "/auth/tokens", body)
    return headers["X-Subject-Token"]

admin = password_token("admin", os.environ["KS_ADMIN_PW"], "admin")

def ensure(kind, name, body):
    _, found = call("GET", f"/{kind}s?name={name}", token=admin)
    if found[f"{kind}s"]:
        return found[f"{kind}s"][0]["id"]
    _, made = call("POST", f"/{kind}s", {kind: dict(body, name=name)}, token=admin)
    return made[kind]["id"]

def grant(project, user, role):
    call("PUT", f"/projects/{project}/users/{user}/roles/{role}", token=admin)

roles = {r: ensure("role", r, {}) for r in ("service", "admin", "member", "reader")}
service = ensure("project", "service", {"domain_id": "default"})
demo = ensure("project", "demo", {"domain_id": "default"})
for user in ("nova", "glance"):
    uid = ensure("user", user, {"domain_id": "default", "password": os.environ["KS_SERVICE_PW"]})
    grant(service, uid, roles["service"])
    grant(service, uid, roles["admin"])
demo_user = ensure("user", "demo", {"domain_id": "default", "password": os.environ["KS_DEMO_PW"]})
grant(demo, demo_user, roles["member"])
grant(demo, demo_user, roles["reader"])

image = ensure("service", "glance", {"type": "image"})
_, endpoints = call("GET", f"/endpoints?service_id={image}", token=admin)
if not endpoints["endpoints"]:
    for interface in ("public", "internal"):
        call("POST", "/endpoints", {"endpoint": {"service_id": image, "interface": interface,
             "region_id": "RegionOne", "url": os.environ["KS_IMAGE_URL"] + "/v2"}}, token=admin)

# An application credential can only be made with the owner's own token.
path = os.path.join(os.environ["KS_DIR"], "nova-appcred.json")
if not os.path.exists(path):
    nova_token = password_token("nova", os.environ["KS_SERVICE_PW"], "service")
    nova_id = ensure("user", "nova", {})
    _, made = call("POST", f"/users/{nova_id}/application_credentials",
                   {"application_credential": {"name": "nova-compute-tests", "roles": [
                       {"name": "service"}, {"name": "admin"}]}}, token=nova_token)
    cred = made["application_credential"]
    with open(path, "w") as f:
        json.dump({"id": cred["id"], "secret": cred["secret"]}, f)
PY
    touch "$KEYSTONE_DIR/provision.done"
}

keystone_up() {
    venv_up keystone "$KEYSTONE_PIP"
    keystone_setup
    keystone_start keystone "$KEYSTONE_PORT" "$KEYSTONE_DIR/etc/keystone.conf"
    keystone_start keystone-short "$KEYSTONE_SHORT_PORT" "$KEYSTONE_DIR/etc/keystone-short.conf"
    keystone_provision
}

keystone_down() {
    local name
    for name in keystone-short keystone; do
        pid_alive "$name" || continue
        say "stopping $name"
        kill -INT "$(cat "$RUN_DIR/$name.pid")"
        wait_for 30 bash -c "! kill -0 $(cat "$RUN_DIR/$name.pid")" || true
    done
}

keystone_status() {
    if keystone_running "$KEYSTONE_PORT" && keystone_running "$KEYSTONE_SHORT_PORT"; then
        echo "keystone      up    $KEYSTONE_URL (keystone $KEYSTONE_VERSION, uWSGI; short-lived tokens on :$KEYSTONE_SHORT_PORT)"
    else
        echo "keystone      down"
    fi
    local name port
    for name in auth:$GLANCE_AUTH_PORT capped:$GLANCE_CAPPED_PORT spare:$GLANCE_SPARE_PORT; do
        port="${name#*:}"; name="${name%%:*}"
        if glance_instance_running "$port"; then
            printf 'glance-%-6s up    http://127.0.0.1:%s\n' "$name" "$port"
        else
            printf 'glance-%-6s down\n' "$name"
        fi
    done
}

# --- extra Glance instances -----------------------------------------------------------------

glance_auth_up() {
    keystone_up
    glance_instance_up auth "$GLANCE_AUTH_PORT" keystone 1099511627776
}
glance_capped_up() { glance_instance_up capped "$GLANCE_CAPPED_PORT" "" "$GLANCE_CAPPED_SIZE_CAP"; }
glance_spare_up() { glance_instance_up spare "$GLANCE_SPARE_PORT" "" 1099511627776; }

glance_extra_down() {
    local name
    for name in auth capped spare; do glance_instance_down "$name"; done
}
