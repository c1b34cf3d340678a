#!/usr/bin/env bash
# Makes what deploy/compose/secure.yml mounts: a CA, one certificate it
# signed for every node (runnel-1..3 inside the compose network, localhost
# and 127.0.0.1 from the host), and users.toml with the first admin user's
# random password. For trying security out on one machine: in production
# each node gets its own key, kept readable by uid 10001 only.
#
#   bash deploy/compose/make-certs.sh deploy/compose/secrets
set -euo pipefail
DIR=${1:?usage: make-certs.sh DIRECTORY}
mkdir -p "$DIR"
cd "$DIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=runnel compose CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=runnel" -keyout node.key -out node.csr 2>/dev/null
printf 'subjectAltName=DNS:runnel-1,DNS:runnel-2,DNS:runnel-3,DNS:localhost,IP:127.0.0.1\n' > node.ext
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -extfile node.ext -out node.pem 2>/dev/null
rm -f node.csr node.ext ca.srl
PASSWORD=$(openssl rand -hex 16)
printf '[users]\nadmin = "%s"\n' "$PASSWORD" > users.toml
# The containers run as uid 10001.
chmod 644 node.key users.toml
chmod 600 ca.key
echo "made a CA, a node certificate and users.toml in $DIR; the admin password is $PASSWORD"
