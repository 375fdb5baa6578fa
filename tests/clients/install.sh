#!/usr/bin/env bash
# Installs what the client smoke tests in tests/clients/ need; idempotent and quick
# when everything is already there.
#
#   tests/clients/install.sh [debian] [node]     (no argument: both)
#
# debian: Curator (libcurator-framework-java, libcurator-recipes-java), the C
#         client (zookeeper-bin: cli_mt) and Apache ZooKeeper's client jars
#         (zookeeper), with apt-get when running as root; otherwise it says what
#         is missing and the tests skip (or fail under CI=true).
# node:   node-zookeeper-client, pinned by tests/clients/node/package-lock.json,
#         installed with `npm ci` OUTSIDE the checkout, into
#         /tmp/zktwist-node-client-<hash of package.json + package-lock.json>
#         (or $ZKTWIST_NODE_CLIENT_DIR); tests/clients/conftest.py computes the
#         same directory.
#
# Exit status: 0 when every requested component is installed, 1 otherwise.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE_SRC="$HERE/node"
status=0

say() { echo "tests/clients/install.sh: $*"; }

debian_missing() {
    local missing=()
    [ -e /usr/share/java/curator-framework.jar ] || missing+=(libcurator-framework-java)
    [ -e /usr/share/java/curator-recipes.jar ] || missing+=(libcurator-recipes-java)
    [ -e /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
    [ -x /usr/lib/zookeeper/bin/cli_mt ] || missing+=(zookeeper-bin)
    command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
    echo "${missing[@]:-}"
}

install_debian() {
    local missing
    missing="$(debian_missing)"
    if [ -z "$missing" ]; then
        say "Curator, cli_mt and the ZooKeeper jars are installed"
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "cannot install $missing (needs root and apt-get); those client tests will skip"
        return 1
    fi
    say "apt-get install $missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! apt-get install -y -q $missing; then
        apt-get update -q && apt-get install -y -q $missing || {
            say "apt-get could not install $missing"
            return 1
        }
    fi
    missing="$(debian_missing)"
    if [ -n "$missing" ]; then
        say "still missing after apt-get: $missing"
        return 1
    fi
}

node_dir() {
    if [ -n "${ZKTWIST_NODE_CLIENT_DIR:-}" ]; then
        echo "$ZKTWIST_NODE_CLIENT_DIR"
        return
    fi
    local hash
    hash="$(cat "$NODE_SRC/package.json" "$NODE_SRC/package-lock.json" | sha256sum | cut -c1-16)"
    echo "/tmp/zktwist-node-client-$hash"
}

install_node() {
    local dir
    dir="$(node_dir)"
    if [ -e "$dir/.installed" ] && [ -e "$dir/node_modules/node-zookeeper-client/package.json" ]; then
        say "node-zookeeper-client is installed in $dir"
        return 0
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "node and npm are needed for node-zookeeper-client; that client test will skip"
        return 1
    fi
    # Install beside the target and move it into place, so a concurrent run
    # never sees a half-installed directory.
    local tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp" || return 1
    cp "$NODE_SRC/package.json" "$NODE_SRC/package-lock.json" "$tmp/" || return 1
    say "npm ci for $dir"
    if ! (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error); then
        say "npm ci failed in $tmp"
        rm -rf "$tmp"
        return 1
    fi
    touch "$tmp/.installed"
    rm -rf "$dir"
    if ! mv -T "$tmp" "$dir" 2>/dev/null; then
        rm -rf "$tmp"
        [ -e "$dir/.installed" ] || { say "could not move $tmp to $dir"; return 1; }
    fi
    say "node-zookeeper-client is installed in $dir"
}

components=("$@")
[ ${#components[@]} -eq 0 ] && components=(debian node)
for c in "${components[@]}"; do
    case "$c" in
        debian) install_debian || status=1 ;;
        node) install_node || status=1 ;;
        *) say "unknown component $c (expected debian or node)"; status=2 ;;
    esac
done
exit $status
