"""Write the fast `runsc-py` launcher over the console script pip made (install.sh runs this).

pip's script starts the interpreter with `site`, which processes every
`.pth` file of site-packages (an editable install's import hook, pathlib,
whatever else is installed): ~25 ms here before runsc-py runs a line.  The
launcher starts Python isolated and without `site` (`-IS`) and puts exactly
our tree and site-packages on sys.path itself, then calls
`runsc_py.front:main` (which hands the command to a warm factory if one
runs).  If those imports ever fail (the tree moved), it falls back to the
normal `site` start-up, so the launcher is never worse than pip's script.

Usage: python3 -m runsc_py.launcher [PATH]   (default: runsc-py beside this interpreter)
"""
from __future__ import annotations

import os
import sys
import sysconfig

TEMPLATE = '''#!{python} -IS
# runsc-py launcher, written by `python3 -m runsc_py.launcher` (install.sh): an isolated start
# without `site` (see runsc_py/launcher.py); falls back to a normal start if the paths moved.
import sys
sys.path[:0] = {paths!r}
try:
    from runsc_py.front import main
except ImportError:
    import site
    site.main()
    from runsc_py.front import main
main()
'''


def launcher_text() -> str:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [repo]
    for key in ("purelib", "platlib"):
        p = sysconfig.get_path(key)
        if p and p not in paths:
            paths.append(p)
    return TEMPLATE.format(python=sys.executable, paths=paths)


def write(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(launcher_text())
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(sysconfig.get_path("scripts"), "runsc-py")
    write(path)
    print(f"runsc_py.launcher: wrote {path}")


if __name__ == "__main__":
    main()
