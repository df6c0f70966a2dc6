# ds01: show your quota, your use and recent OOM kills at login.
# Interactive shells only; never blocks or breaks a login (ds01 greet prints nothing
# on any error, and is bounded to a second here in case a filesystem hangs).
case $- in
    *i*)
        if [ -z "${DS01_NO_GREETING:-}" ] && command -v ds01 >/dev/null 2>&1; then
            if command -v timeout >/dev/null 2>&1; then
                timeout 1 ds01 greet 2>/dev/null || true
            else
                ds01 greet 2>/dev/null || true
            fi
        fi
        ;;
esac
