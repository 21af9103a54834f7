"""The API reads a folder, a list of files, a list of pydicom Datasets, or one group by label,
and gives the same volume SimpleITK's series reader gives for the same files."""

import gc
import random

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import dicomrecon
from dicomrecon.errors import AmbiguousInputError, InputError
from dicomrecon.volume import Volume

FOLDER = "d2n_mr_hitachi_oblique39"


def sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return Volume.from_sitk(reader.Execute())


def files_of(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md")


def assert_same(vol: Volume, ref: Volume):
    np.testing.assert_array_equal(vol.array, ref.array.astype(vol.array.dtype))
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)


def test_list_of_files_in_any_order_equals_simpleitk(corpus):
    files = files_of(corpus / FOLDER)
    random.Random(3).shuffle(files)
    assert_same(dicomrecon.read_volume([str(f) for f in files]), sitk_series(corpus / FOLDER))
    assert dicomrecon.read(files).GetSize() == sitk_series(corpus / FOLDER).to_sitk().GetSize()


def test_list_of_datasets_equals_simpleitk(corpus, tmp_path):
    datasets = [pydicom.dcmread(f) for f in files_of(corpus / FOLDER)][::-1]
    vol = dicomrecon.read_volume(datasets)
    assert_same(vol, sitk_series(corpus / FOLDER))
    del datasets
    gc.collect()  # the datasets' temporary files must outlive them, for as long as vol lives
    result = vol.to_dicom(tmp_path / "out")
    assert result.files and dicomrecon.read_volume(tmp_path / "out").geometry_equal(vol, 1e-3)


def test_datasets_without_file_meta(corpus):
    datasets = []
    for f in files_of(corpus / FOLDER):
        ds = pydicom.dcmread(f)
        plain = pydicom.Dataset()
        plain.update(ds)  # no file meta: what a receiver or an anonymiser may hand over
        datasets.append(plain)
    assert_same(dicomrecon.read_volume(datasets), sitk_series(corpus / FOLDER))


def test_group_label_picks_one_echo(corpus):
    folder = corpus / "table_ph_dual_echo"
    labels = [g.label for g in dicomrecon.scan(folder).groups]
    assert len(labels) > 1
    with pytest.raises(AmbiguousInputError, match="contains"):
        dicomrecon.read_volume(folder)
    seen = set()
    for label in labels:
        vol = dicomrecon.read_volume(folder, group=label)
        plan = vol.metadata["plan"]
        echo = {float(pydicom.dcmread(h.path, stop_before_pixels=True).EchoTime)
                for h in plan.slices}  # read independently of dicomrecon's headers
        assert len(echo) == 1
        seen.add((echo.pop(), tuple(sorted({h.image_type for h in plan.slices}))))
    assert len(seen) == len(labels)  # every label is a different volume
    with pytest.raises(InputError, match="no group '99.9'; groups are"):
        dicomrecon.read_volume(folder, group="99.9")


def test_bad_sources_are_named(corpus, tmp_path):
    with pytest.raises(InputError, match="empty list"):
        dicomrecon.read_volume([])
    with pytest.raises(InputError, match="no such file"):
        dicomrecon.read_volume([str(tmp_path / "missing.dcm")])
    with pytest.raises(TypeError, match="a list of paths, a list of pydicom Datasets"):
        dicomrecon.read_volume([str(files_of(corpus / FOLDER)[0]), 3])
