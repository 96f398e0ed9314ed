# vboxsf-escape MOUNTPOINT: escape attempts from inside the guest; exits non-zero (with a
# reason in /tmp/novabox-fail-reason) if any reaches outside the share. Run by vboxsf.sh.
. /tests/lib.sh
M=${1:?mount point}

# Through "..": the guest kernel resolves it, so the host sees no "..", but raw names do.
[ "$(cd "$M/.." && pwd)" = "$(dirname "$M")" ] || fail ".. leaves the mount in the guest namespace"

# Symlinks: creation is off by default (VirtualBox's policy), so ln -s must fail.
ln -s /etc "$M/evil" 2>/dev/null && fail "guest created a symlink on a share without symlink permission"

# Host-planted symlinks to a host folder outside the share (made by the host runner:
# escape-abs -> its absolute host path, escape-rel -> ../outside, each holding
# secret.txt = "host-secret"). The guest kernel resolves a symlink's text in the GUEST's
# namespace, so neither may reach the host folder: no read of the secret, and writes
# through them must not land there (the host runner checks its folder afterwards).
for l in escape-abs escape-rel; do
    [ -L "$M/$l" ] || continue
    [ "$(cat "$M/$l/secret.txt" 2>/dev/null)" = host-secret ] && fail "read a host file outside the share through $l"
    echo pwn > "$M/$l/pwned" 2>/dev/null
done
# The raw host path of the outside folder is no name inside the share either.
[ "$(cat "$M/../outside/secret.txt" 2>/dev/null)" = host-secret ] && fail "read ../outside/secret.txt"

# Names with a backslash or that are very long are refused or stay inside. (touch, not
# `: >`: a failed redirection on the special built-in `:` would end this shell.)
touch "$M/a\\..\\..\\b" 2>/dev/null
[ -e "$M/a\\..\\..\\b" ] && rm -f "$M/a\\..\\..\\b"
long=$(printf 'x%.0s' $(seq 1 300))
touch "$M/$long" 2>/dev/null && fail "created a 300-byte name"
exit 0
