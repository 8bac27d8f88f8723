#!/usr/bin/env bash
# Undo whatever a bench run left behind (run.py calls this at start and cleans up itself at
# the end; run this by hand after a run that was killed with SIGKILL):
#   - every process listed in bench/work/state/pids that is still running
#   - every process inside a tbench-* network namespace, then the namespaces,
#     the tbv*/tbp* veths and the tbench0 bridge
#   - every temp dir listed in bench/work/state/dirs (troop-bench-* only)
set -u
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "cleanup: $*"; }
here="$(cd "$(dirname "$0")" && pwd)"
state="$here/work/state"

# Our process only if its start time still matches (a pid may have been reused since).
ours() {
    local pid=$1 start=$2 stat rest
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    [ "${20}" = "$start" ]
}
signalled=0
if [ -f "$state/pids" ]; then
    while read -r pid start name; do
        [ -n "$pid" ] || continue
        if ours "$pid" "$start"; then
            say "stopping $name (pid $pid)"
            signalled=1
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        fi
    done < "$state/pids"
    [ "$signalled" = 1 ] && sleep 2
    while read -r pid start name; do
        [ -n "$pid" ] || continue
        if ours "$pid" "$start"; then
            say "killing $name (pid $pid)"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
        fi
    done < "$state/pids"
    rm -f "$state/pids"
fi

for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^tbench-'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null
    done
    say "deleting namespace $ns"
    ip netns del "$ns" 2>/dev/null
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(tbv|tbp)[0-9a-z]+$|^tbench0$'); do
    say "deleting link $link"
    ip link del "$link" 2>/dev/null
done

if [ -f "$state/dirs" ]; then
    while read -r dir; do
        case "$dir" in
            /tmp/troop-bench-*|/run/sshd) [ -e "$dir" ] && { say "removing $dir"; rm -rf -- "$dir"; } ;;
        esac
    done < "$state/dirs"
    rm -f "$state/dirs"
fi
exit 0
