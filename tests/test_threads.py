"""Thread-heavy programs finish in the sandbox with the default CPU placement.

Each runs the host's own programs through `runsc-py do` (tests/test_do.py).
No timing is asserted beyond a generous hang guard: the regression these
guard against is a program that never finishes (with the default
--cpu-pin=auto, 40 Python threads doing small file I/O starved the main
thread for minutes: the ptrace platform served the newest tracee's stops
first, every time -- platforms/ptrace/tracer.py, PtracePlatform.wait).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.test_do import REPO, show

HANG_GUARD = 150          # seconds; natively these take well under one

# 40 daemon threads loop on small file I/O and short sleeps; the main thread sleeps
# 0.1 s, prints and exits with the threads still running (exit_group ends them).
DAEMONS = r"""
import threading, time, sys
N = int(sys.argv[1])
def work(i):
    while True:
        with open(f"/tmp/t{i}", "w") as f:
            f.write("x" * 64)
        with open(f"/tmp/t{i}") as f:
            f.read()
        time.sleep(0.001)
for i in range(N):
    threading.Thread(target=work, args=(i,), daemon=True).start()
time.sleep(0.1)
print("main done", flush=True)
"""

# Threads that finish: each does 20 rounds of I/O and a sleep, the main thread joins them all.
JOINED = r"""
import threading, time, sys
N = int(sys.argv[1])
counts = [0] * N
def work(i):
    for _ in range(20):
        with open("/dev/null", "w") as f:
            f.write("x")
        time.sleep(0.001)
        counts[i] += 1
ths = [threading.Thread(target=work, args=(i,)) for i in range(N)]
for t in ths: t.start()
for t in ths: t.join()
print(sum(counts), flush=True)
"""


def do_python(code: str, *args: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "runsc_py.cli", *flags, "do", "--", sys.executable, "-c", code,
                           *args], cwd="/", env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=HANG_GUARD)


@pytest.mark.parametrize("n", [20, 40])
def test_daemon_threads_do_not_starve_main(n):
    p = do_python(DAEMONS, str(n))
    assert p.returncode == 0 and p.stdout == "main done\n", show(p)


def test_forty_joined_threads_all_finish():
    p = do_python(JOINED, "40")
    assert p.returncode == 0 and p.stdout == "800\n", show(p)


GO_PROGRAM = r"""
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Goroutines that never yield on their own: only Go's asynchronous preemption (SIGURG sent
// to the thread running them) lets the others, and the timer below, run.
func spin(stop *int32, n *int64) {
	for atomic.LoadInt32(stop) == 0 {
		*n++
	}
}

func main() {
	runtime.GOMAXPROCS(4)
	var stop int32
	counts := make([]int64, 8)
	for i := range counts {
		go spin(&stop, &counts[i])
	}
	time.Sleep(200 * time.Millisecond)
	atomic.StoreInt32(&stop, 1)
	// Then plenty of goroutines, channels, allocation (GC with its stop-the-world signals).
	var wg sync.WaitGroup
	ch := make(chan int, 16)
	total := 0
	done := make(chan bool)
	go func() {
		for v := range ch {
			total += v
		}
		done <- true
	}()
	for g := 0; g < 200; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([][]byte, 0)
			for i := 0; i < 50; i++ {
				buf = append(buf, make([]byte, 4096))
			}
			f, err := os.CreateTemp("", "g")
			if err == nil {
				f.Write(buf[0][:16])
				f.Close()
				os.Remove(f.Name())
			}
			ch <- g
		}(g)
	}
	wg.Wait()
	close(ch)
	<-done
	fmt.Println("total", total)
}
"""


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain on this host (apt-get install golang-go)")
    d = tmp_path_factory.mktemp("gothreads")
    (d / "main.go").write_text(GO_PROGRAM)
    (d / "go.mod").write_text("module gothreads\n\ngo 1.19\n")
    env = dict(os.environ, CGO_ENABLED="0", GOCACHE=str(d / "cache"), GOPATH=str(d / "gopath"), GOFLAGS="-mod=mod")
    b = subprocess.run([go, "build", "-o", str(d / "gothreads"), "."], cwd=d, env=env, capture_output=True,
                       text=True, timeout=600)
    assert b.returncode == 0, b.stderr
    return str(d / "gothreads")


def test_go_goroutines_and_preemption(go_binary):
    """A static Go program built on the host: spinning goroutines only async preemption can
    interrupt, 200 goroutines with channels, allocation and file I/O; five runs in a row."""
    native = subprocess.run([go_binary], capture_output=True, text=True, timeout=60)
    assert native.returncode == 0, native.stderr
    env = dict(os.environ, PYTHONPATH=REPO)
    for _ in range(5):
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "do", "--", go_binary], cwd="/", env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=HANG_GUARD)
        assert p.returncode == 0 and p.stdout == native.stdout, show(p)


def test_go_build_inside_the_sandbox(tmp_path):
    """`go build` of a small module run inside the sandbox (the host's Go toolchain, through
    `runsc-py do`), then the program it built, twenty times in a row: each build runs a dozen
    threads of the go tool and its compiler with Go's signal-based preemption.  It used to die
    with clobbered registers, 'morestack on g0' or pc=0 (new threads inherited their creator's
    alternate signal stack), or hang (the newest thread's stops served first, always)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain on this host (apt-get install golang-go)")
    (tmp_path / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("built inside") }\n')
    (tmp_path / "go.mod").write_text("module inside\n\ngo 1.19\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    script = f"cd {tmp_path} && {go} build -o /tmp/inside.out . && /tmp/inside.out"
    for _ in range(20):
        p = subprocess.run([sys.executable, "-m", "runsc_py.cli", "do", "--env", "GOCACHE=/tmp/gocache",
                            "--env", "HOME=/tmp", "--env", "CGO_ENABLED=0", "--", "/bin/sh", "-c", script],
                           cwd="/", env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=HANG_GUARD)
        assert p.returncode == 0 and p.stdout == "built inside\n", show(p)
