"""Damaged data folders are errors that name the file, never a run on something plausible."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from g2gsim.data import PAPER_MODELS, data_fingerprint, open_data_source
from g2gsim.data.bundled import BundledSyntheticSource
from g2gsim.data.caches import write_v02_cache
from g2gsim.data.files import DamagedDataError
from g2gsim.data.training import load_training_trace

SPEC = PAPER_MODELS["Llama-3.1-8B"]


def write_v01_cache(folder: Path, specs=(SPEC,), batches=(8, 128)) -> Path:
    """A small OpenG2G v0.1 cache made from the bundled data (traces, latency and logistic fits)."""
    source = BundledSyntheticSource()
    (folder / "traces").mkdir(parents=True)
    summary, latency, logistic = [], [], []
    for spec in specs:
        for batch in batches:
            trace = source.trace(spec, batch)
            name = f"traces/{spec.model_label}_{batch}.csv"
            pd.DataFrame({"relative_time_s": trace.t_s, "power_total_W": trace.power_w}).to_csv(
                folder / name, index=False
            )
            summary.append([spec.model_label, trace.measured_gpus, batch, name])
            latency.append(
                {"model_label": spec.model_label, "max_num_seqs": batch, **source.itl_fit(spec, batch).to_dict()}
            )
        for metric, fit in source.logistic_fits(spec).to_dict().items():
            logistic.append({"model_label": spec.model_label, "metric": metric, **fit})
    pd.DataFrame(summary, columns=["model_label", "num_gpus", "max_num_seqs", "trace_file"]).to_csv(
        folder / "traces_summary.csv", index=False
    )
    pd.DataFrame(latency).to_csv(folder / "latency_fits.csv", index=False)
    pd.DataFrame(logistic).to_csv(folder / "logistic_fits.csv", index=False)
    return folder


def test_a_complete_v01_cache_reads(tmp_path) -> None:
    source = open_data_source(write_v01_cache(tmp_path / "cache"))
    assert source.itl_fit(SPEC, 128) is not None
    assert source.trace(SPEC, 8).t_s.size > 5
    assert source.logistic_fits(SPEC).power.L > 0


def test_a_v01_cache_without_latency_fits_is_an_error_naming_the_file(tmp_path) -> None:
    folder = write_v01_cache(tmp_path / "cache")
    (folder / "latency_fits.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"latency_fits\.csv does not exist"):
        open_data_source(folder)


def test_a_trace_cut_mid_row_is_an_error_naming_the_file(tmp_path) -> None:
    folder = write_v01_cache(tmp_path / "cache")
    trace = folder / "traces" / f"{SPEC.model_label}_8.csv"
    trace.write_bytes(trace.read_bytes()[:-7])  # cut inside the last number
    source = open_data_source(folder)
    with pytest.raises(DamagedDataError, match=f"{trace.name}: the file ends mid-line"):
        source.trace(SPEC, 8)


def test_a_trace_row_without_a_number_names_the_file_the_column_and_the_line(tmp_path) -> None:
    folder = write_v01_cache(tmp_path / "cache")
    trace = folder / "traces" / f"{SPEC.model_label}_8.csv"
    lines = trace.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ",oops"
    trace.write_text("\n".join(lines) + "\n")
    with pytest.raises(DamagedDataError, match=r"column 'power_total_W' needs a number on every row; line 4"):
        open_data_source(folder).trace(SPEC, 8)


def test_a_garbage_logistic_fits_file_is_an_error_naming_the_file(tmp_path) -> None:
    folder = write_v01_cache(tmp_path / "cache")
    (folder / "logistic_fits.csv").write_bytes(
        b'model_label,metric,L\n"unclosed,\x00\x01 garbage "" ,\n1,2,3,4,5,6,7\n'
    )
    with pytest.raises((DamagedDataError, ValueError), match="logistic_fits.csv"):
        open_data_source(folder).logistic_fits(SPEC)


def test_a_binary_csv_is_an_error_naming_the_file(tmp_path) -> None:
    folder = write_v01_cache(tmp_path / "cache")
    (folder / "logistic_fits.csv").write_bytes(bytes(range(256)) + b"\n")
    with pytest.raises(DamagedDataError, match="logistic_fits.csv: not a"):
        open_data_source(folder).logistic_fits(SPEC)


def test_a_truncated_itl_fit_json_is_an_error_naming_the_file(tmp_path) -> None:
    folder = write_v02_cache(BundledSyntheticSource(), [SPEC], tmp_path / "cache")
    fit = folder / SPEC.cache_hash() / "itl_fit.json"
    fit.write_text(fit.read_text()[:100])
    with pytest.raises(DamagedDataError, match=r"itl_fit\.json: not valid JSON"):
        open_data_source(folder).itl_fit(SPEC, 8)


def test_a_v02_spec_without_its_itl_fit_is_an_error(tmp_path) -> None:
    folder = write_v02_cache(BundledSyntheticSource(), [SPEC], tmp_path / "cache")
    (folder / SPEC.cache_hash() / "itl_fit.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"itl_fit\.json does not exist"):
        open_data_source(folder).itl_fit(SPEC, 8)


def test_a_malformed_itl_fit_names_the_file_and_batch(tmp_path) -> None:
    folder = write_v02_cache(BundledSyntheticSource(), [SPEC], tmp_path / "cache")
    fit = folder / SPEC.cache_hash() / "itl_fit.json"
    payload = json.loads(fit.read_text())
    payload["per_batch"]["8"] = {"nonsense": 1}
    fit.write_text(json.dumps(payload))
    with pytest.raises(DamagedDataError, match=r"itl_fit\.json batch 8: the ITL fit is malformed"):
        open_data_source(folder).itl_fit(SPEC, 8)


def test_a_truncated_training_trace_is_an_error_naming_the_file(tmp_path) -> None:
    path = tmp_path / "train.csv"
    pd.DataFrame({"t_s": [0.0, 1.0, 2.0], "power_W": [100.0, 200.0, 150.0]}).to_csv(path, index=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DamagedDataError, match="train.csv: the file ends mid-line"):
        load_training_trace(path)


# -- the data's fingerprint (sweep run keys) -------------------------------------------------------
def test_the_fingerprint_follows_the_content_of_the_data_folder(tmp_path) -> None:
    folder = write_v01_cache(tmp_path / "cache")
    before = data_fingerprint(folder)
    assert data_fingerprint(folder) == before
    trace = folder / "traces" / f"{SPEC.model_label}_8.csv"
    trace.write_text(trace.read_text())  # rewritten (a new modification time), same content
    assert data_fingerprint(folder) == before
    lines = trace.read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",1.0"
    trace.write_text("\n".join(lines) + "\n")
    assert data_fingerprint(folder) != before
    assert data_fingerprint(None) == data_fingerprint("bundled")
