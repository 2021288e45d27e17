"""LaDa on Flower (``flwr`` 1.41, Message API).

The server and client roles run unchanged; Flower only carries their messages:

``records``      payload <-> ``RecordDict`` (ConfigRecord + ArrayRecord)
``transport``    :class:`FlowerTransport`, the round logic's ``Transport`` over a Flower ``Grid``
``server_app``   the ``ServerApp`` (runs ``lada.runner.drive.drive`` on a FlowerTransport)
``client_app``   the ``ClientApp`` (one ``query.<task>`` handler per protocol task -> ClientRole)
``simulation``   ``lada run`` with ``engine: flower-sim`` (Flower's Ray simulation engine)

Deployment (SuperLink + SuperNodes + ``flwr run``) is described in ``docs/flower.md``.
"""

FLOWER_VERSION = "1.41.0"  # the Flower version this package is tested with (pinned)

# node-config keys a SuperNode passes to the ClientApp (``flower-supernode --node-config``)
NODE_CLIENT_ID = "client-id"  # which client of the run config this SuperNode is
NODE_CONFIG = "config"  # path of the run config (YAML) on the SuperNode's machine
NODE_STATE_DIR = "state-dir"  # where this client keeps its state (its SLM checkpoints)
NODE_DATA_DIR = "data-dir"  # optional: the synthetic split on this machine (data.dir)
NODE_TRAIN_FILE = "train-file"  # optional (files data): this client's private train file
NODE_TEST_FILE = "test-file"  # optional (files data): this client's private test file
NODE_PUBLIC_FILE = "public-file"  # optional (files data): the public set P on this machine

HELLO_ACTION = "lada_hello"  # "query.lada_hello": which client is this node?

__all__ = [
    "FLOWER_VERSION",
    "HELLO_ACTION",
    "NODE_CLIENT_ID",
    "NODE_CONFIG",
    "NODE_DATA_DIR",
    "NODE_PUBLIC_FILE",
    "NODE_STATE_DIR",
    "NODE_TEST_FILE",
    "NODE_TRAIN_FILE",
]
