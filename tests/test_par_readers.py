"""PAR readers on tiny fake annotation files of every format: PA100K, PETA, RAPv1/v2
(MATLAB v5 and v7.3), WIDER text files and the field's pickles (safe loading only)."""

from __future__ import annotations

import itertools
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.io
from PIL import Image

from clipadapt.config import DataConfig
from clipadapt.data.par import (
    PETA_35, WIDER_14, convert_par_pickle, read_pa100k, read_par_pickle, read_peta, read_rap, read_wider,
)
from clipadapt.data.par.rap import RAP2_GROUP_ORDER
from clipadapt.data.par.sentences import RAP1, RAP2
from clipadapt.errors import ClipAdaptError


# ----------------------------------------------------------------- helpers
def image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), (90, 120, 150)).save(path)
    return path


def cell(strings):
    """A MATLAB N x 1 cell array of strings, as savemat wants it."""
    out = np.empty((len(strings), 1), dtype=object)
    out[:, 0] = list(strings)
    return out


def cells_of(items):
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def config(fmt, root, **kw):
    return DataConfig(format=fmt, root=root, **kw)


def rel_paths(split, root):
    return [str(p.relative_to(root)) for p in split.paths]


class StructArray(list):
    """A MATLAB struct array (1 x n) for write_v73."""


def write_v73(path, variables):
    """A MATLAB v7.3 file as MATLAB writes one: HDF5 with a 512-byte MAT header, MATLAB_class
    attributes, transposed arrays, cells and struct-array fields as references into #refs#."""
    import h5py

    counter = itertools.count()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def ref(value):
            name = f"r{next(counter)}"
            put(refs, name, value)
            return refs[name].ref

        def put(parent, name, value):
            if isinstance(value, StructArray):
                group = parent.create_group(name)
                group.attrs["MATLAB_class"] = np.bytes_("struct")
                for field in value[0]:
                    data = np.array([[ref(item[field])] for item in value], dtype=h5py.ref_dtype)
                    group.create_dataset(field, data=data)  # no MATLAB_class: that marks a struct array
            elif isinstance(value, dict):
                group = parent.create_group(name)
                group.attrs["MATLAB_class"] = np.bytes_("struct")
                for field, item in value.items():
                    put(group, field, item)
            elif isinstance(value, list):
                data = np.array([[ref(item)] for item in value], dtype=h5py.ref_dtype)
                parent.create_dataset(name, data=data).attrs["MATLAB_class"] = np.bytes_("cell")
            elif isinstance(value, str):
                codes = np.array([[ord(c)] for c in value], dtype=np.uint16)
                parent.create_dataset(name, data=codes).attrs["MATLAB_class"] = np.bytes_("char")
            else:
                array = np.atleast_2d(np.asarray(value))
                matlab = {"float64": "double", "uint8": "uint8", "int64": "int64"}[str(array.dtype)]
                parent.create_dataset(name, data=array.T).attrs["MATLAB_class"] = np.bytes_(matlab)

        for key, value in variables.items():
            put(f, key, value)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


# ----------------------------------------------------------------- PA100K
PA_ATTRS = ["Female", "Hat", "boots", "NewThing"]


def make_pa100k(root, layout="data"):
    rng = np.random.default_rng(1)
    splits = {"train": 3, "val": 2, "test": 2}
    mat, counter = {"attributes": cell(PA_ATTRS)}, 0
    for split, n in splits.items():
        names = [f"{counter + i:06d}.jpg" for i in range(n)]
        counter += n
        for name in names:
            image(root / layout / name)
        mat[f"{split}_images_name"] = cell(names)
        mat[f"{split}_label"] = rng.integers(0, 2, (n, len(PA_ATTRS))).astype(np.uint8)
    scipy.io.savemat(root / "annotation.mat", mat)
    return mat


@pytest.mark.parametrize("layout", ["data", "release_data/release_data"])
def test_pa100k_reads_names_splits_labels_and_sentences(tmp_path, layout):
    mat = make_pa100k(tmp_path, layout)
    train, val, test = read_pa100k(config("pa100k", tmp_path))
    assert [len(s) for s in (train, val, test)] == [3, 2, 2]
    assert train.task.names == PA_ATTRS
    assert all(a.classes == ("no", "yes") for a in train.task.attributes)
    assert train.task.attributes[0].template == "A woman or girl"
    assert train.task.attributes[3].template == "A pedestrian with new thing"  # made from an unknown name
    np.testing.assert_array_equal(val.labels, mat["val_label"])
    assert rel_paths(test, tmp_path) == [f"{layout}/000005.jpg", f"{layout}/000006.jpg"]
    assert train.sources[1] == "annotation.mat row 2"


