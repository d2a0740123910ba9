# croft verify, on the target: sh -s -- LIVE_ROOT CROFT_DIR UNIT... -- OUTSIDE_PATH...
# Prints the live tree ("d MODE PATH", "l PATH<tab>TARGET", "f MODE SHA256 PATH"), the links
# under /usr/local ("L PATH<tab>TARGET"), each unit's state ("u UNIT ACTIVESTATE RESULT TYPE")
# and where each of croft's links outside /usr/local points ("X PATH<tab>TARGET").
set -u
root=$1
croft=$2
shift 2
cd "$root" || exit 3
find . -mindepth 1 -type d -printf 'd %m %P\n'
find . -mindepth 1 -type l -printf 'l %P\t%l\n'
find . -mindepth 1 -type f -printf '%P\0' | xargs -0 -r sh -c '
    for f do printf "f %s %s %s\n" "$(stat -c %a "$f")" "$(sha256sum < "$f" | cut -d" " -f1)" "$f"; done' sh
find /usr/local -path "$croft" -prune -o -type l -printf 'L %P\t%l\n'
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    printf 'u %s %s %s %s\n' "$1" "$(systemctl show -P ActiveState "$1")" \
        "$(systemctl show -P Result "$1")" "$(systemctl show -P Type "$1")"
    shift
done
[ $# -gt 0 ] && shift
for path do
    printf 'X %s\t%s\n' "$path" "$(readlink "/$path")"
done
