"""`clipadapt bench`: the field's benchmark protocols (few-shot K x seeds, base-to-novel,
cross-data-set transfer) as a grid of resumable run folders, and their paper-style tables."""

from clipadapt.protocols.protocol import COOP_EPOCHS, PROTOCOLS, Cell, Protocol, read_protocol
from clipadapt.protocols.runner import CellResult, cell_state, run_protocol

__all__ = ["COOP_EPOCHS", "PROTOCOLS", "Cell", "CellResult", "Protocol", "cell_state", "read_protocol", "run_protocol"]