def test_pa100k_attribute_subset_and_errors(tmp_path):
    mat = make_pa100k(tmp_path)
    train, _, _ = read_pa100k(config("pa100k", tmp_path, attributes=["boots", "female"], templates={"boots": "Boots!"}))
    assert train.task.names == ["boots", "Female"]
    assert train.task.attributes[0].template == "Boots!"
    np.testing.assert_array_equal(train.labels, mat["train_label"][:, [2, 0]])
    with pytest.raises(ClipAdaptError, match="no attribute \\['Cap'\\]"):
        read_pa100k(config("pa100k", tmp_path, attributes=["Cap"]))

    bad = dict(mat)
    bad["test_label"] = bad["test_label"].copy()
    bad["test_label"][1, 1] = 3
    scipy.io.savemat(tmp_path / "annotation.mat", bad)
    with pytest.raises(ClipAdaptError, match="column 'Hat'.*annotation.mat.*value 3 at annotation.mat row 7"):
        read_pa100k(config("pa100k", tmp_path))

    del bad["attributes"]
    scipy.io.savemat(tmp_path / "annotation.mat", bad)
    with pytest.raises(ClipAdaptError, match="no field 'attributes'; its fields are \\[.*'test_images_name'"):
        read_pa100k(config("pa100k", tmp_path))


def test_missing_images_are_named_up_front_unless_unchecked(tmp_path):
    make_pa100k(tmp_path)
    (tmp_path / "data" / "000004.jpg").unlink()
    with pytest.raises(ClipAdaptError, match="PA100K: 1 of 7 images are missing, e.g. .*000004.jpg \\(annotation.mat row 5\\)"):
        read_pa100k(config("pa100k", tmp_path))
    train, val, test = read_pa100k(config("pa100k", tmp_path), {"check_images": False})
    assert len(val) == 2
    with pytest.raises(ClipAdaptError, match="data.root is required"):
        read_pa100k(DataConfig(format="pa100k"))
    with pytest.raises(ClipAdaptError, match="Invalid data.par options: 'split_idx'"):
        read_pa100k(config("pa100k", tmp_path), {"split_idx": 1})


# ----------------------------------------------------------------- PETA
PETA_EXTRA = ["upperBodyBlack", "lowerBodyBlue"]


def make_peta(root, n=8):
    rng = np.random.default_rng(2)
    file_names = list(np.array(PETA_35)[rng.permutation(35)]) + PETA_EXTRA  # the file's own order
    labels = rng.integers(0, 2, (n, len(file_names)))
    data = np.hstack([np.arange(n * 4).reshape(n, 4), labels]).astype(np.float64)
    partitions = [  # 1-based, column vectors, as the real file
        {"train": np.array([[1], [2], [3], [4]]), "val": np.array([[5], [6]]), "test": np.array([[7], [8]])},
        {"train": np.array([[8], [7], [6]]), "val": np.array([[5]]), "test": np.array([[1], [2], [3], [4]])},
    ]
    scipy.io.savemat(root / "PETA.mat", {"peta": {"data": data, "attribute": cell(file_names),
                                                  "partion_attribute": cells_of(partitions)}})
    for i in range(n):
        image(root / "images" / f"{i + 1:05d}.png")
    return file_names, labels


def test_peta_uses_the_35_in_group_order_and_the_chosen_partition(tmp_path):
    file_names, labels = make_peta(tmp_path)
    train, val, test = read_peta(config("peta", tmp_path))
    assert train.task.names == list(PETA_35) and len(PETA_35) == 35
    columns = [file_names.index(n) for n in PETA_35]
    np.testing.assert_array_equal(train.labels, labels[[0, 1, 2, 3]][:, columns])
    assert rel_paths(val, tmp_path) == ["images/00005.png", "images/00006.png"]
    assert train.task.attributes[-1].template == "A man or boy"

    train, val, test = read_peta(config("peta", tmp_path), {"split_index": 1})
    assert rel_paths(train, tmp_path) == ["images/00008.png", "images/00007.png", "images/00006.png"]
    assert len(test) == 4
    with pytest.raises(ClipAdaptError, match="split_index is 2 but .* holds 2 partition\\(s\\), numbered 0-1"):
        read_peta(config("peta", tmp_path), {"split_index": 2})

    train, _, _ = read_peta(config("peta", tmp_path, attributes=["lowerBodyBlue"]))
    np.testing.assert_array_equal(train.labels[:, 0], labels[:4, file_names.index("lowerBodyBlue")])


