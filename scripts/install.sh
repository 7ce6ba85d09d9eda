#!/usr/bin/env bash
# Installs what hookstream needs and is missing: build tools for librdkafka, PostgreSQL, a JDK
# (17 or newer) and Maven, and the Apache Kafka broker (fetched once from Maven Central into the
# cache directory; offline after). Skips whatever is already there.
source "$(dirname "$0")/lib.sh"

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v g++ >/dev/null || missing+=(g++)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v runuser >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
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
# The broker runs on Java 17 or newer; Maven fetches it (scripts/kafka/pom.xml).
java_major() { "$JAVA" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == 1 ? v[2] : v[1]); exit}'; }
if ! command -v "$JAVA" >/dev/null || [ "$(java_major)" -lt 17 ]; then
  missing+=(default-jre-headless)
fi
command -v mvn >/dev/null || missing+=(maven)
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

[ "$(java_major)" -ge 17 ] || die "the broker needs Java 17 or newer; $JAVA is $("$JAVA" -version 2>&1 | head -1)"
if [ ! -f "$KAFKA_LIBS/kafka_2.13-$HOOKSTREAM_KAFKA_VERSION.jar" ]; then
  log "fetching Apache Kafka $HOOKSTREAM_KAFKA_VERSION from Maven Central into $KAFKA_HOME (about 45 MB, once)"
  rm -rf "$KAFKA_HOME.part"
  mvn --batch-mode --quiet -f "$HS_ROOT/scripts/kafka/pom.xml" \
    -Dkafka.version="$HOOKSTREAM_KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$KAFKA_HOME.part/libs" \
    || die "could not fetch Apache Kafka $HOOKSTREAM_KAFKA_VERSION from Maven Central (mvn failed above)"
  rm -rf "$KAFKA_HOME" && mv "$KAFKA_HOME.part" "$KAFKA_HOME"
fi
if [ ! -f "$REGISTRY_JAR" ]; then
  url=https://repo1.maven.org/maven2/io/apicurio/apicurio-registry-app/$HOOKSTREAM_REGISTRY_VERSION/apicurio-registry-app-$HOOKSTREAM_REGISTRY_VERSION-all.tar.gz
  log "fetching Apicurio Registry $HOOKSTREAM_REGISTRY_VERSION from Maven Central into $REGISTRY_HOME (about 100 MB, once)"
  rm -rf "$REGISTRY_HOME.part" && mkdir -p "$REGISTRY_HOME.part"
  curl -sSfL -o "$REGISTRY_HOME.part/all.tar.gz" "$url" || die "could not fetch $url"
  echo "$HOOKSTREAM_REGISTRY_SHA256  $REGISTRY_HOME.part/all.tar.gz" | sha256sum -c --quiet \
    || die "$url does not have the expected SHA-256 digest"
  tar xzf "$REGISTRY_HOME.part/all.tar.gz" -C "$REGISTRY_HOME.part" && rm "$REGISTRY_HOME.part/all.tar.gz"
  rm -rf "$REGISTRY_HOME" && mv "$REGISTRY_HOME.part" "$REGISTRY_HOME"
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
log "dependencies present (Apache Kafka $HOOKSTREAM_KAFKA_VERSION in $KAFKA_HOME)"
