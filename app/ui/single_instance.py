"""One app per project: a second `slipstream PATH` on the same folder raises the first window.

Two instances on one project would run two watchers pushing the same diffs over two sessions. The
first instance listens on a QLocalServer named after a hash of the user and the project's real path;
a later one connects, sends ``activate`` and exits 0, and the first emits `activated`.

On POSIX the socket is a full path inside the per-user 0700 runtime folder (ownership checked), not
a bare name in the shared temp folder: another local user can neither squat the name (bind it first
and so make every later start "activate" them and exit) nor connect to ours.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QWidget

from app.runtime import check_private_dir, runtime_dir

__all__ = ["ACTIVATE", "SingleInstance", "bring_to_front", "server_name"]

ACTIVATE = b"activate\n"
CONNECT_TIMEOUT_MS = 500
WRITE_TIMEOUT_MS = 1000


def server_name(project_path: str | os.PathLike[str], *, prefix: str = "slipstream") -> str:
    """The local-socket name for one user and one project folder (symlinks resolved)."""
    real = os.path.realpath(os.fspath(project_path))
    try:
        user = getpass.getuser()
    except Exception:  # no user name (containers without passwd entries)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(f"{user}\0{real}".encode()).hexdigest()[:24]
    return f"{prefix}-{digest}"


class SingleInstance(QObject):
    """Decides whether this process owns `project_path`; the owner hears later ones as `activated`."""

    activated = Signal()

    def __init__(
        self,
        project_path: str | os.PathLike[str],
        parent: QObject | None = None,
        *,
        prefix: str = "slipstream",
        socket_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.project_path = Path(project_path)
        self.name = server_name(project_path, prefix=prefix)
        if os.name == "posix":
            folder = socket_dir if socket_dir is not None else runtime_dir()
            check_private_dir(folder)  # UnsafeRuntimeDir: refuse a folder another user controls
            self.name = str(folder / f"{self.name}.sock")
        self._server: QLocalServer | None = None

    @property
    def is_primary(self) -> bool:
        return self._server is not None and self._server.isListening()

    def try_primary(self) -> bool:
        """True: we own the project and listen. False: another instance has it and was told to activate."""
        if self.is_primary:
            return True
        for _ in range(2):  # a second round covers a race with an instance starting at the same moment
            if self._notify_running():
                return False
            if self._listen():
                return True
        raise RuntimeError(f"cannot listen on local socket {self.name!r} nor reach its owner")

    def close(self) -> None:
        """Stop listening (also done when the QObject is destroyed with the process)."""
        if self._server is not None:
            self._server.close()
            self._server.deleteLater()
            self._server = None

    def _notify_running(self) -> bool:
        sock = QLocalSocket()
        sock.connectToServer(self.name)
        if not sock.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        sock.write(ACTIVATE)
        sock.flush()
        ok = sock.waitForBytesWritten(WRITE_TIMEOUT_MS) or sock.bytesToWrite() == 0
        sock.disconnectFromServer()
        return ok

    def _listen(self) -> bool:
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            # A crashed owner leaves its socket file behind; nobody answered on it, so remove it.
            QLocalServer.removeServer(self.name)
            if not server.listen(self.name):
                server.deleteLater()
                return False
        server.newConnection.connect(self._on_new_connection)
        self._server = server
        return True

    def _on_new_connection(self) -> None:
        assert self._server is not None
        while self._server.hasPendingConnections():
            conn = self._server.nextPendingConnection()
            conn.readyRead.connect(self._on_ready_read)
            conn.disconnected.connect(self._on_disconnected)
            self._read(conn)

    def _on_ready_read(self) -> None:
        conn = self.sender()
        if isinstance(conn, QLocalSocket):
            self._read(conn)

    def _on_disconnected(self) -> None:
        conn = self.sender()
        if isinstance(conn, QLocalSocket):
            self._read(conn)  # what arrived just before the peer hung up
            conn.deleteLater()

    def _read(self, conn: QLocalSocket) -> None:
        while conn.canReadLine():
            line = bytes(conn.readLine().data())
            if line.strip() == ACTIVATE.strip():
                self.activated.emit()


def bring_to_front(window: QWidget) -> None:
    """Show, un-minimise and raise `window` (window managers may only flash the taskbar entry)."""
    if window.isMinimized():
        window.showNormal()
    window.show()
    window.raise_()
    window.activateWindow()
