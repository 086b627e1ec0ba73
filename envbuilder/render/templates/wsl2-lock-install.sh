LOCK_FILE="$ENV_DIR/"@@LOCK_FILE@@
cat > "$LOCK_FILE.tmp" <<'@@TAG@@'
@@LOCK@@
@@TAG@@
mv -f "$LOCK_FILE.tmp" "$LOCK_FILE"
note "installing exactly the lock's packages (hashes checked): $LOCK_FILE"
uv pip sync --python "$ENV_DIR/bin/python" "$LOCK_FILE" || fail "uv pip sync failed (output above)" "check the network or your index settings (UV_INDEX_URL, UV_EXTRA_INDEX_URL), then run this script again"
