"""A private containerd with its CRI plugin, and a CRI client, for tests/test_cri.py.

containerd keeps its root, state, socket and config under a directory the
test chooses (tests/engines.py's rules: started and stopped by pid, what is
left cleaned up by path).  The CRI plugin gets a runtime handler `runsc-py`
(io.containerd.runc.v2 with BinaryName = our runsc-py and a private --root),
the `native` snapshotter, no CNI (pods use the node's network: kubelet's
hostNetwork, which needs no CNI plugin), and the stream server on a free
port of 127.0.0.1.  Images are local: a busybox image and a `pause` image
(a static C program that waits for a signal) imported with
`ctr -n k8s.io images import`, so nothing is pulled.

The client is grpcio over the unix socket with message classes generated at
test time from tests/cri/api.proto (grpcio-tools' protoc).
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from tests.engines import CONTAINERD, CTR, UMOCI, EngineError, _wait_until, clean_up_under, stop_pid
from tests.rootfs import make_busybox_rootfs

HERE = Path(__file__).resolve().parent
HANDLER = "runsc-py"
NAMESPACE = "k8s.io"             # the CRI plugin's containerd namespace
PAUSE_IMAGE = "docker.io/library/runsc-py-pause:latest"
BUSYBOX_IMAGE = "docker.io/library/runsc-py-busybox:latest"
PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, done);
    signal(SIGINT, done);
    for (;;) pause();
}
"""


def generated(where: Path):
    """(api_pb2, api_pb2_grpc) compiled from tests/cri/api.proto into `where`."""
    from grpc_tools import protoc
    where.mkdir(parents=True, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={where}", f"--grpc_python_out={where}",
                      str(HERE / "api.proto")])
    if rc != 0:
        raise EngineError(f"protoc failed on {HERE / 'api.proto'} ({rc})")
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")
    finally:
        sys.path.remove(str(where))


def config_toml(directory: Path, runsc_py: str, runsc_root: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{directory}/root"
state = "{directory}/state"
[grpc]
  address = "{directory}/containerd.sock"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "native"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.{HANDLER}]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.{HANDLER}.options]
  BinaryName = "{runsc_py}"
  Root = "{runsc_root}"
[{cri}.cni]
  bin_dir = "{directory}/cni/bin"
  conf_dir = "{directory}/cni/conf"
"""


class CriContainerd:
    """containerd with the CRI plugin, everything under `directory`; `.runtime` and `.images` are the
    CRI gRPC stubs (RuntimeService, ImageService), `.pb` the message module."""

    def __init__(self, directory: Path, runsc_py: str) -> None:
        import grpc
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        for d in ("cni/bin", "cni/conf"):
            (directory / d).mkdir(parents=True, exist_ok=True)
        self.sock = directory / "containerd.sock"
        self.log = directory / "containerd.log"
        self.runsc_root = directory / "runsc-py"
        config = directory / "config.toml"
        config.write_text(config_toml(directory, runsc_py, self.runsc_root))
        self.proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            _wait_until(self._answers, 60, "containerd", self.log)
            self.pb, grpc_mod = generated(directory / "gen")
            self.channel = grpc.insecure_channel(f"unix://{self.sock}")
            self.runtime = grpc_mod.RuntimeServiceStub(self.channel)
            self.images = grpc_mod.ImageServiceStub(self.channel)
            _wait_until(self._cri_answers, 60, "the CRI plugin", self.log)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise EngineError(f"containerd exited with {self.proc.returncode}:\n"
                              + self.log.read_text(errors="replace")[-3000:])
        return self.ctr("version").returncode == 0

    def _cri_answers(self) -> bool:
        import grpc
        try:
            self.runtime.Version(self.pb.VersionRequest(version="v1"), timeout=5)
            return True
        except grpc.RpcError:
            return False

    def ctr(self, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([CTR, "-a", str(self.sock), "-n", NAMESPACE, *args], capture_output=True,
                              text=True, timeout=timeout, **kw)

    def import_images(self, work: Path) -> None:
        """The busybox and pause images, built locally (umoci) and imported: nothing is pulled."""
        busybox = Path(make_busybox_rootfs(str(work / "busybox-rootfs")))
        self._import(oci_image(work / "busybox-image", busybox, ["sh"]), BUSYBOX_IMAGE)
        pause_root = work / "pause-rootfs"
        pause_root.mkdir(parents=True, exist_ok=True)
        (work / "pause.c").write_text(PAUSE_C)
        subprocess.run(["gcc", "-static", "-O2", "-o", str(pause_root / "pause"), str(work / "pause.c")],
                       check=True, capture_output=True)
        self._import(oci_image(work / "pause-image", pause_root, ["/pause"]), PAUSE_IMAGE)

    def _import(self, tarball: Path, ref: str) -> None:
        name = ref.rsplit(":", 1)[0]
        p = self.ctr("images", "import", "--base-name", name, str(tarball))
        if p.returncode != 0:
            raise EngineError(f"ctr images import {ref}: {p.stderr.strip()}")

    def stop(self) -> list[str]:
        ch = getattr(self, "channel", None)
        if ch is not None:
            ch.close()
        stop_pid(self.proc.pid, timeout=30)
        # The warm factory runsc-py starts for a --root on its first create (runsc_py/factory.py)
        # outlives the pods; it is ours to stop, not a leftover.
        root = self.runsc_root / NAMESPACE
        if root.is_dir():
            from tests.engines import runsc_py_binary
            subprocess.run([runsc_py_binary() or "runsc-py", "--root", str(root), "factory", "stop"],
                           capture_output=True, timeout=60)
        return clean_up_under(self.dir, grace=5.0)


def oci_image(directory: Path, rootfs: Path, cmd: list[str]) -> Path:
    """An OCI image layout tarball: `rootfs` as its one layer, `cmd` its default command."""
    layout, unpacked = directory / "layout", directory / "unpacked"
    directory.mkdir(parents=True, exist_ok=True)
    config = ["config", "--image", f"{layout}:latest"]
    for c in cmd:
        config += ["--config.cmd", c]
    for args in (["init", "--layout", str(layout)], ["new", "--image", f"{layout}:latest"], config,
                 ["unpack", "--image", f"{layout}:latest", str(unpacked)]):
        subprocess.run([UMOCI, *args], check=True, capture_output=True)
    subprocess.run(["cp", "-a", f"{rootfs}/.", str(unpacked / "rootfs")], check=True)
    subprocess.run([UMOCI, "repack", "--image", f"{layout}:latest", str(unpacked)], check=True, capture_output=True)
    tar = directory / "oci-image.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(tar), "."], check=True)
    return tar
