# pointer_abs: with vboxguest loaded, a VNC client's pointer arrives as absolute positions
# through the VMMDev (evdev ABS_X/ABS_Y of "VirtualBox mouse integration", range
# 0..0xFFFF) and its buttons through the PS/2 mouse (psmouse: BTN_LEFT), as mainline Linux
# reads them. The host runner is crates/glue/tests/display_pointer_abs.rs.
#
# Handshake (the host watches the console):
#   NOVABOX-PTR-READY               both devices are open (opening the integration device
#                                   makes vboxguest tell the host it takes absolute
#                                   positions); host: move the pointer, then click
#   NOVABOX-PTR-EV TYPE CODE VALUE  one line per event read (EV_SYN left out)
# The test ends once a left-button press was read after at least one ABS_X and one ABS_Y.
. /tests/lib.sh

modprobe vboxguest || fail "modprobe vboxguest"
modprobe psmouse || fail "modprobe psmouse"
modprobe evdev || fail "modprobe evdev"

# evdev_by NAME|- PHYS-GLOB: the /dev/input/eventN of the input device called NAME (any name
# with -) whose phys matches PHYS-GLOB; waits up to 30 s for it to appear.
evdev_by() {
    i=0
    while [ $i -lt 30 ]; do
        for d in /sys/class/input/input*; do
            [ "$1" = - ] || [ "$(cat "$d/name" 2>/dev/null)" = "$1" ] || continue
            case "$(cat "$d/phys" 2>/dev/null)" in $2) ;; *) continue ;; esac
            for e in "$d"/event*; do
                [ -e "$e" ] && [ -e "/dev/input/${e##*/}" ] && { echo "/dev/input/${e##*/}"; return 0; }
            done
        done
        sleep 1
        i=$((i + 1))
    done
    fail "no input device '$1' at '$2': $(for d in /sys/class/input/input*; do printf '%s@%s,' "$(cat $d/name)" "$(cat $d/phys)"; done)"
}

abs=$(evdev_by "VirtualBox mouse integration" "*") || exit 1
ps2=$(evdev_by - "isa0060/serio1*") || exit 1
# One read per input_event (24 bytes on x86-64).
dd if="$abs" of=/tmp/abs.ev bs=24 count=100000 2>/dev/null &
p1=$!
dd if="$ps2" of=/tmp/ps2.ev bs=24 count=100000 2>/dev/null &
p2=$!
sleep 1
echo "NOVABOX-PTR-READY abs=$abs ps2=$ps2"

# show FILE SEEN: print the events of FILE after the first SEEN; prints the new count last.
show() {
    od -An -v -tu2 -w24 "$1" 2>/dev/null | awk -v seen="$2" '
        NR > seen && $9 != 0 { print "NOVABOX-PTR-EV", $9, $10, $11 + 65536 * $12 }
        END { print "COUNT", NR + 0 }'
}

n1=0
n2=0
gotx=""
goty=""
click=""
i=0
while [ $i -lt 300 ]; do
    out=$(show /tmp/abs.ev $n1)
    n1=$(echo "$out" | sed -n 's/^COUNT //p')
    echo "$out" | grep '^NOVABOX-PTR-EV'
    echo "$out" | grep -q '^NOVABOX-PTR-EV 3 0 ' && gotx=1
    echo "$out" | grep -q '^NOVABOX-PTR-EV 3 1 ' && goty=1
    out=$(show /tmp/ps2.ev $n2)
    n2=$(echo "$out" | sed -n 's/^COUNT //p')
    echo "$out" | grep '^NOVABOX-PTR-EV'
    # EV_KEY (1) BTN_LEFT (272) pressed.
    if [ -n "$gotx" ] && [ -n "$goty" ] && echo "$out" | grep -q '^NOVABOX-PTR-EV 1 272 1$'; then
        click=1
        break
    fi
    sleep 1
    i=$((i + 1))
done
kill $p1 $p2 2>/dev/null
[ -n "$gotx" ] && [ -n "$goty" ] || fail "no ABS_X/ABS_Y events on $abs"
[ -n "$click" ] || fail "no BTN_LEFT press on $ps2"
