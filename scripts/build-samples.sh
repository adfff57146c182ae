#!/usr/bin/env bash
# Builds the sample mini-programs (sample-programs/*) into components in
# sample-programs/dist/<name>.wasm.
#
#   scripts/build-samples.sh           build and write sample-programs/dist/
#   scripts/build-samples.sh --check   build elsewhere and compare byte for byte
#                                      with the committed dist/; exit 1 naming
#                                      every sample that differs
#
# The guests need a wasm32 toolchain the machine's rustup Rust lacks: Debian's
# rustc-web with its std sources builds one (-Zbuild-std), linked by Debian's
# wasm-ld; tools/componentize (wit-component), built with the ordinary
# toolchain, turns each core module into a component. The bytes depend only on
# those tool versions and the sources, not on where the checkout lives (CI
# builds a fresh clone elsewhere): see build_guests. dist/toolchain.txt records
# the versions, so a --check that fails on a new toolchain says so.
set -euo pipefail

readonly GUEST_TARGET=wasm32-unknown-unknown
readonly GUEST_PACKAGES=(rustc-web cargo-web rust-web-src lld)
readonly GUEST_CARGO=/usr/bin/cargo
readonly GUEST_RUSTC=/usr/bin/rustc
readonly GUEST_LINKER=wasm-ld
# The fixed path the guests are built through; see build_guests.
readonly STABLE_DIR=/tmp/miniapp-build-samples

usage() {
    echo "usage: $0 [--check]" >&2
    exit 2
}

check=false
case "${1-}" in
    "") ;;
    --check) check=true ;;
    *) usage ;;
