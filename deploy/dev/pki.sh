# A private test CA (sourced by `stack`): the TLS listeners of RabbitMQ and
# libvirtd present certificates it signed, and clients prove themselves with
# its client certificate, the way a Kolla deployment with `kolla_enable_tls_*`
# and `libvirt_tls` does with the operator's CA.
#
#   $PKI_DIR/ca.pem ca.key             the CA (trust anchor for every client)
#   $PKI_DIR/server.pem server.key     CN=localhost, SAN localhost + 127.0.0.1
#   $PKI_DIR/client.pem client.key     CN=stack-client (mutual TLS)
#   $PKI_DIR/other-ca.pem              an unrelated CA: "wrong CA" tests
#   $PKI_DIR/libvirt/                  the same files under the names
#                                      libvirt's `pkipath=` expects
#
# Generated once with openssl; valid ten years; keys readable by the brokers'
# service users (the directory is private to this checkout's stack).

PKI_DIR="$STACK_DIR/pki"

_pki_sign() {  # name, subject, extensions
    local name="$1" subject="$2" ext="$3"
    openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
        -keyout "$PKI_DIR/$name.key" -out "$PKI_DIR/$name.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$PKI_DIR/$name.ext"
    openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.pem" -CAkey "$PKI_DIR/ca.key" \
        -CAcreateserial -days 3650 -sha256 -extfile "$PKI_DIR/$name.ext" \
        -out "$PKI_DIR/$name.pem" 2>/dev/null
    rm -f "$PKI_DIR/$name.csr" "$PKI_DIR/$name.ext"
}

pki_up() {
    [[ -f "$PKI_DIR/done" ]] && return 0
    say "creating the stack's test CA and certificates in $PKI_DIR"
    rm -rf "$PKI_DIR"
    mkdir -p "$PKI_DIR/libvirt"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=openstack-rs stack CA" \
        -keyout "$PKI_DIR/ca.key" -out "$PKI_DIR/ca.pem" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=unrelated CA" \
        -keyout "$PKI_DIR/other-ca.key" -out "$PKI_DIR/other-ca.pem" 2>/dev/null
    _pki_sign server "/CN=localhost" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth
keyUsage=digitalSignature,keyEncipherment"
    _pki_sign client "/CN=stack-client" \
        "extendedKeyUsage=clientAuth
keyUsage=digitalSignature,keyEncipherment"
    # libvirt's fixed file names (client side via `?pkipath=`, server side via libvirtd.conf).
    cp "$PKI_DIR/ca.pem" "$PKI_DIR/libvirt/cacert.pem"
    cp "$PKI_DIR/client.pem" "$PKI_DIR/libvirt/clientcert.pem"
    cp "$PKI_DIR/client.key" "$PKI_DIR/libvirt/clientkey.pem"
    cp "$PKI_DIR/server.pem" "$PKI_DIR/libvirt/servercert.pem"
    cp "$PKI_DIR/server.key" "$PKI_DIR/libvirt/serverkey.pem"
    chmod 0755 "$PKI_DIR" "$PKI_DIR/libvirt"
    chmod 0644 "$PKI_DIR"/*.pem "$PKI_DIR"/*.key "$PKI_DIR"/libvirt/*
    touch "$PKI_DIR/done"
}
