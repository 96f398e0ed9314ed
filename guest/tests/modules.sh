# modules: vboxguest loads and binds to the VMMDev PCI device (80ee:cafe),
# which creates /dev/vboxguest. Passes only once novabox emulates VMMDev.
. /tests/lib.sh

if ! grep -q '^vboxguest ' /proc/modules; then
    out=$(modprobe vboxguest 2>&1) || fail "modprobe vboxguest failed: $out"
fi
echo "modules: loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"

vmmdev=""
for dev in /sys/bus/pci/devices/*; do
    [ -e "$dev/vendor" ] || continue
    id="$(cat "$dev/vendor"):$(cat "$dev/device")"
    echo "modules: pci ${dev##*/} $id class $(cat "$dev/class")"
    [ "$id" = "0x80ee:0xcafe" ] && vmmdev=${dev##*/}
done
dmesg | grep -i vboxguest | tail -n 5 | sed 's/^/modules: dmesg: /'

if [ -e /dev/vboxguest ]; then
    echo "modules: found $(ls -l /dev/vboxguest)"
    [ -e /dev/vboxuser ] && echo "modules: found $(ls -l /dev/vboxuser)"
    echo "modules: ok"
    exit 0
fi
if [ -z "$vmmdev" ]; then
    fail "vboxguest loaded but /dev/vboxguest missing: no VMMDev PCI device 80ee:cafe on the bus"
fi
fail "VMMDev at $vmmdev but /dev/vboxguest missing: vboxguest probe failed (see dmesg above)"
