# shellcheck shell=bash
# Sourced by every CI job script: `. ci/setup.sh MODE [DEBIAN_PACKAGE...]`.
#
# Installs what the job needs and sets PY, the interpreter the job runs boot2ipxe and the checks with:
#   dev   the package with its dev extra (ruff, mypy, pytest, check-jsonschema) in .venv, like .ci/run
#   run   the package alone in .venv
#   none  no Python package: PY is python3
# Debian packages are installed only when missing, so a machine that has them does no apt work.
#
# CI_LOCAL=1 (gitlab-ci-local on a developer's machine, and the tests) installs nothing and downloads nothing:
# a missing Debian package is an error, and PY is $CI_LOCAL_PYTHON (default python3), an interpreter that
# already has the dependencies, with this checkout first on PYTHONPATH. Everything after setup is the same.

_setup_die() {
    echo "ci/setup.sh: $*" >&2
    exit 1
}

_setup_missing_packages() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q ' installed$' || printf '%s\n' "$package"
    done
}

_setup_main() {
    local mode=${1:-}
    case $mode in
        dev | run | none) shift ;;
        *) _setup_die "usage: . ci/setup.sh dev|run|none [DEBIAN_PACKAGE...] (got '${mode}')" ;;
    esac
    local -a packages=("$@")
    if [ -z "${CI_LOCAL:-}" ]; then
        case $mode in
            none) packages+=(python3) ;;
            # pyparted is built from source against libparted.
            *) packages+=(python3 python3-venv python3-dev gcc pkg-config libparted-dev) ;;
        esac
    fi
    command -v dpkg-query >/dev/null || _setup_die "dpkg-query not found: the CI jobs run on Debian (image debian:trixie)"
    local -a missing
    mapfile -t missing < <(_setup_missing_packages "${packages[@]}")
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ -n "${CI_LOCAL:-}" ]; then
            _setup_die "CI_LOCAL is set but these Debian packages are missing: ${missing[*]}; install them (apt-get install ${missing[*]}) or run the job without CI_LOCAL"
        fi
        local sudo=()
        [ "$(id -u)" = 0 ] || sudo=(sudo)
        echo "ci/setup.sh: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi

    if [ -n "${CI_LOCAL:-}" ]; then
        PY=${CI_LOCAL_PYTHON:-python3}
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
        if [ "$mode" != none ]; then
            "$PY" -c 'import boot2ipxe.cli, yaml, jsonschema, cryptography, jinja2, requests, parted' 2>/dev/null ||
                _setup_die "CI_LOCAL: $PY lacks boot2ipxe's dependencies: set CI_LOCAL_PYTHON to an interpreter that has them"
        fi
    elif [ "$mode" = none ]; then
        PY=python3
    else
        export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$PWD/.cache/pip} PIP_DISABLE_PIP_VERSION_CHECK=1
        python3 -m venv .venv
        if [ "$mode" = dev ]; then
            .venv/bin/python -m pip install -q -e '.[dev]'
        else
            .venv/bin/python -m pip install -q .
        fi
        PY=$PWD/.venv/bin/python
    fi
    export PY
}

_setup_main "$@"
