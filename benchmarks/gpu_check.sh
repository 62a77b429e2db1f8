#!/usr/bin/env bash
# GPU readiness check (issue 14, scope 7): benchmarks/gpu_check.py's parts, each in its own
# process under a hard time limit (its --plan; on one GPU they add up to under 8 minutes), then
# one table of what finished. A part that runs out of time is killed; its finished rows stay.
#
#   benchmarks/gpu_check.sh             on a GPU machine
#   benchmarks/gpu_check.sh --dry-run   the CPU rehearsal: same parts, tiny sizes, GPUs hidden
#
# Environment: PYTHON (default python3; an interpreter with TensorFlow and lrm_tf's needs),
# GPU_CHECK_DIR (default: a new folder under /tmp) for the rows, logs and table.md.
# Exit status: 0 when every part finished and every check passed, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mode=()
case "${1:-}" in
  --dry-run) mode=(--dry-run) ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
dir=${GPU_CHECK_DIR:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$dir"
plan=$("$py" benchmarks/gpu_check.py --plan "${mode[@]}") || exit 2
kill_after=$("$py" -c 'import sys; sys.path.insert(0, "benchmarks"); import gpu_check; print(gpu_check.KILL_AFTER_S)')
export PYTHONUNBUFFERED=1
status=0
while read -r part limit; do
  start=$(date +%s)
  echo "# gpu_check: part $part (limit $limit s), log $dir/$part.log" >&2
  timeout --kill-after="$kill_after" "$limit" \
    "$py" benchmarks/gpu_check.py --part "$part" --results "$dir" "${mode[@]}" >"$dir/$part.log" 2>&1
  rc=$?
  echo "$rc $(( $(date +%s) - start ))" >"$dir/$part.status"
  [ "$rc" -eq 0 ] || status=1
  if [ "$part" = env ] && [ "$rc" -ne 0 ]; then
    break  # no GPU (or no TensorFlow): nothing else can run
  fi
done <<<"$plan"
"$py" benchmarks/gpu_check.py --table --results "$dir" "${mode[@]}" | tee "$dir/table.md"
exit "$status"
