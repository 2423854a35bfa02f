"""`python -m tfft.<command> ARGS` without paying TensorFlow's import for each run: a fork server for the tests.

The suite starts the commands some 150 times (tests/test_cli_errors.py alone runs tfft.train some 70 times on bad
input, each failing within a second of its own work), each after some 4 s of importing TensorFlow, Keras and
keras-hub. This server imports tfft and those libraries once (tfft first, as the commands do, so its environment
defaults are in place before TensorFlow loads; it runs no TensorFlow op, so no TensorFlow thread or runtime exists
to be forked), then forks a child per request. The child runs the command's module as `python -m` does (runpy,
`__main__`, the request's argv, cwd and environment) with its stdout and stderr on files, runs the exit handlers
and exits with the command's exit code; the client returns a CompletedProcess like subprocess.run's. Only the
imports are shared: every run parses its flags, loads its data, trains, writes and exits in a process of its own.
The environment must be the one the server started with but for PYTEST_CURRENT_TEST (keras reads KERAS_HOME at
import): conftest.run_tfft starts a new interpreter when it is not. Tests that send signals or read TensorFlow's
start-up lines use a real subprocess.
"""

import json
import os
import pathlib
import select
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent


def _serve():
  sys.path[0] = str(REPO)  # not tests/: the path of `python -m` run in the repo
  import tfft  # noqa: F401  (sets KERAS_BACKEND and the TensorFlow log level before TensorFlow loads)
  from tfft import flags as _  # noqa: F401
  import tensorflow  # noqa: F401
  import keras  # noqa: F401
  import keras_hub  # noqa: F401
  import runpy
  import threading
  import traceback
  assert threading.active_count() == 1, threading.enumerate()  # nothing but this thread is forked
  out = sys.stdout
  print("ready", file=out, flush=True)
  for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
      code = 1
      try:
        os.environ.clear()  # the test's environment (it differs from the server's in PYTEST_CURRENT_TEST only)
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
          f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
          os.dup2(f, fd)
          os.close(f)
        null = os.open(os.devnull, os.O_RDONLY)  # fd 0 is the server's request pipe: not the command's to read
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(0, closefd=False)
        sys.argv = [request["module"], *request["args"]]
        try:
          runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
          code = 0
        except SystemExit as e:
          code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
          if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
        except BaseException:  # pylint: disable=broad-except
          traceback.print_exc()
          code = 1
        import atexit
        atexit._run_exitfuncs()  # pylint: disable=protected-access
        sys.stdout.flush()
        sys.stderr.flush()
      finally:
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps(os.waitstatus_to_exitcode(status)), file=out, flush=True)


def same_env(environ):
  """The environment but for what pytest changes per test: runs whose same_env equals the server's may be forked."""
  return {k: v for k, v in environ.items() if k != "PYTEST_CURRENT_TEST"}


class Client:
  """One fork server; `run(module, args)` returns a CompletedProcess (text mode)."""

  def __init__(self):
    self._tmp = tempfile.TemporaryDirectory(prefix="tfft-cli-server-")
    self._log = pathlib.Path(self._tmp.name) / "server.stderr"  # TensorFlow's start-up lines, or why it failed
    with self._log.open("w") as log:
      self._proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve())], cwd=REPO,
                                    env=dict(os.environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    text=True)
    line = self._proc.stdout.readline()
    if line.strip() != "ready":
      raise RuntimeError(f"the fork server did not start (rc {self._proc.wait()}): {self._log.read_text()[-3000:]}")
    self.env = same_env(os.environ)

  def run(self, module: str, args, *, cwd=None, timeout=600):
    argv = [f"tfft.{module}" if not module.startswith("tfft.") else module, [str(a) for a in args]]
    out, err = (pathlib.Path(self._tmp.name) / name for name in ("stdout", "stderr"))
    self._proc.stdin.write(json.dumps({"module": argv[0], "args": argv[1], "cwd": str(cwd or REPO),
                                       "env": dict(os.environ),
                                       "stdout": str(out), "stderr": str(err)}) + "\n")
    self._proc.stdin.flush()
    if not select.select([self._proc.stdout], [], [], timeout)[0]:  # the reply is one line, written at once
      self._proc.kill()
      self.env = None  # conftest.run_tfft starts new interpreters from now on
      raise subprocess.TimeoutExpired(argv, timeout)
    code = json.loads(self._proc.stdout.readline())
    return subprocess.CompletedProcess([sys.executable, "-m", *argv[:1], *argv[1]], code,
                                       out.read_text(), err.read_text())

  def close(self):
    self._proc.stdin.close()
    self._proc.wait(timeout=60)
    self._tmp.cleanup()


if __name__ == "__main__":
  _serve()
