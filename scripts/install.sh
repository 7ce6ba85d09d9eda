#!/usr/bin/env bash
# Installs what hookstream needs and is missing: build tools for librdkafka, PostgreSQL, and
# the tansu broker (built once into the cache directory). Skips whatever is already there.
source "$(dirname "$0")/lib.sh"

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v g++ >/dev/null || missing+=(g++)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v runuser >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
command -v patch >/dev/null || missing+=(patch)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if ! command -v st >/dev/null && [ ! -x "$SCHEMATHESIS_BIN" ]; then
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
fi
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
# librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> whenever WITH_OAUTHBEARER_OIDC is
# defined, and its generated config.h defines it (as 0) even without curl: the header must exist.
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || missing+=(libcurl4-openssl-dev)
dpkg -s protobuf-compiler >/dev/null 2>&1 || missing+=(protobuf-compiler)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)

if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's postgresql package creates this user; a machine with bare binaries may lack it.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

if [ ! -x "$TANSU_BIN" ]; then
  log "building the tansu broker $HOOKSTREAM_TANSU_BUILD into $HOOKSTREAM_CACHE_DIR (about 10-15 minutes, once)"
  # tansu-storage and tansu-broker with hookstream's patches (scripts/tansu/<crate>/): fetch
  # returns the batch that contains the requested offset and stops at a batch not yet written,
  # so a consumer never moves past records it did not get; sqlite storage does not panic on a
  # missing row; a group whose leader died is not formed without assignments by a follower's
  # sync (see README, "Local broker").
  patched=()
  for crate in storage broker; do
    src="$HOOKSTREAM_CACHE_DIR/tansu-$crate-$HOOKSTREAM_TANSU_BUILD"
    rm -rf "$src" && mkdir -p "$src"
    curl -sSfL "https://static.crates.io/crates/tansu-$crate/tansu-$crate-$HOOKSTREAM_TANSU_VERSION.crate" \
      | tar xz --strip-components=1 -C "$src"
    for p in "$HS_ROOT/scripts/tansu/$crate"/*.patch; do
      patch --quiet -d "$src" -p1 < "$p"
    done
    patched+=(--config "patch.crates-io.tansu-$crate.path=\"$src\"")
  done
  # --locked: without it the postgres feature fails to compile against newer dependencies.
  # dynostore gives memory:// storage, libsql gives sqlite:// (durable, on local disk).
  CARGO_TARGET_DIR="$HOOKSTREAM_CACHE_DIR/tansu-build" cargo install tansu \
    --version "$HOOKSTREAM_TANSU_VERSION" --locked --features dynostore,libsql \
    "${patched[@]}" \
    --root "$HOOKSTREAM_CACHE_DIR/tansu-$HOOKSTREAM_TANSU_BUILD" --quiet
  rm -rf "$HOOKSTREAM_CACHE_DIR/tansu-build"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "building cargo-nextest $HOOKSTREAM_NEXTEST_VERSION into $HOOKSTREAM_CACHE_DIR/nextest (a few minutes, once)"
  CARGO_TARGET_DIR="$HOOKSTREAM_CACHE_DIR/nextest-build" cargo install cargo-nextest \
    --version "$HOOKSTREAM_NEXTEST_VERSION" --locked --root "$HOOKSTREAM_CACHE_DIR/nextest" --quiet
  rm -rf "$HOOKSTREAM_CACHE_DIR/nextest-build"
fi
# A PyPI tool in a venv of its own in the cache.
pip_tool() { # package version
  log "installing $1 $2 into $HOOKSTREAM_CACHE_DIR/$1"
  python3 -m venv "$HOOKSTREAM_CACHE_DIR/$1"
  "$HOOKSTREAM_CACHE_DIR/$1/bin/pip" install --quiet "$1==$2"
}
if ! command -v st >/dev/null && [ ! -x "$SCHEMATHESIS_BIN" ]; then
  pip_tool schemathesis "$HOOKSTREAM_SCHEMATHESIS_VERSION"
fi
if command -v helm >/dev/null && [ ! -x "$KUBERNETES_VALIDATE_BIN" ]; then
  pip_tool kubernetes-validate "$HOOKSTREAM_KUBERNETES_VALIDATE_VERSION"
fi
log "dependencies present (tansu at $TANSU_BIN)"
