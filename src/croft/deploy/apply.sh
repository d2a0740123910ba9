# croft's switch: run on the target by `croft deploy`, `rollback` and `reset`.
#
# Carries out a plan computed by croft (croft/deploy/plan.py documents the steps) and, when a
# unit fails, the plan back to the generation that was live. croft prepends the variables and
# the two plans. It runs in a session of its own (setsid) and writes to a log, so a client
# that dies mid-way cannot stop it half-way: the machine ends on one generation or the other.
set -u
CROFT=/usr/local/croft
GENERATIONS=$CROFT/generations
TAB=$(printf '\t')
OLD_IFS=$IFS

exec 9>"$CROFT/lock"
if ! flock -w 60 9; then
    echo "croft-error: another croft command holds $CROFT/lock"
    exit 75
fi

# Transfers that never reached a switch (a client killed mid-way) leave their directory; a day
# later it is surely nobody's. Each deploy sends into a directory of its own ($INCOMING), so two
# deploys of one machine never write into each other's tree.
find "$GENERATIONS" -mindepth 1 -maxdepth 1 -name '.incoming*' -mmin +1440 -exec rm -rf {} + 2>/dev/null

live=$(readlink "$CROFT/live" 2>/dev/null) || live=generations/none
live=${live#generations/}
if [ "$live" != "$EXPECT" ]; then
    [ -z "$INCOMING" ] || rm -rf "${GENERATIONS:?}/$INCOMING"
    echo "croft-error: the machine changed since croft read it (live generation $live, expected $EXPECT); run the command again"
    exit 75
fi

# Whether a path is croft's own: a link into its live generation.
ours() {
    case $(readlink "$1" 2>/dev/null) in "$CROFT"/*) return 0 ;; esac
    return 1
}
adopted() { printf '%s\n' "$ADOPT" | grep -qxF "$1"; }

# Paths the forward plan takes over (a link where there is none of croft's, a directory where
# there is a file) that exist and are not croft's: an admin's data. Each is named and nothing
# changes, unless the site adopts it (adopt = [...] in layer.toml).
taken() {
    forward_plan | while IFS= read -r line; do
        verb=${line%% *}
        arg=${line#* }
        set -f; IFS=$TAB; set -- $arg; IFS=$OLD_IFS; set +f
        case $verb in
            links) dir=$1; shift; for name do echo "$dir/$name"; done ;;
            dirs) shift; for path do [ -d "/$path" ] && [ ! -L "/$path" ] || echo "$path"; done ;;
        esac
    done
}
conflicts=$(taken | while IFS= read -r path; do
    if { [ -e "/$path" ] || [ -L "/$path" ]; } && ! ours "/$path" && ! adopted "$path"; then
        echo "croft-conflict: /$path"
    fi
done)
if [ -n "$conflicts" ]; then
    echo "$conflicts"
    [ -z "$INCOMING" ] || rm -rf "${GENERATIONS:?}/$INCOMING"
    echo "croft-error: these paths exist and are not croft's: move them away, or adopt them in the layer that ships them (adopt = [...] in layer.toml); nothing changed"
    exit 65
fi

# Set an adopted path's old content aside (croft takes the path over), or put it back (croft
# stopped shipping it).
adopt() {
    if [ -e "/$1" ] || [ -L "/$1" ]; then
        if ! ours "/$1" && adopted "$1"; then
            mkdir -p "$CROFT/adopted/${1%/*}" && mv "/$1" "$CROFT/adopted/$1"
        fi
    fi
}
give_back() {
    if [ -e "$CROFT/adopted/$1" ] || [ -L "$CROFT/adopted/$1" ]; then
        mv "$CROFT/adopted/$1" "/$1"
    fi
}

if [ -n "$INCOMING" ]; then
    if [ ! -d "$GENERATIONS/$INCOMING/root" ]; then
        echo "croft-error: the transferred tree is missing ($GENERATIONS/$INCOMING)"
        exit 70
    fi
    rm -rf "${GENERATIONS:?}/$GEN"
    mv "$GENERATIONS/$INCOMING" "$GENERATIONS/$GEN"
    {
        echo "generation=$GEN"
        echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "by=$BY"
        echo "digest=$(cat "$GENERATIONS/$GEN/digest")"
    } > "$GENERATIONS/$GEN/info"
fi

step() {
    verb=${1%% *}
    arg=${1#* }
    case $verb in
        stop) systemctl stop "$arg" ;;
        dirs)
            # MODE<tab>PATH<tab>PATH...: a path that was a file (a link into the live
            # generation) becomes a directory.
            mode=${arg%%"$TAB"*}
            set -f; IFS=$TAB; set -- ${arg#*"$TAB"}; IFS=$OLD_IFS; set +f
            for path do
                adopt "$path"
                if [ -L "/$path" ]; then rm -f "/$path"; fi
                set -- "$@" "/$path"
            done
            shift $(($# / 2))
            mkdir -p "$@" && chmod "$mode" "$@" ;;
        links)
            # DIR<tab>NAME<tab>NAME...: one ln for the whole directory.
            dir=${arg%%"$TAB"*}
            set -f; IFS=$TAB; set -- ${arg#*"$TAB"}; IFS=$OLD_IFS; set +f
            for name do
                adopt "$dir/$name"
                # A path that was croft's directory becomes a file (it is empty of anything
                # else: what is not croft's stopped the deploy above, or was adopted).
                if [ -d "/$dir/$name" ] && [ ! -L "/$dir/$name" ]; then rm -rf "/$dir/$name"; fi
                set -- "$@" "$CROFT/live/root/$dir/$name"
            done
            shift $(($# / 2))
            mkdir -p "/$dir" && ln -sfn -t "/$dir" "$@" ;;
        flip)
            if [ "$arg" = none ]; then
                rm -f "$CROFT/live"
            else
                # rename(2) of a symlink: every file croft owns switches content at once.
                ln -sfn "generations/$arg" "$CROFT/live.new" && mv -T "$CROFT/live.new" "$CROFT/live"
            fi ;;
        unlink) if [ -L "/$arg" ]; then rm -f "/$arg"; fi; give_back "$arg" ;;
        rmdir) if rmdir "/$arg" 2>/dev/null; then give_back "$arg"; fi ;;
        # Reads every sysusers.d directory, /usr/local/lib/sysusers.d included.
        sysusers) systemd-sysusers ;;
        daemon-reload) systemctl daemon-reload ;;
        start|restart|reload-or-restart|try-restart|try-reload-or-restart)
            # Quick deploys in a row (--watch) would hit the unit's start limit: croft starts
            # it on purpose, so its failure count starts over.
            systemctl reset-failed "$arg" 2>/dev/null
            systemctl "$verb" "$arg" ;;
        check) checks="$checks $arg" ;;
        *) echo "croft-error: unknown step: $1"; return 1 ;;
    esac
}

# Microseconds since boot, in the shell's own 64-bit arithmetic (awk's printf %d stops at 2^31:
# 36 minutes of uptime).
now_us() {
    read -r up _ < /proc/uptime
    centis=${up#*.}
    echo $(( (${up%.*} * 100 + ${centis#0}) * 10000 ))  # ${centis#0}: "08" is no octal number
}

# Whether a unit settled: active for $SETTLE_US microseconds in a row since it last became active (a
# service that starts and dies a second later is caught), or, a oneshot, run to its end. Waits
# while it is activating, up to 120 s. (/proc/uptime is the clock ActiveEnterTimestampMonotonic
# counts on, but for time spent suspended.)
settled() {
    want=$SETTLE_US
    deadline=$(( $(now_us) + 120000000 ))
    while :; do
        state=$(systemctl show -P ActiveState "$1")
        sub=$(systemctl show -P SubState "$1")
        case $state/$sub in
            active/*|reloading/*)
                entered=$(systemctl show -P ActiveEnterTimestampMonotonic "$1")
                [ $(( $(now_us) - entered )) -ge "$want" ] && return 0 ;;
            activating/auto-restart|failed/*) return 1 ;;
            inactive/*)
                # A oneshot unit that ran and exited cleanly is settled too; a service that
                # ended is not, however it ended.
                [ "$(systemctl show -P Type "$1")" = oneshot ] \
                    && [ "$(systemctl show -P Result "$1")" = success ] && return 0
                return 1 ;;
        esac
        [ "$(now_us)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

journal() {
    echo "croft-journal-begin: $1"
    journalctl -u "$1" -n 25 --no-pager -q 2>&1 || systemctl status "$1" --no-pager 2>&1
    echo "croft-journal-end: $1"
}

# Carries out one plan; on the first failure reports it and returns 1.
run_plan() {
    checks=""
    failed=""
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        echo "croft-step: $line"
        if ! step "$line" 2>&1; then
            echo "croft-failed: $line"
            case ${line%% *} in
                stop|start|restart|reload-or-restart|try-restart|try-reload-or-restart)
                    failed=${line#* } ;;
            esac
            return 1
        fi
    done < "$1"
    for unit in $checks; do
        if ! settled "$unit"; then
            echo "croft-failed: $unit did not stay up"
            failed="$failed $unit"
        fi
    done
    [ -z "$failed" ]
}

# `croft reset --purge`, once croft's units are stopped: what croft made outside /usr/local.
# The system users croft made for its services (named croft-*, from the sysusers.d files of any
# generation it kept) and /var/lib/croft: services' state and snapshots, container templates and
# roots (btrfs subvolumes, deleted as such). A file system mounted there stays mounted, empty.
purge() {
    cat "$GENERATIONS"/*/root/usr/local/lib/sysusers.d/*.conf 2>/dev/null \
        | awk '$1 == "u" && $2 ~ /^croft-/ { print $2 }' | sort -u | while read -r user; do
        if id -u "$user" >/dev/null 2>&1; then userdel "$user" && echo "croft-purged: user $user"; fi
        if getent group "$user" >/dev/null; then groupdel "$user" 2>/dev/null || true; fi
    done
    [ -d /var/lib/croft ] || return 0
    if command -v btrfs >/dev/null; then
        # Subvolumes have inode 256; the deepest first (snapshots live inside a service's).
        find /var/lib/croft -mindepth 1 -xdev -type d -inum 256 | sort -r | while read -r subvolume; do
            btrfs -q subvolume delete "$subvolume" >/dev/null 2>&1 || true
        done
    fi
    find /var/lib/croft -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    if ! mountpoint -q /var/lib/croft; then rmdir /var/lib/croft; fi
    echo "croft-purged: /var/lib/croft"
}

plans=$(mktemp -d)
trap 'rm -rf "$plans"' EXIT
forward_plan > "$plans/forward"
backward_plan > "$plans/backward"

# Confirm or revert: before the switch, a timer that runs the way back in $CONFIRM seconds,
# unless croft reaches the machine again over a new SSH connection and cancels it (a change
# that locks croft out undoes itself). The way back is a switch script of its own.
if [ "$CONFIRM" != 0 ]; then
    systemctl stop croft-revert.timer croft-revert.service 2>/dev/null
    systemctl reset-failed croft-revert.timer croft-revert.service 2>/dev/null
    revert_script > "$CROFT/revert.sh"
    systemd-run --quiet --unit=croft-revert --on-active="${CONFIRM}s" \
        --timer-property=AccuracySec=100ms /bin/sh "$CROFT/revert.sh"
fi
cancel_revert() {
    [ "$CONFIRM" = 0 ] || { systemctl stop croft-revert.timer 2>/dev/null; rm -f "$CROFT/revert.sh"; }
}

if run_plan "$plans/forward"; then
    if [ "$GEN" != none ]; then
        echo ok > "$GENERATIONS/$GEN/status"
        # Prune: keep the newest $KEEP generations, and always the live one.
        ls "$GENERATIONS" | grep -E '^[0-9]+$' | sort -n | head -n "-$KEEP" | while read -r old; do
            [ "$old" = "$GEN" ] || rm -rf "${GENERATIONS:?}/$old"
        done
    fi
    if [ "$RESET" = 1 ]; then
        if [ "$PURGE" = 1 ]; then purge; fi
        # The lock goes too: the open descriptor keeps it held until this script exits.
        rm -rf "$CROFT"
        echo "croft-reset: done"
    fi
    echo "croft-done: $GEN"
    exit 0
fi

cancel_revert  # this script goes back itself, now
for unit in $failed; do journal "$unit"; done
if [ "$GEN" != none ] && [ -n "$INCOMING" ]; then echo failed > "$GENERATIONS/$GEN/status"; fi
if [ "$ROLLBACK" = 1 ]; then
    echo "croft-rollback: back to generation $EXPECT"
    rolled_back=$failed
    if run_plan "$plans/backward"; then
        # The units that failed are gone or back as they were: none stays in the failed list
        # (a machine left "degraded" by a deploy that was undone).
        for unit in $rolled_back; do systemctl reset-failed "$unit" 2>/dev/null; done
        echo "croft-rolled-back: $EXPECT"
        exit 1
    fi
    for unit in $failed; do journal "$unit"; done
    echo "croft-error: the rollback failed too"
fi
exit 2
