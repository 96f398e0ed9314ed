# disk_persist: data written to a disk survives power-off (the VDI keeps it).
# Kernel command line:
#   novabox.disk_driver=ahci|ata_piix   module to load (default: both)
#   novabox.disk_dev=sda                the scratch disk (default sda)
#   novabox.disk_phase=write|verify
# write: 1 MiB of random data at byte 1 MiB, its SHA-256 in sector 0, synced and
# re-read with the page cache dropped; verify: the data still matches the stored sum.
. /tests/lib.sh

drv=$(novabox_arg novabox.disk_driver) || drv="ahci ata_piix"
for m in $drv sd_mod; do
    grep -q "^$m " /proc/modules || modprobe "$m" 2>/dev/null || true
done
dev=/dev/$(novabox_arg novabox.disk_dev || echo sda)
phase=$(novabox_arg novabox.disk_phase) || fail "no novabox.disk_phase"

i=0
while [ ! -b "$dev" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$dev" ] || fail "$dev did not appear (modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' '); $(dmesg | grep -iE 'ata|ahci|scsi' | tail -n 5 | tr '\n' '|'))"
echo "disk_persist: $dev $(cat /sys/block/${dev#/dev/}/size) sectors, model $(cat /sys/block/${dev#/dev/}/device/model 2>/dev/null)"

case "$phase" in
write)
    dd if=/dev/urandom of=/tmp/data bs=4096 count=256 2>/dev/null || fail "urandom"
    sum=$(sha256sum /tmp/data | cut -d' ' -f1)
    dd if=/tmp/data of="$dev" bs=4096 seek=256 conv=fsync 2>/dev/null || fail "write data"
    printf 'NOVABOX-SUM %s\n' "$sum" > /tmp/hdr
    dd if=/tmp/hdr of="$dev" bs=512 count=1 conv=sync,fsync 2>/dev/null || fail "write header"
    sync
    echo 3 > /proc/sys/vm/drop_caches
    back=$(dd if="$dev" bs=4096 skip=256 count=256 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$back" = "$sum" ] || fail "read-back mismatch in the same boot: $back != $sum"
    echo "disk_persist: wrote $sum"
    ;;
verify)
    hdr=$(dd if="$dev" bs=512 count=1 2>/dev/null | head -n 1)
    case "$hdr" in
        "NOVABOX-SUM "*) want=${hdr#NOVABOX-SUM } ;;
        *) fail "no checksum header in sector 0 (the write did not persist)" ;;
    esac
    got=$(dd if="$dev" bs=4096 skip=256 count=256 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || fail "data changed across power-off: $got != $want"
    echo "disk_persist: verified $want"
    ;;
*) fail "unknown phase $phase" ;;
esac
echo "disk_persist: ok"