def test_options_come_from_the_data_par_section(tmp_path):
    make_peta(tmp_path)
    train, _, _ = read_peta(DataConfig(format="peta", root=tmp_path, par={"split_index": 1}))
    assert rel_paths(train, tmp_path)[0] == "images/00008.png"
    with pytest.raises(ClipAdaptError, match="names an attribute twice"):
        read_peta(config("peta", tmp_path, attributes=["hairLong", "hairlong"]))


def test_peta_missing_field_names_the_fields_present(tmp_path):
    scipy.io.savemat(tmp_path / "PETA.mat", {"peta": {"data": np.zeros((2, 6)), "attribute": cell(["a", "b"])}})
    with pytest.raises(ClipAdaptError, match="no field 'partion_attribute' or .*its fields are \\['attribute', 'data'\\]"):
        read_peta(config("peta", tmp_path))
    part = {"train": np.array([[1]]), "val": np.array([[2]]), "test": np.array([[2]])}
    scipy.io.savemat(tmp_path / "PETA.mat", {"peta": {"data": np.zeros((2, 6)), "attribute": cell(["a", "b"]),
                                                      "partion_attribute": cells_of([part])}})
    with pytest.raises(ClipAdaptError, match="standard PETA attributes \\['accessoryHat'.*data.attributes"):
        read_peta(config("peta", tmp_path), {"check_images": False})
    train, _, _ = read_peta(config("peta", tmp_path, attributes=["b"]), {"check_images": False})
    assert train.task.names == ["b"] and train.labels.tolist() == [[0]]


# ----------------------------------------------------------------- RAP
def make_rap1(root, n=6):
    rng = np.random.default_rng(3)
    names = list(RAP1) + ["up-Black", "faceFront"]  # 51 evaluated + 2 more
    labels = rng.integers(0, 2, (n, len(names)))
    labels[0, 2] = 2  # uncertain
    images = [f"CAM01-{i}.png" for i in range(n)]
    partitions = [{"trainval_index": np.array([[1, 2, 3, 4]]), "test_index": np.array([[5, 6]])}]
    rap = {"partion": cells_of(partitions), "label": labels.astype(np.float64),
           "attribute_chinese": cell(["x"] * len(names)), "attribute_eng": cell(names),
           "position": np.zeros((n, 4)), "imagesname": cell(images)}
    (root / "RAP_annotation").mkdir()
    scipy.io.savemat(root / "RAP_annotation" / "RAP_annotation.mat", {"RAP_annotation": rap})
    for name in images:
        image(root / "RAP_dataset" / name)
    return labels


def test_rap1_first_51_trainval_as_train_and_uncertain_labels(tmp_path):
    labels = make_rap1(tmp_path)
    train, val, test = read_rap(config("rap", tmp_path))
    assert val is None and len(train) == 4 and len(test) == 2
    assert train.task.names == list(RAP1) and len(RAP1) == 51
    assert train.labels[0, 2] == -1  # 2 = uncertain -> ignored by default
    expected = labels[:4, :51].copy()
    expected[0, 2] = -1
    np.testing.assert_array_equal(train.labels, expected)
    train, _, _ = read_rap(config("rap", tmp_path), {"uncertain": "negative"})
    assert train.labels[0, 2] == 0
    assert rel_paths(test, tmp_path) == ["RAP_dataset/CAM01-4.png", "RAP_dataset/CAM01-5.png"]


