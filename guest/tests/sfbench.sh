# sfbench: shared-folder throughput and metadata rate, for `cargo xtask bench-vboxsf`.
# Kernel command line: novabox.bench_fs=vboxsf|9p novabox.bench_mib=N novabox.bench_files=N
# The share is called "bench" (vboxsf share name / 9p mount tag). Each phase is
# bracketed by NOVABOX-BENCH-BEGIN NAME / NOVABOX-BENCH-END NAME lines, which the host
# times by wall clock; the guest's own figure (from /proc/uptime) follows as
# NOVABOX-BENCH-GUEST NAME SECONDS.
. /tests/lib.sh

fs=$(novabox_arg novabox.bench_fs) || fail "no novabox.bench_fs"
mib=$(novabox_arg novabox.bench_mib) || mib=256
files=$(novabox_arg novabox.bench_files) || files=1000
M=/mnt/bench
mkdir -p $M
case $fs in
    vboxsf)
        modprobe vboxsf || fail "modprobe vboxsf"
        mount -t vboxsf bench $M || fail "mount vboxsf" ;;
    9p)
        modprobe virtio_pci; modprobe 9pnet_virtio; modprobe 9p
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=none bench $M \
            || fail "mount 9p" ;;
    *) fail "unknown fs $fs" ;;
esac

now() { cut -d' ' -f1 /proc/uptime; }
phase_begin() { echo "NOVABOX-BENCH-BEGIN $1"; t0=$(now); }
phase_end() { t1=$(now); echo "NOVABOX-BENCH-END $1"; echo "NOVABOX-BENCH-GUEST $1 $(echo "$t0 $t1" | awk '{ print $2 - $1 }')"; }

phase_begin write
dd if=/dev/zero of=$M/big bs=1048576 count=$mib conv=fsync 2>/dev/null || fail "write"
phase_end write
echo 3 > /proc/sys/vm/drop_caches
phase_begin read
dd if=$M/big of=/dev/null bs=1048576 2>/dev/null || fail "read"
phase_end read
rm -f $M/big
mkdir -p $M/meta
phase_begin meta
i=0
while [ $i -lt $files ]; do : > $M/meta/f$i; i=$((i + 1)); done
i=0
while [ $i -lt $files ]; do stat -c %s $M/meta/f$i > /dev/null || fail "stat"; i=$((i + 1)); done
i=0
while [ $i -lt $files ]; do rm $M/meta/f$i; i=$((i + 1)); done
phase_end meta
rmdir $M/meta
umount $M
echo "sfbench: ok"
