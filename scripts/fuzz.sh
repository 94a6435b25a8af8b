#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder a network peer or a file reaches (fuzz/, one
# cargo-fuzz target per surface; what each checks: crates/openkv-fuzz-checks), each for a
# bounded time. scripts/test.sh runs it as its last step; `cargo test` replays the committed
# inputs (fuzz/corpus/, fuzz/regressions/) without the fuzzer on every run.
#
#   1. installs the pinned cargo-fuzz into target/tools if needed (the machine has a stable
#      toolchain only: RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz passes);
#   2. builds every target once, into fuzz/target;
#   3. runs each target for SECONDS on a scratch copy of its corpus: new inputs go to a
#      temporary directory, the committed fuzz/corpus/<target>/ and fuzz/regressions/<target>/
#      are only read (the committed corpus never grows in CI);
#   4. on a crash (a panic, a timeout, running out of memory): prints the input's path and
#      base64 and copies it to fuzz/regressions/<target>/, goes on with the other targets,
#      and exits 1 at the end. Fix the bug, rename the file after it, commit it: from then on
#      `cargo test -p openkv-fuzz-checks` replays it.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]
#   SECONDS_PER_TARGET  default 20: ten targets, two at a time on two cores, ~1.5 min of
#                       fuzzing, after the build (4-7 min on a fresh 2-core machine, a few
#                       seconds once built) and cargo-fuzz's install (~1 min, once).
#   TARGET...           default: every target of fuzz/Cargo.toml.
# e.g. scripts/fuzz.sh 600 kv_connect_request   (a longer hunt on one target)
# Environment: OPENKV_FUZZ_JOBS=N runs N fuzzers at once (default: one per core).
#
# Build flags, chosen by measuring cold builds of all nine targets on this 2-core machine
# (shared with other builds, so the wall times are rough; the CPU times compare):
#   -O -a      release code with debug assertions and overflow checks: an overflow in a
#              decoder is a bug even where a release build would wrap silently;
#   -s none    no AddressSanitizer: the build takes 4.3 CPU-min instead of 6.3 with it, and
#              the targets run 3.5-5x as many inputs per second (v8_decode 216k/s against
#              62k/s, kv_connect_request 113k/s against 23k/s). What ASan adds is little: openkv
#              has no unsafe code (`unsafe_code = forbid` in every crate), so it would only
#              watch the dependencies' unsafe code, and the bundled SQLite is C it does not
#              instrument anyway. Panics, overflows, stack overflows, timeouts (-timeout) and
#              memory blow-ups (-rss_limit_mb) are caught without it.
#   cargo-fuzz's codegen-units=1 stays: 16 units made the build cost more CPU (5.2 min; with
#              ASan 8.0), not less, and two cores are kept busy by whole crates anyway.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-20}
(($# > 0)) && shift
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]" >&2
  exit 2
fi

step() { printf '\n==> %s\n' "$*" >&2; }

# --- cargo-fuzz ----------------------------------------------------------------
cargo_fuzz_version=0.13.2
cargo_fuzz_root="$PWD/target/tools/cargo-fuzz-$cargo_fuzz_version"
if [[ ! -x "$cargo_fuzz_root/bin/cargo-fuzz" ]]; then
  step "installing cargo-fuzz $cargo_fuzz_version (cargo install --locked) into $cargo_fuzz_root"
  cargo install cargo-fuzz --version "=$cargo_fuzz_version" --locked --root "$cargo_fuzz_root" \
    --quiet
fi
export PATH="$cargo_fuzz_root/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# The targets are built into fuzz/target (their flags would only churn a shared target dir).
unset CARGO_TARGET_DIR

build_flags=(-O -a -s none)
if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# --- build ---------------------------------------------------------------------------------
step "building ${#targets[@]} fuzz targets (cargo fuzz build ${build_flags[*]})"
started=$SECONDS
if (($# > 0)); then
  for target in "${targets[@]}"; do (cd fuzz && cargo fuzz build "${build_flags[@]}" "$target"); done
else
  (cd fuzz && cargo fuzz build "${build_flags[@]}")
fi
echo "built in $((SECONDS - started)) s" >&2
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release

# --- run -----------------------------------------------------------------------------------
scratch="$(mktemp -d -t openkv-fuzz.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT

# Options per target: the longest input (a backup is a whole SQLite file), a dictionary.
options_for() {
  case "$1" in
    backup_file) options=(-max_len=16384) ;;
    v8_decode | kv_connect_request) options=(-max_len=4096 -dict=fuzz/v8.dict) ;;
    import_line | extension_json | kv_connect_answer) options=(-max_len=4096 -dict=fuzz/json.dict) ;;
    key_syntax) options=(-max_len=1024 -dict=fuzz/key.dict) ;;
    *) options=(-max_len=4096) ;;
  esac
}