def rap2_variables(n=7):
    rng = np.random.default_rng(4)
    group = list(RAP2)  # the 54 in group order
    selected_order = [None] * 54
    for position, g in enumerate(RAP2_GROUP_ORDER):
        selected_order[g] = group[position]
    colours = ["up-Black", "up-White", "low-Black", "low-Red", "shoes-Black", "faceFront"]
    names = [x for pair in itertools.zip_longest(selected_order, colours) for x in pair if x is not None]
    selected = np.array([[names.index(s) + 1 for s in selected_order]], dtype=np.float64)
    data = rng.integers(0, 2, (n, len(names))).astype(np.float64)
    images = [f"CAM{i:02d}_2014.jpg" for i in range(n)]
    parts = [{"train_index": np.array([[1, 2, 3]], dtype=np.float64), "val_index": np.array([[4]], dtype=np.float64),
              "test_index": np.array([[5, 6, 7]], dtype=np.float64),
              "trainval_index": np.array([[1, 2, 3, 4]], dtype=np.float64)},
             {"train_index": np.array([[7, 6, 5]], dtype=np.float64), "val_index": np.array([[4]], dtype=np.float64),
              "test_index": np.array([[1, 2, 3]], dtype=np.float64),
              "trainval_index": np.array([[7, 6, 5, 4]], dtype=np.float64)}]
    return names, data, images, selected, parts


def test_rap2_selected_attributes_in_group_order(tmp_path):
    names, data, images, selected, parts = rap2_variables()
    rap = {"name": cell(images), "attribute": cell(names), "data": data, "selected_attribute": selected,
           "partition_attribute": cells_of(parts).T}
    scipy.io.savemat(tmp_path / "RAP_annotation.mat", {"RAP_annotation": rap})  # the second place looked at
    for name in images:
        image(tmp_path / "RAP_dataset" / name)
    train, val, test = read_rap(config("rap", tmp_path), {"split_index": 1})
    assert train.task.names == list(RAP2)
    assert [len(s) for s in (train, val, test)] == [3, 1, 3]
    columns = [names.index(n) for n in RAP2]
    np.testing.assert_array_equal(train.labels, data[[6, 5, 4]][:, columns])
    assert train.task.attributes[RAP2_GROUP_ORDER.index(0)].template == "A woman or girl"


def test_rap2_matlab_v73_file_reads_the_same(tmp_path):
    pytest.importorskip("h5py", reason="h5py reads MATLAB v7.3 files")
    names, data, images, selected, parts = rap2_variables()
    v5, v73 = tmp_path / "v5", tmp_path / "v73"
    for root in (v5, v73):
        for name in images:
            image(root / "RAP_dataset" / name)
        (root / "RAP_annotation").mkdir()
    scipy.io.savemat(v5 / "RAP_annotation" / "RAP_annotation.mat", {"RAP_annotation": {
        "name": cell(images), "attribute": cell(names), "data": data, "selected_attribute": selected,
        "partition_attribute": cells_of(parts).T}})
    write_v73(v73 / "RAP_annotation" / "RAP_annotation.mat", {"RAP_annotation": {
        "name": list(images), "attribute": list(names), "data": data, "selected_attribute": selected,
        "partition_attribute": StructArray(parts)}})
    with pytest.raises(NotImplementedError):  # really a v7.3 file, which scipy refuses
        scipy.io.loadmat(v73 / "RAP_annotation" / "RAP_annotation.mat")
    for split_index in (0, 1):
        a = read_rap(config("rap", v5), {"split_index": split_index})
        b = read_rap(config("rap", v73), {"split_index": split_index})
        for x, y in zip(a, b):
            assert x.task == y.task
            np.testing.assert_array_equal(x.labels, y.labels)
            assert rel_paths(x, v5) == rel_paths(y, v73)


def test_rap_unknown_layout_lists_fields(tmp_path):
    scipy.io.savemat(tmp_path / "RAP_annotation.mat", {"RAP_annotation": {"stuff": np.zeros(3)}})
    with pytest.raises(ClipAdaptError, match="neither RAPv1 .* nor RAPv2 .*its fields are \\['stuff'\\]"):
        read_rap(config("rap", tmp_path))


