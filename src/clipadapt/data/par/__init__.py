"""Pedestrian attribute recognition (PAR) datasets: PA100K, PETA, RAPv1/v2, WIDER and the
field's pickled exchange format, each read into (train, val, test) LabelledImages whose
task has one binary attribute ("no", "yes") per column: 1 positive, 0 negative,
-1 ignored.

One file per format; shared pieces: `options` (the data.par settings), `matfile` (.mat
v5 / v7.3), `partitions`, `sentences` (one sentence per attribute), `table` (the common
path to LabelledImages), `record` + `safe_unpickle` (pickles without running code).
"""

from clipadapt.data.par.options import ParOptions
from clipadapt.data.par.pa100k import read_pa100k
from clipadapt.data.par.par_pickle import convert_par_pickle, load_record, read_par_pickle
from clipadapt.data.par.peta import PETA_35, read_peta
from clipadapt.data.par.rap import read_rap
from clipadapt.data.par.wider import WIDER_14, read_wider

__all__ = [
    "PETA_35", "ParOptions", "WIDER_14", "convert_par_pickle", "load_record", "read_pa100k", "read_par_pickle",
    "read_peta", "read_rap", "read_wider",
]
