#!/bin/sh
# Makes the X.509 certificates of the TLS tests in DIR, laid out as QEMU's tls-creds-x509 and
# blowfish-memnode --tls-dir read them (openssl, ECDSA P-256, valid 10 years):
#   DIR/node/       ca-cert.pem, server-cert.pem, server-key.pem (for 127.0.0.1 only)
#   DIR/client/     ca-cert.pem, client-cert.pem, client-key.pem
#   DIR/anonymous/  ca-cert.pem only: a client without a certificate
#   DIR/rogue/      a client whose certificate another CA signed
#   DIR/wrong-ca/   a client that trusts only that other CA (not the node's)
# Usage: make-certs.sh DIR
set -eu

dir=$1
mkdir -p "$dir/ca" "$dir/rogue-ca" "$dir/node" "$dir/client" "$dir/anonymous" "$dir/rogue" \
    "$dir/wrong-ca"
cd "$dir"

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# make_ca DIR NAME
make_ca() {
    newkey "$1/ca-key.pem"
    openssl req -x509 -new -key "$1/ca-key.pem" -out "$1/ca-cert.pem" -days 3650 \
        -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# sign CA_DIR OUT_PREFIX NAME EXTENSIONS
sign() {
    newkey "$2-key.pem"
    openssl req -new -key "$2-key.pem" -out "$2.csr" -subj "/CN=$3"
    printf '%s\n' "$4" > "$2.ext"
    openssl x509 -req -in "$2.csr" -CA "$1/ca-cert.pem" -CAkey "$1/ca-key.pem" \
        -CAcreateserial -out "$2-cert.pem" -days 3650 -extfile "$2.ext" 2>/dev/null
    rm -f "$2.csr" "$2.ext"
}

make_ca ca "Blowfish test CA"
make_ca rogue-ca "Someone else's CA"
sign ca node/server blowfish-memnode "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature
basicConstraints=CA:FALSE"
sign ca client/client blowfish-client "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature
basicConstraints=CA:FALSE"
sign rogue-ca rogue/client rogue-client "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature
basicConstraints=CA:FALSE"
for d in node client anonymous rogue; do
    cp ca/ca-cert.pem "$d/"
done
cp rogue-ca/ca-cert.pem wrong-ca/
