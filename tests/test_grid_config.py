"""Grid configuration: validation errors, tap helper, profiles (SPEC 4.2, 7)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from g2gsim.grid.config import (
    ConstantProfile,
    CsvProfile,
    GeneratorAttachment,
    GridConfig,
    LoadAttachment,
    SiteAttachment,
    StorageSpec,
    SyntheticLoad,
    SyntheticPV,
    from_openg2g_per_phase,
    smooth_bump,
    tan_phi,
    tap_pu,
)


def test_tap_helper_matches_the_regulator_step() -> None:
    assert tap_pu(0) == 1.0
    assert tap_pu(14) == pytest.approx(1.0875)
    assert tap_pu(-16) == pytest.approx(0.9)
    assert GridConfig.tap_pu(16) == pytest.approx(1.1)
    with pytest.raises(TypeError):
        tap_pu(1.5)  # type: ignore[arg-type]


def test_period_is_exact_and_positive() -> None:
    assert GridConfig(feeder="ieee13").period_s == Fraction(1, 10)
    assert GridConfig(feeder="ieee13", period_s=0.5).period_s == Fraction(1, 2)
    with pytest.raises(ValidationError, match="period_s"):
        GridConfig(feeder="ieee13", period_s=0)


def test_initial_taps_are_lower_cased_and_checked() -> None:
    config = GridConfig(feeder="ieee13", initial_taps={"CREG1A": tap_pu(14), "b": 1.0})
    assert config.initial_taps == {"creg1a": pytest.approx(1.0875), "b": 1.0}
    with pytest.raises(ValidationError, match="positive ratio"):
        GridConfig(feeder="ieee13", initial_taps={"a": -1.0})
    with pytest.raises(ValidationError, match="twice"):
        GridConfig(feeder="ieee13", initial_taps={"A": 1.0, "a": 1.0})


def test_duplicate_sites_and_element_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match="repeated sites"):
        GridConfig(feeder="ieee13", sites=[SiteAttachment(site="dc", bus="671")] * 2)
    pv = GeneratorAttachment(name="x", bus="675", profile=ConstantProfile(kw=10))
    load = LoadAttachment(name="X", bus="680", profile=ConstantProfile(kw=10))
    with pytest.raises(ValidationError, match="unique"):
        GridConfig(feeder="ieee13", generators=[pv], loads=[load])


def test_names_used_in_opendss_commands_must_be_safe() -> None:
    with pytest.raises(ValidationError, match="letters, digits"):
        StorageSpec(name="bat 1", bus="671", rated_kw=100, rated_kwh=200)
    with pytest.raises(ValidationError, match="letters, digits"):
        SiteAttachment(site="dc", bus="671 x")


def test_storage_spec_consistency() -> None:
    spec = StorageSpec(name="bat", bus="671", rated_kw=250, rated_kwh=500)
    assert spec.kva == 250
    assert StorageSpec(name="bat", bus="671", rated_kw=250, rated_kva=300, rated_kwh=500).kva == 300
    with pytest.raises(ValidationError, match="rated_kva"):
        StorageSpec(name="bat", bus="671", rated_kw=250, rated_kva=200, rated_kwh=500)
    with pytest.raises(ValidationError, match="reserve_soc"):
        StorageSpec(name="bat", bus="671", rated_kw=250, rated_kwh=500, initial_soc=0.1, reserve_soc=0.2)


def test_profiles_are_a_discriminated_union() -> None:
    pv = GeneratorAttachment.model_validate(
        {"name": "pv", "bus": "675", "profile": {"kind": "synthetic_pv", "peak_kw": 30, "profile": 2}}
    )
    assert isinstance(pv.profile, SyntheticPV) and pv.profile.profile == 2
    with pytest.raises(ValidationError):
        GeneratorAttachment.model_validate(
            {"name": "pv", "bus": "675", "profile": {"kind": "synthetic_pv", "peak_kw": 30, "profile": 3}}
        )
    config = GridConfig(feeder="ieee13", generators=[pv])
    assert GridConfig.model_validate_json(config.model_dump_json()) == config


def test_bump_and_power_factor_helpers() -> None:
    t = np.array([0.0, 600.0, 660.0, 720.0, 800.0])
    np.testing.assert_allclose(smooth_bump(t, 600, 120), [0.0, 1.0, (1 - 0.25) ** 2, 0.0, 0.0])
    assert tan_phi(0.95) == pytest.approx(math.tan(math.acos(0.95)))
    assert tan_phi(1.0) == pytest.approx(math.tan(math.acos(0.999999)))


def _reference_pv(t: float, peak: float, profile: int) -> float:
    """SPEC 7's PV formula, written out scalar by scalar."""

    def bump(c: float, w: float) -> float:
        return (1 - ((t - c) / w) ** 2) ** 2 if abs(t - c) < w else 0.0

    def fluct(s: float) -> float:
        periods = (173.0, 97.3, 251.7, 41.9, 317.3)
        amps = (0.06, 0.05, 0.04, 0.03, 0.02)
        mult = (1.0, 2.3, 0.7, 4.1, 1.9)
        return 1 + sum(a * math.sin(2 * math.pi * t / p + m * s) for a, p, m in zip(amps, periods, mult))

    if profile == 0:
        v = peak * (0.85 - 0.30 * t / 3600) * max(1 - 0.55 * bump(600, 120) - 0.40 * bump(2100, 180), 0.05) * fluct(0.3)
    elif profile == 1:
        v = (
            peak
            * (0.55 + 0.40 * bump(1200, 900))
            * max(1 - 0.60 * bump(1680, 240) - 0.25 * bump(2400, 150), 0.05)
            * fluct(2.1)
        )
    else:
        v = (
            peak
            * (0.30 + 0.65 * min(1, t / 900))
            * max(1 - 0.70 * bump(2700, 300) - 0.30 * bump(1200, 100), 0.05)
            * fluct(9.4)
        )
    return max(v, 0.0)


