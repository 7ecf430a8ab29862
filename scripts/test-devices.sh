#!/usr/bin/env bash
# The device builds, checked on this machine (part of the test command, scripts/test.sh):
# edge-agent cross-built for aarch64 (64-bit Raspberry Pi OS, Jetson) and armv7 (32-bit
# Raspberry Pi OS) with Debian's cross compilers, then run under qemu-user:
#
#   - `classify` on the sample photos (models/samples) gives the x86_64 build's labels
#     and every class's score within 1e-5, per backend: tflite on both targets,
#     LiteRT (the aarch64 wheel's libLiteRt.so) on aarch64;
#   - the agent's unit tests (`cargo test --lib`) pass on aarch64;
#   - its Debian package (arm64, armhf) builds from that binary, for that architecture,
#     with the ARM binary (and on arm64 the aarch64 LiteRT library) inside.
#
#   scripts/test-devices.sh                              # both targets
#   scripts/test-devices.sh aarch64-unknown-linux-gnu    # one
#
# Installs what is missing (saying so, scripts/cross-env.sh): the cross compilers,
# qemu-user, the rustup targets. Builds use cargo's dev profile and the test
# command's settings (scripts/test-env.sh), like the tests, in
# <target dir>/<triple>/debug: the first run compiles TF Lite and the agent's
# dependencies for both targets (16 minutes on 2 cores), later runs
# only the agent. Results land in <target dir>/devices/ (cargo's target directory).
#
# LiteRT under qemu: qemu-user 7.2 shows the host's x86 /proc/cpuinfo, and LiteRT's CPU
# detection crashes on it. qemu's -L prefix applies to every absolute path the program
# opens, so a prefix holding `lib` (the target's libraries) and an ARM `proc/cpuinfo`
# (a Cortex-A72, as on a Raspberry Pi 4) makes it see an ARM machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
# shellcheck source=test-env.sh
source scripts/test-env.sh   # the test command's build settings (TF Lite at -O2), target_dir

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

out="$target_dir/devices"
mkdir -p "$out"
samples="$root/models/samples"

# The reference: this machine's build, the same profile. The whole workspace, as the
# test command builds it (nothing to do after it): `-p edge-agent` alone resolves other
# features, rebuilds dependencies and leaves a binary the next workspace build replaces.
echo "test-devices: x86_64 reference (cargo build --workspace --all-targets)"
cargo build --locked -q --workspace --all-targets
host_bin="$target_dir/debug/edge-agent"
classify() { # BACKEND OUTPUT RUNNER... : classify the samples, every class's score (top-k is capped at the labels), as JSON lines
  local backend="$1" output="$2"; shift 2
  "$@" classify --backend "$backend" --json --top-k 1000 "$samples" > "$output"
}
classify tflite "$out/x86_64-tflite.jsonl" "$host_bin"
host_litert="$(scripts/fetch-litert.sh)"
EDGE_AGENT_LITERT_LIB="$host_litert" classify litert "$out/x86_64-litert.jsonl" "$host_bin"

compare() { # REFERENCE CANDIDATE NAME: same files, same top label, every score within 1e-5
  python3 - "$1" "$2" "$3" <<'PYEOF'
import json, sys
ref_path, got_path, name = sys.argv[1:4]
TOLERANCE = 1e-5
def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "error" in row:
                sys.exit(f"{name}: {row['file']}: {row['error']}")
            rows[row["file"]] = row
    return rows
ref, got = load(ref_path), load(got_path)
if sorted(ref) != sorted(got):
    sys.exit(f"{name}: classified {sorted(got)}, the x86_64 build {sorted(ref)}")
worst = 0.0
failures = []
for file in sorted(ref):
    r, g = ref[file]["top_k"], got[file]["top_k"]
    if r[0]["label"] != g[0]["label"]:
        failures.append(f"{file}: {g[0]['label']} {g[0]['score']:.6f}, x86_64 {r[0]['label']} {r[0]['score']:.6f}")
    # Scores by class index (labels of near-equal scores may sort either way).
    r_scores = {x["index"]: x["score"] for x in r}
    g_scores = {x["index"]: x["score"] for x in g}
    if sorted(r_scores) != sorted(g_scores):
        failures.append(f"{file}: classes {sorted(g_scores)}, x86_64 {sorted(r_scores)}")
        continue
    diff = max(abs(r_scores[i] - g_scores[i]) for i in r_scores)
    worst = max(worst, diff)
    if diff > TOLERANCE:
        failures.append(f"{file}: a score differs by {diff:.2e} (> {TOLERANCE:g})")
if failures:
    sys.exit(f"{name}: differs from the x86_64 build:\n  " + "\n  ".join(failures))
print(f"test-devices: {name}: {len(ref)} photos, same top labels as x86_64, largest score difference {worst:.1e}")
PYEOF
}

