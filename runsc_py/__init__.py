"""runsc-py's front end: a runc-compatible OCI command line over the Sentry.

Modules, one job each:

* `cli`       -- the click command tree (global flags, subcommands), thin.
* `errors`    -- `UserError` and the runc-shaped error log (`--log`, `--log-format`).
* `ids`       -- container id validation.
* `spec`      -- config.json: the default spec (`runsc-py spec`) and the
                 validated mapping of a bundle onto `sentry.config.SandboxConfig`.
* `state`     -- the per-container state store under `--root`.
* `procfs`    -- host process facts (liveness, start time, descendants).
* `launch`    -- run (in this process) and create (a detached Sentry process, its gates).
* `lifecycle` -- start/kill/delete/pause/resume/wait/ps on a launched container.
* `freezer`   -- pause/resume through the cgroup freezer.
* `sandbox`   -- the call into `sentry.boot.run_sandbox`, with the front end's error rules.
* `events`    -- `events --stats`: host-side resource use of a container's process tree.
* `install`   -- `install`/`uninstall`: the `runtimes` entry in Docker's daemon.json.
* `hooks`     -- OCI hooks (prestart ... poststop), run on the host.
* `do`        -- `do`: a sandbox over the host root filesystem, as `runsc do`.
* `syscall_list` -- `syscalls`: the compatibility list generated from the Sentry's table.
* `api`       -- the library: `from runsc_py import Sandbox` (run, popen, files, policies).
* `compat_report` -- `compat`: the compatibility report of a workload.

The library's names are loaded on first use (module __getattr__), so `import runsc_py` -- which
every CLI command pays -- stays as cheap as before.
"""

_LAZY = {"Sandbox": "runsc_py.api", "SandboxProcess": "runsc_py.api", "RunResult": "runsc_py.api",
         "SandboxError": "runsc_py.api", "PIPE": "runsc_py.api", "DEVNULL": "runsc_py.api",
         "ALLOW": "sentry.policy", "AUDIT": "sentry.policy", "KILL": "sentry.policy", "deny": "sentry.policy",
         "Decision": "sentry.policy", "SockAddr": "sentry.policy", "TaskView": "sentry.policy"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runsc_py' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
