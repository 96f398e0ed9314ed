# ga: every Guest Additions check in one boot (the host runner is
# crates/glue/tests/guest_additions.rs). Each part prints
#   NOVABOX-GA-PART-PASS NAME   or   NOVABOX-GA-PART-FAIL NAME REASON
# and the test fails when any part failed, after running them all.
#
# Parts: powerbutton (controlvm acpipowerbutton reaches the kernel's ACPI button
# driver as KEY_POWER), vboxsf (vboxsf.sh, with its escape battery), mouse (an absolute position
# injected by the host arrives as evdev ABS_X/ABS_Y events), time (VMMDevReq_GetHostTime
# through /dev/vboxguest, compared on the host), props (guest properties both ways),
# clipboard (text both ways in each clipboard mode the host switches to).
#
# Handshakes with the host runner (it watches the console):
#   NOVABOX-GA-MOUSE-READY                 host: inject 12345,23456 (alternating with
#                                          1000,2000) until MOUSE-DONE
#   NOVABOX-GA-HOSTTIME ms=N               host: |N - host clock| < 1000 ms
#   NOVABOX-GA-WANT-CLIPMODE MODE          host: switch the mode, set the host text to
#                                          "host-MODE", then set the guest property
#                                          /novabox/test/clipmode=MODE
#   NOVABOX-GA-CLIP-SERVED MODE rc=N       host: check get-text against "guest-MODE"
#   NOVABOX-GA-POWERBUTTON-READY           host: `acpipowerbutton` until POWERBUTTON-DONE
. /tests/lib.sh

C=/bin/gaclient
failed=""

# Every part needs the driver (vboxsf.sh loads it too, for running on its own).
grep -q '^vboxguest ' /proc/modules || modprobe vboxguest || fail "modprobe vboxguest"

# part NAME CMD...: runs CMD in a subshell and reports it.
part() {
    name=$1
    shift
    rm -f /tmp/novabox-fail-reason
    if ("$@"); then
        echo "NOVABOX-GA-PART-PASS $name"
    else
        echo "NOVABOX-GA-PART-FAIL $name $(cat /tmp/novabox-fail-reason 2>/dev/null)"
        # The driver's own words help more than the symptom.
        dmesg | grep -iE 'vbox|vmmdev' | tail -n 8 | sed 's/^/NOVABOX-GA-DMESG /'
        failed="$failed $name"
    fi
}

part_vboxsf() {
    sh /tests/vboxsf.sh || fail "$(cat /tmp/novabox-fail-reason 2>/dev/null)"
}

# evdev_node NAME [PHYS-GLOB]: the /dev/input/eventN of the input device called NAME
# (whose phys matches PHYS-GLOB).
evdev_node() {
    modprobe evdev 2>/dev/null
    dev=""
    for d in /sys/class/input/input*; do
        [ "$(cat "$d/name" 2>/dev/null)" = "$1" ] || continue
        case "$(cat "$d/phys" 2>/dev/null)" in ${2:-*}) dev=$d ;; esac
    done
    [ -n "$dev" ] || fail "no '$1' input device: $(cat /sys/class/input/input*/name 2>/dev/null | tr '\n' ',')"
    ev=""
    for e in "$dev"/event*; do [ -e "$e" ] && ev=/dev/input/${e##*/}; done
    [ -n "$ev" ] && [ -e "$ev" ] || fail "no evdev node for $dev"
    echo "$ev"
}

part_powerbutton() {
    modprobe button 2>/dev/null
    # The fixed-feature button (PM1 PWRBTN), not a DSDT PNP0C0C device.
    ev=$(evdev_node "Power Button" "LNXPWRBN*") || exit 1
    dd if="$ev" of=/tmp/button.ev bs=24 count=8 2>/dev/null &
    pid=$!
    echo "NOVABOX-GA-POWERBUTTON-READY"
    ok=""
    i=0
    while [ $i -lt 120 ]; do
        # EV_KEY (1), KEY_POWER (116), pressed (1).
        if od -An -v -tu2 -w24 /tmp/button.ev 2>/dev/null | awk '
            $9 == 1 && $10 == 116 && $11 == 1 { k = 1 } END { exit !k }'; then
            ok=1
            break
        fi
        sleep 1
        i=$((i + 1))
    done
    kill $pid 2>/dev/null
    echo "NOVABOX-GA-POWERBUTTON-DONE"
    [ -n "$ok" ] || fail "no KEY_POWER press on $ev: $(od -An -v -tu2 -w24 /tmp/button.ev | head -4 | tr '\n' ';')"
}

