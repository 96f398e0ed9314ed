# smp: the guest sees exactly novabox.expect_cpus processors, all online.
. /tests/lib.sh

want=$(novabox_arg novabox.expect_cpus) || fail "novabox.expect_cpus= missing from the kernel command line"
have=$(grep -c '^processor' /proc/cpuinfo)
online=$(nproc)
echo "smp: /proc/cpuinfo processors=$have nproc=$online online=$(cat /sys/devices/system/cpu/online) expected=$want"
[ "$have" = "$want" ] || fail "NOVABOX-CPUS=$have, expected $want"
[ "$online" = "$want" ] || fail "nproc=$online (online: $(cat /sys/devices/system/cpu/online)), expected $want"
echo "smp: ok"
