# diskbench: disk throughput and IOPS through the emulated controller, for
# `cargo xtask bench-disk`. Kernel command line:
#   novabox.disk_driver=ahci|ata_piix   module to load
#   novabox.bench_mib=N                 sequential size (default 256)
#   novabox.bench_rand_secs=N           random-read duration (default 10)
# The disk is /dev/sda (the only one). Phases, each bracketed by
# NOVABOX-BENCH-BEGIN NAME / NOVABOX-BENCH-END NAME lines (timed by the host's wall
# clock) around /bin/diskbench, whose own line `diskbench: NAME bytes=.. ops=.. secs=..`
# is the guest's clock_gettime figure:
#   write     O_DIRECT sequential write, 1 MiB blocks, then fdatasync
#   read      O_DIRECT sequential read, 1 MiB blocks (data checked)
#   randread  O_DIRECT 4 KiB reads at random aligned offsets inside what write wrote
. /tests/lib.sh

drv=$(novabox_arg novabox.disk_driver) || drv=ahci
for m in $drv sd_mod; do
    grep -q "^$m " /proc/modules || modprobe "$m" || fail "modprobe $m"
done
mib=$(novabox_arg novabox.bench_mib) || mib=256
secs=$(novabox_arg novabox.bench_rand_secs) || secs=10
dev=/dev/sda

i=0
while [ ! -b $dev ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
[ -b $dev ] || fail "$dev did not appear ($(dmesg | grep -iE 'ata|ahci|scsi' | tail -n 5 | tr '\n' '|'))"
sectors=$(cat /sys/block/sda/size)
[ "$sectors" -ge $((mib * 2048)) ] || fail "$dev has $sectors sectors, less than $mib MiB"
echo "diskbench: $dev $sectors sectors, model $(cat /sys/block/sda/device/model 2>/dev/null), driver $drv"

# Where the guest's time and interrupts went in a phase (user/nice/system/idle/iowait/irq/
# softirq jiffies, then every interrupt line): the cross-check for an emulator's per-request
# cost, printed as `diskbench-stat` lines the host does not parse.
stat() {
    echo "diskbench-stat $1 cpu $(head -n 1 /proc/stat | cut -d' ' -f3-9) ctxt $(grep ^ctxt /proc/stat | cut -d' ' -f2)"
    grep -E 'ahci|ata|timer|LOC|RES|CAL|TLB|ttyS|SPU' /proc/interrupts | tr -s ' ' | sed "s/^/diskbench-stat $1 irq/"
}
phase() {
    echo "NOVABOX-BENCH-BEGIN $1"
    stat "before-$1"
    diskbench "$@" || fail "diskbench $*"
    stat "after-$1"
    echo "NOVABOX-BENCH-END $1"
}
phase write $dev "$mib"
phase read $dev "$mib"
phase randread $dev "$mib" "$secs"
echo "diskbench: ok"
