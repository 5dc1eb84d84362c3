# Sourced by ./jobrunner and scripts/*: make sure npm deps are installed and dist/ is current.
# Serialised with flock so two commands started together do not build over each other.
ensure_built() {
  local root=$1
  # scripts/test builds once up front and sets this so the many CLI runs in tests skip the check.
  if [ -n "${JOBRUNNER_PREBUILT:-}" ] && [ -f "$root/dist/.build-stamp" ]; then return 0; fi
  command -v node >/dev/null || { echo "jobrunner: Node.js 20 is required (node not found)" >&2; exit 125; }
  (
    flock 9
    cd "$root"
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      # npm ci, never a bare npm install: ci installs exactly what package-lock.json says and
      # never rewrites it, so a fresh clone stays clean (the lock lists every optional platform
      # package, which npm ci requires). .ci/run checks `git status --porcelain` after set-up.
      echo "jobrunner: installing npm dependencies (npm ci from package-lock.json)..." >&2
      npm ci --no-audit --no-fund --loglevel=error >&2 || { echo "jobrunner: npm ci failed" >&2; exit 125; }
    fi
    if [ ! -f dist/.build-stamp ] || [ -n "$(find src tsconfig.json package.json -newer dist/.build-stamp -print -quit)" ]; then
      echo "jobrunner: building (tsc)..." >&2
      rm -rf dist
      npx --no-install tsc -p tsconfig.json >&2 || { echo "jobrunner: build failed" >&2; exit 125; }
      touch dist/.build-stamp
    fi
  ) 9>"$root/.build.lock"
}
