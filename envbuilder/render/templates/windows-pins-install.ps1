# No lock was given: these are the plan's exact pins, installed without hashes. For a reproducible, hash-checked
# build make a lock (`envbuilder lock --os windows ...`) and pass it with `envbuilder recipe windows --lock FILE`.
$pins = @(@@PINS@@)
$indexArgs = @(@@INDEX_ARGS@@)
Write-Note ('installing the plan''s exact pins: ' + ($pins -join ' '))
& uv pip install --python $python @indexArgs @pins
Assert-Exit 'uv pip install'