# ----------------------------------------------------------------- WIDER
def make_wider(root, train="train"):
    ann = root / "Annotations"
    ann.mkdir(parents=True)
    rows = {train: [[1, -1, 0] + [1] * 11, [-1] * 14], "test": [[0] * 14, [1] * 14, [-1, 1] + [0] * 12]}
    for split, labels in rows.items():
        names = [f"{split}/{i}.jpg" for i in range(len(labels))]
        (ann / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        (ann / f"{split}_gt_label.txt").write_text("".join(f"[{', '.join(map(str, r))}]\n" for r in labels))
        for name in names:
            image(root / "split_image" / name)
    return rows


def test_wider_unspecified_is_ignored_not_negative(tmp_path):
    rows = make_wider(tmp_path)
    train, val, test = read_wider(config("wider", tmp_path))
    assert val is None and len(train) == 2 and len(test) == 3
    assert train.task.names == list(WIDER_14)
    assert train.labels[0, :3].tolist() == [1, 0, -1]  # raw 1, -1, 0
    assert test.labels[0].tolist() == [-1] * 14
    assert test.sources[2] == "test_gt_label.txt line 3"
    assert rel_paths(test, tmp_path)[1] == "split_image/test/1.jpg"
    field, _, _ = read_wider(config("wider", tmp_path), {"uncertain": "negative"})  # the field's "<= 0 -> 0"
    assert field.labels[0, :3].tolist() == [1, 0, 0]
    np.testing.assert_array_equal(train.labels[1], np.zeros(14))
    assert rows


def test_wider_trainval_files_and_label_errors(tmp_path):
    make_wider(tmp_path, train="trainval")
    train, val, _ = read_wider(config("wider", tmp_path))
    assert len(train) == 2 and val is None
    label_file = tmp_path / "Annotations" / "test_gt_label.txt"
    label_file.write_text("[1" + ", 2" + ", 0" * 12 + "]\n" + "[1]\n" * 2)
    with pytest.raises(ClipAdaptError, match="test_gt_label.txt line 2 has 1 labels; expected 14"):
        read_wider(config("wider", tmp_path))
    label_file.write_text("[1" + ", 2" + ", 0" * 12 + "]\n" + ("[" + ", ".join(["1"] * 14) + "]\n") * 2)
    with pytest.raises(ClipAdaptError, match="column 'longHair' .* value 2 at test_gt_label.txt line 1"):
        read_wider(config("wider", tmp_path))
    label_file.write_text(("[" + ", ".join(["1"] * 14) + "]\n") * 2)
    with pytest.raises(ClipAdaptError, match="lists 3 images but .*test_gt_label.txt has 2 label lines"):
        read_wider(config("wider", tmp_path))


# ----------------------------------------------------------------- pickles
@pytest.fixture()
def easydict_module(monkeypatch):
    """A stand-in for the `easydict` package (not a dependency): a dict whose items are
    also attributes, pickled under the name easydict.EasyDict like the real one."""

    class EasyDict(dict):
        def __init__(self, items=None, **kw):
            super().__init__()
            for key, value in {**(items or {}), **kw}.items():
                setattr(self, key, value)

        def __setattr__(self, key, value):
            if isinstance(value, dict) and not isinstance(value, EasyDict):
                value = EasyDict(value)
            object.__setattr__(self, key, value)
            dict.__setitem__(self, key, value)

    module = types.ModuleType("easydict")
    EasyDict.__module__, EasyDict.__qualname__ = "easydict", "EasyDict"
    module.EasyDict = EasyDict
    monkeypatch.setitem(sys.modules, "easydict", module)
    return EasyDict


def rethinking_pickle(root, EasyDict, protocol):
    """A dataset_all.pkl as "Rethinking of PAR" writes it: all columns + label_idx.eval,
    partitions as lists (5 in the real files, 2 here), root on the authors' machine."""
    d = EasyDict()
    d.description = "pa100k"
    d.root = "/mnt/data1/someone/PA100k/data"
    d.image_name = [f"{i:06d}.jpg" for i in range(6)]
    d.label = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 2], [0, 0, 1], [1, 0, -1], [0, 1, 1]])
    d.attr_name = ["Female", "Hat", "boots"]
    d.label_idx = EasyDict(eval=[2, 0], extra=range(1, 2))
    d.partition = EasyDict(train=[np.arange(0, 3), np.arange(3, 6)], val=[np.array([3]), np.array([0])],
                           trainval=[np.arange(0, 4), np.arange(3, 6)], test=[np.array([4, 5]), np.array([1, 2])])
    d.weight_train = [np.float32(0.5)]
    for name in d.image_name:
        image(root / "data" / name)
    (root / "dataset_all.pkl").write_bytes(pickle.dumps(d, protocol=protocol))
    return d


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_rethinking_pickle_loads_through_the_restricted_unpickler(tmp_path, easydict_module, protocol):
    d = rethinking_pickle(tmp_path, easydict_module, protocol)
    train, val, test = read_par_pickle(config("par-pickle", tmp_path))
    assert train.task.names == ["boots", "Female"]  # label_idx.eval, in its order
    assert train.task.attributes[1].template == "A woman or girl"
    assert rel_paths(train, tmp_path) == ["data/000000.jpg", "data/000001.jpg", "data/000002.jpg"]
    assert train.labels.tolist() == [[1, 1], [0, 0], [-1, 1]]  # 2 = uncertain -> ignored
    assert [len(val), len(test)] == [1, 2]
    assert test.labels.tolist() == [[-1, 1], [1, 0]]
    train1, _, _ = read_par_pickle(config("par-pickle", tmp_path), {"split_index": 1})
    assert rel_paths(train1, tmp_path)[0] == "data/000003.jpg"
    assert d  # the original objects are untouched


