#!/bin/sh
# udhcpc's hook in croft's initrd: configure the lease it got.
case "$1" in
    bound | renew)
        ifconfig "$interface" "$ip" netmask "$subnet"
        for gateway in $router; do
            route add default gw "$gateway" dev "$interface"
            break
        done
        : >/etc/resolv.conf
        for server in $dns; do echo "nameserver $server" >>/etc/resolv.conf; done
        echo "$ip" >/run/croft-ip ;;
esac
