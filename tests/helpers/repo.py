"""The repository root and running its tools, in a subprocess or in this
process."""
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(extra=None):
    """``os.environ`` for a tool run from the repository: the repository
    first on ``PYTHONPATH``, ``PYTHON`` (the interpreter the launch scripts
    run) set to this one, and ``extra`` on top."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env['PYTHON'] = sys.executable
    env.update(extra or {})
    return env


def run_tool(args, cwd=None, env=None, timeout=300):
    """Run ``args`` (a list; a ``.py`` first item runs with this python)
    from the repository root with :func:`tool_env` and return the
    ``CompletedProcess`` with ``stdout`` holding stdout and stderr
    together."""
    if args[0].endswith('.py'):
        args = [sys.executable] + list(args)
    return subprocess.run(
        args, cwd=cwd or REPO_ROOT, env=tool_env(env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout)


def load_tool(path):
    """Import the script at ``path`` (relative to the repository root, e.g.
    ``tools/train.py``) as a module, to call its ``main`` in this process:
    much faster than a subprocess for checks that fail early."""
    name = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(
        f'bootmae_tool_{name}', osp.join(REPO_ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
