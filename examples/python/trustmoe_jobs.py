#!/usr/bin/python3
"""TrustMoE jobs from Python: a small client of the gate's JobService (proto/trustmoe/v1/gate.proto).

Every request is signed with the researcher's Ed25519 key, exactly like gate::JobClient
(src/gate/job_client.cc), over the canonical encoding (docs/formats/canonical.md) of

    canonical("trustmoe/gate/request/v1", str chain_id, str method, u64 nonce, bytes payload)

where payload is the spec's TOML text (SubmitJob), the job id (GetJob, WatchJob, CancelJob) or
empty (ListJobs), and the nonce is the signing time in Unix nanoseconds.

Only Debian's packages, with Debian's /usr/bin/python3: python3-grpcio, python3-protobuf,
python3-grpc-tools (the stubs are generated from proto/ on first use, into a cache directory)
and python3-cryptography.

    /usr/bin/python3 examples/python/trustmoe_jobs.py --gate HOST:PORT --key researcher.key \\
        --genesis genesis.json submit SPEC.toml --watch
    /usr/bin/python3 examples/python/trustmoe_jobs.py ... list
    /usr/bin/python3 examples/python/trustmoe_jobs.py ... get JOB_ID
    /usr/bin/python3 examples/python/trustmoe_jobs.py ... watch JOB_ID
    /usr/bin/python3 examples/python/trustmoe_jobs.py ... cancel JOB_ID

--gate, --key and --genesis default to $TRUSTMOE_GATE, $TRUSTMOE_KEY and $TRUSTMOE_GENESIS, as
for the `trustmoe` CLI. Exit status: 0 on success (submit --watch and watch: only when the job
completed), 1 on any error or a job that failed or was cancelled, 2 for bad usage, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import os
import re
import shutil
import stat
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

try:  # Python 3.11+: checks a spec's TOML syntax before anything is signed
    import tomllib
except ImportError:  # pragma: no cover
    tomllib = None

# Debian's package for each module this client imports.
REQUIRED_MODULES = {
    "grpc": "python3-grpcio",
    "google.protobuf": "python3-protobuf",
    "grpc_tools.protoc": "python3-grpc-tools",
    "cryptography": "python3-cryptography",
}

GATE_REQUEST_DOMAIN = "trustmoe/gate/request/v1"
JOB_SPEC_BYTES_MAX = 16 * 1024  # ledger::kJobSpecBytesMax: a gate refuses larger specs
PEM_BYTES_MAX = 64 * 1024  # crypto::internal::kPemBytesMax
RESPONSE_BYTES_MAX = 64 << 20  # as gate::JobClient: a ListJobs of many jobs with their specs
FINAL_STATES = ("completed", "cancelled", "failed")
JOB_ID_RE = re.compile(r"[0-9a-f]{1,128}")
DEFAULT_PROTO_DIR = Path(__file__).resolve().parent.parent.parent / "proto"


class ClientError(Exception):
    """A failure with a message for the user (no traceback)."""


class GateError(ClientError):
    """A gRPC call the gate answered with an error status."""

    def __init__(self, gate: str, method: str, code_name: str, details: str):
        super().__init__(f"gate {gate}: {method}: {code_name}: {details}")
        self.code_name = code_name
        self.details = details


def check_modules() -> None:
    """Raises ClientError naming the Debian package of each module that is missing."""
    missing = []
    for module, package in REQUIRED_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ClientError(
            "missing Python modules; install the Debian package(s) "
            + " ".join(missing)
            + " (apt-get install ...) and run this with /usr/bin/python3"
        )


# ---- Canonical encoding (docs/formats/canonical.md) ----


class CanonicalWriter:
    """Fields concatenated with no tags: the domain tag first (as a string), integers
    big-endian, strings and bytes with a u32 big-endian length prefix."""

    def __init__(self, domain: str):
        self._out = bytearray()
        self.str(domain)

    def u8(self, v: int) -> "CanonicalWriter":
        self._out += struct.pack(">B", v)
        return self

    def u32(self, v: int) -> "CanonicalWriter":
        self._out += struct.pack(">I", v)
        return self

    def u64(self, v: int) -> "CanonicalWriter":
        self._out += struct.pack(">Q", v)
        return self

    def blob(self, b: bytes) -> "CanonicalWriter":
        self.u32(len(b))
        self._out += b
        return self

    def str(self, s: str) -> "CanonicalWriter":
        return self.blob(s.encode("utf-8"))

    def take(self) -> bytes:
        return bytes(self._out)


def gate_request_message(chain_id: str, method: str, nonce: int, payload: bytes) -> bytes:
    """ledger::GateRequestMessage: the bytes a researcher signs for one gate request."""
    return CanonicalWriter(GATE_REQUEST_DOMAIN).str(chain_id).str(method).u64(nonce).blob(
        payload).take()


_nonce_lock = threading.Lock()
_last_nonce = 0


def fresh_nonce() -> int:
    """The signing time in Unix nanoseconds, strictly increasing within this process (the gate
    refuses a nonce it has seen, or one more than 5 minutes from its clock)."""
    global _last_nonce
    with _nonce_lock:
        _last_nonce = max(time.time_ns(), _last_nonce + 1)
        return _last_nonce


# ---- Keys and genesis ----


def load_researcher_key(path: str):
    """The Ed25519 private key `trustmoe keygen` wrote: unencrypted PKCS#8 PEM
    ("-----BEGIN PRIVATE KEY-----"). Refused, like the C++ CLI does, when the file is not a
    regular file or group or others may access it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ClientError(f"researcher key: cannot open key file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ClientError(f"researcher key: key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ClientError(
                f"researcher key: private key file {path} has mode "
                f"{stat.S_IMODE(st.st_mode):04o}, which lets group or others access it; "
                f"run: chmod 600 {path}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            pem = f.read(PEM_BYTES_MAX + 1)
    finally:
        os.close(fd)
    if len(pem) > PEM_BYTES_MAX:
        raise ClientError(f"researcher key: key file {path} is larger than {PEM_BYTES_MAX} bytes: "
                          "not a PEM key")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ClientError(f"researcher key: {path}: not an unencrypted PEM private key "
                          f"(\"-----BEGIN PRIVATE KEY-----\"): {e}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ClientError(f"researcher key: {path}: PEM private key is not Ed25519")
    return key


def public_key_bytes(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def load_chain_id(path: str) -> str:
    """The chain id from a genesis file (`trustmoe genesis` writes it; "chain_id")."""
    try:
        with open(path, "rb") as f:
            genesis = json.loads(f.read())
    except OSError as e:
        raise ClientError(f"genesis file {path}: {e.strerror}") from None
    except ValueError as e:
        raise ClientError(f"genesis file {path}: not JSON: {e}") from None
    chain_id = genesis.get("chain_id") if isinstance(genesis, dict) else None
    if not isinstance(chain_id, str) or not chain_id:
        raise ClientError(f"genesis file {path}: no \"chain_id\" string")
    return chain_id


# ---- Stubs generated from proto/ ----


def _default_stubs_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "trustmoe" / "python-stubs"


def load_stubs(proto_dir: Path, stubs_root: Optional[Path] = None):
    """Generates gate_pb2 and gate_pb2_grpc from proto_dir/trustmoe/v1/gate.proto with
    grpc_tools.protoc (once per proto text and tool version, into stubs_root/<hash>/; a
    temporary directory when that cannot be written) and imports them."""
    import google.protobuf
    import grpc
    import grpc_tools
    from grpc_tools import protoc

    proto = proto_dir / "trustmoe" / "v1" / "gate.proto"
    try:
        text = proto.read_bytes()
    except OSError as e:
        raise ClientError(f"cannot read {proto} (pass --proto-dir): {e.strerror}") from None
    h = hashlib.sha256(text)
    for v in (grpc.__version__, google.protobuf.__version__, sys.version):
        h.update(b"\0" + v.encode())
    root = Path(stubs_root) if stubs_root else _default_stubs_root()
    out = root / h.hexdigest()[:24]
    if not (out / "trustmoe" / "v1" / "gate_pb2_grpc.py").is_file():
        try:
            root.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".gen-", dir=root))
        except OSError:
            out = Path(tempfile.mkdtemp(prefix="trustmoe-stubs-"))  # removed by nobody: small
            work = out
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main([
            "grpc_tools.protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={work}",
            f"--grpc_python_out={work}", "trustmoe/v1/gate.proto"
        ])
        if rc != 0:
            raise ClientError(f"grpc_tools.protoc failed ({rc}) on {proto}")
        if work != out:
            try:
                os.rename(work, out)  # atomic; another process may have won the race
            except OSError:
                shutil.rmtree(work, ignore_errors=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    gate_pb2 = importlib.import_module("trustmoe.v1.gate_pb2")
    gate_pb2_grpc = importlib.import_module("trustmoe.v1.gate_pb2_grpc")
    return gate_pb2, gate_pb2_grpc


# ---- The client ----


def check_job_id(job_id: str) -> None:
    if not JOB_ID_RE.fullmatch(job_id):
        raise ClientError(f"job id '{job_id}' is not 1..128 lowercase hex digits "
                          "(as submit prints)")


class JobClient:
    """JobService over one channel; every request signed for `chain_id` with `key`."""

    def __init__(self, gate: str, key, chain_id: str, timeout_s: float = 30.0,
                 proto_dir: Path = DEFAULT_PROTO_DIR, stubs_root: Optional[Path] = None):
        import grpc

        if not gate or ":" not in gate:
            raise ClientError(f"gate endpoint '{gate}' is not host:port")
        self.gate = gate
        self.key = key
        self.researcher = public_key_bytes(key)
        self.chain_id = chain_id
        self.timeout_s = timeout_s
        self.pb, pb_grpc = load_stubs(proto_dir, stubs_root)
        self._grpc = grpc
        self.channel = grpc.insecure_channel(
            gate, options=[("grpc.max_receive_message_length", RESPONSE_BYTES_MAX)])
        self.stub = pb_grpc.JobServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def sign(self, method: str, payload: bytes):
        """RequestAuth for one call: gate::JobClient::Sign."""
        nonce = fresh_nonce()
        signature = self.key.sign(gate_request_message(self.chain_id, method, nonce, payload))
        return self.pb.RequestAuth(researcher=self.researcher, nonce=nonce, signature=signature)

    def _call(self, method: str, fn: Callable, request):
        try:
            return fn(request, timeout=self.timeout_s)
        except self._grpc.RpcError as e:
            raise GateError(self.gate, method, e.code().name, e.details() or "") from None

    def submit(self, spec_toml: str):
        data = spec_toml.encode("utf-8")
        if len(data) > JOB_SPEC_BYTES_MAX:
            raise ClientError(f"the job spec is {len(data)} bytes, at most {JOB_SPEC_BYTES_MAX}")
        request = self.pb.SubmitJobRequest(spec_toml=spec_toml, auth=self.sign("SubmitJob", data))
        return self._call("SubmitJob", self.stub.SubmitJob, request)

    def get(self, job_id: str):
        check_job_id(job_id)
        request = self.pb.JobRequest(job_id=job_id, auth=self.sign("GetJob", job_id.encode()))
        return self._call("GetJob", self.stub.GetJob, request)

    def cancel(self, job_id: str):
        check_job_id(job_id)
        request = self.pb.JobRequest(job_id=job_id, auth=self.sign("CancelJob", job_id.encode()))
        return self._call("CancelJob", self.stub.CancelJob, request)

    def list(self):
        request = self.pb.ListJobsRequest(auth=self.sign("ListJobs", b""))
        return list(self._call("ListJobs", self.stub.ListJobs, request).jobs)

    def watch(self, job_id: str) -> Iterator:
        """Yields the job's progress until a message with a final state (no deadline: a job may
        run for hours). Raises GateError if the stream fails, ClientError if it ends early."""
        check_job_id(job_id)
        request = self.pb.JobRequest(job_id=job_id, auth=self.sign("WatchJob", job_id.encode()))
        stream = self.stub.WatchJob(request)
        try:
            for progress in stream:
                if progress.job_id and progress.job_id != job_id:
                    raise ClientError(f"gate {self.gate} sent progress of job {progress.job_id} "
                                      f"while {job_id} was watched")
                yield progress
                if progress.state in FINAL_STATES:
                    return
        except self._grpc.RpcError as e:
            raise GateError(self.gate, "WatchJob", e.code().name, e.details() or "") from None
        finally:
            stream.cancel()
        raise ClientError(f"gate {self.gate}: the progress stream of job {job_id} ended before "
                          "the job did")


# ---- Printing (the formats of `trustmoe job`) ----


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def duration(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


def time_text(unix_ms: int) -> str:
    if unix_ms <= 0:
        return "-"
    return datetime.datetime.fromtimestamp(unix_ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def progress_line(p) -> str:
    """"[step 12/40 30%] epoch 1 loss 1.2345 acc 61.0% verified 96 rejected 0 ETA 8s"."""
    if p.state == "queued":
        return "queued" + (f" ({p.detail})" if p.detail else "")
    line = "" if p.state == "running" else p.state + " "
    if p.steps_total > 0:
        line += f"[step {p.step}/{p.steps_total} {p.step * 100 // p.steps_total}%]"
    else:
        line += f"[step {p.step}]"
    line += (f" epoch {p.epoch} loss {p.loss:.4f} acc {percent(p.train_accuracy)}"
             f" verified {p.verified} rejected {p.rejected}")
    if p.state == "running" and p.eta_seconds >= 0:
        line += f" ETA {duration(p.eta_seconds)}"
    if p.detail and p.state not in FINAL_STATES and (p.step == 0 or p.state != "running"):
        line += f" ({p.detail})"  # what the gate is doing: loading data, placing experts, ...
    return line


def summary_line(p, job_id: str) -> str:
    line = f"job {p.job_id or job_id} {p.state}"
    if p.state == "completed":
        acc = percent(p.test_accuracy) if p.test_accuracy >= 0 else "-"
        return (line + f": test accuracy {acc}, loss {p.loss:.4f}, {p.step} steps, "
                f"verified {p.verified}, rejected {p.rejected}")
    return line + (f": {p.detail}" if p.detail else "")


def print_info(info) -> None:
    p = info.progress
    rows = [
        ("job", info.job_id),
        ("name", info.name),
        ("kind", info.kind),
        ("state", p.state),
        ("progress", progress_line(p)),
        ("test accuracy", percent(p.test_accuracy) if p.test_accuracy >= 0 else "-"),
        ("rerouted", str(p.rerouted)),
        ("fallbacks", str(p.fallbacks)),
        ("researcher", info.researcher.hex()),
        ("gate", info.gate.hex()),
        ("submitted", time_text(info.submitted_unix_ms)),
        ("finished", time_text(info.finished_unix_ms)),
    ]
    if info.manifest_cid:
        rows.append(("manifest", info.manifest_cid))
    if info.predictions_cid:
        rows.append(("predictions", info.predictions_cid))
    if p.detail:
        rows.append(("detail", p.detail))
    for entry in info.placement:
        edges = ", ".join(e.hex()[:16] + "..." for e in entry.edges)
        rows.append((f"expert {entry.index}", f"{entry.cid} on {edges}"))
    for name, value in rows:
        print(f"{name + ':':<15}{value}")


def watch_until_done(client: JobClient, job_id: str) -> int:
    """Prints one line per progress message, then the summary; 0 only when the job completed."""
    last = None
    for p in client.watch(job_id):
        last = p
        print(progress_line(p), flush=True)
    print(summary_line(last, job_id), flush=True)
    if last.state != "completed":
        return 1
    info = client.get(job_id)  # the output's CID is in JobInfo, not in the progress stream
    if info.manifest_cid:
        print(f"manifest {info.manifest_cid}")
    elif info.predictions_cid:
        print(f"predictions {info.predictions_cid}")
    return 0


# ---- CLI ----


def read_spec(path: str) -> str:
    """The spec file's exact text (what is signed and sent), checked to be UTF-8 TOML."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        raise ClientError(f"job spec {path}: {e.strerror}") from None
    if len(data) > JOB_SPEC_BYTES_MAX:
        raise ClientError(f"{path} is {len(data)} bytes or more; a gate accepts specs of at most "
                          f"{JOB_SPEC_BYTES_MAX}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ClientError(f"job spec {path} is not UTF-8: {e}") from None
    if tomllib is not None:
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ClientError(f"job spec {path}: {e}") from None
    return text


def make_client(args) -> JobClient:
    if not args.gate:
        raise ClientError("no gate: pass --gate host:port (or set TRUSTMOE_GATE)")
    if not args.key:
        raise ClientError("requests to the gate are signed with your researcher key: pass "
                          "--key FILE or set TRUSTMOE_KEY")
    key = load_researcher_key(args.key)
    if not args.genesis:
        raise ClientError("requests are signed for one chain: pass --genesis FILE (or set "
                          "TRUSTMOE_GENESIS)")
    chain_id = load_chain_id(args.genesis)
    return JobClient(args.gate, key, chain_id, timeout_s=args.timeout, proto_dir=args.proto_dir,
                     stubs_root=args.stubs_dir)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="trustmoe_jobs.py",
        description="Submit and follow TrustMoE jobs on a gate (signed JobService requests).")
    parser.add_argument("--gate", default=os.environ.get("TRUSTMOE_GATE", ""),
                        help="the gate's host:port (default: $TRUSTMOE_GATE)")
    parser.add_argument("--key", default=os.environ.get("TRUSTMOE_KEY", ""),
                        help="the researcher's private key, as `trustmoe keygen` writes it "
                        "(default: $TRUSTMOE_KEY)")
    parser.add_argument("--genesis", default=os.environ.get("TRUSTMOE_GENESIS", ""),
                        help="the chain's genesis JSON, for its chain id "
                        "(default: $TRUSTMOE_GENESIS)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for each unary call (default 30; watch has none)")
    parser.add_argument("--proto-dir", type=Path, default=DEFAULT_PROTO_DIR,
                        help="the repository's proto/ directory (default: %(default)s)")
    parser.add_argument("--stubs-dir", type=Path,
                        default=os.environ.get("TRUSTMOE_PY_STUBS") or None,
                        help="where generated stubs are cached (default: $TRUSTMOE_PY_STUBS, "
                        "else $XDG_CACHE_HOME/trustmoe/python-stubs)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("submit", help="submit a job spec (TOML); prints the job id")
    p.add_argument("spec", help="the job spec file (docs/gate.md, \"Jobs\")")
    p.add_argument("--watch", action="store_true",
                   help="then follow it until it ends; exit 0 only if it completed")
    p = sub.add_parser("watch", help="follow a job until it ends; exit 0 only if it completed")
    p.add_argument("job_id")
    p = sub.add_parser("get", help="show a job")
    p.add_argument("job_id")
    p = sub.add_parser("cancel", help="stop a queued or running job")
    p.add_argument("job_id")
    sub.add_parser("list", help="your jobs on this gate, newest first")
    return parser.parse_args(argv)


def run(args) -> int:
    if args.command == "submit":
        spec = read_spec(args.spec)  # before any key, genesis or network use
    check_modules()
    with make_client(args) as client:
        if args.command == "submit":
            info = client.submit(spec)
            print(info.job_id, flush=True)
            return watch_until_done(client, info.job_id) if args.watch else 0
        if args.command == "watch":
            return watch_until_done(client, args.job_id)
        if args.command == "get":
            print_info(client.get(args.job_id))
            return 0
        if args.command == "cancel":
            info = client.cancel(args.job_id)
            print(f"job {info.job_id} {info.progress.state}")
            return 0
        if args.command == "list":
            jobs = client.list()
            fmt = "{:<32} {:<24} {:<9} {:<10} {:>13} {:>8}  {}"
            print(fmt.format("ID", "NAME", "KIND", "STATE", "STEP", "TEST ACC", "SUBMITTED"))
            for info in jobs:
                p = info.progress
                print(fmt.format(info.job_id, info.name, info.kind, p.state,
                                 f"{p.step}/{p.steps_total}",
                                 percent(p.test_accuracy) if p.test_accuracy >= 0 else "-",
                                 time_text(info.submitted_unix_ms)))
            return 0
    raise AssertionError(args.command)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
