$lockFile = Join-Path $EnvDir @@LOCK_FILE@@
$lockText = @'
@@LOCK@@
'@
Write-Utf8NoBom $lockFile ($lockText + "`n")
Write-Note ('installing exactly the lock''s packages (hashes checked): ' + $lockFile)
& uv pip sync --python $python $lockFile
Assert-Exit 'uv pip sync'