# stat NAME LOG: one of libFuzzer's final statistics (-print_final_stats).
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

# fuzz_one TARGET: runs TARGET's fuzzer (in the background: its output goes to
# $scratch/TARGET.log, its exit status to $scratch/TARGET.status).
fuzz_one() {
  local target=$1 status=0 options
  local seeds=("fuzz/corpus/$target")
  [[ -d "fuzz/regressions/$target" ]] && seeds+=("fuzz/regressions/$target")
  mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
  options_for "$target"
  timeout $((seconds + 120)) "$bin_dir/$target" "$scratch/$target" "${seeds[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 "${options[@]}" \
    >"$scratch/$target.log" 2>&1 || status=$?
  echo "$status" >"$scratch/$target.status"
}

# One fuzzer per core: each target gets a core for its seconds either way, and the step takes
# half as long on two.
jobs=${OPENKV_FUZZ_JOBS:-$(nproc)}
step "fuzzing ${#targets[@]} targets for $seconds s each, $jobs at a time"
running=0
for target in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
  echo "  $target" >&2
  fuzz_one "$target" &
  running=$((running + 1))
done
wait

crashed=()
summary=()
for target in "${targets[@]}"; do
  log="$scratch/$target.log"
  status=$(cat "$scratch/$target.status")
  dirs=("$scratch/$target" "fuzz/corpus/$target")
  [[ -d "fuzz/regressions/$target" ]] && dirs+=("fuzz/regressions/$target")
  corpus=$(find "${dirs[@]}" -type f | wc -l)
  summary+=("$(printf '%-20s %9s runs %7s exec/s %5s new inputs, corpus %4s, peak %s MB' \
    "$target" "$(stat number_of_executed_units "$log")" "$(stat average_exec_per_sec "$log")" \
    "$(stat new_units_added "$log")" "$corpus" "$(stat peak_rss_mb "$log")")")
  ((status != 0)) || continue
  # A crash: libFuzzer names the input it wrote ("Test unit written to <path>").
  step "$target failed (exit $status); the end of its log:"
  tail -n 60 "$log" >&2
  input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  crashed+=("$target")
  if [[ -n "$input" && -f "$input" ]]; then
    mkdir -p "fuzz/regressions/$target"
    cp "$input" "fuzz/regressions/$target/"
    echo "FUZZ CRASH in $target: $input ($(wc -c <"$input") bytes), base64:" >&2
    base64 -w0 "$input" >&2
    echo >&2
    echo "copied to fuzz/regressions/$target/$(basename "$input"): fix the bug, rename the file" \
      "after it, commit it (cargo test -p openkv-fuzz-checks replays it)" >&2
  else
    echo "FUZZ FAILURE in $target (exit $status) with no input written: see the log above" >&2
  fi
done

step "fuzzing summary ($seconds s per target, $jobs at a time)"
printf '%s\n' "${summary[@]}" >&2
if ((${#crashed[@]})); then
  echo "fuzz targets that crashed: ${crashed[*]}" >&2
  exit 1
fi
