# croft's switch: run on the target by `croft deploy`, `rollback` and `reset`.
#
# Carries out a plan computed by croft (croft/deploy/plan.py documents the steps) and, when a
# unit fails, the plan back to the generation that was live. croft prepends the variables, the
# two plans among them. A client that dies mid-way cannot stop it half-way (sshd leaves it
# running, and with SIGPIPE ignored, writing to the closed connection fails instead of killing
# it): the machine ends on one generation or the other. Every program it starts (and every
# fork) costs a few milliseconds on a small machine, times every machine at once: the shell's
# own commands (read, printf, test, globs) do what they can, and what a plan has no line for
# is skipped.
set -u
trap '' PIPE
GENERATIONS=$CROFT/generations
TAB='	'  # (a tab)
NL='
'
OLD_IFS=$IFS

# The last switch's tidy (below) runs at the lowest priority, holding the lock: when it still
# does, it gets its priority back, so a busy machine does not keep this switch waiting. It is
# named by its pid and start time (a pid alone may be another process's by now).
boost_tidy() {
    read -r pid started 2>/dev/null < "$CROFT/tidy" || return 0
    read -r stat 2>/dev/null < "/proc/$pid/stat" || return 0
    set -f; set -- ${stat##*) }; set +f  # the fields after the command's name: 22nd is $20
    if [ "${20:-}" = "$started" ]; then echo 0 2>/dev/null > "/proc/$pid/autogroup"; fi
}
[ -d "$CROFT" ] || mkdir -p "$CROFT"
exec 9>"$CROFT/lock"
if ! flock -n 9; then
    boost_tidy
    if ! flock -w 60 9; then
        echo "croft-error: another croft command holds $CROFT/lock"
        exit 75
    fi
fi

# The live generation: its info's first line (generation=N) names it.
live=none
if [ -L "$CROFT/live" ]; then
    IFS= read -r first < "$CROFT/live/info" && live=${first#generation=}
fi
# The switch was planned from generation $EXPECT (with digest $EXPECT_DIGEST, when croft knows
# it): from anything else it is refused, and nothing changes. croft deploys from what it last
# left live without reading the machine first, and reads it when this says stale.
stale() {
    [ "$live" = "$EXPECT" ] || return 0
    if [ -n "$EXPECT_DIGEST" ]; then
        IFS= read -r live_digest < "$CROFT/live/digest" && [ "$live_digest" = "$EXPECT_DIGEST" ] || return 0
    fi
    [ "$RECEIVE" = 1 ] && [ -e "$GENERATIONS/$GEN" ]
}
if stale; then
    echo "croft-stale: live generation $live"
    echo "croft-error: the machine changed since croft read it (live generation $live, expected $EXPECT); run the command again"
    exit 75
fi

# Whether a path is croft's own: a link into its live generation.
ours() {
    case $(readlink "$1" 2>/dev/null) in "$CROFT"/*) return 0 ;; esac
    return 1
}
adopted() {
    case "$NL$ADOPT$NL" in *"$NL$1$NL"*) return 0 ;; esac
    return 1
}

# The plan's lines are split in the shell's memory (set -f; IFS=newline): `read` from a pipe or
# a here-document takes a system call a byte, and a first deploy's plan names every path (its
# conflict check alone was ~15 ms of a small machine's CPU that way).

# Whether a path the plan takes over exists and is not croft's (nor adopted): an admin's data.
foreign() {
    { [ -e "/$1" ] || [ -L "/$1" ]; } && ! ours "/$1" && ! adopted "$1"
}
# Paths the forward plan takes over (a link where there is none of croft's, a directory where
# there is a file) that exist and are not croft's: an admin's data. Each is named and nothing
# changes, unless the site adopts it (adopt = [...] in layer.toml). Links outside /usr/local
# (apt reads only /etc/apt): a path there that is not croft's link is someone else's.
taken() {
    set -f; IFS=$NL
    for line in $FORWARD; do
        verb=${line%% *}
        IFS=$TAB; set -- ${line#* }; IFS=$NL
        case $verb in
            links)
                dir=$1; shift
                for name do if foreign "$dir/$name"; then echo "croft-conflict: /$dir/$name"; fi; done ;;
            dirs)
                shift
                for path do
                    if { [ ! -d "/$path" ] || [ -L "/$path" ]; } && foreign "$path"; then
                        echo "croft-conflict: /$path"
                    fi
                done ;;
            extlink)
                if { [ -e "/$1" ] || [ -L "/$1" ]; }; then
                    case $(readlink "/$1") in /usr/local/*) ;; *) echo "croft-conflict: /$1" ;; esac
                fi ;;
        esac
    done
    IFS=$OLD_IFS; set +f
}
# Whether the plan has a step of this kind.
has() {
    case "$NL$FORWARD" in *"$NL$1 "*) return 0 ;; esac
    return 1
}
conflicts=""
if has links || has dirs || has extlink; then conflicts=$(taken); fi
if [ -n "$conflicts" ]; then
    echo "$conflicts"
    echo "croft-error: these paths exist and are not croft's: move them away, or adopt them in the layer that ships them (adopt = [...] in layer.toml); nothing changed"
    exit 65
fi

# Debian packages: the plan's `install` line names what the new generation needs. Those not
# installed yet are checked against the archive before anything changes (an unknown name stops
# the deploy here); croft records what it installs in $CROFT/packages, and removes only those.
apt_run() {
    program=$1
    shift
    if [ -n "$APT_PROXY" ]; then set -- -o "Acquire::http::Proxy=$APT_PROXY" "$@"; fi
    if [ -n "$APT_DIRECT" ]; then set -- -o "Acquire::http::Proxy::$APT_DIRECT=DIRECT" "$@"; fi
    if [ -n "$APT_SOURCES" ]; then set -- -o "Dir::Etc::SourceParts=$CROFT/apt-sources.d" "$@"; fi
    DEBIAN_FRONTEND=noninteractive "$program" -q -o DPkg::Lock::Timeout=300 "$@"
}
apt_get() {
    # confdef/confold: a config file someone changed is kept, never asked about.
    apt_run apt-get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}
# The sources apt reads here: the machine's own, and the site repository's as the new
# generation has it (its link in /etc/apt appears only with the flip, after the installs).
apt_sources() {
    [ -n "$APT_SOURCES" ] || return 0
    rm -rf "$CROFT/apt-sources.d" && mkdir -p "$CROFT/apt-sources.d" || return 1
    for source in /etc/apt/sources.list.d/*; do
        case $source in */croft.sources) continue ;; esac
        if [ -e "$source" ]; then ln -s "$source" "$CROFT/apt-sources.d/"; fi
    done
    printf '%s\n' "$APT_SOURCES" > "$CROFT/apt-sources.d/croft.sources"
}
# Of the packages named, those not installed, one a line.
not_installed() {
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null)
    for name do
        case "$NL$installed$NL" in *"${NL}$name installed$NL"*) ;; *) echo "$name" ;; esac
    done
}
# Whether a unit is wanted by a link outside croft's tree (/etc, the distribution's own).
enabled_elsewhere() {
    for link in /etc/systemd/system/*.wants/"$1" /lib/systemd/system/*.wants/"$1" \
        /usr/lib/systemd/system/*.wants/"$1"; do
        [ -L "$link" ] && return 0
    done
    return 1
}

packages_to_install() {
    set -f; IFS=$NL
    for line in $FORWARD; do
        case $line in "install "*)
            IFS=$TAB; set -- ${line#install }; IFS=$OLD_IFS
            not_installed "$@"
            IFS=$NL ;;
        esac
    done
    IFS=$OLD_IFS; set +f
}
missing=""
if has install; then missing=$(packages_to_install); fi
if [ -n "$missing" ]; then
    if ! { apt_sources && apt_get update; } > "$CROFT/apt.log" 2>&1; then
        cat "$CROFT/apt.log"
        echo "croft-error: apt-get update failed (is the package cache or mirror reachable?); nothing changed"
        exit 69
    fi
    unknown=""
    for name in $missing; do
        apt_run apt-cache show --no-all-versions "$name" > /dev/null 2>&1 || unknown="$unknown $name"
    done
    if [ -n "$unknown" ]; then
        for name in $unknown; do echo "croft-unknown-package: $name"; done
        echo "croft-error: apt knows no package named$unknown; nothing changed"
        exit 65
    fi
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

# The new generation: the live one as hard links, less what changed or went, plus the files
# that follow this script on stdin (croft.deploy.transfer), made in $new and given its number
# once whole. Under the lock, so nothing else writes here: what a client or machine that died
# mid-way left is removed first. The copy of the live tree is usually made already (tidy,
# below, after the last switch), so a deploy costs what changed, not the size of the tree.
receive() {
    for left in "$GENERATIONS"/.new-* "$GENERATIONS"/.incoming-*; do
        if [ -e "$left" ]; then rm -rf "$left"; fi
    done
    new=$GENERATIONS/.next-$live
    # A copy with a record was taken by a switch that never ended: it is never taken again.
    if [ -e "$new/info" ]; then rm -rf "$new" || return 1; fi
    if [ ! -d "$new" ]; then
        new=$GENERATIONS/.new-$GEN
        if [ "$live" = none ]; then
            mkdir -p "$new/root"
        else
            mkdir -p "$new" && cp -al "$GENERATIONS/$live/root" "$new/root"
        fi || return 1
    fi
    # The generation's record, first: it marks the copy as taken before anything in it changes.
    printf 'generation=%s\ncreated=%s\nby=%s\ndigest=%s\n' "$GEN" "$CREATED" "$BY" "$DIGEST" \
        > "$new/info" || return 1
    # What is gone, or a directory where a file was (or the other way round). A file or link
    # that changed is not among them: tar replaces it, unlinking it first.
    if [ -n "$DROPPED" ]; then
        # One rm for them all: the paths are relative, one to a line.
        (cd "$new/root" && set -f && IFS=$NL && rm -rf -- $DROPPED) || return 1
    fi
    tar -x --no-same-owner -C "$new" -f - || return 1
    IFS= read -r got < "$new/digest" && [ "$got" = "$DIGEST" ]
}
if [ "$RECEIVE" = 1 ]; then
    if ! receive; then
        rm -rf "$new"
        echo "croft-error: the new generation could not be made from the files sent (the connection broke off, or the disk is full?); nothing changed"
        exit 70
    fi
    if [ -e "$GENERATIONS/$GEN" ]; then rm -rf "${GENERATIONS:?}/$GEN"; fi
    mv -T "$new" "$GENERATIONS/$GEN"
fi

# A step's paths, collected for one program (mkdir, ln) in batches: a list grown one item at a
# time (set -- "$@" item) costs its whole length each time, seconds for a directory of a few
# thousand files. collect fails when the batch is full: run it, and go on.
BATCH=200
batch=""
count=0
collect() {
    batch="$batch$NL$1"
    count=$((count + 1))
    [ "$count" -lt "$BATCH" ]
}
# Runs the command given with the batch's paths after its arguments; empties the batch.
run_batch() {
    [ -n "$batch" ] || return 0
    set -f; IFS=$NL; set -- "$@" $batch; IFS=$OLD_IFS; set +f
    batch=""
    count=0
    "$@"
}
make_dirs() {
    mode=$1
    shift
    mkdir -p "$@" && chmod "$mode" "$@"
}

step() {
    verb=${1%% *}
    arg=${1#* }
    case $verb in
        stop)
            # A unit croft no longer wants keeps running when something else enables it (the
            # admin, the image: systemd-networkd on a machine whose LAN it configures).
            if enabled_elsewhere "$arg"; then
                echo "croft: $arg stays: it is enabled outside /usr/local" >&2
            else
                systemctl stop "$arg"
            fi ;;
        dirs)
            # MODE<tab>PATH<tab>PATH...: a path that was a file (a link into the live
            # generation) becomes a directory.
            mode=${arg%%"$TAB"*}
            set -f; IFS=$TAB; set -- ${arg#*"$TAB"}; IFS=$OLD_IFS; set +f
            for path do
                adopt "$path"
                if [ -L "/$path" ]; then rm -f "/$path"; fi
                collect "/$path" || run_batch make_dirs "$mode" || return 1
            done
            run_batch make_dirs "$mode" ;;
        links)
            # DIR<tab>NAME<tab>NAME...: one ln for the whole directory (for each BATCH names).
            dir=${arg%%"$TAB"*}
            set -f; IFS=$TAB; set -- ${arg#*"$TAB"}; IFS=$OLD_IFS; set +f
            # The dirs step made the directory: mkdir only when someone removed it since.
            if [ ! -d "/$dir" ]; then mkdir -p "/$dir" || return 1; fi
            for name do
                adopt "$dir/$name"
                # A path that was croft's directory becomes a file (it is empty of anything
                # else: what is not croft's stopped the deploy above, or was adopted).
                if [ -d "/$dir/$name" ] && [ ! -L "/$dir/$name" ]; then rm -rf "/$dir/$name"; fi
                collect "$CROFT/live/root/$dir/$name" || run_batch ln -sfn -t "/$dir" || return 1
            done
            run_batch ln -sfn -t "/$dir" ;;
        flip)
            if [ "$arg" = none ]; then
                rm -f "$CROFT/live"
            else
                # rename(2) of a symlink: every file croft owns switches content at once. GNU
                # ln (coreutils 9, Debian 12) replaces a link so: a new one, renamed over it.
                ln -sfn "generations/$arg" "$CROFT/live"
            fi ;;
        unlink) if [ -L "/$arg" ]; then rm -f "/$arg"; fi; give_back "$arg" ;;
        extlink)
            path=${arg%%"$TAB"*}
            mkdir -p "/${path%/*}" && ln -sfn "/${arg#*"$TAB"}" "/$path" ;;
        extunlink)
            path=${arg%%"$TAB"*}
            # Only while it is croft's link: someone may have put their own file there since.
            case $(readlink "/$path") in "/${arg#*"$TAB"}") rm -f "/$path" ;; esac ;;
        rmdir) if rmdir "/$arg" 2>/dev/null; then give_back "$arg"; fi ;;
        install)
            set -f; IFS=$TAB; set -- $arg; IFS=$OLD_IFS; set +f
            fresh=$(not_installed "$@")
            [ -n "$fresh" ] || return 0
            # Recorded first: what an install that failed half-way did put there, the way back
            # removes.
            printf '%s\n' $fresh >> "$CROFT/packages"
            apt_get install --no-install-recommends $fresh ;;
        remove)
            set -f; IFS=$TAB; set -- $arg; IFS=$OLD_IFS; set +f
            ours=""
            mine=$(cat "$CROFT/packages" 2>/dev/null)
            for name do
                case "$NL$mine$NL" in *"$NL$name$NL"*) ours="$ours $name" ;; esac
            done
            [ -n "$ours" ] || return 0
            # Only what croft installed; their dependencies stay, as apt leaves them.
            apt_get remove $ours || return 1
            kept=""
            for name in $mine; do
                case " $ours " in *" $name "*) ;; *) kept="$kept$name$NL" ;; esac
            done
            printf '%s' "$kept" > "$CROFT/packages" ;;
        # Reads every sysusers.d directory, /usr/local/lib/sysusers.d included.
        sysusers) systemd-sysusers ;;
        daemon-reload) systemctl daemon-reload ;;
        start|restart|reload-or-restart|try-restart|try-reload-or-restart)
            # Quick deploys in a row (--watch) would hit the unit's start limit: croft starts
            # it on purpose, so its failure count starts over.
            systemctl reset-failed "$arg" 2>/dev/null
            # A unit croft starts may run already, as the package that brought it started it
            # (with its distribution's settings, before croft's drop-ins were there): restart
            # starts what is stopped and makes what runs take them.
            if [ "$verb" = start ]; then verb=restart; fi
            case $verb in try-*)
                # Nothing to try on a unit that is gone (its package was just removed).
                [ "$(systemctl show -P LoadState "$arg" 2>/dev/null)" != not-found ] || return 0 ;;
            esac
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
        # One systemctl a look: its Key=Value lines, in whatever order it prints them.
        state="" sub="" entered=0 type="" result=""
        while IFS='=' read -r key value; do
            case $key in
                ActiveState) state=$value ;;
                SubState) sub=$value ;;
                ActiveEnterTimestampMonotonic) entered=$value ;;
                Type) type=$value ;;
                Result) result=$value ;;
            esac
        done <<CROFT_SHOW
$(systemctl show -p ActiveState -p SubState -p ActiveEnterTimestampMonotonic -p Type -p Result "$1")
CROFT_SHOW
        case $state/$sub in
            active/*|reloading/*)
                [ $(( $(now_us) - entered )) -ge "$want" ] && return 0 ;;
            activating/auto-restart|failed/*) return 1 ;;
            inactive/*)
                # A oneshot unit that ran and exited cleanly is settled too; a service that
                # ended is not, however it ended.
                [ "$type" = oneshot ] && [ "$result" = success ] && return 0
                return 1 ;;
        esac
        [ "$(now_us)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

journal() {
    echo "croft-journal-begin: $1"
    # A socket fails when the service it starts does (its start limit): that one's journal too.
    service=
    case $1 in *.socket) service="-u ${1%.socket}.service" ;; esac
    # shellcheck disable=SC2086
    journalctl -u "$1" $service -n 25 --no-pager -q 2>&1 || systemctl status "$1" --no-pager 2>&1
    echo "croft-journal-end: $1"
}

# Carries out one plan (its lines in $1); on the first failure reports it and returns 1.
run_plan() {
    checks=""
    failed=""
    set -f; IFS=$NL
    for line in $1; do
        IFS=$OLD_IFS; set +f
        echo "croft-step: $line"
        # (stdin: no program a step runs reads the connection's)
        if ! step "$line" < /dev/null 2>&1; then
            echo "croft-failed: $line"
            case ${line%% *} in
                stop|start|restart|reload-or-restart|try-restart|try-reload-or-restart)
                    failed=${line#* } ;;
            esac
            return 1
        fi
    done
    IFS=$OLD_IFS; set +f
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

# Confirm or revert: once the switch is done, a timer that runs the way back in $CONFIRM
# seconds, unless croft reaches the machine again over a new SSH connection and cancels it (a
# change that locks croft out undoes itself). The way back is a switch script of its own. Armed
# at the end: this script runs to its end whatever happens to the connection, and the countdown
# does not depend on how long the units took to settle.
arm_revert() {
    systemctl stop croft-revert.timer croft-revert.service 2>/dev/null
    systemctl reset-failed croft-revert.timer croft-revert.service 2>/dev/null
    printf '%s\n' "$REVERT" > "$CROFT/revert.sh"
    # KillMode=process: the way back's tidy outlives it (in the background, as after a deploy).
    systemd-run --quiet --unit=croft-revert --on-active="${CONFIRM}s" \
        --timer-property=AccuracySec=100ms --property=KillMode=process /bin/sh "$CROFT/revert.sh"
}

# Once switched: prune to the newest $KEEP generations (and always the live one), and make the
# next deploy's copy of the live tree (hard links, in .next-N/root: receive takes it), so that
# the next deploy costs what changed, not the size of the tree. Once the switch has ended (croft
# has its answer), under the lock (the next croft command here waits for it), and at the lowest
# priority: the machines of a home lab often share a host's CPUs, and their switches come first.
# A priority does not reach the kernel's own work for it (a thousand hard links made or removed
# go through the file system's journal and the host's disk), so it also starts a moment later
# (TIDY_AFTER seconds): a fleet's switches run at once, and are over by then. A switch that
# comes sooner takes the lock first, and makes its copy itself.
TIDY_AFTER=0.5
tidy() {
    # The lock is free when the switch's script has ended; a croft command that took it first
    # changed what is live, and leaves this to its own tidy. Opened to read: a reset meanwhile
    # removed the directory, and this must not make it again.
    exec 9< "$CROFT/lock" && flock -w 60 9 || return 0
    IFS= read -r first < "$CROFT/live/info" && [ "$first" = "generation=$GEN" ] || return 0
    # The kernel shares the CPU between sessions before it looks at nice (autogroup, on in
    # Debian's kernels): this session's nice, now that tidy is all that is left of it. Who it
    # is, for the next switch (see boost_tidy).
    read -r stat < /proc/self/stat
    set -f; set -- ${stat##*) }; set +f
    printf '%s %s\n' "${stat%% *}" "${20}" > "$CROFT/tidy"
    echo 19 2>/dev/null > /proc/self/autogroup
    numbers=""
    for path in "$GENERATIONS"/*; do
        number=${path##*/}
        case $number in ''|*[!0-9]*) ;; *) numbers="$numbers $number" ;; esac
    done
    pruned=""
    for number in $numbers; do
        newer=0
        for other in $numbers; do [ "$other" -le "$number" ] || newer=$((newer + 1)); done
        [ "$newer" -lt "$KEEP" ] || [ "$number" = "$GEN" ] || pruned="$pruned $GENERATIONS/$number"
    done
    # A generation is whole or gone: those pruned leave the list at once, by one rename, and are
    # removed from .pruned (where a tidy that was stopped half-way leaves the rest to the next).
    if [ -n "$pruned" ]; then mkdir -p "$GENERATIONS/.pruned" && mv -t "$GENERATIONS/.pruned" $pruned; fi
    # (.spare-N: an earlier croft's copies, laid out otherwise; .next-tmp: one left half-made.)
    old=""
    for spare in "$GENERATIONS"/.next-* "$GENERATIONS"/.spare-* "$GENERATIONS"/.pruned; do
        if [ -e "$spare" ] && [ "$spare" != "$GENERATIONS/.next-$GEN" ]; then old="$old $spare"; fi
    done
    if [ -n "$old" ]; then rm -rf $old; fi
    if [ ! -e "$GENERATIONS/.next-$GEN" ]; then
        mkdir "$GENERATIONS/.next-tmp" \
            && cp -al "$GENERATIONS/$GEN/root" "$GENERATIONS/.next-tmp/root" \
            && mv -T "$GENERATIONS/.next-tmp" "$GENERATIONS/.next-$GEN"
    fi
}

