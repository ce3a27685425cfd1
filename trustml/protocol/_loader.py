"""How deep ensembles read their training data (``data.loader``), and the staging folder rule.

``data.loader.order`` (:class:`~trustml.protocol._data_spec.LoaderSpec`) picks the deep
ensembles' epoch order: ``random`` (per-member random minibatches, read sample by sample, the
order of every earlier run) or ``blocks`` (:class:`~trustml.uq.BlockShuffle`: whole storage
blocks in windows, read ahead in a background thread, every member shuffling each window).
``auto`` takes ``blocks`` when the training split holds more than
:data:`AUTO_BLOCKS_ABOVE_BYTES`, from shapes and item sizes (nothing is read): below that the
split fits in the page cache of any node, random reads cost little, and small runs keep the
numbers they always had. MC dropout, Bayesian networks, Laplace and the hyper-parameter
search's trials read in random order whatever ``data.loader`` says.

``data.stage`` (:mod:`trustml.protocol._staging`) must name a folder that is new, empty or a
trustml staging folder (it holds :data:`STAGE_MARKER`); :func:`check_stage` refuses anything
else while planning, before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trustml.data import BaseDataset
from trustml.exceptions import ProtocolError
from trustml.protocol.schema import Protocol
from trustml.uq import BlockShuffle
from trustml.utils.seeding import SeedLike, child

__all__ = [
    "AUTO_BLOCKS_ABOVE_BYTES",
    "STAGE_MARKER",
    "check_stage",
    "loader_order",
    "order_key",
    "stage_folder",
    "training_order",
]

#: Training-split bytes above which ``data.loader.order: auto`` reads in blocks (2 GiB).
AUTO_BLOCKS_ABOVE_BYTES = 2 << 30
#: The file that marks a staging folder as trustml's.
STAGE_MARKER = ".trustml-stage"
STAGE_KEY = "data.stage"


# -- the order ----------------------------------------------------------------------------------
def loader_order(protocol: Protocol, train: BaseDataset) -> str:
    """``"random"`` or ``"blocks"``: ``data.loader.order`` with ``auto`` resolved by the
    training split's stored bytes (:data:`AUTO_BLOCKS_ABOVE_BYTES`)."""
    order = protocol.data.loader.order
    if order != "auto":
        return order
    return "blocks" if train.stored_bytes() > AUTO_BLOCKS_ABOVE_BYTES else "random"


def training_order(protocol: Protocol, train: BaseDataset, seed: SeedLike) -> BlockShuffle | None:
    """The epoch order of a deep ensemble trained on ``train`` from ``seed``: a
    :class:`BlockShuffle` (its block order from ``child(seed, "blocks")``), or ``None`` for
    the random order."""
    if loader_order(protocol, train) == "random":
        return None
    spec = protocol.data.loader
    return BlockShuffle(child(seed, "blocks"), buffer=spec.buffer, prefetch=spec.prefetch)


def order_key(protocol: Protocol, train: BaseDataset) -> dict[str, Any]:
    """What a member checkpoint's key adds for the order: nothing for the random order (the
    keys of earlier runs), else ``{"loader": {"order": "blocks", "buffer": ...}}``."""
    if loader_order(protocol, train) == "random":
        return {}
    return {"loader": {"order": "blocks", "buffer": protocol.data.loader.buffer}}


# -- the staging folder -------------------------------------------------------------------------
def stage_folder(protocol: Protocol, base_dir: Path) -> Path | None:
    """``data.stage`` as a path (relative ones from the protocol's folder), or None."""
    if protocol.data.stage is None:
        return None
    path = Path(protocol.data.stage).expanduser()
    return path if path.is_absolute() else base_dir / path


def check_stage(folder: Path) -> None:
    """Refuse a staging folder trustml may not write into (nothing is created).

    Raises
    ------
    ProtocolError
        ``data.stage``: a file; a folder that holds anything without being a trustml staging
        folder; a folder that cannot be written or created.
    """
    if folder.exists() and not folder.is_dir():
        raise ProtocolError(f"{folder}: exists and is not a folder", key=STAGE_KEY)
    if folder.is_dir():
        try:
            entries = sorted(os.listdir(folder))
        except OSError as exc:
            raise ProtocolError(
                f"{folder}: cannot read this folder ({exc.strerror})", key=STAGE_KEY
            ) from None
        # The marker, or its temporary name while another rank writes it.
        if entries and not any(e.startswith(STAGE_MARKER) for e in entries):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise ProtocolError(
                f"{folder}: exists and is not a trustml staging folder (it holds {shown}); "
                "name a new or empty folder on node-local storage",
                key=STAGE_KEY,
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ProtocolError(f"{folder}: this folder is not writable", key=STAGE_KEY)
        return
    parent = folder.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ProtocolError(f"{folder}: cannot create this folder (in {parent})", key=STAGE_KEY)