def _reference_load(t: float, peak: float, k: int) -> float:
    def bump(c: float, w: float) -> float:
        return (1 - ((t - c) / w) ** 2) ** 2 if abs(t - c) < w else 0.0

    shapes = {
        0: lambda: 0.15 + 0.85 * bump(2280, 1400) + 0.20 * bump(2280, 180),
        1: lambda: 0.10 + 0.50 * bump(1500, 600) + 0.80 * bump(2880, 500),
        2: lambda: 0.80 - 0.55 * bump(1800, 1200) + 0.70 * bump(2520, 400),
        3: lambda: 0.10 + 0.90 * bump(3120, 800),
        4: lambda: 0.10 + 0.60 * bump(1080, 300) + 0.75 * bump(2100, 350) + 0.90 * bump(3300, 300),
    }
    f = 1 + 0.06 * math.sin(2 * math.pi * t / (130 + 37 * k) + 1.4 * k)
    return max(peak * shapes[k]() * f, 0.0)


@pytest.mark.parametrize("profile", [0, 1, 2])
def test_synthetic_pv_follows_spec_7(profile: int) -> None:
    t = np.arange(0.0, 3600.0, 7.3)
    got = SyntheticPV(peak_kw=30.0, profile=profile).power_kw(t)
    want = [_reference_pv(x, 30.0, profile) for x in t]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert (got >= 0).all()


@pytest.mark.parametrize("profile", [0, 1, 2, 3, 4])
def test_synthetic_load_follows_spec_7(profile: int) -> None:
    t = np.arange(0.0, 3600.0, 7.3)
    got = SyntheticLoad(peak_kw=120.0, profile=profile).power_kw(t)
    want = [_reference_load(x, 120.0, profile) for x in t]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_constant_profile_and_openg2g_conversion() -> None:
    t = np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(ConstantProfile(kw=12.0).power_kw(t), [12.0] * 3)
    per_phase = SyntheticPV(peak_kw=10.0, profile=0)
    total = from_openg2g_per_phase(per_phase)
    assert isinstance(total, SyntheticPV) and total.peak_kw == 30.0
    np.testing.assert_allclose(total.power_kw(t), 3 * per_phase.power_kw(t))
    assert from_openg2g_per_phase(ConstantProfile(kw=5.0)).kw == 15.0


def test_csv_profile_interpolates_and_holds_the_ends(tmp_path: Path) -> None:
    path = tmp_path / "pv.csv"
    path.write_text("t_s,power_kw\n0,10\n100,20\n200,0\n")
    profile = CsvProfile(path=path)
    np.testing.assert_allclose(profile.power_kw(np.array([-5.0, 0.0, 50.0, 150.0, 500.0])), [10, 10, 15, 10, 0])
    np.testing.assert_allclose(from_openg2g_per_phase(profile).power_kw(np.array([50.0])), [45.0])
    named = CsvProfile(path=path, time_column="t_s", power_column="power_kw")
    assert named.power_kw(np.array([100.0]))[0] == 20.0


def test_csv_profile_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        CsvProfile(path=tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("t,kw\n0,1\n0,2\n")
    with pytest.raises(ValidationError, match="strictly increasing"):
        CsvProfile(path=bad)
    one = tmp_path / "one.csv"
    one.write_text("t,kw\n0,1\n")
    with pytest.raises(ValidationError, match="at least 2 rows"):
        CsvProfile(path=one)
    with pytest.raises(ValidationError, match="no power column 'nope'"):
        CsvProfile(path=bad, power_column="nope")
