#!/bin/bash
# SageMaker Studio (JupyterLab space) lifecycle configuration: install Node.js 20 if
# missing, install esmkit, and register its Jupyter kernel "TypeScript (esmkit)".
#
# Attach it as a JupyterLab lifecycle configuration (see kernel/README.md). It runs as
# sagemaker-user at every space start; everything goes under $HOME, which persists, so
# later starts only re-register the kernel (seconds). The work runs in the background by
# default (Studio fails a start whose script runs for more than 5 minutes): the kernel
# shows up in the launcher when it is done; the log is $ESMKIT_HOME/lcc.log.
#
# Settings (edit here, or set them in the environment):
#   ESMKIT_PACKAGE      what `npm install` gets: a registry spec (esmkit@0.1.0), the URL or
#                       path of a tarball made by `npm pack`, or an s3:// URL of one
#   ESMKIT_HOME         where Node.js and the package go              default ~/.esmkit
#   ESMKIT_KERNEL_ARGS  extra `esmkit kernel install` flags, e.g. "--backend wasm --threads 4"
#   ESMKIT_NODE_MAJOR   Node.js major version to install when node is missing or older
#   ESMKIT_LCC_BACKGROUND  1 (default): run in the background; 0: in the foreground
set -euo pipefail

ESMKIT_PACKAGE="${ESMKIT_PACKAGE:-esmkit}"
ESMKIT_HOME="${ESMKIT_HOME:-$HOME/.esmkit}"
ESMKIT_KERNEL_ARGS="${ESMKIT_KERNEL_ARGS:-}"
ESMKIT_NODE_MAJOR="${ESMKIT_NODE_MAJOR:-20}"
ESMKIT_LCC_BACKGROUND="${ESMKIT_LCC_BACKGROUND:-1}"

log() { echo "[esmkit-lcc $(date -u +%H:%M:%S)] $*"; }

node_major() {
  command -v node >/dev/null 2>&1 || { echo 0; return; }
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

# Node.js from nodejs.org (checksum verified) into $ESMKIT_HOME/node, unless a node on
# PATH is recent enough. `conda install -y -c conda-forge nodejs=20` works as well.
ensure_node() {
  export PATH="$ESMKIT_HOME/node/bin:$PATH"
  if [ "$(node_major)" -ge "$ESMKIT_NODE_MAJOR" ]; then
    log "node $(node --version) at $(command -v node)"
    return
  fi
  local arch
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) log "unsupported CPU $(uname -m)"; exit 1 ;;
  esac
  local base="https://nodejs.org/dist/latest-v${ESMKIT_NODE_MAJOR}.x"
  local tmp
  tmp="$(mktemp -d)"
  curl -fsSL "$base/SHASUMS256.txt" -o "$tmp/SHASUMS256.txt"
  local file
  file="$(grep -o "node-v[0-9.]*-linux-${arch}\.tar\.xz" "$tmp/SHASUMS256.txt" | head -n 1)"
  log "installing $file into $ESMKIT_HOME/node"
  curl -fsSL "$base/$file" -o "$tmp/$file"
  (cd "$tmp" && grep " $file\$" SHASUMS256.txt | sha256sum -c -)
  rm -rf "$ESMKIT_HOME/node"
  mkdir -p "$ESMKIT_HOME/node"
  tar -xJf "$tmp/$file" -C "$ESMKIT_HOME/node" --strip-components=1
  rm -rf "$tmp"
  log "node $(node --version)"
}

# The package under $ESMKIT_HOME/node_modules; skipped when the same spec is installed.
install_package() {
  local spec="$ESMKIT_PACKAGE"
  local marker="$ESMKIT_HOME/.installed-package"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$spec" ] &&
    [ -f "$ESMKIT_HOME/node_modules/esmkit/package.json" ]; then
    log "esmkit already installed from $spec"
    return
  fi
  if [[ "$spec" == s3://* ]]; then
    mkdir -p "$ESMKIT_HOME/dist"
    local local_copy
    local_copy="$ESMKIT_HOME/dist/$(basename "$spec")"
    aws s3 cp --only-show-errors "$spec" "$local_copy"
    spec="$local_copy"
  fi
  log "npm install $spec"
  npm install --prefix "$ESMKIT_HOME" --omit=dev --no-audit --no-fund "$spec"
  echo "$ESMKIT_PACKAGE" >"$marker"
}

main() {
  mkdir -p "$ESMKIT_HOME"
  ensure_node
  install_package
  # Re-register at every start: the spec records node's and the package's paths.
  # shellcheck disable=SC2086 # ESMKIT_KERNEL_ARGS is a list of flags
  "$ESMKIT_HOME/node_modules/.bin/esmkit" kernel install --user $ESMKIT_KERNEL_ARGS
  "$ESMKIT_HOME/node_modules/.bin/esmkit" kernel list
  log "done"
}

mkdir -p "$ESMKIT_HOME"
if [ "$ESMKIT_LCC_BACKGROUND" = "1" ]; then
  # Run a copy: Studio may delete this file once the script returns.
  cp "${BASH_SOURCE[0]}" "$ESMKIT_HOME/lcc.sh"
  log "installing in the background; log: $ESMKIT_HOME/lcc.log"
  ESMKIT_LCC_BACKGROUND=0 ESMKIT_PACKAGE="$ESMKIT_PACKAGE" ESMKIT_HOME="$ESMKIT_HOME" \
    ESMKIT_KERNEL_ARGS="$ESMKIT_KERNEL_ARGS" ESMKIT_NODE_MAJOR="$ESMKIT_NODE_MAJOR" \
    nohup bash "$ESMKIT_HOME/lcc.sh" >/dev/null 2>&1 &
else
  main 2>&1 | tee "$ESMKIT_HOME/lcc.log"
fi
