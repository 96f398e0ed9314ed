# smoke: busybox works (arithmetic, files in tmpfs, pipes) and the kernel
# is the kit's.
. /tests/lib.sh

[ $((6 * 7)) -eq 42 ] || fail "arithmetic: 6*7 gave $((6 * 7))"
[ $(( (1 << 31) * 2 )) = 4294967296 ] || fail "64-bit shell arithmetic broken"

grep -q '^tmpfs /tmp tmpfs' /proc/mounts || fail "/tmp is not a tmpfs: $(grep ' /tmp ' /proc/mounts)"
d=$(mktemp -d /tmp/smoke.XXXXXX) || fail "mktemp -d failed"
echo "novabox" > "$d/a" || fail "write to tmpfs failed"
cp "$d/a" "$d/b" && mv "$d/b" "$d/c" || fail "cp/mv failed"
[ "$(cat "$d/c")" = novabox ] || fail "file content mismatch: $(cat "$d/c")"
[ ! -e "$d/b" ] || fail "mv left the source behind"
seq 1 1000 > "$d/n"
[ "$(wc -l < "$d/n")" -eq 1000 ] || fail "seq/wc: $(wc -l < "$d/n") lines"
rm -r "$d" && [ ! -e "$d" ] || fail "rm -r failed"

sum=$(seq 1 100 | awk '{ s += $1 } END { print s }')
[ "$sum" = 5050 ] || fail "pipe seq|awk gave $sum"
h=$(printf abc | sha256sum | cut -d' ' -f1)
[ "$h" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ] || fail "sha256sum(abc)=$h"

# On the interpreter the TSC is host time at a frequency CPUID leaf 15h states, with
# TSC_ADJUST: Linux must keep it as its clock without calibrating or watching it (a watchdog
# verdict against late timer ticks would move it to the ACPI PM timer, a port exit per
# clock read), and must switch its branch-history mitigation off through BHI_DIS_S.
if grep -q 'novabox interpreter' /proc/cpuinfo; then
    cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
    [ "$cs" = tsc ] || fail "clocksource is $cs, not tsc: $(dmesg | grep -i -E 'tsc|clocksource' | tail -4)"
    dmesg | grep -q 'tsc: Detected 1000.000 MHz' || fail "TSC frequency not taken from CPUID: $(dmesg | grep 'tsc:')"
    v2=$(cat /sys/devices/system/cpu/vulnerabilities/spectre_v2)
    case "$v2" in *"BHI: BHI_DIS_S"*) ;; *) fail "spectre_v2: $v2" ;; esac
    echo "smoke: clocksource $cs, $(dmesg | grep -o 'tsc: Detected [0-9.]* MHz')"
fi

echo "smoke: uname: $(uname -a)"
[ "$(uname -r)" = "$(sed -n 's/^kernel_release=//p' /etc/novabox-kit)" ] \
    || fail "running kernel $(uname -r) is not the kit's"
echo "smoke: ok"
