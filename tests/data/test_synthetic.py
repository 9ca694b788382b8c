"""Phantom generator: determinism, anatomy, label statistics and what each finding does."""

import itertools

import numpy as np
import pytest

from cxrfast.data.labels.findings import FINDINGS as VOCABULARY
from cxrfast.data.synthetic import FINDINGS, Finding, Findings, make_dataset, make_phantom, to_stored


def _shift(mask, rows, cols):
    """`mask` moved by (rows, cols) pixels, False where nothing moved in."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(rows, 0):h + min(rows, 0), max(cols, 0):w + min(cols, 0)] = \
        mask[max(-rows, 0):h + min(-rows, 0), max(-cols, 0):w + min(-cols, 0)]
    return out


def _grow(mask, pixels):
    steps = range(-pixels, pixels + 1)
    return np.logical_or.reduce([_shift(mask, r, c) for r in steps for c in steps])


def _shrink(mask, pixels):
    return ~_grow(~mask, pixels)


def _column_span(mask):
    cols = np.flatnonzero(mask.any(axis=0))
    return cols[0], cols[-1]


def _measured_ctr(p):
    """Heart width over inner thoracic width, both read off the masks."""
    heart_left, heart_right = _column_span(p.heart_mask)
    lung_left, lung_right = _column_span(p.lung_mask)
    return (heart_right - heart_left + 1) / (lung_right - lung_left + 1)


def test_same_seed_gives_the_same_phantom():
    a, b = make_phantom(5, 128, findings=Findings({n: Finding(0.5) for n in FINDINGS})), \
        make_phantom(5, 128, findings=Findings({n: Finding(0.5) for n in FINDINGS}))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.lung_mask, b.lung_mask)
    assert a.labels == b.labels
    for name in FINDINGS:
        np.testing.assert_array_equal(a.masks[name], b.masks[name])


def test_different_seeds_give_different_anatomy():
    phantoms = [make_phantom(seed, 128, findings=Findings.none()) for seed in range(4)]
    for a, b in itertools.combinations(phantoms, 2):
        iou = (a.lung_mask & b.lung_mask).sum() / (a.lung_mask | b.lung_mask).sum()
        assert iou < 0.97
        assert np.abs(a.image - b.image).mean() > 0.01
        assert a.cardiothoracic_ratio != b.cardiothoracic_ratio


@pytest.mark.parametrize("rows, columns", [(64, 64), (100, 77), (77, 100)])
def test_sizes_types_and_value_range(rows, columns):
    p = make_phantom(3, rows, columns)
    assert p.image.shape == p.lung_mask.shape == p.heart_mask.shape == (rows, columns)
    assert p.image.dtype == np.float32
    assert p.lung_mask.dtype == p.heart_mask.dtype == bool
    assert 0.0 <= p.image.min() and p.image.max() <= 1.0
    assert set(p.labels) == set(p.masks) == set(FINDINGS)
    assert all(m.shape == (rows, columns) and m.dtype == bool for m in p.masks.values())
    assert 0.1 < p.lung_mask.mean() < 0.5


def test_detector_size():
    p = make_phantom(0, 2500, 2048)
    assert p.image.shape == (2500, 2048) and p.image.dtype == np.float32
    assert 0.0 <= p.image.min() and p.image.max() <= 1.0
    assert 0.1 < p.lung_mask.mean() < 0.5
    assert abs(_measured_ctr(p) - p.cardiothoracic_ratio) < 0.01


def test_findings_are_named_as_in_the_vocabulary():
    assert set(FINDINGS) <= set(VOCABULARY)
    assert dict(Findings().items()) == {"Cardiomegaly": Finding(0.15), "Pleural Effusion": Finding(0.12),
                                        "Nodule": Finding(0.08), "Consolidation": Finding(0.10),
                                        "Pneumothorax": Finding(0.05)}
    assert dict(Findings.only("Nodule", 0.2).items()) == {**dict.fromkeys(FINDINGS, Finding(0.0)),
                                                           "Nodule": Finding(1.0, 0.2)}


def test_bad_arguments():
    with pytest.raises(ValueError, match="prevalence"):
        Finding(1.5)
    with pytest.raises(ValueError, match="subtlety"):
        Finding(0.5, -0.1)
    with pytest.raises(ValueError, match="unknown finding"):
        Findings.only("Fracture")  # a vocabulary name that the phantoms do not draw
    with pytest.raises(ValueError, match="unknown finding"):
        Findings({"pleural_effusion": Finding(0.5)})  # not the vocabulary's spelling
    with pytest.raises(ValueError, match="seed"):
        make_phantom(-1)
    with pytest.raises(ValueError, match="at least 64"):
        make_phantom(0, 63, 100)


@pytest.mark.parametrize("seed", range(6))
def test_normal_anatomy(seed):
    p = make_phantom(seed, 512, findings=Findings.none())
    lung, heart, half = p.lung_mask, p.heart_mask, p.image.shape[1] // 2
    right_lung, left_lung = lung[:, :half], lung[:, half:]  # image left is the patient's right
    assert 0.15 < lung.mean() < 0.45
    # The heart takes room from the left lung.
    assert right_lung.sum() > left_lung.sum() > 0
    assert not (lung & heart).any()
    # Aerated lung is much darker than the heart and mediastinum.
    assert p.image[lung].mean() + 0.2 < p.image[heart].mean()
    # The heart lies mostly left of the thoracic midline, i.e. image right.
    lung_left, lung_right = _column_span(lung)
    assert np.nonzero(heart)[1].mean() > (lung_left + lung_right) / 2 + 5
    # The right hemidiaphragm is higher: the right lung ends higher up.
    assert np.flatnonzero(right_lung.any(axis=1))[-1] < np.flatnonzero(left_lung.any(axis=1))[-1]
    assert p.labels == dict.fromkeys(FINDINGS, 0)
    assert not any(m.any() for m in p.masks.values())
    assert p.cardiothoracic_ratio < 0.5


def test_prevalence_and_independence():
    prevalence = dict(zip(FINDINGS, (0.5, 0.3, 0.2, 0.4, 0.1)))
    findings = Findings({name: Finding(q) for name, q in prevalence.items()})
    n = 400
    labels = np.array([[p.labels[name] for name in FINDINGS] for p in make_dataset(n, 1000, 64, findings=findings)])
    expected = np.array([prevalence[name] for name in FINDINGS])
    # Four binomial standard deviations.
    np.testing.assert_array_less(np.abs(labels.mean(axis=0) - expected), 4 * np.sqrt(expected * (1 - expected) / n))
    for i, j in itertools.combinations(range(len(FINDINGS)), 2):
        joint = expected[i] * expected[j]
        assert abs((labels[:, i] & labels[:, j]).mean() - joint) < 4 * np.sqrt(joint * (1 - joint) / n)


def test_prevalence_zero_and_one():
    always = Findings({name: Finding(1.0) for name in FINDINGS})
    assert all(p.labels == dict.fromkeys(FINDINGS, 1) for p in make_dataset(10, 0, 64, findings=always))
    assert all(p.labels == dict.fromkeys(FINDINGS, 0) for p in make_dataset(10, 0, 64, findings=Findings.none()))


def test_make_dataset_uses_consecutive_seeds():
    phantoms = list(make_dataset(3, 40, 64, 80))
    assert [p.seed for p in phantoms] == [40, 41, 42]
    np.testing.assert_array_equal(phantoms[1].image, make_phantom(41, 64, 80).image)


def _with_and_without(name, seed, subtlety=0.3, noise=1.0):
    without = make_phantom(seed, 256, findings=Findings.none(), noise=noise)
    with_ = make_phantom(seed, 256, findings=Findings.only(name, subtlety), noise=noise)
    assert with_.labels == {n: int(n == name) for n in FINDINGS}
    assert with_.masks[name].any() and not without.masks[name].any()
    return with_, without


@pytest.mark.parametrize("seed", range(3))
def test_cardiomegaly_widens_the_heart(seed):
    with_, without = _with_and_without("Cardiomegaly", seed)
    assert with_.cardiothoracic_ratio > 0.5 > without.cardiothoracic_ratio
    for p in (with_, without):
        assert abs(_measured_ctr(p) - p.cardiothoracic_ratio) < 0.02
    np.testing.assert_array_equal(with_.masks["Cardiomegaly"], with_.heart_mask)
    # Lung the heart now covers turned bright.
    covered = with_.heart_mask & without.lung_mask
    assert covered.sum() > 0.02 * covered.size
    assert (with_.image - without.image)[covered].mean() > 0.15
    assert with_.lung_mask.sum() < without.lung_mask.sum()


@pytest.mark.parametrize("seed", range(3))
def test_pleural_effusion_fills_the_costophrenic_angle(seed):
    with_, without = _with_and_without("Pleural Effusion", seed)
    fluid = with_.masks["Pleural Effusion"]
    assert (with_.image - without.image)[fluid].mean() > 0.1
    # The fluid is where aerated lung was and is no longer lung.
    assert (fluid & ~without.lung_mask).sum() <= 0.05 * fluid.sum()
    assert not (fluid & with_.lung_mask).any()
    # It lies at the base of one lung, and its surface rises laterally (meniscus).
    rows, cols = np.nonzero(fluid)
    lung_rows = np.flatnonzero(without.lung_mask.any(axis=1))
    assert rows.mean() > lung_rows[0] + 0.6 * (lung_rows[-1] - lung_rows[0])
    on_image_left = cols.mean() < fluid.shape[1] / 2
    lateral, medial = (cols.min(), cols.max()) if on_image_left else (cols.max(), cols.min())
    top = {c: rows[cols == c].min() for c in np.unique(cols)}
    step = 1 if on_image_left else -1
    near_lateral = min(top[c] for c in range(lateral, lateral + 4 * step, step) if c in top)
    near_medial = min(top[c] for c in range(medial, medial - 4 * step, -step) if c in top)
    assert near_lateral < near_medial


@pytest.mark.parametrize("name", ["Nodule", "Consolidation"])
@pytest.mark.parametrize("seed", range(3))
def test_opacities_brighten_the_lung(name, seed):
    with_, without = _with_and_without(name, seed)
    region = with_.masks[name]
    assert (with_.image - without.image)[region].mean() > 0.05
    # Inside a lung, which keeps its outline.
    assert (region & without.lung_mask).sum() >= 0.95 * region.sum()
    np.testing.assert_array_equal(with_.lung_mask, without.lung_mask)
    # Nothing changes outside the lung (a nodule: outside its own outline).
    changed = with_.image != without.image
    assert not (changed & ~_grow(region if name == "Nodule" else without.lung_mask, 2)).any()


def test_nodule_grows_into_a_mass_when_obvious():
    areas = [make_phantom(7, 512, findings=Findings.only("Nodule", s)).masks["Nodule"].sum() for s in (0.0, 1.0)]
    mm_per_pixel = 350 / 512  # a 35 cm detector side
    diameters = [2 * np.sqrt(a / np.pi) * mm_per_pixel for a in areas]
    assert diameters[0] > 30 > diameters[1]


@pytest.mark.parametrize("seed", range(3))
def test_pneumothorax_has_air_without_markings_and_a_pleural_line(seed):
    with_, without = _with_and_without("Pneumothorax", seed)
    space = with_.masks["Pneumothorax"]
    diff = with_.image - without.image
    assert diff[space].mean() < -0.03
    assert not (space & with_.lung_mask).any()
    assert with_.lung_mask.sum() < without.lung_mask.sum()
    # Along the apex and lateral wall: the top of the lung on that side is now pleural air.
    rows, cols = np.nonzero(space)
    assert rows.min() <= np.flatnonzero(without.lung_mask.any(axis=1))[0] + 2
    # The visceral pleura: a bright line along the retracted lung edge.
    rim = _grow(space, 2) & ~space & with_.lung_mask
    assert diff[rim].mean() > 0.01
    # The retracted lung holds less air: denser than the same lung without, the other lung unchanged.
    on_side = np.zeros_like(space)
    half = slice(None, space.shape[1] // 2) if cols.mean() < space.shape[1] / 2 else slice(space.shape[1] // 2, None)
    on_side[:, half] = True
    clean_diff = (make_phantom(seed, 256, findings=Findings.only("Pneumothorax", 0.3), noise=0).image
                  - make_phantom(seed, 256, findings=Findings.none(), noise=0).image)
    assert clean_diff[with_.lung_mask & on_side & ~rim].mean() > 0.03
    assert np.abs(clean_diff[with_.lung_mask & ~on_side]).max() < 1e-6
    # No vessels cross the air: less structure there than in the same place without it.
    clean_with, clean_without = (make_phantom(seed, 256, findings=f, noise=0).image
                                 for f in (Findings.only("Pneumothorax", 0.3), Findings.none()))
    interior = _shrink(space, 2)
    assert clean_with[interior].std() < clean_without[interior].std()


@pytest.mark.parametrize("name", FINDINGS)
def test_subtlety_makes_findings_harder_to_see(name):
    without = make_phantom(2, 256, findings=Findings.none(), noise=0)
    change = [np.abs(make_phantom(2, 256, findings=Findings.only(name, s), noise=0).image - without.image).sum()
              for s in (0.1, 0.9)]
    assert change[0] > 1.5 * change[1] > 0


def test_switching_one_finding_on_leaves_the_rest_alone():
    nodule_and_consolidation = Findings({n: Finding(float(n in ("Nodule", "Consolidation")), 0.3) for n in FINDINGS})
    both = make_phantom(9, 128, findings=nodule_and_consolidation)
    nodule = make_phantom(9, 128, findings=Findings.only("Nodule", 0.3))
    np.testing.assert_array_equal(both.masks["Nodule"], nodule.masks["Nodule"])
    changed = both.image != nodule.image
    assert changed.any() and not (changed & ~_grow(nodule.lung_mask, 2)).any()


def test_to_stored():
    image = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    m2 = to_stored(image, 12)
    assert m2.dtype == np.uint16
    np.testing.assert_array_equal(m2, [[0, 1024, 2048, 4095]])  # rint(0.5 * 4095) rounds half to even
    m1 = to_stored(image, 12, "MONOCHROME1")
    np.testing.assert_array_equal(m1, 4095 - m2)
    signed = to_stored(image, 12, pixel_representation=1)
    assert signed.dtype == np.int16
    np.testing.assert_array_equal(signed, m2.astype(np.int32) - 2048)
    assert to_stored(image, 8).dtype == np.uint8
    np.testing.assert_array_equal(to_stored(image, 16), [[0, 16384, 32768, 65535]])

    phantom = make_phantom(1, 64).image
    stored = to_stored(phantom, 14)
    assert np.abs(stored / 16383.0 - phantom).max() <= 0.5 / 16383 + 1e-6


@pytest.mark.parametrize("kwargs, message", [
    ({"bits_stored": 17}, "bits_stored"),
    ({"photometric_interpretation": "RGB"}, "MONOCHROME"),
    ({"pixel_representation": 2}, "pixel_representation"),
])
def test_to_stored_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        to_stored(np.zeros((2, 2), np.float32), **kwargs)


@pytest.mark.parametrize("image", [np.array([[1.5]]), np.array([[np.nan]]), np.array([[1]])])
def test_to_stored_rejects_bad_values(image):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_stored(image)
