# vboxsf: the shared-folder service through the real vboxguest/vboxsf drivers.
# The host runs the VM with
#   --sharedfolder share=DIR --sharedfolder ro=DIR2,readonly
# where DIR holds host.txt ("written on the host\n") and DIR2 holds keep.txt, and the
# command line carries novabox.sf_host_sha=<sha256 of DIR/host.txt>. The guest prints
#   NOVABOX-VBOXSF-SHA big=<sha256 of the 64 MiB file it wrote>
# so the host can compare checksums on its side after power-off.
. /tests/lib.sh

grep -q '^vboxguest ' /proc/modules || modprobe vboxguest || fail "modprobe vboxguest"
grep -q '^vboxsf ' /proc/modules || modprobe vboxsf || fail "modprobe vboxsf"
[ -e /dev/vboxguest ] || fail "/dev/vboxguest missing: vboxguest did not bind"
dmesg | grep -i 'vboxguest' | sed 's/^/vboxsf: dmesg: /'
dmesg | grep -q 'host-version: 7\.1\.12' || fail "kernel log lacks the host version novabox reports: $(dmesg | grep -i vboxguest | tr '\n' ' ')"

mkdir -p /mnt/share /mnt/ro
mount -t vboxsf share /mnt/share || fail "mount -t vboxsf share failed"
mount -t vboxsf ro /mnt/ro || fail "mount -t vboxsf ro failed"
M=/mnt/share

# A file written on the host, read by the guest.
want=$(novabox_arg novabox.sf_host_sha) || fail "no novabox.sf_host_sha on the command line"
got=$(sha256sum "$M/host.txt" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "host.txt: guest sha $got, host sha $want"

# Create, write 64 MiB of random data, read back and compare.
head -c 67108864 /dev/urandom > /tmp/big || fail "urandom"
want=$(sha256sum /tmp/big | cut -d' ' -f1)
cp /tmp/big "$M/big" || fail "write 64 MiB"
sync
echo 3 > /proc/sys/vm/drop_caches
got=$(sha256sum "$M/big" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "big: read back $got, wrote $want"
rm -f /tmp/big
echo "NOVABOX-VBOXSF-SHA big=$want"

# Append and truncate.
printf 'one\n' > "$M/app" && printf 'two\n' >> "$M/app" || fail "append"
[ "$(cat "$M/app")" = "one
two" ] || fail "append content: $(cat "$M/app")"
truncate -s 2 "$M/app" || fail "truncate"
[ "$(stat -c %s "$M/app")" = 2 ] || fail "truncate size $(stat -c %s "$M/app")"

# stat: size and mtime.
touch -d '2001-09-09 01:46:40' "$M/app" || fail "touch -d"
[ "$(stat -c %Y "$M/app")" = 1000000000 ] || fail "mtime $(stat -c %Y "$M/app")"

# mkdir, 1000 entries, readdir.
mkdir "$M/many" || fail "mkdir"
i=0
while [ $i -lt 1000 ]; do : > "$M/many/f$i" || fail "create f$i"; i=$((i + 1)); done
n=$(ls "$M/many" | wc -l)
[ "$n" -eq 1000 ] || fail "readdir: $n entries, want 1000"

# rename in place and across directories, unlink, rmdir.
mv "$M/many/f1" "$M/many/g1" || fail "rename"
mkdir "$M/other" || fail "mkdir other"
mv "$M/many/g1" "$M/other/moved" || fail "rename across directories"
[ -e "$M/other/moved" ] && [ ! -e "$M/many/g1" ] || fail "rename result"
rm "$M/other/moved" || fail "unlink"
rmdir "$M/other" || fail "rmdir"
rm -r "$M/many" || fail "rm -r"

# A file written by the guest for the host to read.
echo "written in the guest" > "$M/guest.txt" || fail "guest.txt"

# The read-only share refuses writes.
[ "$(cat /mnt/ro/keep.txt)" = keep ] || fail "ro share read: $(cat /mnt/ro/keep.txt)"
echo x > /mnt/ro/new 2>/dev/null && fail "read-only share accepted a new file"
echo x >> /mnt/ro/keep.txt 2>/dev/null && fail "read-only share accepted an append"
rm /mnt/ro/keep.txt 2>/dev/null && fail "read-only share accepted unlink"
mkdir /mnt/ro/d 2>/dev/null && fail "read-only share accepted mkdir"

# Escape attempts: nothing outside the share is reachable.
sh /tests/vboxsf-escape.sh "$M" || fail "escape attempt succeeded: $(cat /tmp/novabox-fail-reason 2>/dev/null)"

umount /mnt/ro && umount "$M" || fail "umount"
echo "vboxsf: ok"