check_package() { # DEB TARGET: the package is for the target's architecture, with its binary inside
  python3 - "$1" "$2" <<'PYEOF'
import subprocess, sys
deb, target = sys.argv[1:3]
arch = {"aarch64-unknown-linux-gnu": "arm64", "armv7-unknown-linux-gnueabihf": "armhf"}[target]
machine = {"arm64": "AArch64", "armhf": "ARM"}[arch]
def run(*argv, data=None):
    return subprocess.run(argv, input=data, check=True, capture_output=True).stdout
field = run("dpkg-deb", "-f", deb, "Architecture").decode().strip()
if field != arch:
    sys.exit(f"{deb}: Architecture: {field}, expected {arch}")
files = run("dpkg-deb", "-c", deb).decode()
wanted = ["./usr/bin/edge-agent", "./usr/share/edge-a2i/models/dogs_mobilenetv2.tflite"]
if arch == "arm64":
    wanted.append("./usr/lib/edge-a2i/libLiteRt.so")
missing = [w for w in wanted if w not in files]
if missing:
    sys.exit(f"{deb}: missing {missing}")
binary = run("tar", "-xO", "./usr/bin/edge-agent", data=run("dpkg-deb", "--fsys-tarfile", deb))
# The ELF header's e_machine (offset 18, little-endian): 183 AArch64, 40 ARM.
e_machine = int.from_bytes(binary[18:20], "little") if binary[:4] == b"\x7fELF" else None
if e_machine != {"AArch64": 183, "ARM": 40}[machine]:
    sys.exit(f"{deb}: /usr/bin/edge-agent is not an {machine} binary (ELF machine {e_machine})")
print(f"test-devices: {deb.rsplit('/', 1)[-1]}: {arch}, an {machine} binary, {len(files.splitlines())} entries")
PYEOF
}

# An ARM /proc/cpuinfo (a Raspberry Pi 4's Cortex-A72) for LiteRT under qemu-aarch64.
arm_cpuinfo() {
  cat <<'CPUINFO'
processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

Hardware	: BCM2835
Model		: Raspberry Pi 4 Model B Rev 1.4
CPUINFO
}

declare -A gnu_of qemu_of bin_of
# The checks of one target (run side by side: qemu is CPU-bound, mostly one thread).
check_target() { # TARGET
  local target="$1" gnu="${gnu_of[$1]}" qemu="${qemu_of[$1]}" bin="${bin_of[$1]}"
  classify tflite "$out/$target-tflite.jsonl" "$qemu" -L "/usr/$gnu" "$bin"
  compare "$out/x86_64-tflite.jsonl" "$out/$target-tflite.jsonl" "$target tflite (qemu)"
  local deb
  deb="$(scripts/package-deb.sh edge-agent --target "$target" --bin "$bin" --fast --out "$out/deb")"
  check_package "$deb" "$target"
  if [ "$target" = aarch64-unknown-linux-gnu ]; then
    local lib prefix="$out/$target-root"
    lib="$(scripts/fetch-litert.sh --arch aarch64)"
    mkdir -p "$prefix/proc"
    ln -sfn "/usr/$gnu/lib" "$prefix/lib"
    arm_cpuinfo > "$prefix/proc/cpuinfo"
    EDGE_AGENT_LITERT_LIB="$lib" classify litert "$out/$target-litert.jsonl" "$qemu" -L "$prefix" "$bin"
    compare "$out/x86_64-litert.jsonl" "$out/$target-litert.jsonl" "$target litert (qemu)"
  fi
}
unit_tests() { # TARGET EXECUTABLE: the unit tests' executable directly under qemu
  # (through cargo, its lock on the target directory would be held meanwhile).
  cd edge-agent && env -u EDGE_AGENT_LITERT_LIB "${qemu_of[$1]}" -L "/usr/${gnu_of[$1]}" "$2" -q
}

# The builds: both targets in one cargo run (cargo locks the target directory, and
# within one run the two targets' TF Lite builds and crates share both cores).
target_args=()
for target in "${targets[@]}"; do
  QEMU=1
  # shellcheck source=cross-env.sh
  source scripts/cross-env.sh "$target"   # exports settings named after the target only
  gnu_of[$target]="$gnu" qemu_of[$target]="$qemu"
  bin_of[$target]="$target_dir/$target/debug/edge-agent"
  target_args+=(--target "$target")
done
echo "test-devices: cargo build ${target_args[*]} -p edge-agent"
cargo build --locked -q "${target_args[@]}" -p edge-agent --bin edge-agent
unit_exe=""
if [ -n "${gnu_of[aarch64-unknown-linux-gnu]:-}" ]; then
  target=aarch64-unknown-linux-gnu
  echo "test-devices: $target: cargo test -p edge-agent --lib --no-run"
  unit_exe="$(cargo test --locked -q --target "$target" -p edge-agent --lib --no-run --message-format json \
    | python3 -c 'import json, sys; print(next(m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m.get("profile", {}).get("test")))')"
fi

# Then every check at once, each into its own log, printed as each one ends.
names=() pids=()
for target in "${targets[@]}"; do
  check_target "$target" > "$out/$target.log" 2>&1 &
  names+=("$target"); pids+=("$!")
done
if [ -n "$unit_exe" ]; then
  echo "test-devices: aarch64-unknown-linux-gnu: the agent's unit tests under ${qemu_of[aarch64-unknown-linux-gnu]}"
  unit_tests aarch64-unknown-linux-gnu "$unit_exe" > "$out/unit-tests.log" 2>&1 &
  names+=(unit-tests); pids+=("$!")
fi
failed=()
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then status=ok; else status=FAILED; failed+=("${names[$i]}"); fi
  grep -v '^\.*$' "$out/${names[$i]}.log" || true
  echo "test-devices: ${names[$i]}: $status"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-devices: FAILED: ${failed[*]} (logs in $out)" >&2
  exit 1
fi
echo "test-devices: ok (${targets[*]})"