part_mouse() {
    ev=$(evdev_node "VirtualBox mouse integration") || exit 1
    # One read per input_event (24 bytes on x86-64); opening the device makes the
    # driver tell the host it can take absolute positions.
    dd if="$ev" of=/tmp/mouse.ev bs=24 count=16 2>/dev/null &
    pid=$!
    echo "NOVABOX-GA-MOUSE-READY"
    ok=""
    i=0
    while [ $i -lt 120 ]; do
        # od columns: 8 x timeval halves, type, code, value low, value high.
        if od -An -v -tu2 -w24 /tmp/mouse.ev 2>/dev/null | awk '
            $9 == 3 && $10 == 0 && $11 == 12345 { x = 1 }
            $9 == 3 && $10 == 1 && $11 == 23456 { y = 1 }
            END { exit !(x && y) }'; then
            ok=1
            break
        fi
        sleep 1
        i=$((i + 1))
    done
    kill $pid 2>/dev/null
    echo "NOVABOX-GA-MOUSE-DONE"
    [ -n "$ok" ] || fail "no ABS_X=12345/ABS_Y=23456 events on $ev: $(od -An -v -tu2 -w24 /tmp/mouse.ev | head -8 | tr '\n' ';')"
}

part_time() {
    [ -x $C ] || fail "no $C"
    out=$($C hosttime) || fail "gaclient hosttime: $out"
    echo "NOVABOX-GA-HOSTTIME ms=$out"
}

part_props() {
    [ -x $C ] || fail "no $C"
    # The host set /novabox/test/fromhost before the boot.
    v=$($C prop-get /novabox/test/fromhost) || fail "prop-get fromhost: $v"
    [ "$v" = "hello from the host" ] || fail "prop-get fromhost gave '$v'"
    $C prop-set /novabox/test/fromguest "hello from the guest" || fail "prop-set"
    v=$($C prop-get /novabox/test/fromguest) || fail "prop-get fromguest: $v"
    [ "$v" = "hello from the guest" ] || fail "read back fromguest '$v'"
    # What the host made read-only for the guest stays so.
    $C prop-set /novabox/test/rdonlyguest x 2>/dev/null && fail "guest overwrote a RDONLYGUEST property"
    # A transient property for the host to check it is not persisted.
    $C prop-set /novabox/test/transient "gone" TRANSIENT || fail "prop-set transient"
    # Something published by the Additions side, as VBoxService would.
    $C prop-set /VirtualBox/GuestInfo/OS/Product "Linux" || fail "prop-set GuestInfo"
    :
}

part_clipboard() {
    [ -x $C ] || fail "no $C"
    for mode in bidirectional hosttoguest guesttohost disabled; do
        echo "NOVABOX-GA-WANT-CLIPMODE $mode"
        i=0
        while [ "$($C prop-get /novabox/test/clipmode 2>/dev/null)" != "$mode" ]; do
            [ $i -lt 600 ] || fail "host did not switch to clipboard mode $mode"
            sleep 1
            i=$((i + 1))
        done
        # Host to guest.
        got=$($C clip-read)
        rc=$?
        case $mode in
            bidirectional|hosttoguest)
                [ $rc -eq 0 ] && [ "$got" = "host-$mode" ] || fail "$mode: clip-read rc=$rc '$got'" ;;
            *)
                [ $rc -eq 3 ] || fail "$mode: clip-read should be refused, rc=$rc '$got'" ;;
        esac
        # Guest to host: announce, then answer the host's read.
        $C clip-serve "guest-$mode" 20
        rc=$?
        echo "NOVABOX-GA-CLIP-SERVED $mode rc=$rc"
        case $mode in
            bidirectional|guesttohost) [ $rc -eq 0 ] || fail "$mode: clip-serve rc=$rc" ;;
            *) [ $rc -ne 0 ] || fail "$mode: clip-serve was read by the host" ;;
        esac
    done
}

# The quick parts first; vboxsf (64 MiB, 1,000 files) takes longest on the interpreter.
part powerbutton part_powerbutton
part mouse part_mouse
part time part_time
part props part_props
part clipboard part_clipboard
part vboxsf part_vboxsf

[ -z "$failed" ] || fail "failed parts:$failed"
echo "ga: ok"
