"""Images: the netboot environment (a squashfs base, overlays, a kernel and croft's initrd) and
the disk images provisioning installs, built from recipes in the site's images/ folder."""
