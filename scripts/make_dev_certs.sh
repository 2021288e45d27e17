#!/usr/bin/env bash
# Development TLS certificates and SuperNode authentication keys for a Flower deployment of LaDa.
#
#   scripts/make_dev_certs.sh [OUT_DIR] [NUM_SUPERNODES] [EXTRA_SAN ...]
#
# OUT_DIR (default ./flower-certs) receives
#   certificates/ca.key, ca.crt          a throw-away certificate authority (RSA 4096, 365 days)
#   certificates/server.key, server.pem  the SuperLink's certificate, signed by that CA, valid for
#                                        localhost, 127.0.0.1, ::1 and every EXTRA_SAN given
#                                        (a DNS name or an IP address of the SuperLink's machine)
#   keys/supernode_K, supernode_K.pub    one EC key pair (NIST P-384, OpenSSH format) per
#                                        SuperNode, K = 0 .. NUM_SUPERNODES-1 (default 3); the
#                                        private key stays with that SuperNode, the .pub is
#                                        registered with `flwr supernode register`
#
# Give the SuperLink: ca.crt, server.pem, server.key; every SuperNode and the machine that runs
# `flwr`: ca.crt only; SuperNode K: keys/supernode_K. Never reuse these for production.
set -euo pipefail

OUT=${1:-./flower-certs}
N=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
EXTRA=("$@")

command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
command -v ssh-keygen >/dev/null || { echo "ssh-keygen is required" >&2; exit 1; }

CERTS="$OUT/certificates"
KEYS="$OUT/keys"
mkdir -p "$CERTS" "$KEYS"

# -- the SuperLink's certificate names ------------------------------------------------------
SAN="DNS.1 = localhost
IP.1 = 127.0.0.1
IP.2 = ::1"
dns=2
ip=3
for name in "${EXTRA[@]+"${EXTRA[@]}"}"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    SAN+=$'\n'"IP.$ip = $name"; ip=$((ip + 1))
  else
    SAN+=$'\n'"DNS.$dns = $name"; dns=$((dns + 1))
  fi
done

cat > "$CERTS/certificate.conf" <<EOF
[req]
default_bits = 4096
prompt = no
default_md = sha256
req_extensions = req_ext
distinguished_name = dn

[dn]
C = DE
O = LaDa development
CN = localhost

[req_ext]
subjectAltName = @alt_names
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth

[alt_names]
$SAN
EOF

# -- CA ---------------------------------------------------------------------------------------
openssl genrsa -out "$CERTS/ca.key" 4096 2>/dev/null
openssl req -new -x509 -key "$CERTS/ca.key" -sha256 -days 365 \
  -subj "/C=DE/O=LaDa development CA/CN=LaDa dev CA" -out "$CERTS/ca.crt"

# -- SuperLink server certificate ----------------------------------------------------------------
openssl genrsa -out "$CERTS/server.key" 4096 2>/dev/null
openssl req -new -key "$CERTS/server.key" -out "$CERTS/server.csr" -config "$CERTS/certificate.conf"
openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
  -CAcreateserial -out "$CERTS/server.pem" -days 365 -sha256 \
  -extfile "$CERTS/certificate.conf" -extensions req_ext 2>/dev/null
rm -f "$CERTS/server.csr"
chmod 600 "$CERTS/ca.key" "$CERTS/server.key"
openssl verify -CAfile "$CERTS/ca.crt" "$CERTS/server.pem" >/dev/null

# -- SuperNode authentication keys (EC, NIST P-384, OpenSSH format) -----------------------------
for ((k = 0; k < N; k++)); do
  rm -f "$KEYS/supernode_$k" "$KEYS/supernode_$k.pub"
  ssh-keygen -q -t ecdsa -b 384 -N "" -C "lada-supernode-$k" -f "$KEYS/supernode_$k"
done

echo "wrote $CERTS/{ca.crt,ca.key,server.pem,server.key} and $N SuperNode key pairs in $KEYS"
