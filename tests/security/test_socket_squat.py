"""Another local user squatting the single-instance socket name cannot make the app exit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtNetwork import QLocalServer

from app.runtime import UnsafeRuntimeDir
from app.ui.single_instance import SingleInstance, server_name

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX socket paths")


def test_a_squatter_on_the_old_shared_name_is_ignored(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A server already listening on the predictable name in the shared temp folder (what a squatter
    does) does not make us think another instance owns the project: ours lives in a 0700 folder."""
    private = tmp_path / "rt"
    private.mkdir(mode=0o700)
    squatter = QLocalServer()
    squatter.setSocketOptions(QLocalServer.SocketOption.WorldAccessOption)
    assert squatter.listen(server_name(tmp_path / "proj"))  # the bare name: the shared temp folder
    (tmp_path / "proj").mkdir()
    ours = SingleInstance(tmp_path / "proj", socket_dir=private)
    try:
        assert ours.name.startswith(str(private)) and ours.try_primary()
        assert not squatter.hasPendingConnections()
    finally:
        ours.close()
        squatter.close()


def test_a_socket_folder_others_control_is_refused(tmp_path: Path) -> None:
    """The socket folder must be ours and 0700: an open one is refused with words, not used."""
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(UnsafeRuntimeDir, match="open to other users"):
        SingleInstance(tmp_path, socket_dir=loose)
