#!/bin/sh
# Makes the X.509 certificates of the TLS tests in DIR, laid out as QEMU's tls-creds-x509 and
# blowfish-memnode --tls-dir read them (openssl, ECDSA P-256, valid 10 years):
#   DIR/node/       ca-cert.pem, server-cert.pem, server-key.pem (for 127.0.0.1 only)
#   DIR/client/     ca-cert.pem, client-cert.pem, client-key.pem
#   DIR/anonymous/  ca-cert.pem only: a client without a certificate
#   DIR/rogue/      a client whose certificate another CA signed
#   DIR/wrong-ca/   a client that trusts only that other CA (not the node's)
#   DIR/revoked/    a client whose certificate the CA revoked
#   DIR/node-crl/   the node, with the CA's revocation list (ca-crl.pem), which also revokes
#                   the node's own certificate: so that
#   DIR/client-crl/ the client, with that list, refuses the node
# Usage: make-certs.sh DIR
set -eu

dir=$1
mkdir -p "$dir/ca" "$dir/rogue-ca" "$dir/node" "$dir/client" "$dir/anonymous" "$dir/rogue" \
    "$dir/wrong-ca" "$dir/revoked" "$dir/node-crl" "$dir/client-crl"
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
client_ext="extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature
basicConstraints=CA:FALSE"
sign ca client/client blowfish-client "$client_ext"
sign rogue-ca rogue/client rogue-client "$client_ext"
sign ca revoked/client revoked-client "$client_ext"
for d in node client anonymous rogue revoked node-crl client-crl; do
    cp ca/ca-cert.pem "$d/"
done
cp rogue-ca/ca-cert.pem wrong-ca/
cp node/server-cert.pem node/server-key.pem node-crl/
cp client/client-cert.pem client/client-key.pem client-crl/

# The revocation list: the revoked client's certificate, and the node's.
touch ca/index.txt
echo 01 > ca/crlnumber
printf '%s\n' "[ca]" "default_ca = test_ca" "[test_ca]" "database = ca/index.txt" \
    "crlnumber = ca/crlnumber" "default_md = sha256" "default_crl_days = 3650" > ca/ca.cnf
for cert in revoked/client-cert.pem node/server-cert.pem; do
    openssl ca -config ca/ca.cnf -keyfile ca/ca-key.pem -cert ca/ca-cert.pem \
        -revoke "$cert" 2>/dev/null
done
openssl ca -config ca/ca.cnf -keyfile ca/ca-key.pem -cert ca/ca-cert.pem -gencrl \
    -out ca/ca-crl.pem 2>/dev/null
cp ca/ca-crl.pem node-crl/
cp ca/ca-crl.pem client-crl/
