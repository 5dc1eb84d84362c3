# Sourced by bench/* wrappers: `bench_help "$0" "$@"` prints the wrapper's header comment (what it
# measures, its usage and options) and exits when any argument is -h or --help.
bench_help() {
  local self=$1; shift
  local a
  for a in "$@"; do
    case $a in
      -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$self"; exit 0 ;;
    esac
  done
}