if run_plan "$FORWARD"; then
    if [ "$CONFIRM" != 0 ]; then arm_revert; fi
    if [ "$GEN" != none ]; then echo ok > "$GENERATIONS/$GEN/status"; fi
    if [ "$RESET" = 1 ]; then
        if [ "$PURGE" = 1 ]; then purge; fi
        # The lock goes too: the open descriptor keeps it held until this script exits.
        rm -rf "$CROFT"
        echo "croft-reset: done"
    elif [ "$GEN" != none ]; then
        # In the background (see tidy). `exec`: a redirection of the call itself would keep
        # copies of the connection's descriptors open in it (the shell saves them to restore),
        # and the connection would stay open until it ended. 9>&-: the lock goes with this
        # script; tidy takes it again.
        (exec < /dev/null > /dev/null 2>&1 9>&- && sleep "$TIDY_AFTER" && tidy) &
    fi
    echo "croft-done: $GEN"
    exit 0
fi

for unit in $failed; do journal "$unit"; done
if [ "$GEN" != none ] && [ "$RECEIVE" = 1 ]; then echo failed > "$GENERATIONS/$GEN/status"; fi
if [ "$ROLLBACK" = 1 ]; then
    echo "croft-rollback: back to generation $EXPECT"
    rolled_back=$failed
    if run_plan "$BACKWARD"; then
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
