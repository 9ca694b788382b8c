"""The phantoms' nuisance variation: each kind does what it says to the film and nothing to the
ground truth, and none of it is there unless asked for."""

import math

import numpy as np
import pytest

from cxrfast.cli import main
from cxrfast.data.synthetic import FINDINGS, Finding, Findings, make_phantom
from cxrfast.data.variation import Nuisances, Variation

SOME = Findings(dict.fromkeys(FINDINGS, Finding(0.5)))


def _centroid(mask):
    rows, cols = np.nonzero(mask)
    return rows.mean(), cols.mean()


def _row_span(mask):
    rows = np.flatnonzero(mask.any(axis=1))
    return rows[0], rows[-1]


def test_no_variation_is_the_default_and_draws_nothing():
    assert not Variation().active and Variation.realistic().active
    p = make_phantom(3, 96, findings=SOME)
    assert p.nuisances == Nuisances()
    np.testing.assert_array_equal(p.image, make_phantom(3, 96, findings=SOME, variation=Variation()).image)


@pytest.mark.parametrize("seed", range(4))
def test_variation_leaves_labels_and_findings_as_drawn(seed):
    plain = make_phantom(seed, 96, findings=SOME)
    varied = make_phantom(seed, 96, findings=SOME, variation=Variation.realistic())
    again = make_phantom(seed, 96, findings=SOME, variation=Variation.realistic())
    assert varied.labels == plain.labels
    assert varied.cardiothoracic_ratio == plain.cardiothoracic_ratio
    np.testing.assert_array_equal(varied.image, again.image)
    assert varied.nuisances == again.nuisances != Nuisances()
    assert np.abs(varied.image - plain.image).mean() > 0.005


@pytest.mark.parametrize("seed", range(4))
def test_position_moves_scales_and_turns_the_patient(seed):
    rows = 160
    plain = make_phantom(seed, rows, findings=Findings.none(), noise=0)
    moved = make_phantom(seed, rows, findings=Findings.none(), noise=0, variation=Variation(position=1.0))
    n = moved.nuisances
    assert n.zoom != 1.0 and n.angle != 0.0
    # Area grows with the square of the magnification (the lungs stay inside the film).
    assert moved.lung_mask.sum() / plain.lung_mask.sum() == pytest.approx(n.zoom ** 2, rel=0.04)
    # The lungs' centroid goes where the pose takes it: patient (u, v) -> detector zoom·R(-angle)·(u, v) + shift.
    r0, c0 = _centroid(plain.lung_mask)
    u, v = (c0 + 0.5 - rows / 2) / rows, (r0 + 0.5 - rows / 2) / rows
    cos, sin = math.cos(n.angle), math.sin(n.angle)
    du, dv = n.zoom * (cos * u - sin * v) + n.shift[0], n.zoom * (sin * u + cos * v) + n.shift[1]
    r1, c1 = _centroid(moved.lung_mask)
    assert (c1 + 0.5 - rows / 2) / rows == pytest.approx(du, abs=0.006)
    assert (r1 + 0.5 - rows / 2) / rows == pytest.approx(dv, abs=0.006)
    # The heart turns with the lungs: the line between the lungs' centroids tilts by the angle.
    tilts = []
    for p in (plain, moved):
        left, right = p.lung_mask.copy(), p.lung_mask.copy()
        middle = int(_centroid(p.heart_mask)[1])
        left[:, middle:], right[:, :middle] = False, False
        (ra, ca), (rb, cb) = _centroid(left), _centroid(right)
        tilts.append(math.atan2(rb - ra, cb - ca))
    assert tilts[1] - tilts[0] == pytest.approx(n.angle, abs=math.radians(1.5))


@pytest.mark.parametrize("seed", range(3))
def test_inspiration_lengthens_the_lungs_below_fixed_apices(seed):
    plain = make_phantom(seed, 200, findings=Findings.none(), noise=0)
    varied = make_phantom(seed, 200, findings=Findings.none(), noise=0, variation=Variation(inspiration=1.0))
    depth = varied.nuisances.inspiration
    assert depth != 1.0
    (top0, bottom0), (top1, bottom1) = _row_span(plain.lung_mask), _row_span(varied.lung_mask)
    assert abs(top1 - top0) <= 1
    assert (bottom1 - top1) / (bottom0 - top0) == pytest.approx(depth, rel=0.05)


