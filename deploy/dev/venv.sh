# Python virtualenvs of the OpenStack peers (sourced by `stack`).
#
# Each service gets its own venv under $STACK_DIR/venvs, pinned to the release
# the project is tested against. A stamp file records a finished install, so a
# half-done pip run is redone rather than trusted.

venv_up() {  # name, pip requirements...
    local name="$1"; shift
    local dir="$STACK_DIR/venvs/$name" stamp="$STACK_DIR/venvs/$name.done"
    local want="$*"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    say "installing $name venv ($want)"
    rm -rf "$dir"
    logged "venv-$name.log" "$PYTHON" -m venv "$dir"
    logged "venv-$name.log" "$dir/bin/pip" install --quiet --upgrade pip setuptools wheel
    # shellcheck disable=SC2086
    logged "venv-$name.log" "$dir/bin/pip" install --quiet $want
    printf '%s' "$want" >"$stamp"
}

# Installs several venvs at once ("name|requirements" each): pip spends most of
# its time on downloads and unpacking, so three in parallel cost little more
# than one on a fresh machine.
venvs_up() {
    local spec i failed=""
    local -a pids=() names=()
    for spec in "$@"; do
        ( venv_up "${spec%%|*}" "${spec#*|}" ) &
        pids+=("$!")
        names+=("${spec%%|*}")
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=" ${names[$i]}"
    done
    [[ -z "$failed" ]] || die "venv install failed:$failed (logs: $LOG_DIR/venv-*.log)"
}
