"""A real two-node Ray cluster on this machine: a head and a worker node, separate raylets, loopback only."""

from __future__ import annotations

import os

import pytest

# Read once, when ray is imported: "0" makes Ray take 127.0.0.1 as this node's address (its Windows/macOS
# setting), so the driver, both raylets and their workers talk over loopback and listen on nothing else.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


@pytest.fixture(scope="module")
def ray_cluster(tiny_model_path):
    """Head and one worker node with one CPU each, so four shards cannot all land on one node.

    Started after the tiny model is built: the nodes' worker processes inherit this process's environment
    (offline flags, REFLECTEVO_CACHE_DIR) as it is now. No dashboard; every address is 127.0.0.1.
    """
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    assert not ray_constants.ENABLE_RAY_CLUSTER, "ray was imported before tests/ray/conftest.py set its address"

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
