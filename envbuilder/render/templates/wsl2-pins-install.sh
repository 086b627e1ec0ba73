# No lock was given: these are the plan's exact pins, installed without hashes. For a reproducible, hash-checked
# build make a lock (`envbuilder lock --os wsl2 ...`) and pass it with `envbuilder recipe wsl2 --lock FILE`.
PINS=(@@PINS@@)
INDEX_ARGS=(@@INDEX_ARGS@@)
note "installing the plan's exact pins: ${PINS[*]}"
uv pip install --python "$ENV_DIR/bin/python" "${INDEX_ARGS[@]}" "${PINS[@]}" || fail "uv pip install failed (output above)" "check the network or your index settings (UV_INDEX_URL, UV_EXTRA_INDEX_URL), then run this script again"
