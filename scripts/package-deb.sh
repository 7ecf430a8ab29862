#!/usr/bin/env bash
# Builds a Debian package of edge-agent or cloud-relay with dpkg-deb: no Docker, no
# extra tool (cargo-deb would add a 200-crate build for what is a file tree and a
# control file). The package holds the binary, the default config under /etc as a
# conffile (kept on upgrade and on remove, removed on purge), the systemd unit, and for
# the agent its sysusers and tmpfiles snippets and the default model under
# /usr/share/edge-a2i/models, and on amd64 and arm64 LiteRT's library
# (/usr/lib/edge-a2i/libLiteRt.so, where the agent's `auto` backend looks; fetched by
# scripts/fetch-litert.sh through pip, sha256-pinned). Depends: is computed from the
# versioned glibc and libstdc++ symbols of what is packaged (readelf reads any
# architecture).
#
#   scripts/package-deb.sh edge-agent [--target aarch64-unknown-linux-gnu]
#       [--profile release|dev] [--bin PATH] [--version V] [--out DIR] [--no-litert] [--fast]
#
# --fast compresses with gzip -1 instead of xz (for tests: xz takes most of a minute on
# an unstripped debug binary).
#
# --bin packages an already built binary (a cross build, or CI's debug build);
# otherwise cargo builds it (--target needs scripts/cross-build.sh's set-up for ARM).
# Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "package-deb: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: $0 edge-agent|cloud-relay [--target T] [--profile P] [--bin PATH] [--version V] [--out DIR]"
name=$1; shift
case "$name" in edge-agent|cloud-relay) ;; *) die "unknown package $name (edge-agent or cloud-relay)";; esac
target="" profile=release bin="" out=dist litert=yes compress=(-Zxz)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$name/Cargo.toml" | head -1)
[ -n "$version" ] || version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=$2; shift 2;;
    --profile) profile=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    --version) version=$2; shift 2;;
    --out) out=$2; shift 2;;
    --no-litert) litert=no; shift;;
    --fast) compress=(-Zgzip -z1); shift;;
    *) die "unknown option $1";;
  esac
done
[ -n "$version" ] || die "no version: pass --version"

triple=${target:-$(rustc -vV | sed -n 's/^host: //p')}
case "$triple" in
  x86_64-*) arch=amd64;;
  aarch64-*) arch=arm64;;
  armv7-*gnueabihf) arch=armhf;;
  *) die "no Debian architecture for $triple";;
esac

if [ -z "$bin" ]; then
  args=(build --locked -p "$name" --bin "$name")
  [ "$profile" = dev ] || args+=(--profile "$profile")
  [ -z "$target" ] || args+=(--target "$target")
  cargo "${args[@]}" >&2
  dir="${CARGO_TARGET_DIR:-target}"
  [ -z "$target" ] || dir="$dir/$target"
  [ "$profile" = dev ] && dir="$dir/debug" || dir="$dir/$profile"
  bin="$dir/$name"
fi
[ -x "$bin" ] || die "$bin is not an executable"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$bin" "$root/usr/bin/$name"
install -D -m 0644 "systemd/$name.service" "$root/usr/lib/systemd/system/$name.service"
install -D -m 0644 README.md "$root/usr/share/doc/$name/README.md"
conffile=/etc/$name/config.toml
if [ "$name" = edge-agent ]; then
  install -D -m 0640 edge-agent/config.example.toml "$root$conffile"
  install -D -m 0644 edge-agent/README.md "$root/usr/share/doc/$name/edge-agent.md"
  install -D -m 0644 systemd/edge-agent.sysusers.conf "$root/usr/lib/sysusers.d/edge-agent.conf"
  install -D -m 0644 systemd/edge-agent.tmpfiles.conf "$root/usr/lib/tmpfiles.d/edge-agent.conf"
  for f in models/dogs_mobilenetv2.tflite models/dogs_mobilenetv2.toml \
           models/dogs_mobilenetv2.selftest.f32 models/labels.txt models/PROVENANCE.md; do
    install -D -m 0644 "$f" "$root/usr/share/edge-a2i/$f"
  done
  if [ "$litert" = yes ] && [ "$arch" != armhf ]; then
    lib=$(scripts/fetch-litert.sh --arch "${triple%%-*}")
    install -D -m 0644 "$lib" "$root/usr/lib/edge-a2i/libLiteRt.so"
  fi
  description="edge-a2i edge agent: classifies frames, sends uncertain ones for human review"
