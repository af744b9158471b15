#!/bin/sh
# The RFC's four x86 optimisations, one switch each, on one 16 KiB RX
# alloc + write + finish + free (examples/rx-16k.json): all-CPU shootdowns,
# local flushes and direct-map splits (1 GiB->2 MiB, 2 MiB->4 KiB) per combination.
#
#   (1) directmap=unmapped-block-cache  (2) text_loading=text_poke
#   (3) live_cache=true                 (4) huge_mappings=true
#
# Usage: [PERMALLOC_ARGS='--cpus 64 --no-gbpages'] examples/rfc-switches/table.sh
# Needs `permalloc` on PATH (or PERMALLOC=/path/to/permalloc). Runs with --strict, so a
# W^X violation or a leak at teardown fails the row.
set -eu
here=$(dirname "$0")
scenario="$here/../rx-16k.json"
permalloc=${PERMALLOC:-permalloc}
printf '%-3s %-3s %-3s %-3s | %10s %13s %9s %9s\n' '(1)' '(2)' '(3)' '(4)' shootdowns local_flushes splits_1g splits_2m
for o1 in 0 1; do for o2 in 0 1; do for o3 in 0 1; do for o4 in 0 1; do
    set --  # the switches of this row
    [ $o1 = 1 ] && set -- "$@" --set directmap=unmapped-block-cache
    [ $o2 = 1 ] && set -- "$@" --set text_loading=text_poke
    [ $o3 = 1 ] && set -- "$@" --set live_cache=true
    [ $o4 = 1 ] && set -- "$@" --set huge_mappings=true
    "$permalloc" run -s "$scenario" --arch x86 --strict --format json "$@" ${PERMALLOC_ARGS:-} |
    python3 -c '
import json, sys
t = json.load(sys.stdin)["results"][0]["totals"]
o = sys.argv[1:5]
print("%-3s %-3s %-3s %-3s | %10d %13d %9d %9d" % (*["on" if x == "1" else "-" for x in o],
      t["shootdowns"], t["local_flushes"], t["directmap_splits_1g"], t["directmap_splits_2m"]))
' $o1 $o2 $o3 $o4
done; done; done; done
