# vboxsf-escape MOUNTPOINT: escape attempts from inside the guest; exits non-zero (with a
# reason in /tmp/novabox-fail-reason) if any reaches outside the share. Run by vboxsf.sh.
. /tests/lib.sh
M=${1:?mount point}

# Through "..": the guest kernel resolves it, so the host sees no "..", but raw names do.
[ "$(cd "$M/.." && pwd)" = "$(dirname "$M")" ] || fail ".. leaves the mount in the guest namespace"

# Symlinks: creation is off by default (VirtualBox's policy), so ln -s must fail.
ln -s /etc "$M/evil" 2>/dev/null && fail "guest created a symlink on a share without symlink permission"

# A host-planted symlink to the outside (made by the host runner as escape-link ->
# /, if present) must not be followable.
if [ -L "$M/escape-link" ]; then
    ls "$M/escape-link/" >/dev/null 2>&1 && fail "listed the host root through a planted symlink"
    cat "$M/escape-link/etc/hostname" >/dev/null 2>&1 && fail "read a host file through a planted symlink"
    echo pwn > "$M/escape-link/tmp/novabox-pwned" 2>/dev/null && fail "wrote outside through a planted symlink"
fi

# Names with a backslash or that are very long are refused or stay inside.
: > "$M/a\\..\\..\\b" 2>/dev/null
[ -e "$M/a\\..\\..\\b" ] && rm -f "$M/a\\..\\..\\b"
long=$(printf 'x%.0s' $(seq 1 300))
: > "$M/$long" 2>/dev/null && fail "created a 300-byte name"
exit 0
