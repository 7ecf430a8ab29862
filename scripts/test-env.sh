# Sourced, not run, by the test command's scripts (scripts/test.sh, test-devices.sh):
# how the test builds differ from a release build, in one place, and where they land.
#
# `target_dir`: cargo's target directory as cargo resolves it (CARGO_TARGET_DIR, a
# `build.target-dir` in a cargo config, or ./target).
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
#
# TF Lite at -O2. The tflite crate compiles TensorFlow Lite's C++ with the
# CXXFLAGS_<target> of .cargo/config.toml (-O3, the release's flags). The test command
# builds it for three targets (x86_64, and aarch64 and armv7 for the device checks),
# and at -O2 each takes a third less compile time (5 of its kernels on this machine:
# 68 s at -O3, 46 s at -O2), with the same scores (the device checks compare every
# class's score with 1e-5 tolerance). Releases keep -O3: only these exports change it,
# and a CXXFLAGS_<target> the caller set wins.
#
# TF Lite's library is built once per target directory and profile, so a dev build
# made before with other flags keeps its library; the crate's C++ glue is rebuilt.
# (python3 3.11 for tomllib: Debian 12's. Without it the builds keep -O3, saying so.)
if test_env_flags="$(python3 - "$(dirname "${BASH_SOURCE[0]}")/../.cargo/config.toml" <<'PYEOF'
import sys, tomllib
env = tomllib.load(open(sys.argv[1], "rb"))["env"]
for name, value in env.items():
    if name.startswith("CXXFLAGS_"):
        flags = ["-O2" if f == "-O3" else f for f in value.split()]
        print(f"{name}={' '.join(flags)}")
PYEOF
)"; then
  while IFS='=' read -r test_env_name test_env_value; do
    if [ -n "$test_env_name" ] && [ -z "${!test_env_name:-}" ]; then
      export "$test_env_name=$test_env_value"
    fi
  done <<< "$test_env_flags"
else
  echo "test-env: could not read .cargo/config.toml's CXXFLAGS (python3 >= 3.11 needed); TF Lite builds with -O3" >&2
fi
