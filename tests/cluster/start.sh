#!/usr/bin/env bash
# Starts a real control plane on free loopback ports, the way controller-runtime's envtest
# does: etcd, kube-apiserver (RBAC on, token identities, a generated CA and serving cert)
# and kube-controller-manager (garbage collection, namespaces). Builds the binaries first
# when they are not cached (tests/cluster/build.sh).
#
#   tests/cluster/start.sh [DIR]   start; prints the admin kubeconfig's path on stdout
#   tests/cluster/start.sh stop DIR
#
# DIR (default: a new temporary directory) receives:
#   admin.kubeconfig     system:masters
#   operator.kubeconfig  the identity of $FRESHTEAM_CP_OPERATOR_USER (default: the chart's
#                        ServiceAccount system:serviceaccount:freshteam-system:freshteam-operator),
#                        with no permissions until RBAC grants some
#   env                  shell assignments: SERVER, CA_FILE, ADMIN_TOKEN, OPERATOR_TOKEN, ...
#   *.log, *.pid         each process's output and pid
# With FRESHTEAM_CP_OWNER_PID set, the control plane stops itself when that process ends
# (a test run that crashed leaves nothing behind).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

stop() {
  local dir="$1"
  for p in kube-controller-manager kube-apiserver etcd watchdog; do
    [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  for p in kube-controller-manager kube-apiserver etcd; do
    [ -f "$dir/$p.pid" ] || continue
    local pid; pid="$(cat "$dir/$p.pid")"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$p.pid"
  done
  rm -rf "$dir/etcd-data"
}

if [ "${1:-}" = stop ]; then
  stop "${2:?usage: start.sh stop DIR}"
  exit 0
fi

bin="$("$here/build.sh")"
dir="${1:-$(mktemp -d "${TMPDIR:-/tmp}/freshteam-controlplane.XXXXXX")}"
mkdir -p "$dir/pki"
dir="$(cd "$dir" && pwd)"
trap 'echo "start.sh: failed; logs in $dir" >&2; stop "$dir"' ERR

# Free ports, chosen by the kernel (all held at once so that they differ).
read -r etcd_port peer_port api_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

# A CA, the API server's serving cert (127.0.0.1 and localhost), the ServiceAccount key.
pki="$dir/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=freshteam-test-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
  -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >"$pki/ext"
openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
  -CAcreateserial -days 2 -extfile "$pki/ext" -out "$pki/apiserver.crt" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

token() { python3 -c 'import secrets; print(secrets.token_hex(24))'; }
admin_token="$(token)"
operator_token="$(token)"
operator_user="${FRESHTEAM_CP_OPERATOR_USER:-system:serviceaccount:freshteam-system:freshteam-operator}"
operator_ns="$(echo "$operator_user" | awk -F: '{print $3}')"
# token,user,uid,"groups"
{
  echo "$admin_token,freshteam-test-admin,admin,\"system:masters\""
  echo "$operator_token,$operator_user,operator,\"system:serviceaccounts,system:serviceaccounts:$operator_ns,system:authenticated\""
} >"$pki/tokens.csv"

server="https://127.0.0.1:$api_port"
kubeconfig() { # file user token
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2
  context: {cluster: test, user: $2, namespace: default}
current-context: $2
EOF
}
kubeconfig "$dir/admin.kubeconfig" admin "$admin_token"
kubeconfig "$dir/operator.kubeconfig" operator "$operator_token"

watchdog_stop() { :; }
if [ -n "${FRESHTEAM_CP_OWNER_PID:-}" ]; then
  owner="$FRESHTEAM_CP_OWNER_PID"
  (
    trap - ERR
    while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
    rm -f "$dir/watchdog.pid"
    stop "$dir"
  ) </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/watchdog.pid"
fi

"$bin/etcd" --name default --data-dir "$dir/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn \
  </dev/null >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
  --service-cluster-ip-range 10.0.0.0/24 --allow-privileged \
  --disable-admission-plugins ServiceAccount \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  </dev/null >"$dir/kube-apiserver.log" 2>&1 &
echo $! >"$dir/kube-apiserver.pid"

ready() {
  curl -fsS --max-time 2 --cacert "$pki/ca.crt" -H "Authorization: Bearer $admin_token" \
    "$server/readyz" >/dev/null 2>&1
}
for i in $(seq 1200); do
  ready && break
  kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || { tail -20 "$dir/kube-apiserver.log" >&2; false; }
  [ "$i" = 1200 ] && { echo "start.sh: kube-apiserver not ready after 120s" >&2; false; }
  sleep 0.1
done

# Garbage collection of owned objects, and namespace deletion.
"$bin/kube-controller-manager" --kubeconfig "$dir/admin.kubeconfig" \
  --controllers garbagecollector,namespace --leader-elect=false \
  --secure-port 0 --concurrent-gc-syncs 5 \
  </dev/null >"$dir/kube-controller-manager.log" 2>&1 &
echo $! >"$dir/kube-controller-manager.pid"

cat >"$dir/env" <<EOF
DIR=$dir
SERVER=$server
CA_FILE=$pki/ca.crt
ADMIN_TOKEN=$admin_token
OPERATOR_TOKEN=$operator_token
OPERATOR_USER=$operator_user
ADMIN_KUBECONFIG=$dir/admin.kubeconfig
OPERATOR_KUBECONFIG=$dir/operator.kubeconfig
BIN=$bin
EOF
trap - ERR
echo "$dir/admin.kubeconfig"
