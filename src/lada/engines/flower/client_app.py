"""The ClientApp: a thin shim that hands Flower messages to :class:`ClientRole`.

One handler per protocol task, registered as ``query.<task>`` (``query.local_train``,
``query.embed``, ``query.generate``, ``query.distill``, ``query.evaluate``), plus
``query.lada_hello`` that only says which client this node is. A handler turns the message into
the task's instruction payload, calls ``ClientRole.handle`` and sends the result payload back.

Which client a node is, and where its state lives, is decided on the client side, never shipped
inside the app bundle:

- simulation (``lada run`` with ``engine: flower-sim``): client ``k`` = the node's
  ``partition-id``; config ``RUN_DIR/config.yaml``; state ``RUN_DIR/clients/client_k``;
- deployment (``flower-supernode --node-config``): ``client-id``, ``config`` (the run config on
  that machine), ``state-dir`` and optionally ``data-dir`` / ``train-file`` / ``test-file`` /
  ``public-file`` (see ``docs/flower.md``).

The role of a node is built once per process and cached, keyed by (config, client, state dir).
A Flower engine may run consecutive tasks of one node in different processes (Ray actors in
simulation; a fresh ``flwr-clientapp`` process per message in deployment), so the shim keeps the
client's *mid-round* state on the client's disk: after a task that changes the model (any task
but the read-only ones: embed, generate, score, get_weights, evaluate) it writes the trainable weights to ``STATE_DIR/.flower_working/round_NNN.safetensors`` with a
fresh tag, and a process that finds a newer tag than the one it holds loads them before the
next task. ``evaluate`` ends the round (the role saves ``round_NNN.safetensors`` itself) and the
working files are removed. With one process per node nothing is ever reloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from lada.engines.flower import (
    HELLO_ACTION,
    NODE_CLIENT_ID,
    NODE_CONFIG,
    NODE_DATA_DIR,
    NODE_PUBLIC_FILE,
    NODE_STATE_DIR,
    NODE_TEST_FILE,
    NODE_TRAIN_FILE,
)
from lada.engines.flower.records import (
    payload_to_recorddict,
    recorddict_size,
    recorddict_to_payload,
)
from lada.federation.protocol import INSTRUCTIONS, READ_ONLY_TASKS, Task

META = "lada"  # ConfigRecord the transport adds to each message: {"client-id", "fingerprint"}
WORKING_DIR = ".flower_working"
# after a task that is not read-only (protocol.READ_ONLY_TASKS: local_train, distill, and a
# host's task unless registered read-only, e.g. set_weights) the shim saves the working state


@dataclass(frozen=True)
class ClientSite:
    """Where client ``client_id`` finds its config, data and state on this machine."""

    client_id: int
    config: Path
    state_dir: Path
    run_dir: Path | None = None  # simulation: the run directory (data generated there)
    data_dir: str | None = None
    train_file: str | None = None
    test_file: str | None = None
    public_file: str | None = None


def resolve_site(node_config: dict[str, Any], sim_run_dir: str | None) -> ClientSite:
    """The client this node is, from its node config (and the run dir in simulation)."""
    opt = {
        k: (str(node_config[k]) if node_config.get(k) not in (None, "") else None)
        for k in (NODE_DATA_DIR, NODE_TRAIN_FILE, NODE_TEST_FILE, NODE_PUBLIC_FILE)
    }
    if sim_run_dir is not None:
        run_dir = Path(sim_run_dir)
        k = int(node_config.get(NODE_CLIENT_ID, node_config.get("partition-id", -1)))
        if k < 0:
            raise ValueError("simulation node without a partition-id")
        state = node_config.get(NODE_STATE_DIR) or run_dir / "clients" / f"client_{k}"
        return ClientSite(
            k,
            Path(str(node_config.get(NODE_CONFIG) or run_dir / "config.yaml")),
            Path(str(state)),
            run_dir,
            opt[NODE_DATA_DIR],
            opt[NODE_TRAIN_FILE],
            opt[NODE_TEST_FILE],
            opt[NODE_PUBLIC_FILE],
        )
    missing = [k for k in (NODE_CLIENT_ID, NODE_CONFIG, NODE_STATE_DIR) if k not in node_config]
    if missing:
        raise ValueError(
            f"this SuperNode's --node-config lacks {missing}: start it with e.g. "
            f'--node-config \'client-id=0 config="/abs/run.yaml" state-dir="/abs/state0"\''
        )
    return ClientSite(
        int(node_config[NODE_CLIENT_ID]),
        Path(str(node_config[NODE_CONFIG])).expanduser(),
        Path(str(node_config[NODE_STATE_DIR])).expanduser(),
        None,
        opt[NODE_DATA_DIR],
        opt[NODE_TRAIN_FILE],
        opt[NODE_TEST_FILE],
        opt[NODE_PUBLIC_FILE],
    )


_NOT_SHARED = {"workers"}  # settings that change how fast, not what, a machine computes


def client_fingerprint(cfg: Any, k: int) -> str:
    """A hash of what client ``k`` and the server must agree on (seeds, training settings,
    the client's model). Paths and devices, which differ across machines, are left out."""
    from lada.config import to_dict

    c = cfg.clients[k]
    relevant = {
        "seed": cfg.seed,
        "host": cfg.host,
        "local": to_dict(cfg.local),
        "distill": to_dict(cfg.distill),
        "eval": to_dict(cfg.eval),
        "prepare": {k: v for k, v in to_dict(cfg.prepare).items() if k not in _NOT_SHARED},
        "data": {
            "kind": cfg.data.kind,
            "split": cfg.data.split,
            "limits": [cfg.data.train_limit, cfg.data.test_limit, cfg.data.public_limit],
            "ranges": [c.train_range, c.test_range, cfg.data.public_range],
        },
        "client": {
            "model": c.model,
            "lora": to_dict(c.lora),
            "dtype": c.dtype,
            "gguf": c.gguf_file,
        },
        "num_clients": len(cfg.clients),
    }
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_client_data(cfg: Any, k: int, run_dir: Path | None) -> Any:
    """Client k's data only (its private train/test sets and P), as a RunData."""
    from lada.runner.setup import load_file_data, load_run_data

    d = cfg.data
    if d.kind == "synthetic":
        if run_dir is None and not d.dir:
            raise ValueError(
                "synthetic data on a SuperNode needs data.dir in the config or data-dir in "
                "--node-config (the split made by `lada data make`)"
            )
        return load_run_data(cfg, run_dir if run_dir is not None else Path.cwd(), record=False)
    c = cfg.clients[k]
    if not (c.train_file and c.test_file and d.public_file):
        raise ValueError(f"client {k}: files data needs train-file, test-file and public-file")
    return load_file_data(cfg, only_client=k)


@dataclass
class _Entry:
    role: Any  # ClientRole
    cfg: Any  # RunConfig
    fingerprint: str
    tag: str | None = None  # the working-state tag the in-memory model holds
    lock: threading.Lock = field(default_factory=threading.Lock)


_ROLES: dict[tuple[str, int, str], _Entry] = {}
_ROLES_LOCK = threading.Lock()


def _build_entry(site: ClientSite) -> _Entry:
    from lada.config import load_config
    from lada.runner.roles import build_client

    cfg = load_config(site.config)
    if site.data_dir:
        cfg.data.dir = site.data_dir
    if not 0 <= site.client_id < len(cfg.clients):
        raise ValueError(
            f"client-id {site.client_id}: the config has {len(cfg.clients)} clients (0-based)"
        )
    c = cfg.clients[site.client_id]
    if site.train_file:
        c.train_file = site.train_file
    if site.test_file:
        c.test_file = site.test_file
    if site.public_file:
        cfg.data.public_file = site.public_file
    data = load_client_data(cfg, site.client_id, site.run_dir)
    role = build_client(cfg, data, site.client_id, site.state_dir)
    return _Entry(role, cfg, client_fingerprint(cfg, site.client_id))


def _entry(site: ClientSite, fresh: bool = False) -> _Entry:
    key = (str(site.config.resolve()), site.client_id, str(site.state_dir.resolve()))
    with _ROLES_LOCK:
        if fresh or key not in _ROLES:
            _ROLES[key] = _build_entry(site)
        return _ROLES[key]


def clear_cache() -> None:
    """Forget every cached role (tests)."""
    with _ROLES_LOCK:
        _ROLES.clear()


# ---- mid-round state on the client's disk ------------------------------------------------


def _working(state_dir: Path, round_idx: int) -> tuple[Path, Path]:
    base = state_dir / WORKING_DIR / f"round_{round_idx:03d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def _write_working(e: _Entry, round_idx: int, task: Task) -> None:
    from lada.utils.files import atomic_write_json
    from lada.utils.model_state import save_trainable

    weights, meta = _working(e.role.state_dir, round_idx)
    tag = uuid.uuid4().hex
    save_trainable(e.role.model, weights)  # atomic (tmp + rename)
    atomic_write_json(meta, {"round": round_idx, "tag": tag, "after": str(task)})
    e.tag = tag


def _sync_working(e: _Entry, round_idx: int) -> None:
    """Load the round's latest working state if another process wrote it since."""
    from lada.utils.model_state import load_trainable

    weights, meta = _working(e.role.state_dir, round_idx)
    if not meta.exists():
        return
    info = json.loads(meta.read_text())
    if info.get("tag") == e.tag:
        return
    e.role.enter_round(round_idx)  # the round's base state
    load_trainable(e.role.model, weights)
    e.tag = info["tag"]


def _clear_working(state_dir: Path, upto: int | None = None) -> None:
    """Remove the working states of rounds <= ``upto`` (all of them when None)."""
    d = state_dir / WORKING_DIR
    if not d.exists():
        return
    for p in d.glob("round_*.*"):
        try:
            r = int(p.stem.split("_")[1])
        except (IndexError, ValueError):
            continue
        if upto is None or r <= upto:
            p.unlink(missing_ok=True)
    if not any(d.iterdir()):
        shutil.rmtree(d, ignore_errors=True)


# ---- the handlers ----------------------------------------------------------------------


def _fault(cfg: Any, k: int, round_idx: int, task: Task) -> Any:
    for f in cfg.faults:
        if f.client == k and f.round == round_idx and f.task == str(task):
            return f
    return None


def handle_task(task: Task, msg: Message, context: Context, sim_run_dir: str | None) -> Message:
    site = resolve_site(dict(context.node_config), sim_run_dir)
    e = _entry(site)
    size, limit = recorddict_size(msg.content), e.cfg.limits.max_message_bytes
    if size > limit:
        from lada.federation.validation import InvalidMessage

        raise InvalidMessage(f"{task}: {size} bytes exceed limits.max_message_bytes={limit}")
    ins = recorddict_to_payload(INSTRUCTIONS[task], msg.content)  # WireError when malformed
    round_idx = int(ins.round)  # type: ignore[attr-defined]
    if task == Task.LOCAL_TRAIN and e.role.working_round == round_idx:
        e = _entry(site, fresh=True)  # the round is being redone: start it from its saved base
    meta = msg.content[META] if META in msg.content else None
    if meta is not None:
        expected = str(meta.get("fingerprint", ""))
        if expected and expected != e.fingerprint:
            raise RuntimeError(
                f"client {site.client_id}: its config ({site.config}) differs from the server's "
                f"in settings both must share (fingerprint {e.fingerprint} != {expected}); "
                "use the same run config and the same lada version on every machine"
            )
        if int(meta.get("client-id", site.client_id)) != site.client_id:
            raise RuntimeError(
                f"message for client {meta.get('client-id')} reached client {site.client_id}"
            )
    with e.lock:
        if task == Task.LOCAL_TRAIN:
            _clear_working(e.role.state_dir)  # a round starts from its saved base: no leftovers
            e.tag = None
        else:
            _sync_working(e, round_idx)
        fault = _fault(e.cfg, site.client_id, round_idx, task)
        if fault is not None and fault.kind == "raise":
            from lada.engines.inprocess import InjectedFault

            raise InjectedFault(
                f"injected fault: client {site.client_id}, round {round_idx}, {task}"
            )
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_s)
        result = e.role.handle(task, ins)
        if fault is not None and fault.kind == "corrupt":
            from lada.federation.corrupt import corrupt

            result = corrupt(result, fault.corruption)
        if task == Task.EVALUATE:
            _clear_working(e.role.state_dir, upto=round_idx)
            e.tag = None
        elif str(task) not in READ_ONLY_TASKS:
            _write_working(e, round_idx, task)
    return Message(payload_to_recorddict(result), reply_to=msg)


def hello(msg: Message, context: Context, sim_run_dir: str | None) -> Message:
    """Which client is this node? (cheap: builds nothing)"""
    site = resolve_site(dict(context.node_config), sim_run_dir)
    reply = ConfigRecord({"client-id": site.client_id, "pid": os.getpid()})
    return Message(RecordDict({META: reply}), reply_to=msg)


def make_client_app(sim_run_dir: str | None = None) -> ClientApp:
    """The ClientApp; ``sim_run_dir`` set = simulation (clients keyed by partition-id)."""
    app = ClientApp()

    def register(task: Task) -> None:
        @app.query(str(task))
        def _handler(msg: Message, context: Context) -> Message:
            return handle_task(task, msg, context, sim_run_dir)

    for task in list(INSTRUCTIONS):  # the built-in tasks and those hosts registered
        register(task)

    @app.query(HELLO_ACTION)
    def _hello(msg: Message, context: Context) -> Message:
        return hello(msg, context, sim_run_dir)

    return app


app = make_client_app()  # `flwr run` deployments: [tool.flwr.app.components] clientapp