esac
[[ $# -le 1 ]] || usage

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
samples_dir="$root/sample-programs"
dist_dir="$samples_dir/dist"
guest_target_dir="$root/target/guest"
tools_target_dir="$root/target/tools"

log() {
    echo "build-samples: $*" >&2
}

guest_std_sources() {
    echo "$("$GUEST_RUSTC" --print sysroot)/lib/rustlib/src/rust"
}

guest_toolchain_present() {
    [[ -x $GUEST_CARGO && -x $GUEST_RUSTC ]] &&
        [[ -d "$(guest_std_sources)/library/std" ]] &&
        command -v "$GUEST_LINKER" >/dev/null
}

install_guest_toolchain() {
    if guest_toolchain_present; then
        return
    fi
    log "installing the guest toolchain: ${GUEST_PACKAGES[*]}"
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${GUEST_PACKAGES[@]}"
    guest_toolchain_present || {
        log "the guest toolchain is still incomplete after installing ${GUEST_PACKAGES[*]}"
        exit 1
    }
}

# The versions that decide the output bytes, one per line.
toolchain_description() {
    "$GUEST_RUSTC" --version
    "$GUEST_RUSTC" -vV | grep -E '^(commit-hash|LLVM version):'
    echo "linker: $("$GUEST_LINKER" --version)"
    local wit_component
    wit_component=$(grep -A1 '^name = "wit-component"$' "$root/tools/componentize/Cargo.lock" |
        sed -n 's/^version = "\(.*\)"$/\1/p')
    echo "wit-component: $wit_component"
}

build_componentize() {
    log "building tools/componentize"
    # The ordinary toolchain (rustup's cargo first on PATH), not the guest one.
    env -u RUSTC -u RUSTC_BOOTSTRAP -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
        cargo build --quiet --release --locked \
        --manifest-path "$root/tools/componentize/Cargo.toml" \
        --target-dir "$tools_target_dir"
}

build_guests() {
    # Cargo hashes the absolute path of a path dependency that lies outside
    # the workspace (the SDK, for sample-programs/) into the crate's metadata,
    # hence its symbols and the order of the code: a checkout elsewhere would
    # build other bytes. So cargo sees the checkout through a symlink at a
    # fixed path, and a lock keeps two checkouts from racing for it.
    mkdir -p "$STABLE_DIR"
    exec 9>"$STABLE_DIR/lock"
    flock 9
    local stable_root="$STABLE_DIR/src"
    ln -sfn "$root" "$stable_root"

    local std_sources cargo_home commit
    std_sources=$(guest_std_sources)
    cargo_home=${CARGO_HOME:-$HOME/.cargo}
    commit=$("$GUEST_RUSTC" -vV | sed -n 's/^commit-hash: //p')

    # Other paths the compiler may embed (panic locations, file names) are
    # remapped to fixed ones. When several prefixes match, rustc applies the
    # last, so the more specific come later.
    #
    # --import-memory: the module imports its memory instead of defining it,
    # so the component defines it before the module is instantiated and
    # lowers every import that only reads guest memory (such as `log`)
    # straight into the module. With its own memory, such an import goes
    # through a table of indirect calls filled in after instantiation: two
    # more core instances (wit-component's shim and fixup) on every call.
    # The cost: an imported memory has no copy-on-write image, so the data
    # segments (a few KiB here) are copied in on each instantiation.
    local flags=(
        -C "linker=$GUEST_LINKER"
        -C "link-arg=--import-memory"
        "--remap-path-prefix=$root=/miniapp"
        "--remap-path-prefix=$stable_root=/miniapp"
        "--remap-path-prefix=$cargo_home=/cargo"
        "--remap-path-prefix=$std_sources=/rustc/$commit"
        "--remap-path-prefix=$(readlink -f "$std_sources")=/rustc/$commit"
    )
    # CARGO_ENCODED_RUSTFLAGS separates flags with 0x1f, so paths may hold spaces.
    local encoded
    encoded=$(printf '%s\x1f' "${flags[@]}")
    encoded=${encoded%$'\x1f'}

    log "building the guests with $("$GUEST_RUSTC" --version)"
    env -u RUSTFLAGS \
        RUSTC="$GUEST_RUSTC" \
        RUSTC_BOOTSTRAP=1 \
        CARGO_ENCODED_RUSTFLAGS="$encoded" \
        "$GUEST_CARGO" build --release --locked \
        --manifest-path "$stable_root/sample-programs/Cargo.toml" \
        --target "$GUEST_TARGET" \
        -Zbuild-std=std,panic_abort \
        --target-dir "$guest_target_dir"
    exec 9>&-
}

# The sample names: every directory of sample-programs/ with a Cargo.toml.
sample_names() {
    local manifest
    for manifest in "$samples_dir"/*/Cargo.toml; do
        basename "$(dirname "$manifest")"
    done
}

# Writes every sample's component and toolchain.txt into $1.
package_components() {
    local out_dir=$1 name module
    mkdir -p "$out_dir"
    for name in $(sample_names); do
        module="$guest_target_dir/$GUEST_TARGET/release/${name//-/_}.wasm"
        "$tools_target_dir/release/componentize" "$module" "$out_dir/$name.wasm"
        log "$name: $(wc -c <"$out_dir/$name.wasm") bytes"
    done
    toolchain_description >"$out_dir/toolchain.txt"
}

# Compares a fresh build in $1 with the committed dist/; names what differs.
compare_with_committed() {
    local fresh_dir=$1 name differing=()
    for name in $(sample_names); do
        if ! cmp -s "$fresh_dir/$name.wasm" "$dist_dir/$name.wasm"; then
            differing+=("$name")
        fi
    done
    if [[ ${#differing[@]} -eq 0 ]]; then
        log "sample-programs/dist/ matches a fresh build"
        return 0
    fi
    for name in "${differing[@]}"; do
        log "sample-programs/dist/$name.wasm differs from a fresh build of sample-programs/$name"
    done
    if ! cmp -s "$fresh_dir/toolchain.txt" "$dist_dir/toolchain.txt"; then
        log "the toolchain differs from the one that built dist/ (committed, then here):"
        diff "$dist_dir/toolchain.txt" "$fresh_dir/toolchain.txt" >&2 || true
    fi
    log "rebuild with scripts/build-samples.sh and commit sample-programs/dist/"
    return 1
}

install_guest_toolchain
build_componentize
build_guests

if $check; then
    fresh_dir=$(mktemp -d)
    trap 'rm -rf "$fresh_dir"' EXIT
    package_components "$fresh_dir"
    compare_with_committed "$fresh_dir"
else
    package_components "$dist_dir"
    log "wrote sample-programs/dist/"
fi
