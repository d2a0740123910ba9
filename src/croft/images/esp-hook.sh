#!/bin/sh
# croft: the ESP boots /vmlinuz with /initrd.img (syslinux and systemd-boot entries written by
# croft). After apt installs a kernel (/etc/kernel/postinst.d) or update-initramfs rebuilds an
# initrd (/etc/initramfs/post-update.d), copy the newest installed kernel and its initrd there,
# so the machine boots what apt installed. Whatever arguments the hook gets, the newest wins.
set -eu
esp=/dev/disk/by-partlabel/esp
if [ ! -b "$esp" ]; then
    echo "croft: no ESP at $esp: the boot files were not updated" >&2
    exit 0
fi
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
version=${kernel#/boot/vmlinuz-}
initrd=/boot/initrd.img-$version
if [ -z "$kernel" ] || [ ! -f "$initrd" ]; then
    exit 0  # the initrd is not made yet: update-initramfs's post-update hook runs this again
fi
mnt=$(mktemp -d)
mount -t vfat "$esp" "$mnt"
trap 'umount "$mnt"; rmdir "$mnt"' EXIT
# A copy, then a rename: a machine that loses power meanwhile still boots the previous pair.
cp "$kernel" "$mnt/vmlinuz.new"
cp "$initrd" "$mnt/initrd.img.new"
sync
mv "$mnt/vmlinuz.new" "$mnt/vmlinuz"
mv "$mnt/initrd.img.new" "$mnt/initrd.img"
echo "croft: the ESP boots $version"