else
  install -D -m 0640 cloud-relay/src/relay/default-config.toml "$root$conffile"
  description="edge-a2i cloud relay: MQTT to S3 and Amazon A2I human loops"
fi
install -d "$root/DEBIAN"
echo "$conffile" > "$root/DEBIAN/conffiles"

# Depends: the highest GLIBC_x.y and whether libstdc++ is needed (GLIBCXX_x.y.z).
command -v readelf >/dev/null || die "readelf is needed to compute Depends: (apt-get install binutils)"
needs=$(find "$root/usr/bin" "$root/usr/lib" -type f \( -perm -u+x -o -name '*.so' \) -exec readelf -V --wide {} + | sed -n 's/.*Name: \(GLIBC_[0-9.]*\|GLIBCXX_[0-9.]*\).*/\1/p')
glibc=$(printf '%s\n' "$needs" | sed -n 's/^GLIBC_//p' | sort -V | tail -1)
depends="libc6 (>= ${glibc:-2.17})"
# GLIBCXX_3.4.N comes with libstdc++ of GCC (the ABI history in GCC's manual): .33 -> 14,
# .31/.32 -> 13 (13.1/13.2), .30 -> 12, .29 -> 11, .28 -> 10, .26/.27 -> 9. A newer one
# than this table knows asks for no version rather than a wrong one.
glibcxx=$(printf '%s\n' "$needs" | sed -n 's/^GLIBCXX_3\.4\.//p' | sort -n | tail -1)
if [ -n "$glibcxx" ]; then
  case "$glibcxx" in
    33) gcc=14;; 31|32) gcc=13;; 30) gcc=12;;
    29) gcc=11;; 28) gcc=10;; 26|27) gcc=9;; *) gcc="";;
  esac
  depends="$depends, libstdc++6${gcc:+ (>= $gcc)}, libgcc-s1"
fi
size=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: edge-a2i <edge-a2i@localhost>
Section: misc
Priority: optional
Installed-Size: $size
Depends: $depends
Description: $description
 Part of edge-a2i, which puts humans in the loop of edge vision models.
 See /usr/share/doc/$name/README.md.
EOF

# Maintainer scripts. edge-agent gets its system user and state directories
# (systemd-sysusers and systemd-tmpfiles when present, else adduser); cloud-relay runs
# as a DynamicUser with no state, so its config is world-readable (it holds no secret:
# the TLS key is a file beside it). A fresh install starts nothing: the shipped config
# names a placeholder endpoint, so the operator edits it, checks it and enables the
# unit; an upgrade restarts a running unit. Purge removes the configuration and the
# state (the outbox: frames not yet delivered); the system user stays (Debian policy).
if [ "$name" = edge-agent ]; then
  setup_user="  if [ -e /usr/lib/sysusers.d/$name.conf ] && command -v systemd-sysusers >/dev/null; then
    systemd-sysusers $name.conf
  elif ! getent passwd $name >/dev/null; then
    adduser --system --group --home /var/lib/$name --no-create-home --shell /usr/sbin/nologin $name
  fi
  if [ -e /usr/lib/tmpfiles.d/$name.conf ] && command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --create $name.conf
  else
    install -d -o $name -g $name -m 0750 /var/lib/$name
    install -d -o $name -g $name -m 2770 /var/lib/$name/inbox
  fi
  chown root:$name /etc/$name /etc/$name/config.toml
  chmod 0750 /etc/$name
  chmod 0640 /etc/$name/config.toml"
else
  setup_user="  chmod 0755 /etc/$name
  chmod 0644 /etc/$name/config.toml"
fi
cat > "$root/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
$setup_user
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ -n "\$2" ]; then systemctl try-restart $name.service; fi
  fi
  if [ -z "\$2" ]; then
    echo "$name: edit /etc/$name/config.toml, check it with '$name check-config', then: systemctl enable --now $name"
  fi
fi
EOF
cat > "$root/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now $name.service || true
fi
EOF
cat > "$root/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = purge ]; then
  rm -rf /etc/$name /var/lib/$name
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
echo "$deb"
