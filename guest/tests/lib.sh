# Helpers sourced by the guest tests (/tests/*.sh).

# fail REASON...: records the reason for init's NOVABOX-TEST-FAIL line and
# ends the test.
fail() {
    echo "$*" > /tmp/novabox-fail-reason
    echo "FAIL: $*"
    exit 1
}

# novabox_arg KEY: value of KEY=value on the kernel command line.
novabox_arg() {
    for w in $(cat /proc/cmdline); do
        case "$w" in
            "$1="*) echo "${w#*=}"; return 0 ;;
        esac
    done
    return 1
}
