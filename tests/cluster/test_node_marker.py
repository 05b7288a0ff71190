"""The marker a cluster node leaves in its state dir: written, read, damaged, removed."""

from __future__ import annotations

import json
from pathlib import Path

from syncd.node_marker import MARKER_FILE, NodeMarker, mark_node, read_node_marker


class TestNodeMarker:
    def test_written_then_read(self, tmp_path: Path) -> None:
        """The marker holds the node and cluster names only, reads back as them; without it there is none."""
        mark_node(tmp_path, node="mgmt-2", cluster="syncd")
        assert json.loads((tmp_path / MARKER_FILE).read_text()) == {
            "node": "mgmt-2",
            "cluster": "syncd",
        }
        assert read_node_marker(tmp_path) == NodeMarker("mgmt-2", "syncd")
        (tmp_path / MARKER_FILE).unlink()
        assert read_node_marker(tmp_path) is None

    def test_a_damaged_marker_still_says_a_node_used_the_dir(self, tmp_path: Path) -> None:
        """A marker that is not whole JSON reads as an unknown node, not as no marker; its refusal names the state dir."""
        (tmp_path / MARKER_FILE).write_text('{"node": "mg')
        marker = read_node_marker(tmp_path)
        assert marker == NodeMarker("(unknown)", "(unknown)")
        assert f"the state dir {tmp_path} belongs to node (unknown)" in marker.refusal(tmp_path)
        assert "delete" not in marker.refusal(tmp_path)
        hint = f"or delete {tmp_path / MARKER_FILE} to use this state dir standalone"
        assert marker.refusal(tmp_path, changes_devices=True).endswith(hint)

    def test_an_unwritable_dir_is_no_error(self, tmp_path: Path) -> None:
        """A state dir that cannot take the marker (here: missing) leaves the node running: nothing is raised."""
        mark_node(tmp_path / "missing", node="n1", cluster="syncd")
        assert read_node_marker(tmp_path / "missing") is None
