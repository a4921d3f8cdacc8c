#!/usr/bin/env bash
# Checks systemd unit files with `systemd-analyze verify` (ctest -L deploy runs it on
# deploy/systemd/, and on the broken units of tests/deploy/bad-units/, which it must refuse).
#
#   verify_units.sh [--bin-dir DIR] [--expect-failure] UNIT_OR_DIRECTORY...
#
#   --bin-dir DIR     look under DIR for each ExecStart program by its file name (the build
#                     tree); /bin/true stands in for one not found
#   --expect-failure  succeed only if every unit given is refused (tests this script)
#
# Exit status: 0 when every unit passes (with --expect-failure: every unit is refused), 1
# otherwise, 2 for bad usage, 77 when systemd-analyze cannot run here at all (ctest's
# SKIP_RETURN_CODE). Nothing is installed: systemd-analyze comes with the Debian package
# `systemd`, which deploy/lib/deps.sh lists. It needs no running systemd: it works in a
# container whose PID 1 is something else, as root or not.
#
# Three things make the check strict and independent of the machine:
# - `systemd-analyze verify` fails when a unit's ExecStart program does not exist or is not
#   executable, and /usr/local/bin/trustmoe-* exist only where TrustMoE is installed. Each unit
#   is checked on a copy in which only the ExecStart program is replaced, by the built binary of
#   that name when --bin-dir has one and /bin/true otherwise; every other line is checked as
#   written.
# - verify also loads the other units of the unit's directory, and their warnings would be mixed
#   in: each copy gets a directory of its own.
# - verify exits 0 after many mistakes that it only warns about, because systemd would start
#   the unit with the setting dropped: an unknown directive ("Unknown key 'ProtectSystm' in
#   section [Service], ignoring."), a bad Type= ("Failed to parse service type, ignoring:
#   notfy"), bad device rights ("Invalid device rights 'rwx', ignoring."), a line without '='.
#   A correct unit is silent, so any output line that names the unit file counts as an error,
#   not only those saying Unknown, Failed or Invalid.
set -uo pipefail

bin_dir=""
expect_failure=0
units=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --expect-failure) expect_failure=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "verify_units.sh: unknown option $1" >&2; exit 2 ;;
    *)
      if [ -d "$1" ]; then
        for unit in "$1"/*.service "$1"/*.socket "$1"/*.timer; do
          [ -e "$unit" ] && units+=("$unit")
        done
      elif [ -f "$1" ]; then
        units+=("$1")
      else
        echo "verify_units.sh: no such unit file or directory: $1" >&2; exit 2
      fi
      shift ;;
  esac
done
if [ ${#units[@]} -eq 0 ]; then
  echo "verify_units.sh: no unit files given" >&2; exit 2
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not found; install the Debian package systemd (deploy/lib/deps.sh)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/verify_units.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

stand_in=/bin/true
[ -x "$stand_in" ] || stand_in=$(command -v true)

# The program that replaces `program` (an ExecStart path) in the copy.
replacement_for() {
  local program=$1 found=""
  if [ -n "$bin_dir" ] && [ -d "$bin_dir" ]; then
    found=$(find "$bin_dir" -type f -name "$(basename "$program")" -perm -u+x -print -quit)
  fi
  echo "${found:-$stand_in}"
}

# Copies unit $1 to directory $2 with the ExecStart programs replaced.
copy_unit() {
  local unit=$1 dir=$2 line prefix rest program
  local copy
  copy="$dir/$(basename "$unit")"
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ ^(ExecStart=[-@:+!]*)([^[:space:]]+)(.*)$ ]]; then
      prefix=${BASH_REMATCH[1]}
      program=${BASH_REMATCH[2]}
      rest=${BASH_REMATCH[3]}
      line="$prefix$(replacement_for "$program")$rest"
    fi
    printf '%s\n' "$line"
  done <"$unit" >"$copy"
  chmod 0644 "$copy"  # verify warns about unit files marked executable
}

# Runs verify on the copy of unit $1. Returns 0 if the unit passed; otherwise sets `report` to
# what verify said about it.
report=""
verify_one() {
  local unit=$1 dir output status name findings
  name=$(basename "$unit")
  dir=$(mktemp -d "$work/unit.XXXXXX") || return 1
  copy_unit "$unit" "$dir"
  output=$(cd "$dir" && systemd-analyze verify "$dir/$name" 2>&1)
  status=$?
  findings=$(printf '%s\n' "$output" | grep -F -- "$name")
  report=$(printf '%s\n' "$output" | sed "s|$dir/||")
  [ $status -ne 0 ] && report+=$'\n'"(systemd-analyze verify exited $status)"
  [ $status -eq 0 ] && [ -z "$findings" ]
}

# Can systemd-analyze run here at all? A trivial correct unit must pass.
probe_dir=$(mktemp -d "$work/probe.XXXXXX")
printf '[Unit]\nDescription=probe\n\n[Service]\nExecStart=%s\n' "$stand_in" \
  >"$probe_dir/verify-units-probe.service"
if ! probe=$(cd "$probe_dir" && systemd-analyze verify "$probe_dir/verify-units-probe.service" 2>&1) \
    || grep -qF verify-units-probe <<<"$probe"; then
  echo "SKIP: systemd-analyze cannot verify even a trivial unit here:"
  printf '%s\n' "$probe" | sed 's|^|    |'
  exit 77
fi

failed=0
for unit in "${units[@]}"; do
  if [ $expect_failure -eq 0 ]; then
    if verify_one "$unit"; then
      echo "ok       $unit"
    else
      echo "FAILED   $unit"
      failed=1
    fi
  elif verify_one "$unit"; then
    echo "FAILED   $unit was accepted, but it is broken"
    failed=1
  else
    # A broken unit names what verify must say about it in a line "# expect: TEXT".
    expected=$(sed -n 's/^# expect: //p' "$unit")
    if [ -n "$expected" ] && ! grep -qF -- "$expected" <<<"$report"; then
      echo "FAILED   $unit refused, but not with \"$expected\""
      failed=1
    else
      echo "ok       $unit refused, as it should be"
    fi
  fi
  [ -n "$report" ] && printf '%s\n' "$report" | sed 's|^|    |'
  report=""
done
exit $failed