@pytest.mark.parametrize("seed", range(3))
def test_exposure_is_the_detectors_response_to_the_same_film(seed):
    rows = 128  # below the working-grid size, so the response is applied pixel for pixel
    plain = make_phantom(seed, rows, findings=SOME, noise=0)
    varied = make_phantom(seed, rows, findings=SOME, noise=0, variation=Variation(exposure=1.0))
    n = varied.nuisances
    assert n.gamma != 1.0 and n.heel != 0.0
    v = ((np.arange(rows) + 0.5 - rows / 2) / rows)[:, None]
    expected = np.clip(n.offset + n.gain * plain.image ** n.gamma * (1 + n.heel * (v + 0.5)), 0, 1)
    inside = (plain.image > 0) & (plain.image < 1)  # where the plain film was not clipped
    np.testing.assert_allclose(varied.image[inside], expected[inside], atol=2e-6)
    np.testing.assert_array_equal(varied.lung_mask, plain.lung_mask)


def test_exposure_varies_the_noise_level():
    levels = [make_phantom(seed, 64, variation=Variation(exposure=1.0)).nuisances.noise for seed in range(20)]
    assert min(levels) < 0.85 and max(levels) > 1.3


def _devices(seed):
    for k in range(seed, seed + 200):
        p = make_phantom(k, 192, findings=Findings.none(), noise=0, variation=Variation(devices=1.0))
        if p.nuisances.electrodes and p.nuisances.line:
            return k, p
    raise AssertionError("no phantom with both electrodes and a line in 200")


def test_devices_only_add_density_and_leave_the_masks():
    seed, varied = _devices(0)
    plain = make_phantom(seed, 192, findings=Findings.none(), noise=0)
    diff = varied.image - plain.image
    assert diff.min() >= -1e-6
    np.testing.assert_array_equal(varied.lung_mask, plain.lung_mask)
    for u, v in varied.nuisances.electrodes:  # each stud is bright where it lies (no pose: patient = detector)
        r, c = round(v * 192 + 96 - 0.5), round(u * 192 + 96 - 0.5)
        if 0 <= r < 192 and 0 <= c < 192 and plain.image[r, c] < 0.6:
            assert diff[r - 1:r + 2, c - 1:c + 2].max() > 0.15
    # Most of the film is untouched: devices are thin.
    assert (np.abs(diff) > 1e-6).mean() < 0.25


def test_electrodes_appear_in_about_half_the_films_and_lines_in_fewer():
    drawn = [make_phantom(k, 64, variation=Variation(devices=1.0)).nuisances for k in range(200)]
    electrodes, lines = np.mean([bool(n.electrodes) for n in drawn]), np.mean([bool(n.line) for n in drawn])
    assert 0.38 < electrodes < 0.62 and 0.18 < lines < 0.42


@pytest.mark.parametrize("seed", range(6))
def test_the_lead_marker_is_on_its_side_near_the_top(seed):
    for k in range(seed * 50, seed * 50 + 50):
        p = make_phantom(k, 160, findings=Findings.none(), noise=0, variation=Variation(markers=1.0))
        if p.nuisances.marker and not p.nuisances.label:
            break
    plain = make_phantom(k, 160, findings=Findings.none(), noise=0)
    burned = (p.image > 0.9) & (plain.image < 0.8)
    rows, cols = np.nonzero(burned)
    assert len(rows) > 15
    assert rows.max() < 0.25 * 160
    letter = p.nuisances.marker[0]
    assert (cols.mean() < 80) == (letter == "R")  # R: the patient's right, the image's left


def test_collimation_leaves_the_shuttered_border_bright():
    for k in range(100):
        p = make_phantom(k, 128, findings=Findings.none(), noise=0, variation=Variation(collimation=1.0))
        left, right, top, bottom, tilt = p.nuisances.field or (None,) * 5
        if p.nuisances.field and min(left + 0.5, 0.5 - right, top + 0.5, 0.5 - bottom) > 0.04:
            break
    plain = make_phantom(k, 128, findings=Findings.none(), noise=0)
    corners = np.zeros((128, 128), bool)
    corners[:2, :2] = corners[:2, -2:] = corners[-2:, :2] = corners[-2:, -2:] = True
    assert p.image[corners].min() > 0.75 > plain.image[corners].max()
    centre = slice(48, 80)
    np.testing.assert_array_equal(p.image[centre, centre], plain.image[centre, centre])
    np.testing.assert_array_equal(p.lung_mask, plain.lung_mask)


@pytest.mark.parametrize("kind", ["position", "inspiration", "exposure", "devices", "markers", "collimation"])
def test_strengths_outside_the_unit_interval_are_refused(kind):
    with pytest.raises(ValueError, match=f"variation {kind} must be in"):
        Variation(**{kind: 1.5})


def test_phantoms_command_takes_a_variation_strength(tmp_path, capsys):
    assert main(["phantoms", str(tmp_path / "a"), "--count", "2", "--rows", "64", "--variation", "0.5"]) == 0
    assert (tmp_path / "a" / "PHANTOM-000001.dcm").is_file()
    with pytest.raises(SystemExit):
        main(["phantoms", str(tmp_path / "b"), "--count", "2", "--variation", "1.5"])
    assert "1.5 is not in [0, 1]" in capsys.readouterr().err
