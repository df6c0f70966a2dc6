# Shared by the scripts in this folder.
need_cargo() {
    if ! command -v cargo >/dev/null; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-cache show rustup >/dev/null 2>&1; then
            apt-get install -y -qq rustup >/dev/null && rustup default stable
        else
            echo "cargo not found: install Rust >= 1.88 (https://rustup.rs, or 'apt-get install rustup' on Debian 13)" >&2
            exit 1
        fi
    fi
    if command -v rustup >/dev/null; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
}