def test_converted_copy_reads_the_same_and_is_preferred(tmp_path, easydict_module):
    rethinking_pickle(tmp_path, easydict_module, 4)
    before = read_par_pickle(config("par-pickle", tmp_path))
    written = convert_par_pickle(tmp_path / "dataset_all.pkl", tmp_path)
    assert written == tmp_path / "par.json" and (tmp_path / "labels.npy").is_file()
    (tmp_path / "dataset_all.pkl").write_bytes(b"not a pickle any more")  # proves the copy is what is read
    after = read_par_pickle(config("par-pickle", tmp_path))
    for x, y in zip(before, after):
        assert x.task == y.task and x.paths == y.paths
        np.testing.assert_array_equal(x.labels, y.labels)


def test_promptpar_pad_pickle_with_sentences_and_a_moved_image_folder(tmp_path, easydict_module):
    d = easydict_module()
    d.description = "peta"
    d.root = "C:/Users/someone/PETA/Pad_datasets"
    d.image_name = ["00001.png", "00002.png", "00003.png"]
    d.label = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)  # already cut to the evaluated columns
    d.attr_name = ["accessoryHat", "personalMale"]
    d.attributes = ["A person with a {hat}", "A man"]  # the file's own sentences win
    d.label_idx = easydict_module(eval=[10, 16])  # indices into the full 105: already applied
    d.partition = easydict_module(trainval=[np.array([0, 1])], test=[np.array([2])])
    for name in d.image_name:
        image(tmp_path / "Pad_datasets" / name)
    (tmp_path / "pad.pkl").write_bytes(pickle.dumps(d))
    train, val, test = read_par_pickle(config("par-pickle", tmp_path))
    assert train.task.names == ["accessoryHat", "personalMale"] and val is None
    assert [a.template for a in train.task.attributes] == ["A person with a (hat)", "A man"]
    assert rel_paths(test, tmp_path) == ["Pad_datasets/00003.png"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_before_anything_runs(tmp_path, easydict_module):
    marker = tmp_path / "pwned"
    fields = {"image_name": ["a.jpg"], "label": np.array([[1]]), "attr_name": ["Hat"],
              "partition": {"train": np.array([0])}, "hook": _Evil(marker)}
    (tmp_path / "pad.pkl").write_bytes(pickle.dumps(fields))
    with pytest.raises(ClipAdaptError, match="wants to run (os|posix).system while loading; refused"):
        read_par_pickle(config("par-pickle", tmp_path))
    with pytest.raises(ClipAdaptError, match="refused"):
        convert_par_pickle(tmp_path / "pad.pkl", tmp_path / "converted")
    assert not marker.exists()
    assert not (tmp_path / "converted" / "par.json").exists()

    (tmp_path / "pad.pkl").write_bytes(pickle.dumps({"f": getattr}))  # a builtin outside the allow-list
    with pytest.raises(ClipAdaptError, match="builtins.getattr"):
        read_par_pickle(config("par-pickle", tmp_path))


def test_pickle_location_and_field_errors(tmp_path, easydict_module):
    with pytest.raises(ClipAdaptError, match="No PAR annotation under"):
        read_par_pickle(config("par-pickle", tmp_path))
    (tmp_path / "pad.pkl").write_bytes(pickle.dumps({"image_name": ["a.jpg"], "label": np.array([[1]])}))
    (tmp_path / "dataset_all.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ClipAdaptError, match="Several PAR annotation files .*data.par.annotation"):
        read_par_pickle(config("par-pickle", tmp_path))
    with pytest.raises(ClipAdaptError, match="no field \\['attr_name', 'partition'\\]"):
        read_par_pickle(config("par-pickle", tmp_path), {"annotation": "pad.pkl"})
    with pytest.raises(ClipAdaptError, match="holds a list, not the dict"):
        read_par_pickle(config("par-pickle", tmp_path), {"annotation": "dataset_all.pkl"})
