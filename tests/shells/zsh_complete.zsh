# Prints the matches zsh's completion system offers for a command line (tests/test_cli_habits.py).
# Usage: zsh -f zsh_complete.zsh SCRIPT 'envbuilder lo'
# An interactive zsh runs in a pseudo-terminal (zpty), loads compinit and SCRIPT, and wraps compadd so that every
# match it is handed is printed between markers; then TAB is typed after the line. The matches are what the real
# completion system computed from SCRIPT's functions. Each step waits for the shell to show it is ready (typed-ahead
# input can be flushed while zle starts).
zmodload zsh/zpty
typeset -g seen=''

wait_for() {  # read the pty until $1 (a pattern) has been seen, 20 s at most
  local line i
  for (( i = 0; i < 400; i++ )); do
    while zpty -r -t z line; do seen+=$line; done
    [[ $seen == $~1 ]] && return 0
    sleep 0.05
  done
  print -u2 "zsh_complete: timed out waiting for $1"; exit 3
}

zpty z zsh -f -i
wait_for '*2004h*'  # zle is up (it turns on bracketed paste)
zpty -w z "PS1='> '; autoload -U compinit && compinit -u -D; source ${(q)1}; print READY-\$(( 20 + 1 ))"
wait_for '*READY-21*'
zpty -w z 'compadd () { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi; local -a hits; builtin compadd -A hits "$@"; local h; for h in $hits; do print -r -- "<HIT:$h:HIT>"; done; builtin compadd "$@"; }; zstyle ":completion:*" menu no; print SET-$(( 30 + 1 ))'
wait_for '*SET-31*'
seen=''
zpty -w -n z "$2"$'\t'
sleep 1
zpty -w z $'\C-u'"print END-\$(( 40 + 1 ))"
wait_for '*END-41*'
print -r -- $seen | tr -d '\r' | grep -ao '<HIT:[^<>]*:HIT>' | sed 's/^<HIT://; s/:HIT>$//' | sort -u
zpty -d z
