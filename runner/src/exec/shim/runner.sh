#!/bin/sh
# Drydock's in-job `runner` command, written into the primary container by the runner (runner/src/exec/shim.rs).
# A shell script rather than the runner binary: it must work in any image (busybox, alpine's musl, distroless
# shells), and it needs only sh, find, sed, sort and awk.
#   runner step halt                      end the job successfully after this step
#   runner tests glob PATTERN...          files under . matching the globs (*, ?, **, {a,b}), sorted
#   runner tests split [--split-by=name|filesize|timings] [--total N] [--index I]   < names
d=/tmp/.drydock
usage() {
    echo "usage: runner step halt | runner tests glob PATTERN... | runner tests split [--split-by=name|filesize|timings] [--total N] [--index I] < FILES" >&2
    exit 2
}
case "$1 $2" in
"step halt")
    mkdir -p "$d" 2>/dev/null
    : >"$d/halt" || { echo "runner step halt: cannot write $d/halt" >&2; exit 1; }
    echo "Halting: the job ends successfully after this step"
    exit 0
    ;;
"tests glob")
    shift 2
    [ $# -gt 0 ] || usage
    pats=$(printf '%s\n' "$@")
    find . -type f 2>/dev/null | sed 's|^\./||' | awk -v pats="$pats" '
    function glob2re(p,   re, i, c, n, brace) {
        sub(/^\.\//, "", p)
        re = "^"; n = length(p); brace = 0
        for (i = 1; i <= n; i++) {
            c = substr(p, i, 1)
            if (c == "*") {
                if (substr(p, i + 1, 1) == "*") {
                    if (substr(p, i + 2, 1) == "/") { re = re "(.*/)?"; i += 2 } else { re = re ".*"; i++ }
                } else re = re "[^/]*"
            } else if (c == "?") re = re "[^/]"
            else if (c == "{") { re = re "("; brace++ }
            else if (c == "}" && brace) { re = re ")"; brace-- }
            else if (c == "," && brace) re = re "|"
            else if (index(".+()|^$[]\\", c)) re = re "\\" c
            else re = re c
        }
        return re "$"
    }
    BEGIN { n = split(pats, P, "\n"); for (i = 1; i <= n; i++) R[i] = glob2re(P[i]) }
    { for (i = 1; i <= n; i++) if ($0 ~ R[i]) { print; break } }' | sort
    exit 0
    ;;
"tests split")
    shift 2
    by=name
    total=${CIRCLE_NODE_TOTAL:-1}
    index=${CIRCLE_NODE_INDEX:-0}
    while [ $# -gt 0 ]; do
        case "$1" in
        --split-by=*) by=${1#*=} ;;
        --split-by) by=$2; shift ;;
        --total=*) total=${1#*=} ;;
        --total) total=$2; shift ;;
        --index=*) index=${1#*=} ;;
        --index) index=$2; shift ;;
        *) usage ;;
        esac
        shift
    done
    case "$by" in name | filesize | timings) ;; *) echo "runner tests split: --split-by must be name, filesize or timings, not '$by'" >&2; exit 2 ;; esac
    case "$total$index" in *[!0-9]*) echo "runner tests split: --total and --index must be whole numbers" >&2; exit 2 ;; esac
    [ "$index" -lt "$total" ] || { echo "runner tests split: --index $index is not below --total $total" >&2; exit 2; }
    if [ "$by" = timings ] && [ ! -s "$d/timings" ]; then
        echo "runner tests split: no timings from earlier test results of this job: splitting by file size" >&2
        by=filesize
    fi
    # One name per word of stdin; each with a weight, heaviest first, then dealt to the lightest node.
    tr -s ' \t\r' '\n\n\n' | sed '/^$/d' | sort -u | while IFS= read -r name; do
        case "$by" in
        name) w=0 ;;
        filesize) w=$(wc -c <"$name" 2>/dev/null || echo 0) ;;
        timings) w=-1 ;;
        esac
        printf '%s\t%s\n' "$w" "$name"
    done | awk -F '\t' -v by="$by" -v timings="$d/timings" -v total="$total" -v index_="$index" '
    BEGIN { if (by == "timings") while ((getline line < timings) > 0) { split(line, kv, "\t"); T[kv[1]] = kv[2] + 0; known++ } }
    { n++; name[n] = $2; w[n] = $1 + 0
      if (by == "timings") { k = $2; sub(/^\.\//, "", k); if (k in T) { w[n] = T[k]; sum += T[k]; hits++ } else w[n] = -1 } }
    END {
        # Names without a timing weigh the average of the others (CircleCI does the same).
        avg = hits ? sum / hits : 1
        for (i = 1; i <= n; i++) if (w[i] < 0) w[i] = avg
        # Selection sort, heaviest first, then by name (n is small: a test suite'"'"'s files).
        for (i = 1; i <= n; i++) order[i] = i
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) {
            a = order[i]; b = order[j]
            if (w[b] > w[a] || (w[b] == w[a] && name[b] < name[a])) { order[i] = b; order[j] = a }
        }
        for (k = 0; k < total; k++) load[k] = 0
        for (i = 1; i <= n; i++) {
            x = order[i]
            if (by == "name") node = (i - 1) % total
            else { node = 0; for (k = 1; k < total; k++) if (load[k] < load[node]) node = k }
            load[node] += w[x]; at[x] = node
        }
        for (i = 1; i <= n; i++) if (at[i] == index_) print name[i]
    }'
    exit 0
    ;;
esac
usage
