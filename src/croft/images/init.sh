#!/bin/sh
# croft's initrd. Netboot: bring up the network with DHCP, fetch the base squashfs and the
# overlays named on the kernel command line, check their sha256, union-mount them under a tmpfs
# upper with overlayfs, switch_root. Installed disk: mount root= and switch_root.
# On an error: say so on the console, post it to croft.server, and wait with a shell, never
# rebooting in a loop.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "croft-init: $*"; }

server="" base="" overlays="" root="" init=/sbin/init mac="" ip=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        croft.server=*) server=${arg#*=} ;;
        croft.base=*) base=${arg#*=} ;;
        croft.overlays=*) overlays=${arg#*=} ;;
        root=*) root=${arg#*=} ;;
        init=*) init=${arg#*=} ;;
    esac
done

fail() {
    say "ERROR: $*"
    if [ -n "$server" ] && [ -n "$ip" ]; then
        wget -q -O /dev/null --header "Content-Type: text/plain" --post-data "$*" \
            "$server/boot/$mac/error" 2>/dev/null && say "reported to $server"
    fi
    say "waiting with a shell; the machine does not reboot on its own"
    while true; do setsid cttyhack sh; done
}

for module in $(cat /etc/croft/modules); do
    insmod "/lib/modules/$module" 2>/dev/null
done

# root=PARTLABEL=name, LABEL=name, UUID=uuid or /dev/name -> the device node, once it appears.
find_device() {
    case "$1" in
        PARTLABEL=*)
            for uevent in /sys/class/block/*/uevent; do
                if grep -qx "PARTNAME=${1#PARTLABEL=}" "$uevent"; then
                    echo "/dev/$(sed -n 's/^DEVNAME=//p' "$uevent")"
                    return 0
                fi
            done
            return 1 ;;
        LABEL=* | UUID=*) findfs "$1" 2>/dev/null ;;
        *) [ -b "$1" ] && echo "$1" ;;
    esac
}

boot_disk() {
    tries=0
    until device=$(find_device "$root"); do
        tries=$((tries + 1))
        [ $tries -ge 60 ] && fail "root device $root did not appear in 30 s (is its driver in the image's modules?)"
        sleep 0.5
    done
    mount -o rw "$device" /newroot || fail "cannot mount $device (root=$root)"
    say "root is $device"
}

network_up() {
    for dev in /sys/class/net/*; do
        [ "${dev##*/}" = lo ] || ip link set "${dev##*/}" up
    done
    for attempt in 1 2 3; do
        for dev in /sys/class/net/*; do
            name=${dev##*/}
            [ "$name" = lo ] && continue
            if udhcpc -i "$name" -n -q -t 3 -T 2 -s /etc/croft/udhcpc.sh >/dev/null 2>&1; then
                mac=$(cat "$dev/address")
                ip=$(cat /run/croft-ip)
                say "$name ($mac) has $ip"
                return 0
            fi
        done
    done
    return 1
}

# fetch URL[#sha256=HEX] FILE: download with retries, then check the digest when one is given.
fetch() {
    url=${1%%#*}
    want=""
    case "$1" in *"#sha256="*) want=${1##*#sha256=} ;; esac
    tries=0
    until wget -q -O "$2" "$url"; do
        tries=$((tries + 1))
        [ $tries -ge 5 ] && fail "cannot download $url (5 tries)"
        sleep $tries
    done
    if [ -n "$want" ]; then
        got=$(sha256sum "$2" | cut -d' ' -f1)
        [ "$got" = "$want" ] || fail "$url has sha256 $got, expected $want (damaged, or replaced since the boot script was made)"
    fi
}

# mount_layer FILE DIR: a squashfs is loop-mounted, a cpio.gz unpacked into the tmpfs.
mount_layer() {
    mkdir -p "$2"
    if [ "$(head -c 2 "$1" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
        (cd "$2" && zcat "$1" | cpio -id 2>/dev/null) || fail "cannot unpack $1"
        rm "$1"
    else
        mount -t squashfs -o loop,ro "$1" "$2" || fail "cannot mount $1 (not a squashfs?)"
    fi
}

boot_network() {
    [ -n "$base" ] || fail "nothing to boot: the kernel command line has neither croft.base=URL nor root=DEVICE"
    network_up || fail "no DHCP answer on any interface"
    mount -t tmpfs -o mode=0755 croft /croft
    mkdir -p /croft/images /croft/rw/upper /croft/rw/work
    say "fetching the base ${base%%#*}"
    fetch "$base" /croft/images/base
    mount_layer /croft/images/base /croft/lower/base
    lower=/croft/lower/base
    count=0
    for overlay in $(echo "$overlays" | tr , ' '); do
        count=$((count + 1))
        say "fetching overlay $count ${overlay%%#*}"
        fetch "$overlay" "/croft/images/overlay$count"
        mount_layer "/croft/images/overlay$count" "/croft/lower/overlay$count"
        lower="/croft/lower/overlay$count:$lower"
    done
    mount -t overlay -o "lowerdir=$lower,upperdir=/croft/rw/upper,workdir=/croft/rw/work" croft-root /newroot \
        || fail "cannot mount the union root ($lower)"
    mkdir -p /newroot/etc/croft
    printf 'CROFT_SERVER=%s\nCROFT_MAC=%s\nCROFT_IP=%s\n' "$server" "$mac" "$ip" >/newroot/etc/croft/boot.env
    say "root is the base + $count overlay(s) on overlayfs, changes in tmpfs"
}

if [ -n "$root" ]; then boot_disk; else boot_network; fi
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "the root has no $init"
for fs in /dev /proc /sys; do mount --move "$fs" "/newroot$fs" 2>/dev/null || umount "$fs"; done
exec switch_root /newroot "$init"
