"""CE / mCE / relative mCE against a baseline model and against AlexNet's published
ImageNet-C errors (Hendrycks & Dietterich 2019), and the choice of the default baseline."""
import pytest

from probe import corruptions, mce


def _rows(errors):
    return [{"corruption": c, "severity": s, "accuracy": 1 - e}
            for c, by_severity in errors.items() for s, e in by_severity.items()]


def test_alexnet_constants_cover_the_15_imagenet_c_corruptions():
    assert list(mce.ALEXNET_ERRORS) == list(corruptions.COMMON)
    assert mce.ALEXNET_ERRORS["gaussian_noise"] == 0.886428
    assert mce.ALEXNET_ERRORS["jpeg_compression"] == 0.606500
    assert mce.ALEXNET_CLEAN_ERROR == 0.4348


def test_alexnet_mce_by_hand():
    fog = {1: 0.30, 2: 0.35, 3: 0.40, 4: 0.50, 5: 0.60}
    contrast = {1: 0.25, 2: 0.30, 3: 0.45, 4: 0.60, 5: 0.80}
    speckle = {1: 0.9, 2: 0.9, 3: 0.9, 4: 0.9, 5: 0.9}          # an extra: reported, not averaged
    clean = 0.8                                                   # clean error 0.2
    m, rel, per = mce.alexnet_mce(_rows({"fog": fog, "contrast": contrast,
                                         "speckle_noise": speckle}), clean)
    mean_fog, mean_contrast = sum(fog.values()) / 5, sum(contrast.values()) / 5
    ce_fog = 100 * mean_fog / 0.819324
    ce_contrast = 100 * mean_contrast / 0.853204
    assert per["fog"]["ce"] == pytest.approx(ce_fog)
    assert per["contrast"]["ce"] == pytest.approx(ce_contrast)
    assert m == pytest.approx((ce_fog + ce_contrast) / 2)
    rel_fog = 100 * (mean_fog - 0.2) / (0.819324 - 0.4348)
    rel_contrast = 100 * (mean_contrast - 0.2) / (0.853204 - 0.4348)
    assert rel == pytest.approx((rel_fog + rel_contrast) / 2)
    assert set(per) == {"fog", "contrast"}


def test_alexnet_refuses_a_subset_of_severities():
    rows = _rows({"fog": {1: 0.3, 3: 0.4, 5: 0.6}})
    with pytest.raises(ValueError, match="needs severities 1,2,3,4,5.*--baseline none"):
        mce.alexnet_mce(rows, 0.8)
    with pytest.raises(ValueError, match="got 3"):
        mce.alexnet_baseline(["fog"], [3])
    base = mce.alexnet_baseline(["fog", "saturate"], [1, 2, 3, 4, 5])
    assert base["clean_accuracy"] == pytest.approx(1 - 0.4348)
    assert {r["corruption"] for r in base["corruptions"]} == {"fog"}   # no published saturate
    assert len(base["corruptions"]) == 5


def test_default_baseline_by_data_and_model():
    assert mce.default_baseline("imagefolder:/photos", (3, 224, 224)) == "alexnet"
    assert mce.default_baseline("imagenet:/data/val", (3, 384, 384)) == "alexnet"
    assert mce.default_baseline("imagenet-c:/data/c", (3, 224, 224)) == "alexnet"
    assert mce.default_baseline("fashion-mnist", (1, 28, 28)) == "cnn"
    assert mce.default_baseline("imagefolder:/photos", (1, 28, 28)) == "cnn"   # zoo model


def test_baseline_of_another_input_size_names_the_options():
    mce.check_baseline_input("timm:resnet18", (3, 224, 224), "timm:mixer_b16_224", (3, 224, 224))
    with pytest.raises(ValueError) as err:
        mce.check_baseline_input("cnn", (1, 28, 28), "timm:mixer_b16_224", (3, 224, 224))
    message = str(err.value)
    assert "cnn takes 1x28x28" in message and "3x224x224" in message
    for option in ("--baseline alexnet", "--baseline none", "--baseline MODEL"):
        assert option in message
