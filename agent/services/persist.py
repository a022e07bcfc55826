"""API-registered services and checks in the data dir, so they survive a restart (Consul's persisted services).

One JSON file per definition under ``services/`` and ``checks/`` (file name: a hash of the ID, so any ID is a
safe name), each written atomically by DataDir.atomic_write; TTL checks also keep their last status under
``checks/state/`` (Consul restores a TTL check's status after a restart).  A file that can't be read is
logged and skipped: a corrupt file must not keep the agent from starting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import cattrs

from agent.datadir import DataDir, DataDirError
from agent.gostrings import decode_json, to_bytes
from agent.services.definitions import CheckDef, ServiceDef

__all__ = ["Persistence"]

log = logging.getLogger("agent.services")
_converter = cattrs.Converter()


def _name(item_id: str) -> str:
    return hashlib.sha256(to_bytes(item_id)).hexdigest()[:32] + ".json"


class Persistence:
    def __init__(self, datadir: DataDir) -> None:
        self.datadir = datadir

    def _write(self, relpath: str, data: Any) -> None:
        self.datadir.atomic_write(relpath, json.dumps(data, sort_keys=True).encode())

    def _remove(self, relpath: str) -> None:
        (self.datadir.path / relpath).unlink(missing_ok=True)

    def _read_dir(self, rel: str) -> list[Any]:
        """Every definition under ``rel``; DataDirError (the agent exits 1) if ``rel`` is there but unreadable,
        e.g. a file in place of the directory: starting without them would silently drop registrations."""
        folder = self.datadir.path / rel
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise DataDirError(f"Failed reading {rel} dir {str(folder)!r}: {exc.strerror or exc}") from None
        out = []
        for path in sorted(folder / n for n in names if n.endswith(".json")):
            try:
                out.append(decode_json(path.read_bytes()))  # a file from older code may hold lone surrogates
            except (OSError, ValueError) as exc:
                log.error("agent: skipping unreadable persisted definition %s: %s", path, exc)
        return out

    # ------------------------------------------------------------------ services / checks

    def save_service(self, service: ServiceDef) -> None:
        self._write(f"services/{_name(service.id)}", {"Service": _converter.unstructure(service)})

    def remove_service(self, service_id: str) -> None:
        self._remove(f"services/{_name(service_id)}")

    def save_check(self, check: CheckDef) -> None:
        self._write(f"checks/{_name(check.id)}", {"Check": _converter.unstructure(check)})

    def remove_check(self, check_id: str) -> None:
        self._remove(f"checks/{_name(check_id)}")
        self._remove(f"checks/state/{_name(check_id)}")

    def save_check_state(self, check_id: str, status: str, output: str) -> None:
        self._write(f"checks/state/{_name(check_id)}", {"CheckID": check_id, "Status": status, "Output": output})

    def load(self) -> tuple[list[ServiceDef], list[CheckDef], dict[str, tuple[str, str]]]:
        """(services, top-level checks, {check id: (status, output)}) as persisted."""
        services, checks = [], []
        for data in self._read_dir("services"):
            try:
                services.append(_converter.structure(data["Service"], ServiceDef))
            except (KeyError, TypeError, ValueError, cattrs.BaseValidationError) as exc:
                log.error("agent: skipping a persisted service: %s", exc)
        for data in self._read_dir("checks"):
            try:
                checks.append(_converter.structure(data["Check"], CheckDef))
            except (KeyError, TypeError, ValueError, cattrs.BaseValidationError) as exc:
                log.error("agent: skipping a persisted check: %s", exc)
        states = {}
        for data in self._read_dir("checks/state"):
            if isinstance(data, dict) and {"CheckID", "Status", "Output"} <= set(data):
                states[str(data["CheckID"])] = (str(data["Status"]), str(data["Output"]))
        return services, checks, states

    @property
    def root(self) -> Path:
        return self.datadir.path
